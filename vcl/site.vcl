#
# site.vcl: a web site whose pages are answered by one AWS Lambda function, cached by
# Varnish.
#
#   every URL, any of GET HEAD POST PUT PATCH DELETE OPTIONS
#        goes to the function "site" through lambda-sign's gateway mode: the function
#        receives the HTTP request as a Function URL event (payload format 2.0: rawPath,
#        rawQueryString, queryStringParameters, headers, cookies, body) and answers with
#        {statusCode, headers, cookies, body, isBase64Encoded}, which lambda-sign turns back
#        into HTTP. Handlers written for Function URLs, serverless-http, Mangum or the
#        Lambda Web Adapter work unchanged.
#   other methods (CONNECT, PURGE, WebDAV...)
#        405; never piped (a piped connection would reach lambda-sign unchecked)
#
# Caching: the function decides, with Cache-Control.
#   - GET and HEAD of anonymous visitors are cache lookups; an answer is stored for its
#     Cache-Control max-age / s-maxage (stale-while-revalidate becomes Varnish's grace).
#   - Not stored: answers with no-store, no-cache or private, answers that set a cookie,
#     Vary: *, errors, and answers without any Cache-Control or Expires (Varnish would
#     otherwise keep them for its default_ttl, 2 minutes; here the function must say so).
#
# Cookies: pages are cached per URL, not per visitor, so cookies must not change them.
#   - A visitor with a session cookie (named "session" below; use your framework's:
#     "sessionid", "connect.sid", "PHPSESSID"...) is logged in: every request is passed to
#     the function with all its cookies, and its answer is never stored nor taken from
#     the cache.
#   - Pages under /account, /login, /logout and /admin are always passed with cookies
#     (forms with CSRF cookies, personal pages), whoever asks.
#   - Any other GET or HEAD has its Cookie header removed: analytics, consent or A/B
#     cookies cannot change a cached page, and would otherwise make every request a miss
#     (the builtin VCL passes any request with a cookie). The function sees no cookies there.
#   - POST, PUT, PATCH, DELETE and OPTIONS are always passed, cookies and body included.
#   - Requests with Authorization are passed, as the builtin VCL does.
#   The trade-off: logged-in visitors are never served from the cache. Sites where most
#   traffic is logged in want ESI or per-user caching instead.
#
# The function sees the visitor's address (requestContext.http.sourceIp) as Varnish's
# client.ip: an X-Forwarded-For sent by the client is replaced, so it cannot be forged.
#
# Start lambda-sign with only that function allowed:
#   lambda-sign --allow-function site
#
# Check it with: varnishd -C -f <this file> >/dev/null. Tested with Varnish 7.1 (VCL 4.1).

vcl 4.1;

probe lambda_sign_healthz {
    .url = "/healthz";        # 200 while lambda-sign's credentials resolve; never calls Lambda
    .interval = 1s;
    .timeout = 1s;
    .window = 5;
    .threshold = 3;
}

backend lambda_sign {
    .path = "/run/lambda-sign.sock";
    .host_header = "lambda-sign";  # only used when the client sent no Host (HTTP/1.0)
    .connect_timeout = 1s;
    # Above lambda-sign's --timeout (default 900 s), which is above the function's timeout,
    # so a slow page ends as lambda-sign's 504 UpstreamTimeout rather than Varnish's 503.
    .first_byte_timeout = 910s;
    .between_bytes_timeout = 120s;
    .probe = lambda_sign_healthz;
}

sub vcl_recv {
    # Only VCL may set X-Lambda-* headers, never a client: X-Lambda-Function,
    # X-Lambda-Payload and X-Lambda-Response choose what lambda-sign invokes, with what,
    # and how it answers.
    unset req.http.X-Lambda-Function;
    unset req.http.X-Lambda-Payload;
    unset req.http.X-Lambda-Response;

    set req.backend_hint = lambda_sign;

    # Host: lower-cased (it is part of the cache key), required in HTTP/1.1.
    call vcl_req_host;

    # The function's requestContext.http.sourceIp is the first X-Forwarded-For hop, and
    # Varnish appends client.ip to whatever X-Forwarded-For the client sent: left alone, a
    # client would choose its own address. Behind a load balancer or TLS terminator, have
    # it speak the PROXY protocol to Varnish (-a :8443,PROXY) so client.ip is the visitor.
    set req.http.X-Forwarded-For = client.ip;

    # Return explicitly below: the builtin VCL would pipe unknown methods.
    if (req.method != "GET" && req.method != "HEAD" && req.method != "POST" &&
        req.method != "PUT" && req.method != "PATCH" && req.method != "DELETE" &&
        req.method != "OPTIONS") {
        return (synth(405, "Method Not Allowed"));
    }
    if (req.method != "GET" && req.method != "HEAD") {
        # Forms and APIs: passed (streamed, never stored), cookies and body included.
        return (pass);
    }
    if (req.url ~ "^/(account|login|logout|admin)(/|\?|$)") {
        return (pass);
    }
    if (req.http.Cookie ~ "(^|;)\s*session=") {
        # Logged in: the page is this visitor's.
        return (pass);
    }
    # Anonymous: no cookie can change the page.
    unset req.http.Cookie;
    if (req.http.Authorization) {
        return (pass);
    }
    return (hash);
}

# Never pipe: a piped connection would let a client speak to lambda-sign directly.
sub vcl_pipe {
    return (synth(405, "Method Not Allowed"));
}

sub vcl_backend_fetch {
    if (bereq.backend == lambda_sign) {
        # Gateway mode: the request becomes a Function URL event for "site" (the request
        # goes to lambda-sign as it is, path and query included), and the answer is
        # decoded back into HTTP. An ARN or name:alias works too ("site:live").
        set bereq.http.X-Lambda-Function = "site";
        set bereq.http.X-Lambda-Response = "http";
    }
}

sub vcl_backend_response {
    if (bereq.backend == lambda_sign && !bereq.uncacheable) {
        # A page the function gives no lifetime is not stored ("hit-for-miss" for 2
        # minutes: not stored, not coalesced). The rest of Cache-Control (no-store,
        # private...), Set-Cookie and Vary: * are the builtin VCL's, which runs after this.
        if (!beresp.http.Cache-Control && !beresp.http.Expires && !beresp.http.Surrogate-Control) {
            set beresp.ttl = 120s;
            set beresp.uncacheable = true;
            return (deliver);
        }
    }
}

sub vcl_synth {
    if (resp.status == 405) {
        set resp.http.Allow = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
    }
}
