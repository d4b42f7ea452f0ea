// The one varnishd every path goes through, as in production: wrk → varnishd → Unix socket
// backend. Every request is `return (pass)` (an Invoke is never cached); the backend is
// chosen by the X-Bench-Backend header the wrk script sets, then the header is removed.
import fs from 'node:fs';
import path from 'node:path';
import { freePort, start, waitForListen, which } from './procs.mjs';

export const VARNISHD = which('varnishd');

function vcl(backends) {
  const defs = Object.entries(backends).map(([name, socket]) => `
backend ${name} {
    .path = "${socket}";
    # Above the 2,000-in-flight run: Varnish must never be the limit (503 "backend busy").
    .max_connections = 6000;
    .connect_timeout = 5s;
    .first_byte_timeout = 120s;
    .between_bytes_timeout = 60s;
}`).join('\n');
  const routes = Object.keys(backends)
    .map((name, i) => `    ${i ? '} else if' : 'if'} (req.http.X-Bench-Backend == "${name}") {\n        set req.backend_hint = ${name};`)
    .join('\n');
  return `vcl 4.1;
${defs}

sub vcl_recv {
${routes}
    } else {
        return (synth(400, "X-Bench-Backend names no backend"));
    }
    unset req.http.X-Bench-Backend;
    return (pass);
}
`;
}

/**
 * Starts varnishd with one UDS backend per entry of `backends` ({name: socketPath}).
 * Returns {url, port, proc, stop}.
 */
export async function startVarnish({ dir, backends }) {
  fs.mkdirSync(dir, { recursive: true });
  const vclFile = path.join(dir, 'bench.vcl');
  fs.writeFileSync(vclFile, vcl(backends));
  const name = path.join(dir, 'n');
  const port = await freePort();
  const params = [
    // Pass requests hold two threads each (client + fetch): 2,000 in flight need > 4,000.
    // Started up front so that thread creation is not measured.
    'thread_pools=2',
    'thread_pool_min=2100',
    'thread_pool_max=5000',
    // 2,000 connections arrive at once in the concurrency run (somaxconn is 4096 here).
    'listen_depth=4096',
    // Close idle backend connections before a Node server's 5 s keep-alive timeout does:
    // a pass POST cannot be retried on a fresh connection, so a race would show as 503.
    'backend_idle_timeout=4',
  ];
  const args = [
    '-F', '-n', name,
    // No privilege separation: as root, the worker would run as vcache and could not reach
    // the sockets in our 0700 temp dir.
    '-j', 'none',
    '-a', `127.0.0.1:${port}`, '-T', '127.0.0.1:0',
    '-f', vclFile,
    '-s', 'malloc,256m',
    ...params.flatMap((p) => ['-p', p]),
  ];
  const proc = start('varnishd', VARNISHD, args);
  await proc.waitFor(/Child launched OK/, 60_000);
  // The worker calls listen() from its acceptor thread a moment after "Child launched OK".
  await waitForListen({ port }, proc, 30_000);

  return { proc, port, url: `http://127.0.0.1:${port}`, stop: () => proc.stop(10_000) };
}
