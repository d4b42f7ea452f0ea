// metrics.ts: the Prometheus registry (names, types, labels, the cap on function labels)
// and serveMetrics, the separate listener on TCP or a Unix socket.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createMetrics, serveMetrics, type MetricsListener } from '../../src/metrics.ts';

/**
 * Parses the text exposition format into `name{k="v",…}` → value, labels sorted by name, so
 * a lookup does not depend on the order prom-client prints them in.
 */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`unparsable sample line: ${line}`);
    const labels = [...(m[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort();
    out.set(`${m[1]}{${labels.join(',')}}`, Number(m[3]));
  }
  return out;
}
const key = (name: string, labels: Record<string, string> = {}): string =>
  `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',')}}`;
function value(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  return samples(text).get(key(name, labels));
}

test('every metric appears with its type and the right labels', async () => {
  const m = createMetrics({ defaultMetrics: false, sessions: () => 3 });
  m.request('fn-a', 200, undefined, 10, 20);
  m.request('fn-a', 200, undefined, 5, 0);
  m.request('fn-b', 403, 'FunctionNotAllowed', 0, 0);
  m.request(undefined, 404, 'NotFound', 0, 0);
  m.upstreamDuration('fn-a', 0.02);
  m.upstreamDuration('fn-a', 0.2);
  m.inflight(1);
  m.inflight(1);
  m.inflight(-1);
  m.retry('refused_stream');
  m.retry('refused_stream');
  m.retry('clock_skew');
  m.credentialRefresh(true);
  m.credentialRefresh(false);
  m.clockSkewCorrection();
  const text = await m.registry.metrics();

  const types: [string, string][] = [
    ['lambda_sign_requests_total', 'counter'],
    ['lambda_sign_upstream_duration_seconds', 'histogram'],
    ['lambda_sign_inflight_requests', 'gauge'],
    ['lambda_sign_upstream_sessions', 'gauge'],
    ['lambda_sign_retries_total', 'counter'],
    ['lambda_sign_errors_total', 'counter'],
    ['lambda_sign_credential_refreshes_total', 'counter'],
    ['lambda_sign_request_bytes_total', 'counter'],
    ['lambda_sign_response_bytes_total', 'counter'],
  ];
  for (const [name, type] of types) {
    assert.ok(text.includes(`# TYPE ${name} ${type}\n`), `${name} is a ${type}:\n${text}`);
    assert.ok(text.includes(`# HELP ${name} `), `${name} has help text`);
  }

  const expect: [string, Record<string, string>, number][] = [
    ['lambda_sign_requests_total', { function: 'fn-a', status: '200' }, 2],
    ['lambda_sign_requests_total', { function: 'fn-b', status: '403' }, 1],
    ['lambda_sign_requests_total', { function: '-', status: '404' }, 1],
    ['lambda_sign_errors_total', { code: 'FunctionNotAllowed' }, 1],
    ['lambda_sign_errors_total', { code: 'NotFound' }, 1],
    ['lambda_sign_request_bytes_total', {}, 15],
    ['lambda_sign_response_bytes_total', {}, 20],
    ['lambda_sign_upstream_duration_seconds_count', { function: 'fn-a' }, 2],
    ['lambda_sign_upstream_duration_seconds_bucket', { function: 'fn-a', le: '0.01' }, 0],
    ['lambda_sign_upstream_duration_seconds_bucket', { function: 'fn-a', le: '0.025' }, 1],
    ['lambda_sign_upstream_duration_seconds_bucket', { function: 'fn-a', le: '0.25' }, 2],
    ['lambda_sign_upstream_duration_seconds_bucket', { function: 'fn-a', le: '+Inf' }, 2],
    ['lambda_sign_inflight_requests', {}, 1],
    ['lambda_sign_upstream_sessions', {}, 3],
    ['lambda_sign_retries_total', { reason: 'refused_stream' }, 2],
    ['lambda_sign_retries_total', { reason: 'clock_skew' }, 1],
    ['lambda_sign_credential_refreshes_total', { result: 'ok' }, 1],
    ['lambda_sign_credential_refreshes_total', { result: 'failed' }, 1],
    ['lambda_sign_clock_skew_corrections_total', {}, 1],
  ];
  for (const [name, labels, n] of expect) assert.is(value(text, name, labels), n, `${key(name, labels)}\n${text}`);
  const sum = value(text, 'lambda_sign_upstream_duration_seconds_sum', { function: 'fn-a' })!;
  assert.ok(Math.abs(sum - 0.22) < 1e-9, `duration sum ${sum}`);
  assert.is(value(text, 'lambda_sign_errors_total', { code: 'undefined' }), undefined, 'a success counts no error');
  assert.not.match(text, /^process_/m, 'no default metrics when turned off');
});

test('the sessions gauge reads its source at scrape time', async () => {
  let n = 0;
  const m = createMetrics({ defaultMetrics: false, sessions: () => n });
  assert.is(value(await m.registry.metrics(), 'lambda_sign_upstream_sessions'), 0);
  n = 7;
  assert.is(value(await m.registry.metrics(), 'lambda_sign_upstream_sessions'), 7);
});

test('default process metrics are on unless turned off', async () => {
  const m = createMetrics();
  const text = await m.registry.metrics();
  assert.match(text, /^process_cpu_user_seconds_total \d/m);
  assert.match(text, /^nodejs_heap_size_used_bytes \d/m);
  assert.match(text, /^# TYPE lambda_sign_requests_total counter$/m);
});

test('function labels are capped at 500 distinct names, then "other"; known names keep theirs', async () => {
  const m = createMetrics({ defaultMetrics: false });
  for (let i = 0; i < 500; i++) m.request(`fn-${i}`, 200, undefined, 0, 0);
  m.request('fn-500', 200, undefined, 0, 0);
  m.request('fn-501', 200, undefined, 0, 0);
  m.request('fn-0', 200, undefined, 0, 0);
  m.upstreamDuration('fn-600', 0.1);
  m.upstreamDuration('fn-499', 0.1);
  m.request(undefined, 404, 'NotFound', 0, 0);
  const text = await m.registry.metrics();
  const fns = new Set(
    [...samples(text).keys()].filter((k) => k.startsWith('lambda_sign_requests_total{')).map((k) => /function="([^"]*)"/.exec(k)![1]),
  );
  assert.is(fns.size, 502, '500 names, "other" and "-"');
  assert.ok(fns.has('other') && fns.has('-'));
  assert.not.ok(fns.has('fn-500') || fns.has('fn-501'), 'names past the cap are folded');
  assert.is(value(text, 'lambda_sign_requests_total', { function: 'other', status: '200' }), 2);
  assert.is(value(text, 'lambda_sign_requests_total', { function: 'fn-0', status: '200' }), 2, 'a known name keeps its label');
  assert.is(value(text, 'lambda_sign_upstream_duration_seconds_count', { function: 'other' }), 1);
  assert.is(value(text, 'lambda_sign_upstream_duration_seconds_count', { function: 'fn-499' }), 1);
  assert.is(value(text, 'lambda_sign_upstream_duration_seconds_count', { function: 'fn-600' }), undefined);
});

test('a name that may not claim a label counts as "other" and leaves the slots to the others', async () => {
  const m = createMetrics({ defaultMetrics: false });
  for (let i = 0; i < 600; i++) m.request(`made-up-${i}`, 403, 'FunctionNotAllowed', 0, 0, false);
  m.upstreamDuration('made-up-600', 0.1, false);
  m.request('real', 200, undefined, 0, 0);
  m.request('real', 502, 'UpstreamUnavailable', 0, 0, false); // labelled already: keeps its name
  const text = await m.registry.metrics();
  assert.is(value(text, 'lambda_sign_requests_total', { function: 'other', status: '403' }), 600);
  assert.is(value(text, 'lambda_sign_requests_total', { function: 'real', status: '200' }), 1);
  assert.is(value(text, 'lambda_sign_requests_total', { function: 'real', status: '502' }), 1);
  assert.is(value(text, 'lambda_sign_upstream_duration_seconds_count', { function: 'other' }), 1);
  assert.not.match(text, 'made-up');
});

interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}
function get(target: { host: string; port: number } | { socketPath: string }, p: string, method = 'GET'): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...target, path: p, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

