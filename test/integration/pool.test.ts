// The HTTP/2 session pool under GOAWAY, stream refusals and a thousand invocations in flight.
import http from 'node:http';
import net from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeTestCA, type TestCA } from '../helpers/tls.ts';
import { startFakeLambda, type FakeLambda } from '../helpers/fake-lambda.ts';
import { startDaemon, send, invokePath, type TestDaemon } from '../helpers/daemon.ts';
import { rawH2Peer } from '../helpers/raw-h2-peer.ts';
import { SessionPool } from '../../src/session-pool.ts';

let ca: TestCA;
const open: { close(): Promise<void> }[] = [];
test.before(async () => {
  ca = await makeTestCA();
});
test.after(async () => {
  for (const o of open.reverse()) await o.close();
  await ca.cleanup();
});

async function setup(opts: { goawayEvery?: number; maxConcurrentStreams?: number } = {}): Promise<{ fake: FakeLambda; daemon: TestDaemon }> {
  const fake = await startFakeLambda({ tls: { cert: ca.cert, key: ca.key }, ...opts });
  open.push(fake);
  const daemon = await startDaemon({ endpoint: fake.url, ca: ca.ca });
  open.push(daemon);
  return { fake, daemon };
}

/** `total` requests over `concurrency` keep-alive connections; returns the statuses. */
async function load(socketPath: string, total: number, concurrency: number, fn = 'f'): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const statuses: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      const res = await send(socketPath, { path: invokePath(fn), body: `{"i":${i}}`, agent });
      statuses.push(res.status);
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    agent.destroy();
  }
  return statuses;
}

test('regression: GOAWAY every 50 requests loses nothing over 3,000 invocations', async () => {
  // http2-wrapper's Agent (issue #89) kept sessions that had received GOAWAY and failed
  // every later request on them; the pool must retire them at once.
  const { fake, daemon } = await setup({ goawayEvery: 50 });
  const statuses = await load(daemon.socketPath, 3000, 64);
  const bad = statuses.filter((s) => s !== 200);
  assert.is(bad.length, 0, `non-200: ${[...new Set(bad)].join(',')}`);
  assert.is(statuses.length, 3000);
  assert.ok(fake.goaways >= 30, `only ${fake.goaways} GOAWAYs were sent`);
  assert.is(fake.failures.length, 0);
  assert.ok(fake.invocations.length >= 3000);
});

