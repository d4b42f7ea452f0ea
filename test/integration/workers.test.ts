// --workers: several processes serve the one socket; the primary owns the socket file,
// restarts crashed workers, aggregates metrics and hands SIGTERM's drain to every worker.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeTestCA, type TestCA } from '../helpers/tls.ts';
import { startFakeLambda, type FakeLambda } from '../helpers/fake-lambda.ts';
import { send, invokePath, TEST_KEY } from '../helpers/daemon.ts';
import { isolatedEnv, spawnDaemon, type DaemonProcess } from '../helpers/process.ts';

let ca: TestCA;
let fake: FakeLambda;
let d: DaemonProcess;
let metricsSock: string;

test.before(async () => {
  ca = await makeTestCA();
  fake = await startFakeLambda({ tls: { cert: ca.cert, key: ca.key } });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ls-workers-'));
  metricsSock = path.join(dir, 'metrics.sock');
  const env = isolatedEnv(dir, { NODE_EXTRA_CA_CERTS: ca.caFile, AWS_ACCESS_KEY_ID: TEST_KEY.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_KEY.secretAccessKey });
  d = spawnDaemon(['--region', 'us-west-2', '--socket', '{socket}', '--socket-mode', '600', '--endpoint', fake.url, '--workers', '2', '--metrics', metricsSock], env, { dir });
  await d.waitFor(/"workers":2,.*"msg":"listening"/);
  for (let i = 0; i < 100 && d.lines.filter((l) => l.includes('"version"')).length < 2; i++) await sleep(50);
});
test.after(async () => {
  await d.cleanup();
  await fake.close();
  await ca.cleanup();
});

const pidsOf = (re: RegExp) => new Set(d.lines.filter((l) => re.test(l)).map((l) => JSON.parse(l).pid as number));

function scrape(): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath: metricsSock, path: '/metrics' }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

test('two workers share the socket, the primary set its mode', async () => {
  assert.is(fs.statSync(d.socketPath).mode & 0o777, 0o600);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 20 });
  const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => send(d.socketPath, { path: invokePath('f'), body: `{"i":${i}}`, agent })));
  agent.destroy();
  assert.ok(replies.every((r) => r.status === 200));
  assert.is(fake.failures.length, 0);
  // Which worker takes a connection is the kernel's choice (each listens on the socket), so
  // each is shown to serve alone: with the other stopped, only it can accept.
  const workers = [...pidsOf(/"version"/)];
  assert.is(workers.length, 2);
  for (const [serving, stopped] of [workers, [...workers].reverse()]) {
    process.kill(stopped!, 'SIGSTOP');
    try {
      const alone = Promise.all(Array.from({ length: 5 }, () => send(d.socketPath, { path: invokePath('g'), body: '{}' })));
      const outcome = await Promise.race([alone, sleep(5000).then(() => 'timed out')]);
      assert.ok(Array.isArray(outcome), `worker ${serving} did not serve while ${stopped} was stopped`);
      assert.ok((outcome as { status: number }[]).every((r) => r.status === 200));
    } finally {
      process.kill(stopped!, 'SIGCONT');
    }
  }
});

test('metrics are the sum over workers', async () => {
  const text = await scrape();
  const m = /^lambda_sign_requests_total\{function="f",status="200"\} (\d+)$/m.exec(text);
  assert.ok(m, text.slice(0, 500));
  assert.is(Number(m![1]), 200);
});

test('each worker accepts for itself: new connections are served while the primary is stopped', async () => {
  // Under node:cluster's round-robin the primary would accept every connection and pass it
  // on; stopped, it would leave these connections unserved.
  const primary = d.child.pid!;
  process.kill(primary, 'SIGSTOP');
  try {
    const replies = Promise.all(Array.from({ length: 10 }, (_, i) => send(d.socketPath, { path: invokePath('f'), body: `{"stopped":${i}}` })));
    const timeout = sleep(5000).then(() => 'timed out');
    const outcome = await Promise.race([replies, timeout]);
    assert.ok(Array.isArray(outcome), 'the workers did not serve while the primary was stopped');
    assert.ok((outcome as { status: number }[]).every((r) => r.status === 200));
  } finally {
    process.kill(primary, 'SIGCONT');
  }
  assert.not.ok(d.lines.some((l) => l.includes('could not duplicate')), 'every worker polls duplicates of the socket');
});

test('a crashed worker is replaced and the socket keeps serving', async () => {
  const workerPids = [...pidsOf(/"version"/)];
  process.kill(workerPids[0]!, 'SIGKILL');
  await d.waitFor(/worker exited; starting another/);
  for (let i = 0; i < 300 && pidsOf(/"version"/).size < 3; i++) await sleep(50);
  assert.is(pidsOf(/"version"/).size, 3, 'a third worker started');
  for (let i = 0; i < 20; i++) assert.is((await send(d.socketPath, { path: invokePath('f'), body: '{}' })).status, 200);
});

