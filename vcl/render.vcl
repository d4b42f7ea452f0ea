#
# render.vcl: screenshots of web pages, rendered by an AWS Lambda function and cached by
# Varnish.
#
#   GET /render/<url>[?width=<320|390|768|1024|1280|1440|1920>]
#        a PNG of the page at <url>, as wide as asked (default 1280 pixels)
#   anything else
#        404 (or 405 for another method), and nothing reaches lambda-sign or Lambda
#
# <url> is the page's address percent-encoded as one path segment, as JavaScript's
# encodeURIComponent() writes it:
#   /render/https%3A%2F%2Fexample.com%2Fpricing%3Fplan%3Dpro?width=768
# (":" and "/" may also be left as they are: /render/https://example.com/pricing).
#
# The function ("screenshot") is invoked through lambda-sign's gateway mode with a payload
# built here, in VCL, instead of an HTTP event:
#   {"url":"https://example.com/pricing?plan=pro","width":768}
# It answers like a Function URL handler:
#   {"statusCode":200,"isBase64Encoded":true,"body":"<the PNG, base64>",
#    "headers":{"content-type":"image/png","cache-control":"public, max-age=86400"}}
# lambda-sign decodes that into an ordinary HTTP response (the PNG bytes, byte for byte),
# and Varnish caches it for as long as its Cache-Control says. A screenshot the function
# does not give a lifetime (no Cache-Control, no Expires) is not cached.
#
# Start lambda-sign with only that function allowed:
#   lambda-sign --allow-function screenshot
#
# Check it with: varnishd -C -f <this file> >/dev/null. Tested with Varnish 7.1 (VCL 4.1).
#
# ---- Why the URL is restricted (JSON escaping in VCL) --------------------------------
# Varnish 7.1 has no JSON escaper in core VCL or in vmod_std, so the payload is built by
# plain string concatenation. Pasting a client's text into a JSON string is only safe if
# that text cannot contain anything JSON would need to escape: a double quote, a
# backslash, a control character. Without that check,
#   /render/https%3A%2F%2Fexample.com%2F","url":"http://169.254.169.254/latest/meta-data/
# would become {"url":"https://example.com/","url":"http://169.254.169.254/…","width":1280},
# valid JSON whose last "url" wins: the client would choose what the function fetches.
# So this file:
#   1. decodes only the percent-escapes of the characters that structure a URL
#      (RFC 3986 reserved characters: : / ? # [ ] @ ! $ & ' ( ) * + , ; = and, last, %),
#      which is exactly what encodeURIComponent() encoded. Every other escape (%22 for a
#      quote, %5C for a backslash, %20 for a space, %C3%BC for "ü") stays percent-encoded,
#      which is still the same address for a browser, and never needs escaping in JSON;
#   2. accepts the result only if it is http:// or https://, a host name (no user@, no
#      IPv6 literal), an optional port, and then only RFC 3986 characters (letters,
#      digits, - . _ ~ : / ? # [ ] @ ! $ & ' ( ) * + , ; = and %XX), at most 2048 of
#      them. None of these needs escaping in a JSON string;
#   3. refuses anything else with 400 before anything is sent. A raw " or \ or byte
#      above 0x7E in the request line, a lone %, a file:// or javascript: address: 400.
# If you install a VMOD that escapes JSON, you may replace the concatenation with it;
# keep the http(s) check anyway.
#
# The width comes from a fixed list: every distinct width is another expensive render and
# another cache object, so an open range would let anyone bypass the cache at will.
#
# Server-side request forgery: the function fetches whatever URL it is given. The check
# above stops JSON injection and odd schemes, not addresses inside your network (a host
# name can resolve to 10.0.0.1 or 169.254.169.254). Restrict the hosts here if you can
# (see "Only your own sites" below), and have the function refuse private addresses
# after resolving them.

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
    # Rendering a page takes seconds, and Lambda answers only when the function returns.
    # Keep this above lambda-sign's --timeout (default 900 s), which is above the
    # function's timeout, so a slow render ends as lambda-sign's 504 UpstreamTimeout
    # rather than Varnish's bare 503 after its default 60 s.
    .first_byte_timeout = 910s;
    .between_bytes_timeout = 120s;
    .probe = lambda_sign_healthz;
}

