// Body bounds: Content-Length and chunked, up to and just past --max-body.
import { createHash } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDaemon, send, invokePath } from '../helpers/daemon.ts';
import { useStack } from '../helpers/stack.ts';

const s = useStack();
const MAX = 6291456;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const payload = (n: number) => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + 7) & 0xff;
  return b;
};

for (const size of [0, 1, 1 << 20, MAX]) {
  test(`a ${size}-byte body arrives intact and signed`, async () => {
    const body = payload(size);
    const res = await send(s.daemon.socketPath, { path: invokePath('big'), headers: { 'content-type': 'application/octet-stream' }, body });
    assert.is(res.status, 200, res.body.toString().slice(0, 200));
    assert.is(res.json().bodyLength, size);
    assert.is(res.json().bodySha256, sha(body));
    assert.is(s.fake.failures.length, 0);
  });
}

test(`a ${MAX + 1}-byte body is refused with 413 before anything is sent upstream`, async () => {
  const before = s.fake.invocations.length + s.fake.failures.length;
  const res = await send(s.daemon.socketPath, { path: invokePath('big'), body: payload(MAX + 1) });
  assert.is(res.status, 413);
  assert.is(res.json().error, 'PayloadTooLarge');
  assert.is(res.headers['x-lambda-sign-error'], 'PayloadTooLarge');
  assert.is(s.fake.invocations.length + s.fake.failures.length, before);
});

test('a chunked body is reassembled and signed', async () => {
  const parts = [payload(10), payload(70000), Buffer.from('tail'), payload(1)];
  const res = await send(s.daemon.socketPath, { path: invokePath('chunky'), chunks: parts });
  assert.is(res.status, 200);
  assert.is(res.json().bodySha256, sha(Buffer.concat(parts)));
  assert.is(s.fake.failures.length, 0);
});

test('a chunked body exactly at the limit is accepted, one byte more is 413', async () => {
  const ok = await send(s.daemon.socketPath, { path: invokePath('chunky'), chunks: [payload(MAX - 5), payload(5)] });
  assert.is(ok.status, 200);
  const before = s.fake.invocations.length;
  const no = await send(s.daemon.socketPath, { path: invokePath('chunky'), chunks: [payload(MAX - 5), payload(6)] });
  assert.is(no.status, 413);
  assert.is(s.fake.invocations.length, before);
});

test('--max-body is honoured when lowered', async () => {
  const d = await startDaemon({ endpoint: s.fake.url, ca: s.ca.ca, options: { maxBody: '100' } });
  try {
    assert.is((await send(d.socketPath, { path: invokePath('f'), body: payload(100) })).status, 200);
    assert.is((await send(d.socketPath, { path: invokePath('f'), body: payload(101) })).status, 413);
    assert.is((await send(d.socketPath, { path: invokePath('f'), chunks: [payload(60), payload(41)] })).status, 413);
  } finally {
    await d.close();
  }
});

test.run();
