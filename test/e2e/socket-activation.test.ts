// systemd socket activation, with systemd-socket-activate (Debian's systemd package) playing
// systemd: it creates the socket, starts lambda-sign on the first connection (Varnish's
// probe), and passes the socket as fd 3 with LISTEN_PID/LISTEN_FDS. lambda-sign serves that
// descriptor, ignores --socket, and never removes a socket file it did not create.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeTestCA, type TestCA } from '../helpers/tls.ts';
import { startFakeLambda, type FakeLambda } from '../helpers/fake-lambda.ts';
import { send, invokePath } from '../helpers/daemon.ts';
import { CLI, refusedWhileStopped, spawnDaemon, type DaemonProcess } from '../helpers/process.ts';
import { lambdaSignVcl, SOCKET_ACTIVATE, spawnCli, startOrigin, stopAll, type Origin, within } from '../helpers/e2e.ts';
import { request, startVarnish, type Varnish } from '../helpers/varnish.ts';

let ca: TestCA;
let fake: FakeLambda;
let origin: Origin;
let varnish: Varnish | undefined;
let dir: string;
const procs: DaemonProcess[] = [];

test.before(async () => {
  ca = await makeTestCA();
  fake = await startFakeLambda({ tls: { cert: ca.cert, key: ca.key } });
  origin = await startOrigin();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lambda-sign-activation-'));
});

test.after(() =>
  stopAll(
    () => varnish?.stop(),
    ...procs.map((p) => () => p.cleanup()),
    () => origin?.close(),
    () => fake?.close(),
    () => ca?.cleanup(),
    () => fs.rmSync(dir, { recursive: true, force: true }),
  ),
);

function activated(sockets: string | string[], args: string[] = []): DaemonProcess {
  const p = spawnCli({ fake, ca, activationSocket: sockets, args });
  procs.push(p);
  return p;
}

/** Connects once, to make systemd-socket-activate start the daemon; the connection may be reset. */
const poke = (socketPath: string): Promise<void> =>
  new Promise((resolve) => {
    const c = net.connect(socketPath);
    c.once('connect', () => (c.end(), resolve()));
    c.once('error', () => resolve());
  });

test('through Varnish: started by the first connection, serves fd 3, ignores --socket, leaves the socket file', async () => {
  const sock = path.join(dir, 'activated.sock');
  const d = activated(sock);
  await d.waitFor(/Listening on .*activated\.sock/);
  assert.ok(fs.statSync(sock).isSocket(), 'systemd (here systemd-socket-activate) made the socket');
  await sleep(200);
  assert.not.ok(d.lines.some((l) => l.includes('"msg":"listening"')), 'lambda-sign has not started before a connection');

  varnish = await startVarnish({ vcl: lambdaSignVcl(sock, origin.port) });
  // Varnish's health probe is the first connection: it starts lambda-sign.
  const line = await d.waitFor(/"msg":"listening"/);
  assert.is(JSON.parse(line).socket, 'fd:3 (systemd)');
  await varnish.waitHealthy('lambda_sign');

  const before = fake.invocations.length;
  const res = await request(varnish.url, { path: '/lambda/activated', headers: { 'content-type': 'application/json' }, body: '{"via":"systemd"}' });
  assert.is(res.status, 200, res.text());
  assert.is(res.headers['x-lambda-fallback'], undefined);
  assert.equal(fake.failures.map((f) => f.reason), []);
  assert.is(fake.invocations[before]!.functionName, 'activated');
  assert.is(fake.invocations[before]!.body.toString(), '{"via":"systemd"}');

  assert.not.ok(fs.existsSync(d.socketPath), '--socket was ignored: no file at its path');
  d.kill('SIGTERM');
  assert.is(await within(d.exited, 15_000, 'd exit'), 0, 'a clean stop');
  assert.ok(fs.statSync(sock).isSocket(), "the socket file is systemd's: still there after exit");
  await varnish.stop();
  varnish = undefined;
});

test('the activated socket keeps a deep backlog: 1,000 connections queue while the daemon is stopped', async () => {
  // Node ignores { backlog } next to { fd }: listening on systemd's descriptor used to set
  // its backlog to 511, and Varnish's connects past that failed with EAGAIN.
  const sock = path.join(dir, 'backlog.sock');
  const d = activated(sock);
  await d.waitFor(/Listening on .*backlog\.sock/);
  await poke(sock);
  await d.waitFor(/"msg":"listening"/);
  assert.is(await refusedWhileStopped(d.child.pid!, sock, 1000), 0);
  assert.is((await send(sock, { path: invokePath('after-burst'), body: '{}' })).status, 200);
  d.kill('SIGTERM');
  assert.is(await within(d.exited, 15_000, 'd exit'), 0);
});