sub vcl_recv {
    # Only VCL may set X-Lambda-* headers, never a client: X-Lambda-Function,
    # X-Lambda-Payload and X-Lambda-Response choose what lambda-sign invokes, with what,
    # and how it answers. X-Render-* carry this file's own values from here to
    # vcl_backend_fetch.
    unset req.http.X-Lambda-Function;
    unset req.http.X-Lambda-Payload;
    unset req.http.X-Lambda-Response;
    unset req.http.X-Render-Url;
    unset req.http.X-Render-Width;

    if (req.url !~ "^/render/") {
        return (synth(404, "expected GET /render/<url-encoded address>[?width=<pixels>]"));
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (synth(405, "use GET"));
    }
    # The only option is the width, from the list in the header comment.
    if (req.url !~ "^/render/[^?]+(\?width=(320|390|768|1024|1280|1440|1920))?$") {
        return (synth(400, "expected /render/<url-encoded address>[?width=320|390|768|1024|1280|1440|1920]"));
    }
    if (req.url ~ "\?width=") {
        set req.http.X-Render-Width = regsub(req.url, "^.*\?width=", "");
    } else {
        set req.http.X-Render-Width = "1280";
    }

    # 1. Decode the reserved characters' escapes (case-insensitive), %25 last so that
    #    nothing is decoded twice: %253A becomes %3A, not ":".
    set req.http.X-Render-Url = regsub(req.url, "^/render/([^?]+).*$", "\1");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%3A", ":");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%2F", "/");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%3F", "?");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%23", "#");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%5B", "[");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%5D", "]");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%40", "@");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%21", "!");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%24", "$");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%26", "&");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%27", "'");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%28", "(");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%29", ")");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%2A", "*");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%2B", "+");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%2C", ",");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%3B", ";");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "(?i)%3D", "=");
    set req.http.X-Render-Url = regsuball(req.http.X-Render-Url, "%25", "%");

    # 2. and 3. Only http(s)://host[:port][/…] in RFC 3986 characters, every % followed by
    #    two hex digits; nothing JSON would have to escape. Otherwise 400, nothing sent.
    if (req.http.X-Render-Url !~ "^https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?([/?#][A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]*)?$" ||
        req.http.X-Render-Url ~ "%(?![0-9A-Fa-f]{2})" ||
        req.http.X-Render-Url ~ "^.{2049}") {
        return (synth(400, "the address must be http(s)://host[:port][/path][?query] in RFC 3986 characters; percent-encode anything else"));
    }

    # Only your own sites: uncomment and list them, so the renderer cannot be pointed at
    # anything else.
    # if (req.http.X-Render-Url !~ "^https://(www\.)?example\.com(:443)?([/?#]|$)") {
    #     return (synth(400, "only pages of example.com are rendered"));
    # }

    # A screenshot is the same for every visitor: cookies and credentials play no part
    # (they are not sent to the function either), so every request is a cache lookup.
    unset req.http.Cookie;
    unset req.http.Authorization;
    set req.backend_hint = lambda_sign;
    return (hash);
}

sub vcl_hash {
    # The cache key is what is rendered, not how it was spelled: /render/https://example.com/
    # and /render/https%3A%2F%2Fexample.com%2F are the same screenshot. Concurrent misses
    # for one key wait for a single render (Varnish's request coalescing).
    hash_data(req.http.X-Render-Url);
    hash_data(req.http.X-Render-Width);
    return (lookup);
}

# Never pipe: a piped connection would let a client speak to lambda-sign directly.
sub vcl_pipe {
    return (synth(405, "use GET"));
}

sub vcl_backend_fetch {
    if (bereq.backend == lambda_sign) {
        # Gateway mode: invoke "screenshot" with this JSON as the payload, and decode its
        # {statusCode, headers, body, isBase64Encoded} answer into HTTP. The URL went
        # through the checks in vcl_recv and the width is from a list: both can be pasted
        # into the JSON as they are.
        set bereq.http.X-Lambda-Function = "screenshot";
        set bereq.http.X-Lambda-Payload = {"{"url":""} + bereq.http.X-Render-Url +
            {"","width":"} + bereq.http.X-Render-Width + "}";
        set bereq.http.X-Lambda-Response = "http";
        unset bereq.http.X-Render-Url;
        unset bereq.http.X-Render-Width;
    }
}

sub vcl_backend_response {
    if (bereq.backend == lambda_sign) {
        # Cached for the function's Cache-Control (max-age, s-maxage; stale-while-revalidate
        # becomes grace), by the builtin VCL that runs after this. Not cached: answers the
        # function gives no lifetime, and, by the builtin VCL, no-store / no-cache / private,
        # Set-Cookie, and errors (502 FunctionError, 504 UpstreamTimeout...).
        if (!beresp.http.Cache-Control && !beresp.http.Expires) {
            set beresp.ttl = 120s;
            set beresp.uncacheable = true;  # "hit-for-miss": not stored, not coalesced
            return (deliver);
        }
    }
}

sub vcl_synth {
    # Refusals in the same JSON shape as lambda-sign's own errors. The messages are this
    # file's constants (no client text), so they need no escaping either.
    if (resp.status == 400 || resp.status == 404 || resp.status == 405) {
        set resp.http.Content-Type = "application/json";
        if (resp.status == 400) {
            set resp.http.X-Render-Error = "InvalidUrl";
        } elsif (resp.status == 404) {
            set resp.http.X-Render-Error = "NotFound";
        } else {
            set resp.http.X-Render-Error = "MethodNotAllowed";
            set resp.http.Allow = "GET, HEAD";
        }
        # A {"..."} string ends at the first quote-brace: {"""} is one double quote, and
        # the closing brace is added apart.
        set resp.body = {"{"error":""} + resp.http.X-Render-Error + {"","message":""} +
            resp.reason + {"""} + "}";
        unset resp.http.X-Render-Error;
        return (deliver);
    }
}
