// The real CLI as a process: start-up, socket handling, SIGTERM draining, and
// temporary container credentials that expire and are refreshed while serving.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeTestCA, type TestCA } from '../helpers/tls.ts';
import { startFakeLambda, type FakeLambda } from '../helpers/fake-lambda.ts';
import { startContainerCredentials } from '../helpers/container-creds.ts';
import { send, invokePath, TEST_KEY } from '../helpers/daemon.ts';
import { isolatedEnv, refusedWhileStopped, spawnDaemon, type DaemonProcess } from '../helpers/process.ts';

let ca: TestCA;
let fake: FakeLambda;
const procs: DaemonProcess[] = [];

test.before(async () => {
  ca = await makeTestCA();
  fake = await startFakeLambda({ tls: { cert: ca.cert, key: ca.key } });
});
test.after(async () => {
  for (const p of procs) await p.cleanup();
  await fake.close();
  await ca.cleanup();
});

function start(args: string[] = [], extraEnv: Record<string, string> = {}, dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ls-proc-'))): DaemonProcess {
  const env = isolatedEnv(dir, {
    NODE_EXTRA_CA_CERTS: ca.caFile,
    AWS_ACCESS_KEY_ID: TEST_KEY.accessKeyId,
    AWS_SECRET_ACCESS_KEY: TEST_KEY.secretAccessKey,
    ...extraEnv,
  });
  const p = spawnDaemon(['--region', 'us-west-2', '--socket', '{socket}', '--endpoint', fake.url, ...args], env, { dir });
  procs.push(p);
  return p;
}

test('starts, applies --socket-mode, serves, and removes its socket on SIGTERM', async () => {
  const d = start(['--socket-mode', '600']);
  await d.waitFor(/"msg":"listening"/);
  assert.is(fs.statSync(d.socketPath).mode & 0o777, 0o600);
  assert.is((await send(d.socketPath, { path: invokePath('f'), body: '{}' })).status, 200);
  d.kill('SIGTERM');
  assert.is(await d.exited, 0);
  assert.not.ok(fs.existsSync(d.socketPath), 'socket file removed');
});

test('a deep backlog: 1,000 connections queue while the daemon is stopped, then all are served', async () => {
  const d = start();
  await d.waitFor(/"msg":"listening"/);
  assert.is(await refusedWhileStopped(d.child.pid!, d.socketPath, 1000), 0);
  assert.is((await send(d.socketPath, { path: invokePath('f'), body: '{}' })).status, 200);
  d.kill('SIGTERM');
  assert.is(await d.exited, 0);
});

test('a stale socket file from a crash is replaced; a live one is not', async () => {
  const first = start();
  await first.waitFor(/"msg":"listening"/);
  first.kill('SIGKILL');
  await first.exited;
  assert.ok(fs.existsSync(first.socketPath), 'SIGKILL leaves the file behind');
  const second = start([], {}, first.dir);
  await second.waitFor(/"msg":"listening"/);
  assert.is((await send(second.socketPath, { path: invokePath('f'), body: '{}' })).status, 200);
  const third = start([], {}, first.dir);
  assert.is(await third.exited, 1, 'refuses to steal a live socket');
  assert.ok(third.lines.some((l) => l.includes('another process is listening')));
  assert.is((await send(second.socketPath, { path: invokePath('f'), body: '{}' })).status, 200, 'the first one still serves');
});

test('bad flags exit 2 with a message naming the flag', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ls-proc-'));
  const d = spawnDaemon(['--region', 'us-west-2', '--max-body', 'lots'], isolatedEnv(dir), { dir });
  procs.push(d);
  assert.is(await d.exited, 2);
  assert.ok(d.lines.some((l) => l.includes('--max-body')), d.lines.join('\n'));
});

test('regression: flags commander refuses exit 2 as well (an unknown option, a choice not offered)', async () => {
  // They exited 1, where buildConfig's refusals exit 2.
  for (const bad of [['--log-level', 'loud'], ['--signer', 'foo'], ['--no-such-flag']]) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ls-proc-'));
    const d = spawnDaemon(['--region', 'us-west-2', ...bad], isolatedEnv(dir), { dir });
    procs.push(d);
    assert.is(await d.exited, 2, bad.join(' '));
    assert.ok(d.lines.some((l) => l.includes(bad[0]!)), d.lines.join('\n'));
  }
});

/** The exit code, or 'still running' after `ms`: a daemon that never stops must fail the test, not hang it. */
const exitWithin = (d: DaemonProcess, ms: number): Promise<number | null | string> =>
  Promise.race([d.exited, sleep(ms).then(() => 'still running')]);

