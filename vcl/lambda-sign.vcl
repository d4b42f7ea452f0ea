#
# lambda-sign.vcl: Varnish in front of a web site, with some URLs answered by AWS Lambda.
#
#   POST /lambda/<function>[?Qualifier=<alias or version>]
#        invokes Lambda function <function>: the request body is the payload, the function's
#        answer is the response. Never cached, never sent twice.
#   anything else
#        goes to the "default" backend (your origin), cached as usual.
#
# If an invocation fails (the function raised an error, Lambda answered 429 or 5xx,
# lambda-sign is down or unhealthy), the client gets the origin's answer to
# "GET <the same URL>" instead (give it a page there: a placeholder, a cached rendering);
# header X-Lambda-Fallback tells the origin (and the client) why.
# The payload is not sent to the origin: Varnish streams it to lambda-sign without keeping
# a copy, so a 6 MB body is never buffered here and an invocation can never be sent twice.
#
# lambda-sign signs each request with AWS SigV4 and sends it to Lambda; credentials are
# never in VCL. It listens on /run/lambda-sign.sock (systemd/lambda-sign.socket), owned by
# root:varnish, mode 0660: the Varnish worker (user vcache or varnish, group varnish)
# can connect, nobody else can.
#
# Install: copy to /etc/varnish/default.vcl (or load it with
#   varnishadm vcl.load lambda vcl/lambda-sign.vcl && varnishadm vcl.use lambda),
# and set your origin's address below. Check it with: varnishd -C -f <this file> >/dev/null
#
# Tested with Varnish 7.1 (VCL 4.1).

vcl 4.1;

import std;

# Your origin. It serves the site, and the fallback when an invocation fails.
backend default {
    .host = "127.0.0.1";
    .port = "8080";
}

# GET /healthz answers 200 while lambda-sign can sign (its credentials resolve) and 503
# otherwise, including while it drains after SIGTERM. It never calls Lambda, so probing
# every second costs nothing. While the probe fails, invocations go straight to the fallback.
probe lambda_sign_healthz {
    .url = "/healthz";
    .expected_response = 200;
    .interval = 1s;
    .timeout = 1s;
    .window = 5;
    .threshold = 3;
}

backend lambda_sign {
    .path = "/run/lambda-sign.sock";
    # lambda-sign requires a Host header (HTTP/1.1); probes and HTTP/1.0 clients have none.
    .host_header = "lambda-sign";
    # A local socket: connecting is immediate or lambda-sign is not running.
    .connect_timeout = 1s;
    # Lambda answers only when the function returns, which can take up to 15 minutes.
    # Keep this ABOVE lambda-sign's --timeout (default 900 s), and that above your
    # functions' own timeout: then a slow function ends as lambda-sign's
    # "504 UpstreamTimeout", and not as Varnish's bare "503 Backend fetch failed"
    # (Varnish's default first_byte_timeout is 60 s).
    .first_byte_timeout = 910s;
    # Response-streaming functions may pause between chunks.
    .between_bytes_timeout = 120s;
    .probe = lambda_sign_healthz;
}

sub vcl_recv {
    if (req.restarts == 0) {
        # Only VCL may set X-Lambda-* headers, never a client: X-Lambda-Function,
        # X-Lambda-Payload and X-Lambda-Response choose what lambda-sign invokes and how
        # (its gateway mode); X-Lambda-Sign-* and X-Lambda-Fallback are this file's own.
        unset req.http.X-Lambda-Function;
        unset req.http.X-Lambda-Payload;
        unset req.http.X-Lambda-Response;
        unset req.http.X-Lambda-Sign-Function;
        unset req.http.X-Lambda-Sign-URL;
        unset req.http.X-Lambda-Fallback;
    }
    if (req.http.X-Lambda-Fallback) {
        # Back here by the restart in vcl_deliver: the invocation failed.
        call lambda_sign_fallback;
        return (pass);
    }

    if (req.url ~ "^/lambda/") {
        if (req.url !~ "^/lambda/[A-Za-z0-9_-]{1,64}(\?Qualifier=[A-Za-z0-9_$-]{1,128})?$") {
            return (synth(404, "Not Found"));
        }
        if (req.method != "POST") {
            return (synth(405, "Method Not Allowed"));
        }
        call lambda_sign_strip_aws_headers;
        set req.http.X-Lambda-Sign-URL = req.url;
        set req.http.X-Lambda-Sign-Function = regsub(req.url, "^/lambda/([^?]+).*$", "\1");

        if (!std.healthy(lambda_sign)) {
            set req.http.X-Lambda-Fallback = "lambda-sign unhealthy";
            call lambda_sign_fallback;
            return (pass);
        }

        # Lambda's Invoke path, which lambda-sign signs and forwards:
        #   /lambda/f?Qualifier=live -> /2015-03-31/functions/f/invocations?Qualifier=live
        set req.url = regsub(req.url, "^/lambda/([^?]+)", "/2015-03-31/functions/\1/invocations");
        set req.backend_hint = lambda_sign;
        # An invocation is not a cacheable read: never cached, never coalesced with another.
        return (pass);
    }

    # Everything else: your site, through the builtin VCL (cached by its rules).
    set req.backend_hint = default;
}