async function checkListener(target: { host: string; port: number } | { socketPath: string }): Promise<void> {
  const ok = await get(target, '/metrics');
  assert.is(ok.status, 200);
  assert.match(String(ok.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  assert.is(value(ok.body, 'lambda_sign_requests_total', { function: 'fn', status: '200' }), 1);
  const head = await get(target, '/metrics', 'HEAD');
  assert.is(head.status, 200);
  for (const [method, p] of [['GET', '/'], ['GET', '/healthz'], ['GET', '/metricsx'], ['GET', '/2015-03-31/functions/f/invocations'], ['POST', '/metrics']]) {
    const res = await get(target, p!, method);
    assert.is(res.status, 404, `${method} ${p}`);
    assert.not.match(res.body, /lambda_sign_/);
  }
}

test('serveMetrics on 127.0.0.1:0: GET /metrics is 200 in the Prometheus format, anything else 404', async () => {
  const m = createMetrics({ defaultMetrics: false });
  m.request('fn', 200, undefined, 0, 0);
  const l = await serveMetrics(m.registry, { host: '127.0.0.1', port: 0 });
  let closed = false;
  try {
    const match = /^127\.0\.0\.1:(\d+)$/.exec(l.address);
    assert.ok(match, `address ${l.address}`);
    const port = Number(match![1]);
    assert.ok(port > 0);
    await checkListener({ host: '127.0.0.1', port });
    await l.close();
    closed = true;
    const after = await get({ host: '127.0.0.1', port }, '/metrics').then(() => 'answered', (e: NodeJS.ErrnoException) => e.code);
    assert.is(after, 'ECONNREFUSED', 'close() stops listening');
  } finally {
    if (!closed) await l.close();
  }
});

test('serveMetrics on a Unix socket: serves there, and close() removes the file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ls-metrics-'));
  const socketPath = path.join(dir, 'metrics.sock');
  let l: MetricsListener | undefined;
  try {
    const m = createMetrics({ defaultMetrics: false });
    m.request('fn', 200, undefined, 0, 0);
    l = await serveMetrics(m.registry, { path: socketPath });
    assert.is(l.address, socketPath);
    assert.ok(fs.lstatSync(socketPath).isSocket());
    await checkListener({ socketPath });
    await l.close();
    l = undefined;
    assert.not.ok(fs.existsSync(socketPath), 'socket file removed');
  } finally {
    await l?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('serveMetrics never deletes a regular file that sits at the socket path', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ls-metrics-'));
  const file = path.join(dir, 'not-a-socket');
  fs.writeFileSync(file, 'precious');
  try {
    const m = createMetrics({ defaultMetrics: false });
    const res = await serveMetrics(m.registry, { path: file }).then((l) => l, (e: NodeJS.ErrnoException) => e);
    if (!(res instanceof Error)) await res.close();
    assert.instance(res, Error, 'listening over a regular file fails');
    assert.is(fs.readFileSync(file, 'utf8'), 'precious');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
