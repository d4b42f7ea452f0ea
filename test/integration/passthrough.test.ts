// Lambda's answers, whatever their status, reach Varnish with their headers and body.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { type FakeAnswer } from '../helpers/fake-lambda.ts';
import { startDaemon, send, invokePath } from '../helpers/daemon.ts';
import { useStack } from '../helpers/stack.ts';

const s = useStack();

const CASES: [name: string, answer: FakeAnswer][] = [
  ['200 with X-Amz-Function-Error', { status: 200, headers: { 'content-type': 'application/json', 'x-amz-function-error': 'Unhandled', 'x-amz-executed-version': '$LATEST' }, body: '{"errorMessage":"boom","errorType":"Error"}' }],
  ['202 for an Event invocation', { status: 202, headers: { 'x-amzn-requestid': 'r-202' } }],
  ['204 for a DryRun', { status: 204, headers: { 'x-amzn-requestid': 'r-204' } }],
  ['400 InvalidRequestContentException', { status: 400, headers: { 'content-type': 'application/json', 'x-amzn-errortype': 'InvalidRequestContentException' }, body: '{"Type":"User","message":"Could not parse request body into json"}' }],
  ['404 ResourceNotFoundException', { status: 404, headers: { 'x-amzn-errortype': 'ResourceNotFoundException' }, body: '{"Type":"User","Message":"Function not found"}' }],
  ['429 with Retry-After', { status: 429, headers: { 'retry-after': '7', 'x-amzn-errortype': 'TooManyRequestsException' }, body: '{"Reason":"ReservedFunctionConcurrentInvocationLimitExceeded"}' }],
  ['500 ServiceException', { status: 500, headers: { 'x-amzn-errortype': 'ServiceException' }, body: '{"message":"internal"}' }],
  ['502 EC2ThrottledException', { status: 502, headers: { 'x-amzn-errortype': 'EC2ThrottledException' }, body: '{}' }],
  ['a streamed multi-part body', { status: 200, headers: { 'content-type': 'text/html' }, chunks: ['<html>', '<body>slow', ' page</body>', '</html>'], chunkDelayMs: 30 }],
  ['a binary body with repeated headers', { status: 200, headers: { 'content-type': 'image/png', 'set-cookie': ['a=1', 'b=2'] }, body: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 255, 13, 10]) }],
];

for (const [name, answer] of CASES) {
  test(`passes through ${name}`, async () => {
    s.fake.on('pass', () => answer);
    const res = await send(s.daemon.socketPath, { path: invokePath('pass'), body: '{}' });
    assert.is(res.status, answer.status);
    for (const [h, v] of Object.entries(answer.headers ?? {})) assert.equal(res.headers[h], v, h);
    const expected = answer.chunks !== undefined ? Buffer.concat(answer.chunks.map((c) => Buffer.from(c))) : Buffer.from(answer.body ?? '');
    assert.ok(res.body.equals(expected), `body ${res.body.toString('hex')}`);
    assert.is(res.headers['x-lambda-sign-error'], undefined, 'not our error');
    for (const h of Object.keys(res.headers)) assert.not.ok(h.startsWith(':'), `pseudo-header ${h} leaked`);
  });
}

test('an answer whose headers cannot be passed on is an error, and its stream is let go at once', async () => {
  // A control character is refused in an HTTP/1.1 header (it could split the response).
  // The rest of that answer will never be read: the stream to Lambda must be cancelled
  // rather than kept open (with its place in the session) until Lambda ends it.
  s.fake.on('badheader', () => ({ status: 200, headers: { 'x-odd': 'a\x01b' }, chunks: ['first', 'never'], chunkDelayMs: 10_000 }));
  const res = await send(s.daemon.socketPath, { path: invokePath('badheader'), body: '{}' });
  assert.is(res.status, 502);
  assert.is(res.headers['x-lambda-sign-error'], 'InvalidUpstreamResponse');
  assert.not.match(res.body.toString(), /first/, 'nothing of the answer was passed on');
  for (let i = 0; i < 100 && s.fake.inflight > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.is(s.fake.inflight, 0, 'the stream is closed at the fake Lambda long before its answer would end');
});

test.run();
