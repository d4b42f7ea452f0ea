// An endpoint that offers only HTTP/1.1 in ALPN: the daemon falls back to keep-alive HTTP/1.1.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeTestCA, type TestCA } from '../helpers/tls.ts';
import { startFakeLambda, type FakeLambda } from '../helpers/fake-lambda.ts';
import { startDaemon, send, invokePath, type TestDaemon } from '../helpers/daemon.ts';

let ca: TestCA;
let fake: FakeLambda;
let daemon: TestDaemon;

test.before(async () => {
  ca = await makeTestCA();
  fake = await startFakeLambda({ tls: { cert: ca.cert, key: ca.key }, http1Only: true });
  daemon = await startDaemon({ endpoint: fake.url, ca: ca.ca });
});
test.after(async () => {
  await daemon.close();
  await fake.close();
  await ca.cleanup();
});

test('invocations over HTTP/1.1 are signed and answered', async () => {
  const arn = 'arn:aws:lambda:us-west-2:123456789012:function:h1-fn';
  for (let i = 0; i < 20; i++) {
    const res = await send(daemon.socketPath, { path: invokePath(arn, 'v1'), body: `{"i":${i}}` });
    assert.is(res.status, 200);
  }
  assert.is(fake.failures.length, 0);
  assert.ok(fake.invocations.every((i) => i.httpVersion === '1.1'));
  assert.is(fake.invocations[0]!.functionName, arn);
  assert.is(daemon.upstream.sessions, 0, 'no HTTP/2 session is kept');
});

test('connections are kept alive and reused', async () => {
  const before = fake.sessions;
  await Promise.all(Array.from({ length: 10 }, () => send(daemon.socketPath, { path: invokePath('f'), body: '{}' })));
  for (let i = 0; i < 30; i++) assert.is((await send(daemon.socketPath, { path: invokePath('f'), body: '{}' })).status, 200);
  assert.ok(fake.sessions - before <= 10, `opened ${fake.sessions - before} connections for 40 requests`);
});

test('hop-by-hop headers from an HTTP/1.1 answer are not forwarded', async () => {
  fake.on('hop', () => ({ status: 200, headers: { 'keep-alive': 'timeout=5', 'x-kept': 'yes', 'x-drop': 'x', connection: 'x-drop' }, body: 'ok' }));
  const res = await send(daemon.socketPath, { path: invokePath('hop'), body: '{}' });
  assert.is(res.status, 200);
  assert.is(res.headers['x-kept'], 'yes');
  assert.is(res.headers['keep-alive'], undefined);
  assert.is(res.headers['x-drop'], undefined);
  assert.is(res.body.toString(), 'ok');
});

test('concurrent invocations over HTTP/1.1', async () => {
  fake.on('slow', () => ({ status: 200, body: 'done', delayMs: 100 }));
  const replies = await Promise.all(Array.from({ length: 100 }, () => send(daemon.socketPath, { path: invokePath('slow'), body: '{}' })));
  assert.ok(replies.every((r) => r.status === 200 && r.body.toString() === 'done'));
  assert.is(fake.failures.length, 0);
});

test.run();
