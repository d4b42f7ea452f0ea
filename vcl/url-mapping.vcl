#
# url-mapping.vcl: Varnish as the public front of a set of Lambda functions.
#
# Each public URL is mapped to one function (and optionally an alias or version) in a
# table below, the pattern people used with pure-VCL SigV4 signing; the signing itself,
# the credentials and the request body are lambda-sign's business, not VCL's:
#
#   POST /api/resize          -> function image-resize, alias live
#   POST /api/render          -> function page-render
#   POST /api/events          -> function event-sink, invoked asynchronously (202 at once)
#   anything else             -> 404, and nothing reaches lambda-sign or Lambda
#
# Varnish rewrites the URL to Lambda's Invoke path, e.g.
#   /api/resize -> /2015-03-31/functions/image-resize/invocations?Qualifier=live
# and lambda-sign (on /run/lambda-sign.sock, see systemd/lambda-sign.socket) signs it with
# AWS SigV4 and sends it to Lambda. Start lambda-sign with the same functions allowed,
# so that a mistake in this table cannot reach any other function:
#   lambda-sign --allow-function image-resize --allow-function page-render --allow-function event-sink
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
    # gateway mode), and only the table below may choose a function.
    unset req.http.X-Lambda-Function;
    unset req.http.X-Lambda-Payload;
    unset req.http.X-Lambda-Response;
    unset req.http.X-Lambda-Sign-Function;

    # The table: public path (exact, query string ignored) -> function[:alias].
    if (req.url ~ "^/api/resize(\?|$)") {
        set req.http.X-Lambda-Sign-Function = "image-resize:live";
    } elsif (req.url ~ "^/api/render(\?|$)") {
        set req.http.X-Lambda-Sign-Function = "page-render";
    } elsif (req.url ~ "^/api/events(\?|$)") {
        set req.http.X-Lambda-Sign-Function = "event-sink";
    } else {
        return (synth(404, "Not Found"));
    }

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

sub vcl_backend_response {
    # Stream the function's answer; never store it.
    set beresp.uncacheable = true;
    return (deliver);
}

sub vcl_synth {
    # Refusals in the same JSON shape as lambda-sign's own errors.
    if (resp.status == 404 || resp.status == 405) {
        set resp.http.Content-Type = "application/json";
        # A {"..."} string ends at the first quote-brace, hence the closing brace added apart.
        if (resp.status == 405) {
            set resp.http.Allow = "POST";
            set resp.body = {"{"error":"MethodNotAllowed","message":"use POST""} + "}";
        } else {
            set resp.body = {"{"error":"NotFound","message":"no function is mapped to this URL""} + "}";
        }
        return (deliver);
    }
}
