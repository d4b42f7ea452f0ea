// An endpoint that offers only HTTP/1.1 in ALPN: the daemon falls back to keep-alive HTTP/1.1.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDaemon, send, invokePath } from '../helpers/daemon.ts';
import { useStack } from '../helpers/stack.ts';

const s = useStack({ fake: { http1Only: true } });

test('invocations over HTTP/1.1 are signed and answered', async () => {
  const arn = 'arn:aws:lambda:us-west-2:123456789012:function:h1-fn';
  for (let i = 0; i < 20; i++) {
    const res = await send(s.daemon.socketPath, { path: invokePath(arn, 'v1'), body: `{"i":${i}}` });
    assert.is(res.status, 200);
  }
  assert.is(s.fake.failures.length, 0);
  assert.ok(s.fake.invocations.every((i) => i.httpVersion === '1.1'));
  assert.is(s.fake.invocations[0]!.functionName, arn);
  assert.is(s.daemon.upstream.sessions, 0, 'no HTTP/2 session is kept');
});

test('connections are kept alive and reused', async () => {
  const before = s.fake.sessions;
  await Promise.all(Array.from({ length: 10 }, () => send(s.daemon.socketPath, { path: invokePath('f'), body: '{}' })));
  for (let i = 0; i < 30; i++) assert.is((await send(s.daemon.socketPath, { path: invokePath('f'), body: '{}' })).status, 200);
  assert.ok(s.fake.sessions - before <= 10, `opened ${s.fake.sessions - before} connections for 40 requests`);
});

test('hop-by-hop headers from an HTTP/1.1 answer are not forwarded', async () => {
  s.fake.on('hop', () => ({ status: 200, headers: { 'keep-alive': 'timeout=5', 'x-kept': 'yes', 'x-drop': 'x', connection: 'x-drop' }, body: 'ok' }));
  const res = await send(s.daemon.socketPath, { path: invokePath('hop'), body: '{}' });
  assert.is(res.status, 200);
  assert.is(res.headers['x-kept'], 'yes');
  assert.is(res.headers['keep-alive'], undefined);
  assert.is(res.headers['x-drop'], undefined);
  assert.is(res.body.toString(), 'ok');
});

test('concurrent invocations over HTTP/1.1', async () => {
  s.fake.on('slow', () => ({ status: 200, body: 'done', delayMs: 100 }));
  const replies = await Promise.all(Array.from({ length: 100 }, () => send(s.daemon.socketPath, { path: invokePath('slow'), body: '{}' })));
  assert.ok(replies.every((r) => r.status === 200 && r.body.toString() === 'done'));
  assert.is(s.fake.failures.length, 0);
});

test.run();
