// errors.ts: one class per code with the status DESIGN §2 fixes, and errorResponse,
// the single renderer, which never shows a cause, a stack or a credential.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CredentialsUnavailableError,
  errorResponse,
  FunctionNotAllowedError,
  InternalError,
  InvalidFunctionNameError,
  InvalidQualifierError,
  InvalidRequestError,
  LambdaSignError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  ShuttingDownError,
  toLambdaSignError,
  UpstreamTimeoutError,
  UpstreamUnavailableError,
} from '../../src/errors.ts';

// errorResponse's body may be a string or a Buffer; tests read it as text.
const text = (r: { body: string | Buffer }): string => r.body.toString();

const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY';
const TOKEN = 'IQoJb3JpZ2luX2VjEXAMPLETOKEN';

// [make, code, status, retry-after]
const CLASSES: [(m: string, o?: { cause?: unknown }) => LambdaSignError, string, number, number | undefined][] = [
  [(m) => new NotFoundError(m), 'NotFound', 404, undefined],
  [(m) => new MethodNotAllowedError(m, 'POST'), 'MethodNotAllowed', 405, undefined],
  [(m, o) => new InvalidFunctionNameError(m, o), 'InvalidFunctionName', 400, undefined],
  [(m, o) => new FunctionNotAllowedError(m, o), 'FunctionNotAllowed', 403, undefined],
  [(m, o) => new PayloadTooLargeError(m, o), 'PayloadTooLarge', 413, undefined],
  [(m, o) => new CredentialsUnavailableError(m, o), 'CredentialsUnavailable', 503, 5],
  [(m, o) => new UpstreamUnavailableError(m, o), 'UpstreamUnavailable', 502, undefined],
  [(m, o) => new UpstreamTimeoutError(m, o), 'UpstreamTimeout', 504, undefined],
  // Codes added beyond DESIGN §2, in the same shape.
  [(m, o) => new InvalidRequestError(m, o), 'InvalidRequest', 400, undefined],
  [(m, o) => new InvalidQualifierError(m, o), 'InvalidQualifier', 400, undefined],
  [(m, o) => new ShuttingDownError(m, o), 'ShuttingDown', 503, 1],
  [(m, o) => new InternalError(m, o), 'InternalError', 500, undefined],
];

for (const [make, code, status, retryAfter] of CLASSES) {
  test(`${code}: status ${status}, name, message, instanceof`, () => {
    const e = make('something specific');
    assert.instance(e, LambdaSignError);
    assert.instance(e, Error);
    assert.is(e.code, code);
    assert.is(e.status, status);
    assert.is(e.name, code);
    assert.is(e.message, 'something specific');
    assert.is(e.retryAfter, retryAfter);
    assert.is(toLambdaSignError(e), e, 'our own errors pass through unchanged');
  });

  test(`${code}: errorResponse`, () => {
    const r = errorResponse(make('what went wrong'));
    assert.is(r.status, status);
    assert.equal(JSON.parse(text(r)), { error: code, message: 'what went wrong' });
    assert.is(r.headers['content-type'], 'application/json');
    assert.is(r.headers['x-lambda-sign-error'], code);
    assert.is(Number(r.headers['content-length']), Buffer.byteLength(text(r)));
    assert.is(r.headers['retry-after'], retryAfter);
    assert.is(r.headers['allow'], code === 'MethodNotAllowed' ? 'POST' : undefined);
  });
}

test('a cause is kept on the error (for logs) but not in the response', () => {
  const cause = new Error(`upstream said ${SECRET}`);
  const e = new UpstreamUnavailableError('Lambda is unreachable', { cause });
  assert.is(e.cause, cause);
  const r = errorResponse(e);
  assert.not.ok(text(r).includes(SECRET));
  assert.equal(JSON.parse(text(r)), { error: 'UpstreamUnavailable', message: 'Lambda is unreachable' });
});

test('content-length counts bytes, not characters', () => {
  const r = errorResponse(new NotFoundError('nicht gefunden: ü € 😀'));
  assert.is(Number(r.headers['content-length']), Buffer.byteLength(text(r), 'utf8'));
  assert.ok(Number(r.headers['content-length']) > text(r).length);
  assert.is(JSON.parse(text(r)).message, 'nicht gefunden: ü € 😀');
});

test('405 carries the allowed methods as given', () => {
  const r = errorResponse(new MethodNotAllowedError('use GET', 'GET, HEAD'));
  assert.is(r.status, 405);
  assert.is(r.headers['allow'], 'GET, HEAD');
});

test('retry-after follows a value set on any error, and is absent otherwise', () => {
  const e = new UpstreamUnavailableError('throttled');
  assert.is(errorResponse(e).headers['retry-after'], undefined);
  e.retryAfter = 30;
  assert.is(errorResponse(e).headers['retry-after'], 30);
  assert.is(errorResponse(new CredentialsUnavailableError('x')).headers['retry-after'], 5);
});

// Anything that is not ours, whatever it says, becomes a bare 500.
const FOREIGN: [string, unknown][] = [
  ['an Error with a secret in message and cause', new Error(`signing failed for ${SECRET}`, { cause: new Error(TOKEN) })],
  ['a TypeError', new TypeError(`Cannot read ${SECRET}`)],
  ['a string', `raw ${SECRET}`],
  ['a plain object shaped like ours', { code: 'NotFound', status: 404, message: SECRET, sessionToken: TOKEN }],
  ['an Error with a credentials property', Object.assign(new Error('x'), { credentials: { secretAccessKey: SECRET, sessionToken: TOKEN } })],
  ['undefined', undefined],
  ['null', null],
];

for (const [what, thrown] of FOREIGN) {
  test(`${what} → InternalError 500 without the secret`, () => {
    const e = toLambdaSignError(thrown);
    assert.instance(e, InternalError);
    assert.is(e.cause, thrown);
    const r = errorResponse(thrown);
    assert.is(r.status, 500);
    assert.is(r.headers['x-lambda-sign-error'], 'InternalError');
    assert.equal(Object.keys(JSON.parse(text(r))).sort(), ['error', 'message']);
    assert.is(JSON.parse(text(r)).error, 'InternalError');
    const all = text(r) + JSON.stringify(r.headers);
    assert.not.ok(all.includes(SECRET), 'secret leaked');
    assert.not.ok(all.includes(TOKEN), 'token leaked');
    assert.not.ok(/\bat .*:\d+:\d+/.test(text(r)), 'stack trace leaked');
  });
}

test('our error whose cause holds a secret → the body does not', () => {
  const cause = Object.assign(new Error(`The request signature we calculated does not match: ${SECRET}`), {
    body: `canonical request ... x-amz-security-token:${TOKEN}`,
  });
  const r = errorResponse(new CredentialsUnavailableError('AWS credentials could not be resolved', { cause }));
  assert.is(r.status, 503);
  assert.not.ok(text(r).includes(SECRET));
  assert.not.ok(text(r).includes(TOKEN));
  assert.not.ok(JSON.stringify(r.headers).includes(SECRET));
});

test.run();