# The client must not choose what lambda-sign sends to Lambda. lambda-sign forwards only
# Content-Type, X-Amz-Invocation-Type, X-Amz-Log-Type and X-Amz-Client-Context, and drops
# any Authorization / X-Amz-Date / X-Amz-Security-Token before signing; this drops the rest
# of the AWS vocabulary too, so that only this VCL can choose an invocation type.
# (VCL 4.1 cannot unset headers by wildcard; these are the ones AWS defines.)
sub lambda_sign_strip_aws_headers {
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
    # To let the function's answer come asynchronously (202), or to get its log tail:
    # set req.http.X-Amz-Invocation-Type = "Event";
}

# The fallback request: GET <public URL> from the origin, with the client's headers and
# X-Lambda-Fallback, without the payload (see vcl_backend_fetch). Passed, never cached
# under the invocation's URL.
sub lambda_sign_fallback {
    set req.backend_hint = default;
    set req.method = "GET";
    set req.url = req.http.X-Lambda-Sign-URL;
    unset req.http.X-Lambda-Sign-URL;
    unset req.http.X-Lambda-Sign-Function;
}

sub vcl_backend_fetch {
    if (bereq.http.X-Lambda-Fallback) {
        # The payload was streamed to lambda-sign (or, lambda-sign being unhealthy, never
        # read): send neither it nor its framing, or the origin would wait for a body that
        # never comes (after a restart, unsetting bereq.body leaves Content-Length behind).
        unset bereq.body;
        unset bereq.http.Content-Length;
        unset bereq.http.Transfer-Encoding;
    }
}

sub vcl_backend_response {
    if (bereq.backend == lambda_sign) {
        # Mark failed invocations for vcl_deliver: the function raised an error (Lambda still
        # answers 200, with X-Amz-Function-Error), Lambda throttled (429), or Lambda or
        # lambda-sign answered 5xx (502 UpstreamUnavailable, 503 CredentialsUnavailable or
        # Overloaded, 504 UpstreamTimeout...). Other 4xx (403 FunctionNotAllowed, 404 no such function,
        # 413 PayloadTooLarge) are the request's or the configuration's fault and reach the
        # client as they are.
        unset beresp.http.X-Lambda-Fallback;
        if (beresp.http.X-Amz-Function-Error) {
            set beresp.http.X-Lambda-Fallback = "function error: " + beresp.http.X-Amz-Function-Error;
        } elsif (beresp.status == 429 || beresp.status >= 500) {
            set beresp.http.X-Lambda-Fallback = "status " + beresp.status;
        }
        # Stream the function's answer as it arrives; never store it.
        set beresp.uncacheable = true;
        return (deliver);
    }
}

sub vcl_backend_error {
    # lambda-sign did not answer at all: not running (connection refused), the connection
    # broke, or first_byte_timeout passed.
    if (bereq.backend == lambda_sign) {
        set beresp.http.X-Lambda-Fallback = "lambda-sign unreachable";
        return (deliver);
    }
}

sub vcl_deliver {
    # A failed invocation: start over as the fallback request (vcl_recv), once. Varnish
    # cannot retry on the backend side: the payload is gone. The failed answer is discarded.
    if (req.http.X-Lambda-Sign-Function && resp.http.X-Lambda-Fallback && req.restarts == 0) {
        set req.http.X-Lambda-Fallback = resp.http.X-Lambda-Fallback;
        return (restart);
    }
    if (req.http.X-Lambda-Fallback) {
        # Tell the client why it got the origin's answer; remove if clients should not know.
        set resp.http.X-Lambda-Fallback = req.http.X-Lambda-Fallback;
    }
}

sub vcl_synth {
    # Refusals of /lambda/ URLs in the same JSON shape as lambda-sign's own errors.
    if (req.url ~ "^/lambda/" && (resp.status == 404 || resp.status == 405)) {
        set resp.http.Content-Type = "application/json";
        # A {"..."} string ends at the first quote-brace, hence the closing brace added apart.
        if (resp.status == 405) {
            set resp.http.Allow = "POST";
            set resp.body = {"{"error":"MethodNotAllowed","message":"invoke a function with POST""} + "}";
        } else {
            set resp.body = {"{"error":"NotFound","message":"expected /lambda/<function-name>[?Qualifier=<alias>]""} + "}";
        }
        return (deliver);
    }
}