test('1,000 invocations in flight at once, spread over sessions the peer allows', async () => {
  const { fake, daemon } = await setup({ maxConcurrentStreams: 100 });
  // Warm one session so the peer's SETTINGS (100 streams) are known.
  assert.is((await send(daemon.socketPath, { path: invokePath('warm'), body: '{}' })).status, 200);
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  fake.on('held', async () => {
    if (fake.inflight >= 1000) release();
    await gate;
    return { status: 200, body: 'ok' };
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const timer = setTimeout(release, 30_000); // never hang the suite
  try {
    const replies = await Promise.all(Array.from({ length: 1000 }, () => send(daemon.socketPath, { path: invokePath('held'), body: '{}', agent })));
    assert.ok(replies.every((r) => r.status === 200), 'every invocation answered 200');
    assert.is(fake.maxInflight, 1000, 'all 1,000 were at the fake at the same time');
    assert.ok(fake.sessions >= 10, `${fake.sessions} sessions for 1,000 streams at 100 per session`);
    assert.is(fake.failures.length, 0);
  } finally {
    clearTimeout(timer);
    agent.destroy();
  }
});

test('REFUSED_STREAM is retried on a fresh stream (RFC 9113 §8.7) and the client sees 200', async () => {
  const { fake, daemon } = await setup();
  let calls = 0;
  fake.on('refuse-twice', () => (++calls <= 2 ? { status: 200, reset: 'refused' } : { status: 200, body: 'third time' }));
  const res = await send(daemon.socketPath, { path: invokePath('refuse-twice'), body: '{}' });
  assert.is(res.status, 200);
  assert.is(res.body.toString(), 'third time');
  assert.is(calls, 3);
  assert.equal(daemon.retries, ['refused_stream', 'refused_stream']);
});

test('retries stop after two: a third refusal is 502', async () => {
  const { fake, daemon } = await setup();
  let calls = 0;
  fake.on('refuse-always', () => (calls++, { status: 200, reset: 'refused' }));
  const res = await send(daemon.socketPath, { path: invokePath('refuse-always'), body: '{}' });
  assert.is(res.status, 502);
  assert.is(res.json().error, 'UpstreamUnavailable');
  assert.is(calls, 3);
});

test('a reset of a started stream (INTERNAL_ERROR, CANCEL) is never retried', async () => {
  const { fake, daemon } = await setup();
  for (const reset of ['internal', 'cancel'] as const) {
    let calls = 0;
    fake.on(`reset-${reset}`, () => (calls++, { status: 200, reset }));
    const res = await send(daemon.socketPath, { path: invokePath(`reset-${reset}`), body: '{}' });
    assert.is(res.status, 502, reset);
    assert.is(res.json().error, 'UpstreamUnavailable');
    assert.is(calls, 1, `${reset} was sent ${calls} times`);
  }
  assert.equal(daemon.retries, []);
});

test('idle sessions are reused, not reopened', async () => {
  const { fake, daemon } = await setup();
  for (let i = 0; i < 50; i++) assert.is((await send(daemon.socketPath, { path: invokePath('f'), body: '{}' })).status, 200);
  assert.is(fake.sessions, 1);
  assert.is(daemon.upstream.sessions, 1);
});

test('regression: a session whose peer fell silent leaves the pool; its uploads are 502, not held for --timeout', async () => {
  // A session stayed in the pool for good when its peer vanished without a FIN: every new
  // invocation went onto it and waited the whole --timeout (900 s by default), and bodies
  // stuck behind its closed window stopped the daemon reading any request, /healthz too.
  const peer = await rawH2Peer(ca); // SETTINGS exchanged, then silence: no window, no answer, no PING ACK
  open.push(peer);
  const daemon = await startDaemon({
    endpoint: `https://localhost:${peer.port}`,
    ca: ca.ca,
    options: { timeout: '10' },
    upstream: { pingAfterMs: 100, pingTimeoutMs: 200 },
  });
  open.push(daemon);
  const big = Buffer.alloc(5 << 20, 0x61);
  const uploads = [send(daemon.socketPath, { path: invokePath('f'), body: big }), send(daemon.socketPath, { path: invokePath('f'), body: big })];
  const health = await send(daemon.socketPath, { method: 'GET', path: '/healthz' });
  assert.is(health.status, 200);
  for (const r of await Promise.all(uploads)) {
    assert.is(r.status, 502);
    assert.is(r.json().error, 'UpstreamUnavailable');
  }
  assert.is(daemon.upstream.sessions, 0, 'the dead session left the pool');
  assert.is(daemon.upstream.backlog.bytes, 0, 'its unsent bodies are no longer counted');
  assert.equal(daemon.retries, [], 'never retried: the requests may have run');
  // The next invocation goes to a new connection (and meets the same silence).
  const next = await send(daemon.socketPath, { path: invokePath('f'), body: '{}' });
  assert.is(next.status, 502);
  assert.is(peer.received.length, 2);
});

test('a session whose peer answers PINGs but never opens its window is closed; its uploads are 502, /healthz answers', async () => {
  // Alive to PINGs, but its uploads waited for --timeout, and their bytes held the read
  // gate shut for every request.
  const peer = await rawH2Peer(ca, (f, sock) => {
    if (f.type === 0x6 && (f.flags & 0x1) === 0) sock.write(Buffer.concat([Buffer.from([0, 0, 8, 0x6, 0x1, 0, 0, 0, 0]), f.payload]));
  });
  open.push(peer);
  const daemon = await startDaemon({
    endpoint: `https://localhost:${peer.port}`,
    ca: ca.ca,
    options: { timeout: '10' },
    upstream: { pingAfterMs: 100, pingTimeoutMs: 200, stuckTimeoutMs: 400 },
  });
  open.push(daemon);
  const big = Buffer.alloc(5 << 20, 0x61);
  const uploads = [send(daemon.socketPath, { path: invokePath('f'), body: big }), send(daemon.socketPath, { path: invokePath('f'), body: big })];
  assert.is((await send(daemon.socketPath, { method: 'GET', path: '/healthz' })).status, 200);
  for (const r of await Promise.all(uploads)) {
    assert.is(r.status, 502);
    assert.is(r.json().error, 'UpstreamUnavailable');
  }
  assert.ok(peer.received[0]!.filter((f) => f.type === 0x6).length > 0, 'its PINGs were answered meanwhile');
  assert.is(daemon.upstream.sessions, 0);
  assert.is(daemon.upstream.backlog.bytes, 0);
});

test('a liveness tick that comes late (the event loop was held) asks but does not condemn', async () => {
  // After a long pause of the event loop, timers run before the socket is read: an ACK
  // that arrived meanwhile would not be seen yet, and a healthy session would be closed.
  const peer = await rawH2Peer(ca); // silent: the verdict is the pool's alone
  open.push(peer);
  const pool = new SessionPool({ origin: new URL(`https://localhost:${peer.port}`), ca: [ca.ca], connectTimeoutMs: 2000, idleTimeoutMs: 60_000, pingAfterMs: 5000, pingTimeoutMs: 5000 });
  open.push({ close: () => pool.close(100) });
  const p = pool.reserve();
  await p.ready;
  const c = p.session!;
  const s = c.request([':method', 'POST', ':scheme', 'https', ':authority', 'localhost', ':path', '/'], Buffer.from('{}'));
  s.on('error', () => {});
  const every = 1000; // the pool's tick for 5 s periods
  const t = c.heardAt + 5001;
  pool.checkAlive(every, t - 500); // on time, before the quiet period
  assert.is(c.pingAt, 0);
  pool.checkAlive(every, t); // on time: the PING goes out
  assert.is(c.pingAt, t);
  pool.checkAlive(every, t + 5001 + 3 * every); // late, and past the deadline
  assert.not.ok(c.destroyed, 'a late tick does not judge');
  pool.checkAlive(every, t + 5002 + 3 * every); // the next one, on time
  assert.ok(c.destroyed);
  pool.release(p);
});

test('regression: a first TLS connect that times out does not switch the pool to HTTP/1.1 for good', async () => {
  // http2-wrapper caches the null protocol of a timed-out probe; the pool read it as "the
  // origin offers no h2" and sent everything over HTTP/1.1 from then on.
  const peer = await rawH2Peer(ca);
  open.push(peer);
  const held: net.Socket[] = [];
  const front = net.createServer((c) => {
    if (held.length === 0) return void held.push(c); // accepted, never answered
    const up = net.connect(peer.port, '127.0.0.1');
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  const pool = new SessionPool({ origin: new URL(`https://localhost:${(front.address() as net.AddressInfo).port}`), ca: [ca.ca], connectTimeoutMs: 200, idleTimeoutMs: 5000 });
  open.push({
    async close() {
      await pool.close(100);
      for (const c of held) c.destroy();
      await new Promise((r) => front.close(r));
    },
  });
  const first = pool.reserve();
  const err = await first.ready.then(() => undefined, (e: unknown) => e);
  assert.match(String((err as Error)?.message), 'could not connect');
  pool.release(first);
  const second = pool.reserve();
  await second.ready;
  assert.ok(second.session !== undefined, 'the second connection is HTTP/2');
  assert.is(pool.http1Only, false);
  pool.release(second);
});

test.run();