test('with --workers 2 the activated socket keeps a deep backlog too', async () => {
  const sock = path.join(dir, 'workers.sock');
  const d = activated(sock, ['--workers', '2']);
  await d.waitFor(/Listening on .*workers\.sock/);
  await poke(sock);
  await d.waitFor(/"msg":"listening"/);
  for (let i = 0; i < 50 && fs.readFileSync(`/proc/${d.child.pid}/task/${d.child.pid}/children`, 'utf8').trim().split(/\s+/).length < 2; i++) await sleep(100);
  assert.is((await send(sock, { path: invokePath('workers'), body: '{}' })).status, 200);
  assert.is(await refusedWhileStopped(d.child.pid!, sock, 1000), 0);
  d.kill('SIGTERM');
  assert.is(await within(d.exited, 15_000, 'd exit'), 0);
});

test('with --workers 2, once every worker has died the primary exits 1, for systemd to start it again', async () => {
  // The last worker's exit closes the primary's handle on fd 3, and the descriptor with it:
  // new workers could only fail to listen (EINVAL), forever, under a service that looks up.
  const sock = path.join(dir, 'all-died.sock');
  const d = activated(sock, ['--workers', '2']);
  await d.waitFor(/Listening on .*all-died\.sock/);
  await poke(sock);
  await d.waitFor(/"msg":"listening"/);
  const children = (): number[] =>
    fs.readFileSync(`/proc/${d.child.pid}/task/${d.child.pid}/children`, 'utf8').trim().split(/\s+/).filter((x) => x !== '').map(Number);
  for (let i = 0; i < 50 && children().length < 2; i++) await sleep(100);
  const workers = children();
  assert.is(workers.length, 2);
  for (const pid of workers) process.kill(pid, 'SIGKILL');
  assert.is(await within(d.exited, 15_000, 'the primary exit'), 1);
  assert.ok(d.lines.some((l) => l.includes('every worker has exited')), d.lines.slice(-5).join('\n'));
});

test('listen() alone keeps a deep backlog on the descriptor systemd passed (no extra descriptors)', async () => {
  // The daemon's extra descriptors listen with the deep backlog too, and the last listen()
  // wins: this runs listen.ts's listen() by itself, so that it is what is tested.
  const sock = path.join(dir, 'listen-only.sock');
  const script = path.join(dir, 'listen-only.mjs');
  fs.writeFileSync(
    script,
    `import net from 'node:net';
import { listen } from ${JSON.stringify(path.join(path.dirname(CLI), 'listen.js'))};
const server = net.createServer((c) => c.end('x'));
await listen(server, { socketPath: '/nonexistent', socketMode: 0o660, listenFd: 3 });
console.log('ready');
process.on('SIGTERM', () => process.exit(0));
`,
  );
  const p = spawnDaemon([], { PATH: process.env.PATH ?? '' }, { command: [SOCKET_ACTIVATE!, '-l', sock, process.execPath, script] });
  procs.push(p);
  await p.waitFor(/Listening on .*listen-only\.sock/);
  await poke(sock);
  await p.waitFor(/^ready$/);
  assert.is(await refusedWhileStopped(p.child.pid!, sock, 1000), 0);
  p.kill('SIGTERM');
  await within(p.exited, 15_000, 'p exit');
});

test('LISTEN_PID naming another process: not ours, so --socket is used', async () => {
  const p = spawnCli({ fake, ca, env: { LISTEN_PID: '1', LISTEN_FDS: '1' } });
  procs.push(p);
  const line = await p.waitFor(/"msg":"listening"/);
  assert.is(JSON.parse(line).socket, p.socketPath);
  assert.is((await send(p.socketPath, { path: invokePath('not-activated'), body: '{}' })).status, 200);
  p.kill('SIGTERM');
  assert.is(await within(p.exited, 15_000, 'p exit'), 0);
});

test('two sockets passed: exits 2 naming LISTEN_FDS, and removes neither', async () => {
  const a = path.join(dir, 'a.sock');
  const b = path.join(dir, 'b.sock');
  const d = activated([a, b]);
  await d.waitFor(/Listening on .*b\.sock/);
  await poke(a);
  assert.is(await within(d.exited, 15_000, 'd exit'), 2);
  assert.ok(d.lines.some((l) => l.includes('LISTEN_FDS')), d.lines.join('\n'));
  assert.ok(fs.existsSync(a) && fs.existsSync(b));
});

test.run();
