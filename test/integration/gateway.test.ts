// Gateway mode: X-Lambda-Function turns any request into a payload-2.0 event, and the
// function's answer back into HTTP, against the signature-verifying fake Lambda.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type Invocation } from '../helpers/fake-lambda.ts';
import { startDaemon, send } from '../helpers/daemon.ts';
import { useStack } from '../helpers/stack.ts';

const s = useStack({ daemon: { allowFunction: ['site', 'render', 'broken*', 'echo-event', 'raw-fn'] } });
test.before(() => {
  // A function that answers with the event it received, as an HTTP response.
  s.fake.on('echo-event', (inv) => ({
    status: 200,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ statusCode: 200, headers: { 'content-type': 'application/json' }, body: inv.body.toString() }),
  }));
});

const lastEvent = (): any => JSON.parse(s.fake.invocations.at(-1)!.body.toString());

test('GET with a query string becomes a payload-2.0 event, signed, on the invoke path', async () => {
  const res = await send(s.daemon.socketPath, {
    method: 'GET',
    path: '/products/shoes%20red?size=42&color=red&color=blue',
    headers: {
      host: 'www.example.com',
      'x-lambda-function': 'echo-event',
      'x-forwarded-for': '198.51.100.7, 10.0.0.1',
      'user-agent': 'curl/8',
      cookie: 'a=1; b=2',
      'x-varnish': '1001',
    },
  });
  assert.is(res.status, 200);
  const inv: Invocation = s.fake.invocations.at(-1)!;
  assert.ok(inv.verified);
  assert.is(inv.method, 'POST');
  assert.is(inv.functionName, 'echo-event');
  const ev = lastEvent();
  assert.is(ev.version, '2.0');
  assert.is(ev.rawPath, '/products/shoes%20red');
  assert.is(ev.rawQueryString, 'size=42&color=red&color=blue');
  assert.equal(ev.queryStringParameters, { size: '42', color: 'red,blue' });
  assert.equal(ev.cookies, ['a=1', 'b=2']);
  assert.is(ev.headers['x-lambda-function'], undefined);
  assert.is(ev.headers.cookie, undefined);
  assert.is(ev.requestContext.http.method, 'GET');
  assert.is(ev.requestContext.http.sourceIp, '10.0.0.1', 'the hop Varnish appended, not the one the client claimed');
  assert.is(ev.requestContext.http.userAgent, 'curl/8');
  assert.is(ev.requestContext.domainName, 'www.example.com');
  assert.is(ev.isBase64Encoded, false);
  assert.is(ev.body, undefined);
  assert.is(s.fake.failures.length, 0);
});

test('a decoded answer: status, headers, cookies and body as the function said', async () => {
  s.fake.on('site', () => ({
    status: 200,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      statusCode: 201,
      headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'max-age=60' },
      multiValueHeaders: { vary: ['accept', 'cookie'] },
      cookies: ['sid=1; Path=/', 'theme=dark'],
      body: '<h1>héllo</h1>',
    }),
  }));
  const res = await send(s.daemon.socketPath, { method: 'GET', path: '/', headers: { 'x-lambda-function': 'site' } });
  assert.is(res.status, 201);
  assert.is(res.headers['content-type'], 'text/html; charset=utf-8');
  assert.is(res.headers['cache-control'], 'max-age=60');
  assert.is(res.headers['vary'], 'accept,cookie');
  assert.equal(res.headers['set-cookie'], ['sid=1; Path=/', 'theme=dark']);
  assert.is(res.body.toString('utf8'), '<h1>héllo</h1>');
  assert.is(Number(res.headers['content-length']), Buffer.byteLength('<h1>héllo</h1>'));
});

test('a binary answer (isBase64Encoded) arrives byte-exact', async () => {
  const png = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  s.fake.on('render', () => ({ status: 200, body: JSON.stringify({ statusCode: 200, headers: { 'content-type': 'image/png' }, isBase64Encoded: true, body: png.toString('base64') }) }));
  const res = await send(s.daemon.socketPath, { method: 'GET', path: '/render/x', headers: { 'x-lambda-function': 'render' } });
  assert.is(res.status, 200);
  assert.is(res.headers['content-type'], 'image/png');
  assert.ok(res.body.equals(png));
});

test('a POSTed binary body reaches the function base64-encoded, a JSON body as text', async () => {
  const bin = Buffer.from([0, 1, 2, 250, 255]);
  await send(s.daemon.socketPath, { method: 'POST', path: '/upload', headers: { 'x-lambda-function': 'echo-event', 'content-type': 'image/png' }, body: bin });
  let ev = lastEvent();
  assert.is(ev.isBase64Encoded, true);
  assert.ok(Buffer.from(ev.body, 'base64').equals(bin));
  await send(s.daemon.socketPath, { method: 'PUT', path: '/api', headers: { 'x-lambda-function': 'echo-event', 'content-type': 'application/json' }, chunks: ['{"a":', '"ü"}'] });
  ev = lastEvent();
  assert.is(ev.isBase64Encoded, false);
  assert.is(ev.body, '{"a":"ü"}');
  assert.is(ev.requestContext.http.method, 'PUT');
});

test('X-Lambda-Payload: the header is the invoke body (the VMOD invoke(payload) style)', async () => {
  const payload = JSON.stringify({ url: 'https://example.com/ü', width: 800 });
  const res = await send(s.daemon.socketPath, {
    method: 'GET',
    path: '/render/whatever',
    headers: { 'x-lambda-function': 'echo-event', 'x-lambda-payload': Buffer.from(payload).toString('latin1') },
  });
  assert.is(res.status, 200);
  assert.is(s.fake.invocations.at(-1)!.body.toString('utf8'), payload);
});

