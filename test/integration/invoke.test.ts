// Invocations through the daemon against a fake Lambda that verifies every SigV4
// signature with an implementation independent of smithy (test/helpers/sigv4-verify.ts).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDaemon, send, invokePath } from '../helpers/daemon.ts';
import { useStack } from '../helpers/stack.ts';
import { staticCredentials } from '../../src/credentials.ts';

const s = useStack();

const ARN = 'arn:aws:lambda:us-west-2:123456789012:function:my-fn';
const FORMS: [sent: string, expectedId: string][] = [
  ['my-fn', 'my-fn'],
  ['my-fn:prod', 'my-fn:prod'],
  ['my-fn:$LATEST', 'my-fn:$LATEST'],
  ['my-fn:42', 'my-fn:42'],
  ['123456789012:function:my-fn', '123456789012:function:my-fn'],
  ['123456789012:function:my-fn:prod', '123456789012:function:my-fn:prod'],
  [ARN, ARN],
  [`${ARN}:prod`, `${ARN}:prod`],
  ['arn:aws-cn:lambda:cn-north-1:123456789012:function:my-fn', 'arn:aws-cn:lambda:cn-north-1:123456789012:function:my-fn'],
];

for (const [sent, id] of FORMS) {
  for (const qualifier of [undefined, 'v7', '$LATEST']) {
    test(`invokes ${sent} (Qualifier ${qualifier ?? 'none'}) with a valid signature`, async () => {
      const before = s.fake.invocations.length;
      const body = JSON.stringify({ hello: sent });
      const res = await send(s.daemon.socketPath, {
        path: invokePath(sent, qualifier),
        headers: { 'content-type': 'application/json' },
        body,
      });
      assert.is(res.status, 200, res.body.toString());
      assert.is(s.fake.failures.length, 0, s.fake.failures.map((f) => f.reason).join('; '));
      const inv = s.fake.invocations[before]!;
      assert.ok(inv.verified);
      assert.is(inv.functionName, id);
      assert.is(inv.qualifier, qualifier);
      assert.is(inv.body.toString(), body);
      assert.is(inv.authority, new URL(s.fake.url).host, ':authority is the signed host');
      const echoed = res.json();
      assert.is(echoed.bodyLength, Buffer.byteLength(body));
    });
  }
}

test('a raw colon and %3A reach Lambda identically', async () => {
  const before = s.fake.invocations.length;
  const raw = `/2015-03-31/functions/${ARN}/invocations`;
  const encoded = `/2015-03-31/functions/${ARN.replace(/:/g, '%3A')}/invocations`;
  const lower = `/2015-03-31/functions/${ARN.replace(/:/g, '%3a')}/invocations`;
  for (const path of [raw, encoded, lower]) assert.is((await send(s.daemon.socketPath, { path, body: '{}' })).status, 200);
  const paths = s.fake.invocations.slice(before).map((i) => i.path);
  assert.equal(paths, [paths[0], paths[0], paths[0]]);
  assert.ok(paths[0]!.includes('%3A'), paths[0]);
  assert.is(s.fake.failures.length, 0);
});

test('client headers outside the allowlist never reach Lambda', async () => {
  const before = s.fake.invocations.length;
  const res = await send(s.daemon.socketPath, {
    path: invokePath('my-fn'),
    headers: {
      'content-type': 'application/json',
      'x-amz-invocation-type': 'RequestResponse',
      'x-amz-log-type': 'Tail',
      'x-amz-client-context': 'eyJhIjoxfQ==',
      authorization: 'AWS4-HMAC-SHA256 Credential=EVIL/20200101/us-west-2/lambda/aws4_request, SignedHeaders=host, Signature=00',
      'x-amz-security-token': 'client-token',
      'x-amz-date': '20200101T000000Z',
      'x-forwarded-for': '203.0.113.9',
      'x-varnish': '32770',
      via: '1.1 varnish (Varnish/7.1)',
      cookie: 'session=abc',
      'x-custom': 'nope',
    },
    body: '{}',
  });
  assert.is(res.status, 200);
  const got = s.fake.invocations[before]!.headers;
  for (const h of ['x-amz-security-token', 'x-forwarded-for', 'x-varnish', 'via', 'cookie', 'x-custom']) {
    assert.is(got[h], undefined, `${h} was forwarded`);
  }
  assert.ok(!String(got['authorization']).includes('EVIL'));
  assert.is.not(got['x-amz-date'], '20200101T000000Z');
  assert.is(got['x-amz-invocation-type'], 'RequestResponse');
  assert.is(got['x-amz-log-type'], 'Tail');
  assert.is(got['x-amz-client-context'], 'eyJhIjoxfQ==');
  assert.is(got['content-type'], 'application/json');
  assert.is(s.fake.failures.length, 0);
});

