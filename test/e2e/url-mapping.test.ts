// Through varnishd with the shipped vcl/url-mapping.vcl: public URLs mapped to functions in
// VCL, unknown URLs refused before anything reaches lambda-sign, and AWS headers from the
// client stripped (even those lambda-sign would forward: only the VCL chooses them).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeTestCA, type TestCA } from '../helpers/tls.ts';
import { startFakeLambda, type FakeLambda } from '../helpers/fake-lambda.ts';
import type { DaemonProcess } from '../helpers/process.ts';
import { spawnCli, stopAll, urlMappingVcl } from '../helpers/e2e.ts';
import { request, startVarnish, type Varnish } from '../helpers/varnish.ts';

let ca: TestCA;
let fake: FakeLambda;
let daemon: DaemonProcess;
let varnish: Varnish;

// The allowlist the VCL's header comment recommends.
const ALLOW = ['image-resize', 'page-render', 'event-sink'].flatMap((f) => ['--allow-function', f]);

test.before(async () => {
  ca = await makeTestCA();
  fake = await startFakeLambda({ tls: { cert: ca.cert, key: ca.key } });
  fake.on('event-sink', () => ({ status: 202, body: '' }));
  daemon = spawnCli({ fake, ca, args: ALLOW });
  await daemon.waitFor(/"msg":"listening"/);
  varnish = await startVarnish({ vcl: urlMappingVcl(daemon.socketPath) });
  await varnish.waitHealthy('lambda_sign');
});

test.after(() => stopAll(() => varnish?.stop(), () => daemon?.cleanup(), () => fake?.close(), () => ca?.cleanup()));

const ROUTES: [path: string, fn: string, qualifier: string | undefined, status: number][] = [
  ['/api/resize', 'image-resize', 'live', 200],
  ['/api/resize?width=300', 'image-resize', 'live', 200],
  ['/api/render', 'page-render', undefined, 200],
  ['/api/events', 'event-sink', undefined, 202],
];

for (const [path, fn, qualifier, status] of ROUTES) {
  test(`POST ${path} invokes ${fn}${qualifier ? `:${qualifier}` : ''}, signed`, async () => {
    const before = fake.invocations.length;
    const body = JSON.stringify({ path });
    const res = await request(varnish.url, { path, headers: { 'content-type': 'application/json' }, body });
    assert.is(res.status, status, res.text());
    assert.equal(fake.failures.map((f) => f.reason), []);
    assert.is(fake.invocations.length, before + 1);
    const inv = fake.invocations[before]!;
    assert.ok(inv.verified);
    assert.is(inv.functionName, fn);
    assert.is(inv.qualifier, qualifier);
    assert.is(inv.body.toString(), body);
  });
}

test('the VCL, not the client, chooses the invocation type', async () => {
  const before = fake.invocations.length;
  await request(varnish.url, { path: '/api/events', body: '{}' });
  assert.is(fake.invocations[before]!.headers['x-amz-invocation-type'], 'Event');
});

test('client-supplied X-Amz-* and Authorization never reach Lambda', async () => {
  const before = fake.invocations.length;
  const res = await request(varnish.url, {
    path: '/api/render',
    headers: {
      'content-type': 'application/json',
      authorization: 'AWS4-HMAC-SHA256 Credential=AKIDEVIL/20200101/us-west-2/lambda/aws4_request, SignedHeaders=host, Signature=00',
      'x-amz-date': '20200101T000000Z',
      'x-amz-security-token': 'stolen',
      // These three lambda-sign would forward; the VCL must drop them.
      'x-amz-invocation-type': 'DryRun',
      'x-amz-log-type': 'Tail',
      'x-amz-client-context': 'eyJjdXN0b20iOiJldmlsIn0=',
    },
    body: '{}',
  });
  assert.is(res.status, 200, res.text());
  const inv = fake.invocations[before]!;
  assert.ok(inv.verified);
  for (const h of ['x-amz-invocation-type', 'x-amz-log-type', 'x-amz-client-context', 'x-amz-security-token']) {
    assert.is(inv.headers[h], undefined, `${h} reached Lambda`);
  }
  assert.ok(String(inv.headers.authorization).includes('Credential=AKIDTEST/'), "lambda-sign's own signature");
  assert.is.not(inv.headers['x-amz-date'], '20200101T000000Z');
});

test("a client's X-Lambda-* headers cannot choose another function or payload", async () => {
  const before = fake.invocations.length;
  const res = await request(varnish.url, {
    path: '/api/render',
    headers: { 'x-lambda-function': 'image-resize', 'x-lambda-payload': '{"evil":true}', 'x-lambda-response': 'raw' },
    body: '{"mine":true}',
  });
  assert.is(res.status, 200, res.text());
  assert.is(fake.invocations.length, before + 1);
  assert.is(fake.invocations[before]!.functionName, 'page-render');
  assert.is(fake.invocations[before]!.body.toString(), '{"mine":true}');
});

for (const path of ['/', '/api', '/api/resize/extra', '/api/resizer', '/2015-03-31/functions/image-resize/invocations', '/healthz']) {
  test(`unknown URL ${path} is 404 and reaches nothing`, async () => {
    const before = fake.invocations.length;
    const res = await request(varnish.url, { path, body: '{}' });
    assert.is(res.status, 404);
    assert.is(res.headers['content-type'], 'application/json');
    assert.equal(res.json(), { error: 'NotFound', message: 'no function is mapped to this URL' }, "Varnish's answer");
    assert.is(res.headers['x-lambda-sign-error'], undefined, 'not an answer from lambda-sign');
    assert.is(fake.invocations.length, before);
  });
}

test('a mapped URL with another method is 405', async () => {
  const before = fake.invocations.length;
  const res = await request(varnish.url, { method: 'GET', path: '/api/resize' });
  assert.is(res.status, 405);
  assert.is(res.headers.allow, 'POST');
  assert.is(res.json().error, 'MethodNotAllowed');
  assert.is(fake.invocations.length, before);
});

test.run();
