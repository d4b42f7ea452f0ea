// The two nginx roles in the benchmark (Debian's nginx 1.22, no extra modules):
//
// - the upstream: a stand-in for lambda.<region>.amazonaws.com on loopback, HTTP/2 over TLS
//   (HTTP/1.1 too, via ALPN, for the relay and the SDK, which speak 1.1), answering a fixed
//   small JSON body to POSTs on the Invoke path. It does not verify signatures.
// - the relay: the floor. varnishd → Unix socket → nginx proxy_pass → upstream over TLS
//   keep-alive, no signing. What it costs to relay a request at all, in C.
//
// Both run as one nginx process (`master_process off`): the same event loop as one worker,
// one PID to measure and to stop, and setpriv's death signal reaches it (a master's workers
// would be orphaned). One process also matches lambda-sign's single event loop.
import fs from 'node:fs';
import path from 'node:path';
import { freePort, start, waitForListen, which } from './procs.mjs';

export const NGINX = which('nginx');

/** What the upstream answers. Small, like most Lambda answers; the same bytes on every path. */
export const UPSTREAM_BODY = '{"statusCode":200,"body":"hello from the bench upstream"}';

// Directives every instance needs so that nothing touches /var/lib/nginx or /var/log/nginx.
const common = (dir, name) => `
daemon off;
master_process off;
pid ${dir}/${name}.pid;
error_log stderr warn;
worker_rlimit_nofile 20000;
events {
    worker_connections 16384;
    # nginx accepts one connection per event-loop turn by default. Each run starts with
    # Varnish opening hundreds of new connections to the relay, and with the default the
    # last of them waited longer than the whole run: those requests were never counted, so
    # the relay's p99 looked several times better than it was (lambda-sign has the same fix:
    # many listening descriptors, src/listen.ts).
    multi_accept on;
}
`;

const temps = (dir) => `
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
`;

function upstreamConf({ dir, port, certFile, keyFile }) {
  return `${common(dir, 'upstream')}
http {
    access_log off;
${temps(dir)}
    server {
        listen 127.0.0.1:${port} ssl http2 backlog=4096;
        ssl_certificate ${certFile};
        ssl_certificate_key ${keyFile};
        ssl_protocols TLSv1.2 TLSv1.3;
        # Connections live for the whole run, as Lambda's do for minutes: no GOAWAY after
        # nginx's default 1000 requests, no idle close between rounds.
        keepalive_requests 100000000;
        keepalive_timeout 600s;
        # nginx's default, written down: lambda-sign's pool must open more sessions past it.
        http2_max_concurrent_streams 128;
        # 256 KiB bodies are read into memory, never into temp files.
        client_max_body_size 1m;
        client_body_buffer_size 512k;

        location ~ ^/2015-03-31/functions/[^/]+/invocations$ {
            limit_except POST { deny all; }
            # A bare \`return 200\` answers before reading the body; over HTTP/2 nginx then
            # resets the stream (NO_ERROR) after the first 64 KiB window, so a 256 KiB request
            # would travel only in part on the HTTP/2 path but in full on the HTTP/1.1 ones.
            # Lambda reads every byte, so we make nginx do the same: mirror_request_body
            # reads the whole body before the content phase (the mirror target is a no-op);
            # empty_gif refuses POST with 405, which error_page turns into the fixed answer.
            mirror /_sink;
            mirror_request_body on;
            empty_gif;
            error_page 405 =200 @answer;
        }
        location = /_sink {
            internal;
            return 204;
        }
        location @answer {
            default_type application/json;
            add_header x-amzn-RequestId $request_id always;
            add_header X-Amz-Executed-Version 1 always;
            return 200 '${UPSTREAM_BODY}';
        }
        location / {
            return 404;
        }
    }
}
`;
}

function relayConf({ dir, socket, upstreamPort, caFile }) {
  return `${common(dir, 'relay')}
http {
    access_log off;
${temps(dir)}
    upstream lambda {
        server 127.0.0.1:${upstreamPort};
        # Idle TLS connections kept for reuse: enough for the 2,000-in-flight run.
        keepalive 4096;
        keepalive_requests 100000000;
        # Below the Node slow upstream's 5 s keep-alive, so nginx never reuses a connection
        # the peer is closing (a POST is not retried on another one).
        keepalive_timeout 4s;
    }
    server {
        listen unix:${socket} backlog=4096;
        keepalive_requests 100000000;
        keepalive_timeout 65s;
        client_max_body_size 1m;
        client_body_buffer_size 512k;

        location / {
            proxy_pass https://lambda;
            # Keep-alive to the upstream needs HTTP/1.1 and no "Connection: close".
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host 127.0.0.1:${upstreamPort};
            # Verified TLS, as lambda-sign does: the CA of this run, the DNS name in the cert.
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate ${caFile};
            proxy_ssl_name localhost;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
            proxy_ssl_session_reuse on;
        }
    }
}
`;
}

function startNginx(name, dir, conf) {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.conf`);
  fs.writeFileSync(file, conf);
  // -e: the error log before the configuration is read (Debian's default path needs root).
  return start(`nginx ${name}`, NGINX, ['-p', dir, '-e', 'stderr', '-c', file]);
}

/** The fixed-answer upstream. Resolves once it accepts connections. */
export async function startUpstream({ dir, certFile, keyFile }) {
  const port = await freePort();
  const proc = startNginx('upstream', dir, upstreamConf({ dir, port, certFile, keyFile }));
  await waitForListen({ port }, proc);
  return { proc, port, url: `https://127.0.0.1:${port}` };
}

/** A relay on a Unix socket in front of the upstream at `upstreamPort`. */
export async function startRelay({ dir, name = 'relay', socket, upstreamPort, caFile }) {
  const proc = startNginx(name, dir, relayConf({ dir, socket, upstreamPort, caFile }));
  await waitForListen({ path: socket }, proc);
  return { proc, socket };
}