test('regression: with --workers, a failure at start in the workers stops the daemon with its status', async () => {
  // Workers read --ca-file and listen; the primary restarted them every second for good.
  const missing = start(['--workers', '2', '--ca-file', '/nonexistent/ca.pem']);
  assert.is(await exitWithin(missing, 15_000), 2);
  assert.ok(missing.lines.some((l) => l.includes('--ca-file')), missing.lines.join('\n'));
  assert.ok(missing.lines.some((l) => l.includes('a worker failed before serving')), missing.lines.join('\n'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ls-proc-'));
  const nowhere = start(['--workers', '2', '--socket', path.join(dir, 'no-such-dir', 'd.sock')]);
  assert.is(await exitWithin(nowhere, 15_000), 1);
  assert.ok(nowhere.lines.some((l) => l.includes('cannot listen')), nowhere.lines.join('\n'));
});

test('SIGHUP (a closed terminal) drains as SIGTERM does: the in-flight invocation finishes, exit 0', async () => {
  fake.on('hup-slow', () => ({ status: 200, body: 'finished', delayMs: 800 }));
  for (const workers of ['1', '2']) {
    const d = start(['--workers', workers]);
    await d.waitFor(/"msg":"listening"/);
    if (workers === '2') for (let i = 0; i < 100 && d.lines.filter((l) => l.includes('"version"')).length < 2; i++) await sleep(50);
    const pending = send(d.socketPath, { path: invokePath('hup-slow'), body: '{}' }).then((r) => r.status, (e: Error) => e.message);
    for (let i = 0; i < 100 && fake.inflight === 0; i++) await sleep(10);
    d.kill('SIGHUP');
    assert.is(await pending, 200, `--workers ${workers}`);
    assert.ok(d.lines.some((l) => /"signal":"SIGHUP".*"msg":"draining"/.test(l)), `--workers ${workers}`);
    assert.is(await d.exited, 0, `--workers ${workers}`);
    assert.not.ok(fs.existsSync(d.socketPath), 'the socket file is removed');
  }
});

test('SIGTERM: stops accepting, finishes the in-flight invocation, exits 0', async () => {
  fake.on('drain-slow', () => ({ status: 200, body: 'finished', delayMs: 1500 }));
  const d = start();
  await d.waitFor(/"msg":"listening"/);
  const pending = send(d.socketPath, { path: invokePath('drain-slow'), body: '{}' });
  for (let i = 0; i < 100 && fake.inflight === 0; i++) await sleep(10);
  assert.is(fake.inflight, 1);
  d.kill('SIGTERM');
  await d.waitFor(/"msg":"draining"/);
  // New connections are refused while the old request finishes.
  await sleep(100);
  const refused = await send(d.socketPath, { path: invokePath('f'), body: '{}' }).then(() => false, () => true);
  assert.ok(refused, 'new connections are not accepted while draining');
  const res = await pending;
  assert.is(res.status, 200);
  assert.is(res.body.toString(), 'finished');
  assert.is(await d.exited, 0);
});

test('SIGTERM: --drain-timeout bounds the wait', async () => {
  fake.on('drain-stuck', () => ({ status: 200, body: 'too late', delayMs: 10_000 }));
  const d = start(['--drain-timeout', '0.5']);
  await d.waitFor(/"msg":"listening"/);
  const pending = send(d.socketPath, { path: invokePath('drain-stuck'), body: '{}' }).catch((e: Error) => e);
  for (let i = 0; i < 100 && fake.inflight === 0; i++) await sleep(10);
  const t0 = Date.now();
  d.kill('SIGTERM');
  assert.is(await d.exited, 0);
  assert.ok(Date.now() - t0 < 5000, 'exited at the deadline');
  assert.instance(await pending, Error);
});

test('expiring container credentials are refreshed while serving, with no failed request', async () => {
  // The SDK treats credentials with under 5 minutes left as expiring; 5 min + 1 s
  // makes every set expire (from the chain's view) one second after it is issued.
  const creds = await startContainerCredentials({ keys: fake.keys, ttlMs: 5 * 60_000 + 1000 });
  try {
    const d = start([], { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_CONTAINER_CREDENTIALS_FULL_URI: creds.url });
    await d.waitFor(/"msg":"credentials resolved"/);
    const statuses: number[] = [];
    const until = Date.now() + 4000;
    while (Date.now() < until) {
      const batch = await Promise.all(Array.from({ length: 5 }, () => send(d.socketPath, { path: invokePath('f'), body: '{}' })));
      statuses.push(...batch.map((r) => r.status));
      await sleep(50);
    }
    assert.ok(statuses.length > 50);
    assert.equal([...new Set(statuses)], [200], `statuses: ${[...new Set(statuses)]}`);
    assert.ok(creds.issued >= 3, `only ${creds.issued} credential sets were issued`);
    const keysUsed = new Set(fake.invocations.slice(-statuses.length).map((i) => /Credential=([^/]+)/.exec(String(i.headers.authorization))?.[1]));
    assert.ok(keysUsed.size >= 2, 'requests were signed with rotated keys');
    d.kill('SIGTERM');
    assert.is(await d.exited, 0);
  } finally {
    await creds.close();
  }
});

test('no credentials anywhere: the daemon starts, /healthz is 503, invocations 503', async () => {
  const d = start([], { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '' });
  await d.waitFor(/"msg":"listening"/);
  await d.waitFor(/credentials unavailable/);
  assert.is((await send(d.socketPath, { method: 'GET', path: '/healthz' })).status, 503);
  const res = await send(d.socketPath, { path: invokePath('f'), body: '{}' });
  assert.is(res.status, 503);
  assert.is(res.json().error, 'CredentialsUnavailable');
});

test.run();
