// Operating the real CLI as a process: the --metrics listener (TCP and Unix socket), logs at
// debug and trace that never show a secret, a daemon whose clock is 30 minutes off
// (faketime), credential refresh warnings, and --help. Needs `npm run build` and faketime.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeTestCA, type TestCA } from '../helpers/tls.ts';
import { startFakeLambda, type FakeLambda } from '../helpers/fake-lambda.ts';
import { startContainerCredentials } from '../helpers/container-creds.ts';
import { send, invokePath, type Reply } from '../helpers/daemon.ts';
import { CLI, isolatedEnv, spawnDaemon, type DaemonProcess } from '../helpers/process.ts';
import { DEFAULTS } from '../../src/config.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

// Distinctive credentials, so that any leak into the output can be found by grep.
const AKID = 'AKIDOPERATE7Q2X';
const SECRET = 'opSECRET/wJalrXUtnFEMI+K7MDENG-9f3c';
const TOKEN = 'opTOKEN//IQoJb3JpZ2luX2VjEJr+Zx4dW1cQ0042';

let ca: TestCA;
let fake: FakeLambda;
const procs: DaemonProcess[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
/** faketime wrappers: each forks the daemon as its child and does not pass signals on. */
const wrappers: DaemonProcess[] = [];

/** The children of a process (Linux /proc), or none once it is gone. */
function childrenOf(pid: number | undefined): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

test.before(async () => {
  ca = await makeTestCA();
  fake = await startFakeLambda({ tls: { cert: ca.cert, key: ca.key } });
  fake.keys.set(AKID, { secretAccessKey: SECRET, sessionToken: TOKEN });
});
test.after(async () => {
  for (const w of wrappers) {
    for (const pid of childrenOf(w.child.pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  for (const p of procs) await p.cleanup();
  for (const c of cleanups) await c();
  await fake.close();
  await ca.cleanup();
});

function start(args: string[], opts: { endpoint?: string; caFile?: string; env?: Record<string, string>; command?: string[] } = {}): DaemonProcess {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ls-op-'));
  const env = isolatedEnv(dir, {
    NODE_EXTRA_CA_CERTS: opts.caFile ?? ca.caFile,
    AWS_ACCESS_KEY_ID: AKID,
    AWS_SECRET_ACCESS_KEY: SECRET,
    AWS_SESSION_TOKEN: TOKEN,
    ...opts.env,
  });
  const argv = ['--region', 'us-west-2', '--socket', '{socket}', '--endpoint', opts.endpoint ?? fake.url, ...args.map((a) => a.replace('{dir}', dir))];
  const p = spawnDaemon(argv, env, { dir, command: opts.command });
  procs.push(p);
  return p;
}

async function stop(d: DaemonProcess): Promise<void> {
  d.kill('SIGTERM');
  assert.is(await d.exited, 0, 'exits 0 on SIGTERM');
}

/** A port that was free a moment ago: bind :0, close, reuse. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

function get(target: { host: string; port: number } | { socketPath: string }, p: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ ...target, path: p, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
  });
}

/** One sample from the text exposition format, labels in any order. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',');
  for (const line of text.split('\n')) {
    const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got = [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort().join(',');
    if (got === want) return Number(m[3]);
  }
  return undefined;
}

const json = (d: DaemonProcess): Record<string, any>[] =>
  d.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, any>);
const requestLines = (d: DaemonProcess): Record<string, any>[] => json(d).filter((l) => l.msg === 'request');

const invoke = (d: DaemonProcess, fn: string, id: string, extra: Record<string, string> = {}, body = '{"x":1}'): Promise<Reply> =>
  send(d.socketPath, { path: invokePath(fn), body, headers: { 'x-varnish': id, ...extra } });

test('--metrics host:port: Prometheus text with our counters and the default process metrics; never on the Varnish socket', async () => {
  const port = await freePort();
  const d = start(['--metrics', `127.0.0.1:${port}`]);
  const listening = JSON.parse(await d.waitFor(/"msg":"listening"/));
  assert.is(listening.metrics, `127.0.0.1:${port}`);
  await d.waitFor(/"msg":"credentials resolved"/);
  let flaky = 0;
  fake.on('op-flaky', () => (++flaky === 1 ? { status: 200, reset: 'refused' } : { status: 200, body: 'ok' }));
  assert.is((await invoke(d, 'op-metrics', '1')).status, 200);
  assert.is((await invoke(d, 'op-metrics', '2')).status, 200);
  assert.is((await invoke(d, 'op-flaky', '3')).status, 200);

  const onVarnishSocket = await send(d.socketPath, { method: 'GET', path: '/metrics' });
  assert.is(onVarnishSocket.status, 404, 'the Varnish-facing socket does not serve metrics');
  assert.is(onVarnishSocket.headers['x-lambda-sign-error'], 'NotFound');
  assert.not.match(onVarnishSocket.body.toString(), /lambda_sign_/);

  const res = await get({ host: '127.0.0.1', port }, '/metrics');
  assert.is(res.status, 200);
  assert.match(res.type, /^text\/plain; version=0\.0\.4/);
  assert.is(sample(res.body, 'lambda_sign_requests_total', { function: 'op-metrics', status: '200' }), 2);
  assert.is(sample(res.body, 'lambda_sign_requests_total', { function: 'op-flaky', status: '200' }), 1);
  assert.is(sample(res.body, 'lambda_sign_requests_total', { function: '-', status: '404' }), 1, 'the /metrics try on the socket');
  assert.is(sample(res.body, 'lambda_sign_retries_total', { reason: 'refused_stream' }), 1);
  assert.is(sample(res.body, 'lambda_sign_upstream_duration_seconds_count', { function: 'op-metrics' }), 2);
  assert.is(sample(res.body, 'lambda_sign_upstream_sessions'), 1);
  assert.is(sample(res.body, 'lambda_sign_inflight_requests'), 0);
  assert.ok((sample(res.body, 'lambda_sign_credential_refreshes_total', { result: 'ok' }) ?? 0) >= 1, 'the first resolution counts');
  assert.ok((sample(res.body, 'process_cpu_user_seconds_total') ?? 0) > 0, 'default process metrics');
  assert.is((await get({ host: '127.0.0.1', port }, '/')).status, 404);

  await stop(d);
  const after = await get({ host: '127.0.0.1', port }, '/metrics').then(() => 'answered', (e: NodeJS.ErrnoException) => e.code);
  assert.is(after, 'ECONNREFUSED', 'the metrics listener is closed at shutdown');
});

for (const level of ['debug', 'trace']) {
  test(`--log-level ${level}: one JSON line per request, start-up and shutdown lines, and no secret anywhere`, async () => {
    const d = start(['--log-level', level, '--metrics', '{dir}/metrics.sock']);
    await d.waitFor(/"msg":"credentials resolved"/);
    let flaky = 0;
    fake.on(`op-flaky-${level}`, () => (++flaky === 1 ? { status: 200, reset: 'refused' } : { status: 200, body: 'ok' }));

    const replies: Reply[] = [];
    replies.push(await invoke(d, 'op-log', '301'));
    // Client-sent credentials are dropped before signing; they must not be logged either.
    replies.push(await invoke(d, 'op-log', '302', {
      authorization: 'AWS4-HMAC-SHA256 Credential=CLIENTINJECTED/20240101/us-west-2/lambda/aws4_request, Signature=00',
      'x-amz-security-token': 'CLIENTTOKENINJECTED',
    }));
    replies.push(await invoke(d, `op-flaky-${level}`, '303'));
    // Lambda refuses the signature and echoes the canonical request (with the token) in its
    // 403 body; that body goes to Varnish, never into the log.
    fake.keys.set(AKID, { secretAccessKey: 'rotated-away', sessionToken: TOKEN });
    try {
      replies.push(await invoke(d, 'op-log', '304'));
    } finally {
      fake.keys.set(AKID, { secretAccessKey: SECRET, sessionToken: TOKEN });
    }
    replies.push(await send(d.socketPath, { method: 'GET', path: '/healthz', headers: { 'x-varnish': '305' } }));
    fake.clockSkewMs = 30 * 60_000;
    try {
      replies.push(await invoke(d, 'op-log', '306'));
    } finally {
      fake.clockSkewMs = 0;
    }
    assert.equal(replies.map((r) => r.status), [200, 200, 200, 403, 200, 200]);
    const echo = replies[3]!.json<{ message: string }>().message;
    assert.match(echo, /Canonical String/, 'the scenario did produce an echo');
    assert.ok(echo.includes(TOKEN), 'the echo holds the token');
    const canonical = /should have been\n'([^']+)'/.exec(echo)![1]!;

    const metrics = await get({ socketPath: path.join(d.dir, 'metrics.sock') }, '/metrics');
    assert.is(metrics.status, 200);
    assert.is(sample(metrics.body, 'lambda_sign_retries_total', { reason: 'clock_skew' }), 1);
    assert.is(sample(metrics.body, 'lambda_sign_requests_total', { function: 'op-log', status: '403' }), 1);

    await stop(d);
    await d.waitFor(/"msg":"stopped"/, 2000);

    const out = d.lines.join('\n');
    const forbidden = [
      SECRET, TOKEN, 'AWS4-HMAC-SHA256 Credential', 'CLIENTINJECTED', 'CLIENTTOKENINJECTED',
      'Canonical String', 'String-to-Sign', canonical,
      ...canonical.split('\n').filter((l) => l.length >= 24), // signed headers list, payload hash, token line
    ];
    for (const s of forbidden) assert.not.ok(out.includes(s), `${JSON.stringify(s)} appeared in the output:\n${out}`);

    for (const l of d.lines) assert.ok(l.startsWith('{') && JSON.parse(l), `not a JSON log line: ${l}`);
    const lines = json(d);
    assert.is(lines[0]!.msg, 'listening', 'the first line is start-up');
    assert.is(lines[0]!.level, 'info');
    assert.is(lines[lines.length - 1]!.msg, 'stopped', `the last line is shutdown: ${d.lines.slice(-4).join('\n')}`);
    assert.ok(lines.some((l) => l.level === 'debug' && /retrying/.test(l.msg)), `${level} detail is logged`);

    const reqs = requestLines(d);
    assert.equal(reqs.map((l) => l.id), ['301', '302', '303', '304', '305', '306'], 'one line per request, id from X-Varnish');
    for (const l of reqs.filter((r) => r.id !== '305')) {
      assert.is(l.fn, l.id === '303' ? `op-flaky-${level}` : 'op-log');
      for (const f of ['status', 'upstreamStatus', 'ms', 'retries', 'bytesIn', 'bytesOut']) assert.type(l[f], 'number', `${f} in ${JSON.stringify(l)}`);
      assert.is(l.bytesIn, 7);
    }
    const byId = Object.fromEntries(reqs.map((l) => [l.id, l]));
    assert.is(byId['301'].retries, 0);
    assert.is(byId['301'].bytesOut, replies[0]!.body.length);
    assert.is(byId['303'].retries, 1, 'refused stream');
    assert.is(byId['304'].status, 403);
    assert.is(byId['304'].upstreamStatus, 403);
    assert.is(byId['305'].status, 200);
    assert.is(byId['306'].retries, 1, 'clock skew');
  });
}

/** Whether faketime runs; the skew test fails with this message when it does not. */
async function faketime(): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '/usr/bin').split(':')) {
    const p = path.join(dir, 'faketime');
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

/**
 * A test CA whose certificates were issued a day ago. makeTestCA's are valid from "now",
 * which a daemon whose clock is 30 minutes behind sees as not yet valid; OpenSSL is run
 * under faketime so the validity starts in the past.
 */
async function backdatedCA(bin: string): Promise<TestCA> {
  const helper = new URL('../helpers/tls.ts', import.meta.url).href;
  const code = `const { makeTestCA } = await import(${JSON.stringify(helper)}); process.stdout.write(JSON.stringify(await makeTestCA()));`;
  const { stdout } = await run(bin, ['-f', '-1d', process.execPath, '--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT });
  const made = JSON.parse(stdout) as Omit<TestCA, 'cleanup'>;
  return { ...made, cleanup: () => fs.promises.rm(made.dir, { recursive: true, force: true }) };
}

test('a daemon 30 minutes behind (faketime): the first invocation is retried once with Lambda\'s clock, later ones go direct', async () => {
  const bin = await faketime();
  assert.ok(bin, 'faketime is not installed (Debian: apt-get install faketime); this test needs it');
  const oldCA = await backdatedCA(bin!);
  cleanups.push(oldCA.cleanup);
  const skewFake = await startFakeLambda({ tls: { cert: oldCA.cert, key: oldCA.key } });
  cleanups.push(() => skewFake.close());
  skewFake.keys.set(AKID, { secretAccessKey: SECRET, sessionToken: TOKEN });

  // The fake, like AWS, accepts 15 minutes of skew; 30 minutes is refused.
  const d = start(['--metrics', '{dir}/metrics.sock'], {
    endpoint: skewFake.url,
    caFile: oldCA.caFile,
    env: { FAKETIME_DONT_FAKE_MONOTONIC: '1' },
    command: [bin!, '-f', '-30m', process.execPath, CLI],
  });
  wrappers.push(d);
  const listening = JSON.parse(await d.waitFor(/"msg":"listening"/));
  // faketime forks: the daemon is its child, and signals must go to it.
  const [pid] = childrenOf(d.child.pid);
  assert.ok(pid !== undefined && pid > 0, 'the daemon under faketime has a pid');
  const behind = Date.now() - Date.parse(listening.time);
  assert.ok(behind > 25 * 60_000 && behind < 35 * 60_000, `the daemon's clock is ${Math.round(behind / 1000)} s behind`);

  const statuses: number[] = [];
  for (const id of ['401', '402', '403']) statuses.push((await invoke(d, 'op-skew', id)).status);
  assert.equal(statuses, [200, 200, 200]);
  assert.is(skewFake.failures.length, 1, 'one refused signature, the first one');
  assert.match(skewFake.failures[0]!.reason ?? '', /signature expired/);
  assert.is(skewFake.invocations.length, 3);

  await d.waitFor(/"id":"403"/);
  const reqs = requestLines(d);
  assert.equal(reqs.map((l) => [l.id, l.retries]), [['401', 1], ['402', 0], ['403', 0]]);
  const warn = json(d).find((l) => typeof l.offsetMs === 'number');
  assert.ok(warn, 'the correction is logged');
  assert.is(warn!.level, 'warn');
  assert.ok(Math.abs(warn!.offsetMs - 30 * 60_000) < 5000, `offset ${warn!.offsetMs} ms`);

  const m = await get({ socketPath: path.join(d.dir, 'metrics.sock') }, '/metrics');
  assert.is(sample(m.body, 'lambda_sign_retries_total', { reason: 'clock_skew' }), 1);
  assert.is(sample(m.body, 'lambda_sign_clock_skew_corrections_total'), 1);
  assert.is(sample(m.body, 'lambda_sign_requests_total', { function: 'op-skew', status: '200' }), 3);
  process.kill(pid!, 'SIGTERM');
  assert.is(await d.exited, 0, 'the daemon (and faketime with it) exits 0 on SIGTERM');
  await d.waitFor(/"msg":"stopped"/, 2000);
});

test('a failed credential refresh is a warning; the current credentials keep serving', async () => {
  // Credentials that enter the 5-minute refresh window one second after they are issued.
  const creds = await startContainerCredentials({ keys: fake.keys, ttlMs: 5 * 60_000 + 1000 });
  cleanups.push(() => creds.close());
  const d = start(['--metrics', '{dir}/metrics.sock'], {
    env: { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_SESSION_TOKEN: '', AWS_CONTAINER_CREDENTIALS_FULL_URI: creds.url },
  });
  await d.waitFor(/"msg":"credentials resolved"/);
  creds.failing = true;
  await sleep(1200);
  // A request in the window starts the background refresh, which fails.
  assert.is((await invoke(d, 'op-refresh', '501')).status, 200);
  const warn = JSON.parse(await d.waitFor(/credential refresh failed/, 8000));
  assert.is(warn.level, 'warn');
  assert.is((await invoke(d, 'op-refresh', '502')).status, 200, 'still serving with the current credentials');
  const m = await get({ socketPath: path.join(d.dir, 'metrics.sock') }, '/metrics');
  assert.ok((sample(m.body, 'lambda_sign_credential_refreshes_total', { result: 'failed' }) ?? 0) >= 1);
  assert.ok((sample(m.body, 'lambda_sign_credential_refreshes_total', { result: 'ok' }) ?? 0) >= 1);
  await stop(d);
  const issued = [...fake.keys].filter(([k]) => k.startsWith('ASIA')).map(([, v]) => v);
  const out = d.lines.join('\n');
  for (const k of issued) {
    assert.not.ok(out.includes(k.secretAccessKey), 'a container secret key leaked');
    assert.not.ok(out.includes(k.sessionToken!), 'a container token leaked');
  }
});

test('--help documents every flag, with its default', async () => {
  const { stdout } = await run(process.execPath, [CLI, '--help'], { env: { PATH: process.env.PATH ?? '', COLUMNS: '200' } });
  // One block per option: its line and the wrapped lines under it.
  const blocks = new Map<string, string>();
  let current: string | undefined;
  for (const line of stdout.split('\n')) {
    const m = /^\s+(?:-\w, )?(--[a-z-]+)\b/.exec(line);
    if (m !== null) blocks.set((current = m[1]!), line.trim());
    else if (current !== undefined && /^\s{6,}\S/.test(line)) blocks.set(current, `${blocks.get(current)} ${line.trim()}`);
    else current = undefined;
  }
  const defaults: [flag: string, shown: string | RegExp | undefined][] = [
    ['--region', /required/],
    ['--socket', '/run/lambda-sign.sock'],
    ['--socket-mode', '660'],
    ['--endpoint', 'https://lambda.<region>.amazonaws.com'],
    ['--allow-function', /every function/],
    ['--max-body', '6291456'],
    ['--timeout', '900'],
    ['--drain-timeout', '30'],
    ['--max-inflight', DEFAULTS.maxInflight],
    ['--max-buffered', DEFAULTS.maxBuffered],
    ['--probe-function', /off/],
    ['--metrics', /off/],
    ['--profile', /AWS_PROFILE/],
    ['--ca-file', /NODE_EXTRA_CA_CERTS/],
    ['--log-level', '"info"'],
  ];
  for (const [flag, shown] of defaults) {
    const block = blocks.get(flag);
    assert.ok(block, `${flag} is not in --help:\n${stdout}`);
    if (shown === undefined) continue;
    if (typeof shown === 'string') assert.ok(block!.includes(shown), `${flag} does not show its default ${shown}: ${block}`);
    else assert.match(block!, shown, `${flag}: ${block}`);
    if (!['--region', '--profile', '--ca-file'].includes(flag)) assert.match(block!, /default/, `${flag} says "default": ${block}`);
  }
  assert.is(DEFAULTS.maxInflight, '4096', 'a sensible --max-inflight default');
});

test.run();
