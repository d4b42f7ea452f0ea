// log.ts: JSON lines through pino with secrets redacted, and errorSummary, which keeps
// codes and messages of an error and its causes and nothing else.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Writable } from 'node:stream';
import { createLogger, errorSummary } from '../../src/log.ts';
import { CredentialsUnavailableError, UpstreamUnavailableError } from '../../src/errors.ts';

const AUTH = 'AWS4-HMAC-SHA256 Credential=AKIDLEAK/20240517/us-west-2/lambda/aws4_request, Signature=secret0sig';
const TOKEN = 'tok-IQoJb3JpZ2luX2VjLEAK';
const SECRET_KEY = 'secret-key-wJalrXUtnLEAK';
const SECRETS = ['secret0sig', TOKEN, SECRET_KEY, 'AKIDLEAK'];

/** A logger writing into memory; `lines()` parses what was written so far. */
function collect(level: Parameters<typeof createLogger>[0] = 'trace') {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  const log = createLogger(level, sink);
  return {
    log,
    text: () => chunks.join(''),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

function assertNoSecret(text: string): void {
  for (const s of SECRETS) assert.not.ok(text.includes(s), `${s} leaked into: ${text}`);
}

test('the DESIGN example: authorization, the token and credentials are censored, the rest kept', () => {
  const out = collect('info');
  out.log.info(
    {
      fn: 'my-fn',
      authorization: AUTH,
      headers: { 'x-amz-security-token': TOKEN, 'content-type': 'application/json' },
      credentials: { accessKeyId: 'AKIDLEAK', secretAccessKey: SECRET_KEY, sessionToken: TOKEN },
    },
    'request',
  );
  assertNoSecret(out.text());
  const [line] = out.lines();
  assert.ok(line, 'nothing was logged');
  assert.is(line!.msg, 'request');
  assert.is(line!.level, 'info');
  assert.is(line!.name, 'lambda-sign');
  assert.is(line!.fn, 'my-fn');
  assert.is(line!.authorization, '[redacted]');
  assert.equal(line!.headers, { 'x-amz-security-token': '[redacted]', 'content-type': 'application/json' });
  assert.is(line!.credentials, '[redacted]');
  assert.type(line!.time, 'string');
});

// Shapes a careless log call could take. Each must come out without the secret.
const SHAPES: [string, Record<string, unknown>][] = [
  ['headers.authorization', { headers: { authorization: AUTH } }],
  ['upstream.x-amz-security-token', { upstream: { 'x-amz-security-token': TOKEN } }],
  ['secretAccessKey at the top', { accessKeyId: 'x', secretAccessKey: SECRET_KEY }],
  ['sessionToken at the top', { sessionToken: TOKEN }],
  ['identity.secretAccessKey and sessionToken', { identity: { secretAccessKey: SECRET_KEY, sessionToken: TOKEN } }],
  ['signer.credentials', { signer: { credentials: { secretAccessKey: SECRET_KEY } } }],
  // Regression: REDACT_PATHS names `authorization` at the top level but
  // `x-amz-security-token` only one level down, so logging a headers object as the
  // merge object (`log.debug(req.headers, …)`) censored one and printed the other.
  ['x-amz-security-token at the top (log.debug(headers))', { authorization: AUTH, 'x-amz-security-token': TOKEN }],
  // Regression: the paths reach one level of nesting, so `{req: {headers}}` (the shape
  // of pino's standard req serializer) printed authorization and the token.
  ['req.headers (pino req shape)', { req: { method: 'POST', headers: { authorization: AUTH, 'x-amz-security-token': TOKEN } } }],
];

for (const [what, obj] of SHAPES) {
  test(`redacts ${what}`, () => {
    const out = collect();
    out.log.info(obj, 'shape');
    assert.is(out.lines().length, 1);
    assertNoSecret(out.text());
  });
}

test('a level below the logger’s is not written', () => {
  const out = collect('warn');
  out.log.info({ fn: 'x' }, 'quiet');
  out.log.warn({ fn: 'x' }, 'loud');
  assert.equal(out.lines().map((l) => l.msg), ['loud']);
});

// ---------------------------------------------------------------------------------------

function secretError(): Error {
  const root = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:443'), {
    code: 'ECONNREFUSED',
    body: `<Error>canonical request: x-amz-security-token:${TOKEN}</Error>`,
    $response: { headers: { authorization: AUTH } },
    credentials: { secretAccessKey: SECRET_KEY },
  });
  const middle = Object.assign(new Error('HTTP/2 session failed', { cause: root }), { code: 'ERR_HTTP2_ERROR' });
  return new UpstreamUnavailableError('Lambda is unreachable', { cause: middle });
}