test('every worker killed at once: new ones serve, and the socket keeps its mode', async () => {
  // The last worker's exit closes the primary's listening handle, which removes the file;
  // the next worker to listen makes the primary create it again.
  const before = pidsOf(/"version"/);
  const live = [...before].filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
  assert.is(live.length, 2);
  for (const pid of live) process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 300 && pidsOf(/"version"/).size < before.size + 2; i++) await sleep(50);
  assert.is(pidsOf(/"version"/).size, before.size + 2, 'two new workers started');
  for (let i = 0; i < 100 && (!fs.existsSync(d.socketPath) || (fs.statSync(d.socketPath).mode & 0o777) !== 0o600); i++) await sleep(50);
  assert.is(fs.statSync(d.socketPath).mode & 0o777, 0o600);
  for (let i = 0; i < 10; i++) assert.is((await send(d.socketPath, { path: invokePath('f'), body: '{}' })).status, 200);
});

test('without --metrics the primary also outlives its workers: all killed, new ones serve', async () => {
  // The restart timers are all that keeps such a primary's event loop alive once no worker is.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ls-workers-bare-'));
  const env = isolatedEnv(dir, { NODE_EXTRA_CA_CERTS: ca.caFile, AWS_ACCESS_KEY_ID: TEST_KEY.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_KEY.secretAccessKey });
  const bare = spawnDaemon(['--region', 'us-west-2', '--socket', '{socket}', '--socket-mode', '600', '--endpoint', fake.url, '--workers', '2'], env, { dir });
  try {
    await bare.waitFor(/"workers":2,.*"msg":"listening"/);
    const started = (): Set<number> => new Set(bare.lines.filter((l) => l.includes('"version"')).map((l) => JSON.parse(l).pid as number));
    for (let i = 0; i < 100 && started().size < 2; i++) await sleep(50);
    for (const pid of started()) process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 300 && started().size < 4; i++) await sleep(50);
    assert.is(started().size, 4, `the primary ${bare.child.exitCode === null ? 'started no new workers' : `exited (${bare.child.exitCode})`}`);
    for (let i = 0; i < 100 && (!fs.existsSync(bare.socketPath) || (fs.statSync(bare.socketPath).mode & 0o777) !== 0o600); i++) await sleep(50);
    assert.is(fs.statSync(bare.socketPath).mode & 0o777, 0o600);
    assert.is((await send(bare.socketPath, { path: invokePath('f'), body: '{}' })).status, 200);
  } finally {
    await bare.cleanup();
  }
});

test('under umask 000 the primary creates the socket file no wider than --socket-mode', async () => {
  // The primary binds the file when the first worker asks and sets its mode once that
  // worker reports listening: a file made with the umask's 0777 would be open to every
  // local user in between. Every mode the file shows (at its creation, at the chmod) is seen.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ls-workers-umask-'));
  const env = isolatedEnv(dir, { NODE_EXTRA_CA_CERTS: ca.caFile, AWS_ACCESS_KEY_ID: TEST_KEY.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_KEY.secretAccessKey });
  const seen = new Set<string>();
  let name = '';
  const watcher = fs.watch(dir, (_event, file) => {
    if (name === '' || file !== name) return;
    try {
      seen.add((fs.statSync(path.join(dir, name)).mode & 0o777).toString(8));
    } catch {
      // removed meanwhile
    }
  });
  const saved = process.umask(0);
  let w: DaemonProcess;
  try {
    w = spawnDaemon(['--region', 'us-west-2', '--socket', '{socket}', '--socket-mode', '600', '--endpoint', fake.url, '--workers', '2'], env, { dir });
  } finally {
    process.umask(saved);
  }
  name = path.basename(w.socketPath);
  assert.is(path.dirname(w.socketPath), dir);
  try {
    await w.waitFor(/"workers":2,.*"msg":"listening"/);
    await sleep(100);
    assert.ok(seen.size > 0, 'the watcher saw the socket file');
    assert.equal([...seen], ['600'], `modes seen: ${[...seen].join(', ')}`);
    assert.is((await send(w.socketPath, { path: invokePath('f'), body: '{}' })).status, 200);
  } finally {
    watcher.close();
    await w.cleanup();
  }
});

test('SIGTERM to the primary drains every worker, removes the socket, exits 0', async () => {
  fake.on('slow', () => ({ status: 200, body: 'done', delayMs: 800 }));
  const pending = send(d.socketPath, { path: invokePath('slow'), body: '{}' });
  for (let i = 0; i < 100 && fake.inflight === 0; i++) await sleep(10);
  d.kill('SIGTERM');
  const res = await pending;
  assert.is(res.status, 200);
  assert.is(res.body.toString(), 'done');
  assert.is(await d.exited, 0);
  assert.not.ok(fs.existsSync(d.socketPath), 'socket removed');
});

test.run();
