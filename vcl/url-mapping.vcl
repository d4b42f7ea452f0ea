#
# url-mapping.vcl: Varnish as the public front of a set of Lambda functions.
#
# Each public URL is mapped to one function (and optionally an alias or version) in a
# table below, the pattern people used with pure-VCL SigV4 signing; the signing itself,
# the credentials and the request body are lambda-sign's business, not VCL's. A row is
# one of two kinds:
#
# Invoke rows: POST, the request body is the payload (Lambda's Invoke API, as is).
#   POST /api/resize          -> function image-resize, alias live
#   POST /api/render          -> function page-render
#   POST /api/events          -> function event-sink, invoked asynchronously (202 at once)
# Varnish rewrites the URL to Lambda's Invoke path, e.g.
#   /api/resize -> /2015-03-31/functions/image-resize/invocations?Qualifier=live
# Invocations are passed: never cached, never coalesced, never sent twice.
#
# Gateway rows: GET and HEAD, with any query string, through lambda-sign's gateway mode.
#   GET /api/products[/...][?...]  -> function product-catalog
#   GET /api/search[?...]          -> function search
# The URL is kept; the function receives the request as a Function URL event (payload
# format 2.0): rawPath, rawQueryString ("q=shoes&size=42"), queryStringParameters
# ({"q":"shoes","size":"42"}; repeated keys joined with commas), headers. It answers
# with {statusCode, headers, body, isBase64Encoded}, which lambda-sign turns back into
# HTTP, and Varnish caches the answer per URL, query string included, for as long as its
# Cache-Control says. Answers without Cache-Control or Expires, or with no-store,
# no-cache, private or Set-Cookie, are not stored. Cookies are removed (an API answer
# must not depend on them, and they would make every request a miss); a request with
# Authorization is passed, never cached.
#
#   anything else             -> 404, and nothing reaches lambda-sign or Lambda
#   a listed URL, another method -> 405 (Allow: POST, or Allow: GET, HEAD)
#
# Each function gets one shape of payload: its raw body (invoke rows) or an HTTP event
# (gateway rows). To serve one function both ways, list it in two rows under two URLs.
#
# lambda-sign (on /run/lambda-sign.sock, see systemd/lambda-sign.socket) signs each
# request with AWS SigV4 and sends it to Lambda. Start it with the same functions
# allowed, so that a mistake in this table cannot reach any other function:
#   lambda-sign --allow-function image-resize --allow-function page-render \
#     --allow-function event-sink --allow-function product-catalog --allow-function search
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
    .host_header = "lambda-sign";  # probes and HTTP/1.0 clients send no Host
    .connect_timeout = 1s;
    # Above lambda-sign's --timeout (default 900 s), which is above the functions' timeout,
    # so a slow function ends as lambda-sign's 504 UpstreamTimeout rather than Varnish's 503.
    .first_byte_timeout = 910s;
    .between_bytes_timeout = 120s;
    .probe = lambda_sign_healthz;
}

