// headers.ts: the outbound allowlist (what may reach Lambda) and the response filter
// (what Varnish receives back).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { outboundHeaders, responseHeaders } from '../../src/headers.ts';
import { InvalidRequestError } from '../../src/errors.ts';

const ALLOWED = {
  'content-type': 'application/json',
  'x-amz-invocation-type': 'RequestResponse',
  'x-amz-log-type': 'Tail',
  'x-amz-client-context': 'eyJjdXN0b20iOnt9fQ==',
};

// Everything Varnish or a client may add; none of it may reach Lambda.
const DROPPED: Record<string, string | string[]> = {
  authorization: 'AWS4-HMAC-SHA256 Credential=AKIDEVIL/20240101/us-west-2/lambda/aws4_request',
  'x-amz-security-token': 'stolen-token',
  'x-amz-date': '20200101T000000Z',
  'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
  'x-amz-target': 'AWSLambda.DeleteFunction',
  'x-forwarded-for': '203.0.113.7',
  'x-forwarded-proto': 'https',
  'x-real-ip': '203.0.113.7',
  'x-varnish': '32770',
  via: '1.1 varnish (Varnish/7.5)',
  cookie: 'session=abc',
  host: 'evil.example',
  'content-length': '5',
  'transfer-encoding': 'chunked',
  connection: 'keep-alive',
  'user-agent': 'curl/8.0',
  accept: '*/*',
  'accept-encoding': 'gzip',
  'x-amzn-trace-id': 'Root=1-abc',
  'x-lambda-function': 'other-fn',
  'x-lambda-payload': 'x',
  'x-lambda-response': 'x',
  'set-cookie': ['a=b'],
};

test('outboundHeaders keeps exactly the four allowed headers', () => {
  assert.equal(outboundHeaders({ ...DROPPED, ...ALLOWED }), ALLOWED);
});

for (const name of Object.keys(DROPPED)) {
  test(`outboundHeaders drops ${name}`, () => {
    const out = outboundHeaders({ [name]: DROPPED[name], 'content-type': 'text/plain' });
    assert.equal(out, { 'content-type': 'text/plain' });
  });
}

test('regression: an allowed header with a byte past ASCII is refused (400), not signed wrongly', () => {
  // It was sent to Lambda as a latin1 byte but signed as UTF-8, so any client could make
  // the daemon send requests whose signature Lambda refuses.
  for (const value of ['text/plain; charset=\u00e9', 'application/json\u00a0', 'x\u007f']) {
    assert.throws(() => outboundHeaders({ 'content-type': value }), (e: unknown) => e instanceof InvalidRequestError && e.status === 400, JSON.stringify(value));
  }
  assert.equal(outboundHeaders({ 'content-type': 'text/plain;\tcharset=utf-8' }), { 'content-type': 'text/plain;\tcharset=utf-8' });
  // Headers that are dropped anyway may carry anything.
  assert.equal(outboundHeaders({ cookie: 'n=\u00e9', 'content-type': 'a/b' }), { 'content-type': 'a/b' });
});

for (const [name, value] of Object.entries(ALLOWED)) {
  test(`outboundHeaders keeps ${name} alone`, () => {
    assert.equal(outboundHeaders({ [name]: value }), { [name]: value });
  });
}

test('outboundHeaders with nothing allowed is empty, and never undefined values', () => {
  const out = outboundHeaders({ via: '1.1 varnish' });
  assert.equal(out, {});
  assert.equal(Object.keys(outboundHeaders({ 'content-type': undefined })), []);
});

test('outboundHeaders returns a new object and leaves its input alone', () => {
  const inbound = { ...ALLOWED, via: 'x' };
  const out = outboundHeaders(inbound);
  out['content-type'] = 'changed';
  assert.is(inbound['content-type'], 'application/json');
  assert.is(inbound.via, 'x');
});

// ---------------------------------------------------------------------------------------

const KEPT = {
  'content-type': 'application/json',
  'content-length': '42',
  'x-amz-function-error': 'Unhandled',
  'x-amz-executed-version': '$LATEST',
  'x-amz-log-result': 'U1RBUlQ=',
  'x-amzn-requestid': 'c0ffee',
  'retry-after': '3',
  'set-cookie': ['a=1; Path=/', 'b=2; Path=/'],
  'cache-control': 'max-age=60',
  date: 'Mon, 01 Jan 2024 00:00:00 GMT',
};

const STRIPPED: Record<string, string> = {
  ':status': '200',
  ':path': '/x',
  connection: 'keep-alive',
  'keep-alive': 'timeout=5',
  'proxy-connection': 'keep-alive',
  'proxy-authenticate': 'Basic',
  'proxy-authorization': 'Basic eA==',
  te: 'trailers',
  trailer: 'x-checksum',
  'transfer-encoding': 'chunked',
  upgrade: 'h2c',
  'http2-settings': 'AAMAAABkAAQAAP__',
};

test('responseHeaders keeps end-to-end headers, set-cookie arrays and content-length', () => {
  const out = responseHeaders({ ...STRIPPED, ...KEPT });
  assert.equal(out, KEPT);
  assert.ok(Array.isArray(out['set-cookie']));
});

for (const name of Object.keys(STRIPPED)) {
  test(`responseHeaders drops ${name}`, () => {
    const out = responseHeaders({ [name]: STRIPPED[name], 'x-amz-function-error': 'Handled' });
    assert.equal(out, { 'x-amz-function-error': 'Handled' });
  });
}

test('responseHeaders drops the headers named in Connection (RFC 9110 §7.6.1)', () => {
  const out = responseHeaders({
    connection: 'close, X-Hop, x-other-hop',
    'x-hop': '1',
    'x-other-hop': '2',
    'x-end-to-end': '3',
    'retry-after': '10',
  });
  assert.equal(out, { 'x-end-to-end': '3', 'retry-after': '10' });
});

test('responseHeaders keeps a header named in Connection when there is no Connection', () => {
  assert.equal(responseHeaders({ 'x-hop': '1' }), { 'x-hop': '1' });
});

test('responseHeaders keeps numbers and skips undefined values', () => {
  assert.equal(responseHeaders({ 'content-length': 0, 'x-gone': undefined }), { 'content-length': 0 });
});

test('responseHeaders does not mutate its input', () => {
  const upstream = { ':status': 200, connection: 'x-a', 'x-a': '1', 'x-b': '2' };
  const copy = { ...upstream };
  responseHeaders(upstream);
  assert.equal(upstream, copy);
});

test.run();