test('temporary credentials: the session token is sent and signed', async () => {
  s.fake.keys.set('ASIATEMP', { secretAccessKey: 'temp-secret', sessionToken: 'the-session-token' });
  const d = await startDaemon({
    endpoint: s.fake.url,
    ca: s.ca.ca,
    credentials: staticCredentials({ accessKeyId: 'ASIATEMP', secretAccessKey: 'temp-secret', sessionToken: 'the-session-token' }),
  });
  try {
    const before = s.fake.invocations.length;
    const res = await send(d.socketPath, { path: invokePath(ARN, 'prod'), body: 'x' });
    assert.is(res.status, 200);
    const inv = s.fake.invocations[before]!;
    assert.ok(inv.verified);
    assert.is(inv.headers['x-amz-security-token'], 'the-session-token');
    assert.is(s.fake.failures.length, 0);
  } finally {
    await d.close();
  }
});

test('wrong credentials are refused by the verifier (the check can fail)', async () => {
  const d = await startDaemon({
    endpoint: s.fake.url,
    ca: s.ca.ca,
    credentials: staticCredentials({ accessKeyId: 'AKIDTEST', secretAccessKey: 'not-the-secret' }),
  });
  try {
    const failures = s.fake.failures.length;
    const res = await send(d.socketPath, { path: invokePath('my-fn'), body: '{}' });
    assert.is(res.status, 403);
    assert.is(s.fake.failures.length, failures + 1);
    // Lambda's own error passes through untouched; it is not the daemon's.
    assert.is(res.headers['x-lambda-sign-error'], undefined);
  } finally {
    s.fake.failures.length = 0;
    await d.close();
  }
});

test('--signer smithy: the signer of record signs every form the fake accepts', async () => {
  const d = await startDaemon({ endpoint: s.fake.url, ca: s.ca.ca, options: { signer: 'smithy' } });
  try {
    const before = s.fake.invocations.length;
    for (const [sent] of FORMS) assert.is((await send(d.socketPath, { path: invokePath(sent, '$LATEST'), body: '{"x":1}' })).status, 200, sent);
    assert.is(s.fake.invocations.length, before + FORMS.length);
    assert.is(s.fake.failures.length, 0);
  } finally {
    await d.close();
  }
});

test('GET /healthz answers 200 without calling Lambda', async () => {
  const before = s.fake.invocations.length + s.fake.failures.length;
  const res = await send(s.daemon.socketPath, { method: 'GET', path: '/healthz' });
  assert.is(res.status, 200);
  assert.is(res.json().status, 'ok');
  assert.is(s.fake.invocations.length + s.fake.failures.length, before);
});

const REJECTS: [method: string, path: string, status: number, code: string][] = [
  ['POST', '/', 404, 'NotFound'],
  ['POST', '/2015-03-31/functions/my-fn/invoke', 404, 'NotFound'],
  ['POST', '/2015-03-31/functions/a/b/invocations', 404, 'NotFound'],
  ['GET', invokePath('my-fn'), 405, 'MethodNotAllowed'],
  ['POST', '/healthz', 405, 'MethodNotAllowed'],
  ['POST', invokePath('bad name!'), 400, 'InvalidFunctionName'],
  ['POST', '/2015-03-31/functions/..%2Fx/invocations', 400, 'InvalidFunctionName'],
  ['POST', '/2015-03-31/functions/%E0%A4%A/invocations', 400, 'InvalidFunctionName'],
  ['POST', invokePath('my-fn', 'bad qualifier'), 400, 'InvalidQualifier'],
];
for (const [method, path, status, code] of REJECTS) {
  test(`${method} ${path} → ${status} ${code}, Lambda not called`, async () => {
    const before = s.fake.invocations.length + s.fake.failures.length;
    const res = await send(s.daemon.socketPath, { method, path, body: method === 'POST' ? '{}' : undefined });
    assert.is(res.status, status);
    assert.is(res.headers['x-lambda-sign-error'], code);
    assert.is(res.headers['content-type'], 'application/json');
    assert.is(res.json().error, code);
    assert.is(s.fake.invocations.length + s.fake.failures.length, before);
  });
}

test('--allow-function: a glob on the bare name, whatever form was sent', async () => {
  const d = await startDaemon({ endpoint: s.fake.url, ca: s.ca.ca, options: { allowFunction: ['image-*', 'render'] } });
  try {
    const before = s.fake.invocations.length;
    const ok = ['image-resize', `arn:aws:lambda:us-west-2:123456789012:function:image-crop:live`, 'render:1'];
    for (const fn of ok) assert.is((await send(d.socketPath, { path: invokePath(fn), body: '{}' })).status, 200, fn);
    const no = ['renderer', 'my-fn', `arn:aws:lambda:us-west-2:123456789012:function:secret-fn`, '123456789012:function:imag-x'];
    for (const fn of no) {
      const res = await send(d.socketPath, { path: invokePath(fn), body: '{}' });
      assert.is(res.status, 403, fn);
      assert.is(res.json().error, 'FunctionNotAllowed');
    }
    assert.is(s.fake.invocations.length, before + ok.length);
  } finally {
    await d.close();
  }
});

test.run();