test('errorSummary: code and message of the error and each cause, nothing else', () => {
  assert.equal(errorSummary(secretError()), {
    message: 'UpstreamUnavailable: Lambda is unreachable',
    causes: ['ERR_HTTP2_ERROR: HTTP/2 session failed', 'ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:443'],
  });
  assertNoSecret(JSON.stringify(errorSummary(secretError())));
});

test('errorSummary: a system error whose message starts with its code shows the code once', () => {
  const err = Object.assign(new Error("ENOENT: no such file or directory, open '/x.pem'"), { code: 'ENOENT' });
  assert.equal(errorSummary(err), { message: "ENOENT: no such file or directory, open '/x.pem'" });
});

test('errorSummary: no stack, no causes key without a cause, codes only when strings', () => {
  assert.equal(errorSummary(new Error('plain')), { message: 'plain' });
  assert.equal(errorSummary(Object.assign(new Error('numbered'), { code: 42 })), { message: 'numbered' });
  assert.equal(errorSummary(new CredentialsUnavailableError('no creds', { cause: new Error('IMDS timeout') })), {
    message: 'CredentialsUnavailable: no creds',
    causes: ['IMDS timeout'],
  });
});

test('errorSummary: a non-Error cause (which may be anything) is left out', () => {
  const e = new Error('outer', { cause: { secretAccessKey: SECRET_KEY, body: TOKEN } });
  assert.equal(errorSummary(e), { message: 'outer' });
  assert.equal(errorSummary(new Error('outer', { cause: `string ${TOKEN}` })), { message: 'outer' });
});

test('errorSummary: the cause chain stops after four errors (cycles cannot loop)', () => {
  let e: Error = new Error('e0');
  for (let n = 1; n < 8; n++) e = new Error(`e${n}`, { cause: e });
  assert.equal(errorSummary(e), { message: 'e7', causes: ['e6', 'e5', 'e4'] });
  const a = new Error('a');
  const b = new Error('b', { cause: a });
  (a as { cause?: unknown }).cause = b;
  assert.equal(errorSummary(a), { message: 'a', causes: ['b', 'a', 'b'] });
});

test('errorSummary: not an error → empty', () => {
  assert.equal(errorSummary('text'), {});
  assert.equal(errorSummary(undefined), {});
  assert.equal(errorSummary({ message: 'looks like one', stack: 'at x' }), {});
});

test('the logger applies errorSummary to err: no stack, no body, no secrets', () => {
  const out = collect();
  out.log.warn({ err: secretError(), fn: 'my-fn' }, 'upstream failed');
  const [line] = out.lines();
  assertNoSecret(out.text());
  assert.not.ok(out.text().includes('"stack"'), 'a stack was logged');
  assert.not.ok(/\bat .*:\d+:\d+/.test(out.text()), 'stack frames were logged');
  assert.equal(line!.err, errorSummary(secretError()));
  assert.is(line!.fn, 'my-fn');
});

test('an error passed alone (log.error(err)) is summarized too', () => {
  const out = collect();
  out.log.error(secretError());
  assertNoSecret(out.text());
  assert.not.ok(out.text().includes('"stack"'), 'a stack was logged');
  assert.not.ok(/\bat .*:\d+:\d+/.test(out.text()), 'stack frames were logged');
});

test.run();