test('X-Lambda-Payload that is not JSON is 400 InvalidPayload, nothing sent', async () => {
  const before = s.fake.invocations.length;
  const res = await send(s.daemon.socketPath, { method: 'GET', path: '/', headers: { 'x-lambda-function': 'echo-event', 'x-lambda-payload': '{nope' } });
  assert.is(res.status, 400);
  assert.is(res.json().error, 'InvalidPayload');
  assert.is(s.fake.invocations.length, before);
});

test('a JSON answer without statusCode is a 200 application/json body, verbatim', async () => {
  s.fake.on('site', () => ({ status: 200, body: '{"hello":"world","n":[1,2]}' }));
  const res = await send(s.daemon.socketPath, { method: 'GET', path: '/x', headers: { 'x-lambda-function': 'site' } });
  assert.is(res.status, 200);
  assert.is(res.headers['content-type'], 'application/json');
  assert.is(res.body.toString(), '{"hello":"world","n":[1,2]}');
});

test('X-Lambda-Response: raw returns Lambda’s answer untouched', async () => {
  const answer = JSON.stringify({ statusCode: 418, body: 'teapot' });
  s.fake.on('raw-fn', () => ({ status: 200, headers: { 'content-type': 'application/json', 'x-amz-executed-version': '$LATEST' }, body: answer }));
  const res = await send(s.daemon.socketPath, { method: 'GET', path: '/', headers: { 'x-lambda-function': 'raw-fn', 'x-lambda-response': 'raw' } });
  assert.is(res.status, 200);
  assert.is(res.body.toString(), answer);
  assert.is(res.headers['x-amz-executed-version'], '$LATEST');
});

test('a function error is 502 FunctionError with the function’s error JSON', async () => {
  const err = '{"errorMessage":"boom","errorType":"TypeError","trace":[]}';
  s.fake.on('broken', () => ({ status: 200, headers: { 'x-amz-function-error': 'Unhandled' }, body: err }));
  const res = await send(s.daemon.socketPath, { method: 'GET', path: '/', headers: { 'x-lambda-function': 'broken' } });
  assert.is(res.status, 502);
  assert.is(res.headers['x-lambda-sign-error'], 'FunctionError');
  assert.is(res.body.toString(), err);
});

test('an answer that is not a response object is 502 InvalidFunctionResponse', async () => {
  s.fake.on('broken-shape', () => ({ status: 200, body: JSON.stringify({ statusCode: 'two hundred' }) }));
  const res = await send(s.daemon.socketPath, { method: 'GET', path: '/', headers: { 'x-lambda-function': 'broken-shape' } });
  assert.is(res.status, 502);
  assert.is(res.json().error, 'InvalidFunctionResponse');
});

test('an answer too large to decode is 502 InvalidFunctionResponse, and its stream does not linger', async () => {
  // Past 8 MiB the rest of the answer is useless: the stream is cancelled rather than read
  // to the end, and in no case may it keep its HTTP/2 session slot.
  s.fake.on('site', () => ({ status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.alloc(9 << 20, 0x61) }));
  const res = await send(s.daemon.socketPath, { method: 'GET', path: '/huge', headers: { 'x-lambda-function': 'site' } });
  assert.is(res.status, 502);
  assert.is(res.json().error, 'InvalidFunctionResponse');
  for (let i = 0; i < 100 && s.daemon.upstream.streams > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.is(s.daemon.upstream.streams, 0, 'the upstream stream was closed');
});

test('Lambda’s own errors keep their status (429 with Retry-After, 404)', async () => {
  s.fake.on('site', () => ({ status: 429, headers: { 'retry-after': '3', 'x-amzn-errortype': 'TooManyRequestsException' }, body: '{"message":"Rate exceeded"}' }));
  const res = await send(s.daemon.socketPath, { method: 'GET', path: '/', headers: { 'x-lambda-function': 'site' } });
  assert.is(res.status, 429);
  assert.is(res.headers['retry-after'], '3');
  assert.is(res.headers['x-lambda-sign-error'], undefined);
});

test('--allow-function applies to X-Lambda-Function', async () => {
  const before = s.fake.invocations.length;
  const res = await send(s.daemon.socketPath, { method: 'GET', path: '/', headers: { 'x-lambda-function': 'arn:aws:lambda:us-west-2:123456789012:function:secrets' } });
  assert.is(res.status, 403);
  assert.is(res.json().error, 'FunctionNotAllowed');
  assert.is(s.fake.invocations.length, before);
});

test('an invalid X-Lambda-Function or X-Lambda-Response is 400, nothing sent', async () => {
  const before = s.fake.invocations.length;
  assert.is((await send(s.daemon.socketPath, { method: 'GET', path: '/', headers: { 'x-lambda-function': 'no/slashes' } })).json().error, 'InvalidFunctionName');
  assert.is((await send(s.daemon.socketPath, { method: 'GET', path: '/', headers: { 'x-lambda-function': 'site', 'x-lambda-response': 'xml' } })).json().error, 'InvalidRequest');
  assert.is(s.fake.invocations.length, before);
});

test('an event over --max-body after encoding is 413 before anything is sent', async () => {
  const d = await startDaemon({ endpoint: s.fake.url, ca: s.ca.ca, options: { maxBody: '1000' } });
  try {
    const before = s.fake.invocations.length;
    // 700 raw bytes fit the body bound but not once base64-encoded into the event.
    const res = await send(d.socketPath, { method: 'POST', path: '/', headers: { 'x-lambda-function': 'site', 'content-type': 'image/png' }, body: Buffer.alloc(700, 7) });
    assert.is(res.status, 413);
    assert.is(res.json().error, 'PayloadTooLarge');
    assert.is(s.fake.invocations.length, before);
  } finally {
    await d.close();
  }
});

test.run();
