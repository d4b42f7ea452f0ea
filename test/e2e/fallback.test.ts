// vcl/lambda-sign.vcl's fallback: when an invocation fails, Varnish answers with the origin's
// response to GET <the same URL>, and the function is still invoked exactly once (the POST
// is never retried). Answers that are the request's fault pass through unchanged.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { useVarnishStack, within } from '../helpers/e2e.ts';
import { request } from '../helpers/varnish.ts';

const s = useVarnishStack(['--allow-function', 'e2e-*']);

const json = (status: number, body: unknown, headers: Record<string, string> = {}) => ({
  status,
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});
const invocationsOf = (fn: string): number => s.fake.invocations.filter((i) => i.functionName === fn).length;

/** POSTs a payload and expects the origin's answer to GET of the same URL. */
async function expectFallback(fn: string, reason: string, opts: { chunked?: boolean } = {}): Promise<void> {
  const originBefore = s.origin.requests.length;
  const payload = JSON.stringify({ payload: 'x'.repeat(10_000) });
  const res = await request(s.varnish.url, {
    path: `/lambda/${fn}`,
    headers: { 'content-type': 'application/json', cookie: 'session=1', ...(opts.chunked ? { 'transfer-encoding': 'chunked' } : {}) },
    ...(opts.chunked ? { chunks: [payload.slice(0, 5000), payload.slice(5000)] } : { body: payload }),
  });
  assert.is(res.status, 200, res.text());
  assert.is(res.text(), `origin: GET /lambda/${fn}`);
  assert.is(res.headers['x-lambda-fallback'], reason);
  assert.is(s.origin.requests.length, originBefore + 1);
  const seen = s.origin.requests[originBefore]!;
  assert.is(seen.method, 'GET');
  assert.is(seen.body.length, 0, 'the payload is not replayed to the origin');
  assert.is(seen.headers['content-length'], undefined);
  assert.is(seen.headers['transfer-encoding'], undefined);
  assert.is(seen.headers['x-lambda-fallback'], reason, 'the origin is told why');
  assert.is(seen.headers.cookie, 'session=1', "the client's own headers reach the origin");
  assert.is(seen.headers['x-lambda-sign-url'], undefined, 'internal headers are removed');
  assert.is(seen.headers['x-lambda-sign-function'], undefined);
}

test('a function error (200 with X-Amz-Function-Error) falls back to the origin; invoked once', async () => {
  s.fake.on('e2e-raises', () => json(200, { errorMessage: 'boom', errorType: 'Error' }, { 'x-amz-function-error': 'Unhandled' }));
  await expectFallback('e2e-raises', 'function error: Unhandled');
  assert.is(invocationsOf('e2e-raises'), 1);
});

for (const [status, errorType] of [
  [500, 'ServiceException'],
  [502, 'EC2ThrottledException'],
  [429, 'TooManyRequestsException'],
] as const) {
  test(`Lambda answering ${status} falls back to the origin; invoked once`, async () => {
    const fn = `e2e-status-${status}`;
    s.fake.on(fn, () => json(status, { message: errorType }, { 'x-amzn-errortype': errorType, 'retry-after': '1' }));
    await expectFallback(fn, `status ${status}`);
    assert.is(invocationsOf(fn), 1);
  });
}

test('the fallback works for a chunked client body too', async () => {
  s.fake.on('e2e-chunked-fails', () => json(500, { message: 'ServiceException' }));
  await expectFallback('e2e-chunked-fails', 'status 500', { chunked: true });
  assert.is(invocationsOf('e2e-chunked-fails'), 1);
  assert.is(s.fake.invocations.find((i) => i.functionName === 'e2e-chunked-fails')!.body.length, JSON.stringify({ payload: 'x'.repeat(10_000) }).length);
});

test("lambda-sign's own 5xx (Lambda unreachable: 502 UpstreamUnavailable) falls back", async () => {
  s.fake.on('e2e-reset', () => ({ status: 200, reset: 'internal' }));
  await expectFallback('e2e-reset', 'status 502');
  assert.is(invocationsOf('e2e-reset'), 1, 'a reset after the request was sent is never retried');
});

test('4xx answers are the request\'s fault and pass through: no fallback', async () => {
  s.fake.on('e2e-missing', () => json(404, { message: 'Function not found' }, { 'x-amzn-errortype': 'ResourceNotFoundException' }));
  const originBefore = s.origin.requests.length;
  const missing = await request(s.varnish.url, { path: '/lambda/e2e-missing', body: '{}' });
  assert.is(missing.status, 404);
  assert.is(missing.headers['x-amzn-errortype'], 'ResourceNotFoundException');
  const forbidden = await request(s.varnish.url, { path: '/lambda/not-allowed', body: '{}' });
  assert.is(forbidden.status, 403);
  assert.is(forbidden.headers['x-lambda-sign-error'], 'FunctionNotAllowed');
  assert.is(invocationsOf('not-allowed'), 0);
  assert.is(s.origin.requests.length, originBefore, 'the origin was not asked');
});

test('a successful invocation does not touch the origin', async () => {
  const originBefore = s.origin.requests.length;
  const res = await request(s.varnish.url, { path: '/lambda/e2e-fine', body: '{"ok":1}' });
  assert.is(res.status, 200);
  assert.is(res.json().functionName, 'e2e-fine');
  assert.is(res.headers['x-lambda-fallback'], undefined);
  assert.is(s.origin.requests.length, originBefore);
});

test("a client cannot ask for the fallback, choose another function, or set lambda-sign's X-Lambda-* headers", async () => {
  const originBefore = s.origin.requests.length;
  const before = s.fake.invocations.length;
  const res = await request(s.varnish.url, {
    path: '/lambda/e2e-fine',
    headers: {
      'x-lambda-fallback': 'please', 'x-lambda-sign-url': '/admin', 'x-lambda-sign-function': 'e2e-other',
      // lambda-sign's gateway mode headers: they would choose the function and the payload.
      'x-lambda-function': 'e2e-other', 'x-lambda-payload': '{"evil":true}', 'x-lambda-response': 'raw',
    },
    body: '{"mine":true}',
  });
  assert.is(res.status, 200, res.text());
  assert.is(res.json().functionName, 'e2e-fine');
  assert.is(s.fake.invocations.length, before + 1);
  assert.is(s.fake.invocations[before]!.body.toString(), '{"mine":true}');
  assert.is(s.origin.requests.length, originBefore);
});

test('lambda-sign down: the origin answers, first as "unreachable", then, once the probe notices, "unhealthy"', async () => {
  s.daemon.kill('SIGKILL');
  await within(s.daemon.exited, 15_000, 'daemon exit');
  // The probe needs a few seconds to notice; until then Varnish still tries the socket.
  await expectFallback('e2e-down', 'lambda-sign unreachable');
  await s.varnish.waitSick('lambda_sign');
  await expectFallback('e2e-down', 'lambda-sign unhealthy');
  assert.is(invocationsOf('e2e-down'), 0);
});

test.run();
