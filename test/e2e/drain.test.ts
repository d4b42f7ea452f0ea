// SIGTERM while Varnish has an invocation in flight: lambda-sign finishes it and Varnish
// delivers the function's answer; meanwhile new invocations get the VCL's fallback; then
// lambda-sign exits 0 and removes its socket.
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { useVarnishStack, within } from '../helpers/e2e.ts';
import { request } from '../helpers/varnish.ts';

const s = useVarnishStack(['--drain-timeout', '10']);

test('SIGTERM drains: the in-flight invocation is answered through Varnish, new ones fall back, exit 0', async () => {
  s.fake.on('e2e-slow', async (inv) => {
    await sleep(1500);
    return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ finished: inv.body.toString() }) };
  });
  const inflight = request(s.varnish.url, { path: '/lambda/e2e-slow', body: 'payload-1' });
  for (let i = 0; i < 200 && s.fake.inflight === 0; i++) await sleep(10);
  assert.is(s.fake.inflight, 1, 'the slow invocation reached Lambda');

  s.daemon.kill('SIGTERM');
  await s.daemon.waitFor(/"msg":"draining"/);

  // lambda-sign no longer accepts connections: Varnish serves the fallback at once.
  const during = await request(s.varnish.url, { path: '/lambda/e2e-slow', body: 'payload-2' });
  assert.is(during.status, 200);
  assert.is(during.text(), 'origin: GET /lambda/e2e-slow');
  assert.is(during.headers['x-lambda-fallback'], 'lambda-sign unreachable');
  assert.ok(s.daemon.child.exitCode === null, 'still draining while the first invocation runs');

  const res = await inflight;
  assert.is(res.status, 200, res.text());
  assert.equal(res.json(), { finished: 'payload-1' });
  assert.is(res.headers['x-lambda-fallback'], undefined);
  assert.is(await within(s.daemon.exited, 15_000, 'daemon exit'), 0);
  assert.not.ok(fs.existsSync(s.daemon.socketPath), 'socket file removed');
  assert.is(s.fake.invocations.filter((i) => i.functionName === 'e2e-slow').length, 1, 'payload-2 never reached Lambda');
  assert.equal(s.fake.failures.map((f) => f.reason), []);
});

test.run();