sub vcl_recv {
    # Only VCL may set X-Lambda-* headers, never a client: X-Lambda-Function,
    # X-Lambda-Payload and X-Lambda-Response choose what lambda-sign invokes and how (its
    # gateway mode), and only the table below may choose a function. X-Lambda-Sign-*
    # carry this file's own choices to vcl_backend_fetch.
    unset req.http.X-Lambda-Function;
    unset req.http.X-Lambda-Payload;
    unset req.http.X-Lambda-Response;
    unset req.http.X-Lambda-Sign-Function;
    unset req.http.X-Lambda-Sign-Gateway;

    # The table. Invoke rows: public path (exact, query string ignored) ->
    # X-Lambda-Sign-Function = function[:alias]. Gateway rows: public path (and, for
    # /api/products, anything below it) -> X-Lambda-Sign-Gateway = function[:alias].
    if (req.url ~ "^/api/resize(\?|$)") {
        set req.http.X-Lambda-Sign-Function = "image-resize:live";
    } elsif (req.url ~ "^/api/render(\?|$)") {
        set req.http.X-Lambda-Sign-Function = "page-render";
    } elsif (req.url ~ "^/api/events(\?|$)") {
        set req.http.X-Lambda-Sign-Function = "event-sink";
    } elsif (req.url ~ "^/api/products(/[^?]*)?(\?|$)") {
        set req.http.X-Lambda-Sign-Gateway = "product-catalog";
    } elsif (req.url ~ "^/api/search(\?|$)") {
        set req.http.X-Lambda-Sign-Gateway = "search";
    } else {
        return (synth(404, "Not Found"));
    }

    if (req.http.X-Lambda-Sign-Gateway) {
        # A gateway row: a cacheable read. The URL stays as the client sent it (the
        # function sees its path and query string); vcl_backend_fetch names the function.
        if (req.method != "GET" && req.method != "HEAD") {
            return (synth(405, "Method Not Allowed"));
        }
        set req.backend_hint = lambda_sign;
        call vcl_req_host;  # lower-case Host (part of the cache key); 400 without one in HTTP/1.1
        # The event's requestContext.http.sourceIp is the first X-Forwarded-For hop, and
        # Varnish appends client.ip to any X-Forwarded-For the client sent: replace it, so
        # the function sees the real client (behind a proxy, use the PROXY protocol).
        set req.http.X-Forwarded-For = client.ip;
        unset req.http.Cookie;
        if (req.http.Authorization) {
            # An answer for one caller: passed to the function, never stored.
            return (pass);
        }
        # Cached per URL and Host, query string included, by the builtin vcl_hash.
        return (hash);
    }

    # An invoke row.
    if (req.method != "POST") {
        return (synth(405, "Method Not Allowed"));
    }

    # Clients never speak to Lambda's API: drop any AWS signature, token, date, and the
    # Invoke options, so that only this file decides them. (lambda-sign itself forwards only
    # Content-Type, X-Amz-Invocation-Type, X-Amz-Log-Type and X-Amz-Client-Context, and
    # always replaces the signature; VCL 4.1 cannot unset headers by wildcard, so these
    # are the X-Amz-* headers AWS defines.)
    unset req.http.Authorization;
    unset req.http.X-Amz-Date;
    unset req.http.X-Amz-Security-Token;
    unset req.http.X-Amz-Content-Sha256;
    unset req.http.X-Amz-Invocation-Type;
    unset req.http.X-Amz-Log-Type;
    unset req.http.X-Amz-Client-Context;
    unset req.http.X-Amz-Target;
    unset req.http.X-Amz-User-Agent;
    unset req.http.X-Amz-Expires;
    unset req.http.X-Amz-Credential;
    unset req.http.X-Amz-Signature;
    unset req.http.X-Amz-SignedHeaders;
    unset req.http.X-Amz-Algorithm;
    unset req.http.X-Amzn-Trace-Id;

    # Per-route Invoke options, set after the stripping above.
    if (req.http.X-Lambda-Sign-Function == "event-sink") {
        set req.http.X-Amz-Invocation-Type = "Event";
    }

    # function:alias -> Invoke path with ?Qualifier=alias; function -> Invoke path.
    if (req.http.X-Lambda-Sign-Function ~ ":") {
        set req.url = regsub(req.http.X-Lambda-Sign-Function, "^([^:]+):(.+)$",
            "/2015-03-31/functions/\1/invocations?Qualifier=\2");
    } else {
        set req.url = "/2015-03-31/functions/" + req.http.X-Lambda-Sign-Function + "/invocations";
    }
    set req.backend_hint = lambda_sign;

    # Every invocation reaches its function exactly once: never cached, never coalesced,
    # and the body is streamed to lambda-sign, never kept (so Varnish cannot retry it).
    return (pass);
}

# Never pipe: a piped connection would let a client speak to lambda-sign directly.
sub vcl_pipe {
    return (synth(405, "Method Not Allowed"));
}

sub vcl_backend_fetch {
    if (bereq.backend == lambda_sign && bereq.http.X-Lambda-Sign-Gateway) {
        # Gateway mode: the request becomes an event for the row's function, and its
        # answer is decoded back into HTTP.
        set bereq.http.X-Lambda-Function = bereq.http.X-Lambda-Sign-Gateway;
        set bereq.http.X-Lambda-Response = "http";
    }
    unset bereq.http.X-Lambda-Sign-Gateway;
    unset bereq.http.X-Lambda-Sign-Function;
}

sub vcl_backend_response {
    if (bereq.http.X-Lambda-Function) {
        # A gateway answer: cached for its Cache-Control by the builtin VCL that runs
        # after this (which also refuses no-store, no-cache, private, Set-Cookie, Vary: *
        # and errors). An answer the function gives no lifetime is not stored
        # ("hit-for-miss": not stored, not coalesced, for 2 minutes).
        if (!bereq.uncacheable && !beresp.http.Cache-Control && !beresp.http.Expires) {
            set beresp.ttl = 120s;
            set beresp.uncacheable = true;
            return (deliver);
        }
    } else {
        # An invocation: stream the function's answer; never store it.
        set beresp.uncacheable = true;
        return (deliver);
    }
}

sub vcl_synth {
    # Refusals in the same JSON shape as lambda-sign's own errors.
    if (resp.status == 404 || resp.status == 405) {
        set resp.http.Content-Type = "application/json";
        # A {"..."} string ends at the first quote-brace, hence the closing brace added apart.
        if (resp.status == 405 && req.http.X-Lambda-Sign-Gateway) {
            set resp.http.Allow = "GET, HEAD";
            set resp.body = {"{"error":"MethodNotAllowed","message":"use GET""} + "}";
        } elsif (resp.status == 405) {
            set resp.http.Allow = "POST";
            set resp.body = {"{"error":"MethodNotAllowed","message":"use POST""} + "}";
        } else {
            set resp.body = {"{"error":"NotFound","message":"no function is mapped to this URL""} + "}";
        }
        return (deliver);
    }
}
