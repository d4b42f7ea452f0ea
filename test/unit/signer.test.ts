// signer.ts: Lambda Invoke requests signed by createSigner and checked by the independent
// verifier (test/helpers/sigv4-verify.ts); tampering, clock skew, immutability, concurrency.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { AwsCredentialIdentity } from '@smithy/types';
import { createSigner, type SignInput } from '../../src/signer.ts';
import { staticCredentials, type CredentialSource } from '../../src/credentials.ts';
import { CredentialsUnavailableError } from '../../src/errors.ts';
import { verifySigV4, type VerifyResult } from '../helpers/sigv4-verify.ts';

const REGION = 'us-west-2';
const HOST = 'lambda.us-west-2.amazonaws.com';
const PATH = '/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-west-2%3A123456789012%3Afunction%3Amy-fn/invocations';
const NOW = Date.UTC(2024, 4, 17, 10, 20, 30); // 20240517T102030Z
const LONG_TERM: AwsCredentialIdentity = { accessKeyId: 'AKIDLONGTERM', secretAccessKey: 'long/term+secret' };
const TEMPORARY: AwsCredentialIdentity = {
  accessKeyId: 'ASIATEMPORARY',
  secretAccessKey: 'temporary/secret',
  sessionToken: 'IQoJb3JpZ2luX2VjEXAMPLE//session+token==',
};

function input(over: Partial<SignInput> = {}): SignInput {
  return {
    method: 'POST',
    path: PATH,
    query: { Qualifier: 'prod' },
    headers: {
      host: HOST,
      'content-type': 'application/json',
      'x-amz-invocation-type': 'RequestResponse',
      'x-amz-log-type': 'Tail',
      'x-amz-client-context': 'eyJjdXN0b20iOnsiYSI6MX19',
    },
    body: Buffer.from('{"url":"https://example.com/","width":1280}'),
    ...over,
  };
}

const wireTarget = (i: SignInput): string =>
  i.query === undefined ? i.path : `${i.path}?${new URLSearchParams(i.query as Record<string, string>).toString()}`;

function verify(
  signed: Record<string, string>,
  i: SignInput,
  creds: AwsCredentialIdentity,
  over: { method?: string; path?: string; body?: Buffer; now?: number } = {},
): VerifyResult {
  return verifySigV4({
    method: over.method ?? i.method,
    path: over.path ?? wireTarget(i),
    headers: signed,
    body: over.body ?? i.body,
    service: 'lambda',
    region: REGION,
    now: new Date(over.now ?? NOW),
    lookupKey: (id) =>
      id === creds.accessKeyId ? { secretAccessKey: creds.secretAccessKey, sessionToken: creds.sessionToken } : undefined,
  });
}

function ok(r: VerifyResult): asserts r is Extract<VerifyResult, { ok: true }> {
  assert.ok(r.ok, r.ok ? '' : `verification failed: ${r.reason}`);
}

function amzDate(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

const signerFor = (creds: AwsCredentialIdentity | CredentialSource, now = () => NOW) =>
  createSigner({ region: REGION, credentials: 'get' in creds ? creds : staticCredentials(creds), now });

for (const [what, creds] of [
  ['long-term keys', LONG_TERM],
  ['temporary keys with a session token', TEMPORARY],
] as const) {
  test(`signs a Lambda invoke with ${what}; the independent verifier accepts it`, async () => {
    const i = input();
    const signed = await signerFor(creds).sign(i);
    const r = verify(signed, i, creds);
    ok(r);
    assert.is(r.accessKeyId, creds.accessKeyId);
    // Every header the request carries is covered by the signature.
    for (const name of Object.keys(i.headers)) assert.ok(r.signedHeaders.includes(name), `${name} not signed`);
    assert.ok(r.signedHeaders.includes('x-amz-date'));
    assert.is(signed['x-amz-date'], amzDate(NOW));
    assert.match(signed['authorization']!, `Credential=${creds.accessKeyId}/20240517/us-west-2/lambda/aws4_request`);
    if (creds.sessionToken !== undefined) {
      assert.is(signed['x-amz-security-token'], creds.sessionToken);
      assert.ok(r.signedHeaders.includes('x-amz-security-token'));
    } else {
      assert.is(signed['x-amz-security-token'], undefined);
    }
    // The input's headers go out as given.
    for (const [name, value] of Object.entries(i.headers)) assert.is(signed[name], value);
  });
}

test('signs without a query, with an empty body, and with a host that has a port', async () => {
  for (const i of [
    input({ query: undefined }),
    input({ body: Buffer.alloc(0) }),
    input({ headers: { host: '127.0.0.1:8443', 'content-type': 'application/json' } }),
    input({ path: '/2015-03-31/functions/my-fn%3A%24LATEST/invocations', query: { Qualifier: '$LATEST' } }),
    input({ body: Buffer.from([0x00, 0xff, 0xfe, 0x80]) }),
  ]) {
    ok(verify(await signerFor(TEMPORARY).sign(i), i, TEMPORARY));
  }
});

test('the canonical URI encodes the wire path a second time (%3A → %253A)', async () => {
  const i = input();
  const signed = await signerFor(LONG_TERM).sign(i);
  // Treated as S3 (no second encoding) the same signature must not verify.
  const s3 = verifySigV4({
    method: 'POST', path: wireTarget(i), headers: signed, body: i.body, service: 'lambda', region: REGION,
    now: new Date(NOW), doubleEncodePath: false,
    lookupKey: () => ({ secretAccessKey: LONG_TERM.secretAccessKey }),
  });
  assert.not.ok(s3.ok);
});

// Tampering with anything signed must break verification.
const TAMPER: [string, (s: Record<string, string>) => Record<string, string>, { method?: string; path?: string; body?: Buffer }?][] = [
  ['host', (s) => ({ ...s, host: 'lambda.us-east-1.amazonaws.com' })],
  ['content-type', (s) => ({ ...s, 'content-type': 'text/plain' })],
  ['x-amz-invocation-type', (s) => ({ ...s, 'x-amz-invocation-type': 'Event' })],
  ['x-amz-log-type', (s) => ({ ...s, 'x-amz-log-type': 'None' })],
  ['x-amz-client-context', (s) => ({ ...s, 'x-amz-client-context': 'e30=' })],
  ['x-amz-date (one second later)', (s) => ({ ...s, 'x-amz-date': amzDate(NOW + 1000) })],
  ['x-amz-security-token', (s) => ({ ...s, 'x-amz-security-token': 'IQoJb3JpZ2luX2VjOTHER' })],
  ['signature', (s) => ({ ...s, authorization: s.authorization!.replace(/Signature=(.)/, (_, c) => `Signature=${c === '0' ? '1' : '0'}`) })],
  ['body (one byte)', (s) => s, { body: Buffer.from('{"url":"https://example.com/","width":1281}') }],
  ['body (empty)', (s) => s, { body: Buffer.alloc(0) }],
  ['path (another function)', (s) => s, { path: PATH.replace('my-fn', 'my-fo') + '?Qualifier=prod' }],
  ['path (%3A decoded to :)', (s) => s, { path: PATH.replace(/%3A/g, ':') + '?Qualifier=prod' }],
  ['query (another Qualifier)', (s) => s, { path: PATH + '?Qualifier=dev' }],
  ['query (Qualifier dropped)', (s) => s, { path: PATH }],
  ['method', (s) => s, { method: 'PUT' }],
];

for (const [what, edit, over] of TAMPER) {
  test(`tampering with ${what} fails verification`, async () => {
    const i = input();
    const signed = await signerFor(TEMPORARY).sign(i);
    ok(verify(signed, i, TEMPORARY));
    const r = verify(edit({ ...signed }), i, TEMPORARY, over);
    assert.not.ok(r.ok, `${what} was changed and the signature still verified`);
  });
}

test('verification fails with another secret key', async () => {
  const i = input();
  const signed = await signerFor(LONG_TERM).sign(i);
  assert.not.ok(verify(signed, i, { ...LONG_TERM, secretAccessKey: 'other' }).ok);
});

test('correctClock shifts x-amz-date by the server’s offset, and the result verifies at server time', async () => {
  for (const skewMs of [20 * 60_000, -20 * 60_000, 3_600_000, 1234]) {
    const signer = signerFor(LONG_TERM);
    assert.is(signer.clockOffsetMs, 0);
    signer.correctClock(new Date(NOW + skewMs));
    assert.is(signer.clockOffsetMs, skewMs);
    const i = input();
    const signed = await signer.sign(i);
    assert.is(signed['x-amz-date'], amzDate(NOW + skewMs));
    ok(verify(signed, i, LONG_TERM, { now: NOW + skewMs }));
    if (Math.abs(skewMs) > 15 * 60_000) assert.not.ok(verify(signed, i, LONG_TERM).ok, 'outside 15 minutes of local time');
  }
});

test('correctClock measures against the given instant; a second correction replaces the first', () => {
  const signer = signerFor(LONG_TERM);
  signer.correctClock(new Date(NOW + 5000), NOW - 2000);
  assert.is(signer.clockOffsetMs, 7000);
  signer.correctClock(new Date(NOW - 1000));
  assert.is(signer.clockOffsetMs, -1000);
});

test('correctClock ignores an invalid date', async () => {
  const signer = signerFor(LONG_TERM);
  signer.correctClock(new Date(NOW + 60_000));
  signer.correctClock(new Date('not a date'));
  assert.is(signer.clockOffsetMs, 60_000);
  assert.is((await signer.sign(input()))['x-amz-date'], amzDate(NOW + 60_000));
});

test('signing does not mutate its input, and returns a new headers object', async () => {
  const i = input();
  const before = JSON.stringify({ ...i, body: i.body.toString('hex') });
  const signed = await signerFor(TEMPORARY).sign(i);
  assert.is(JSON.stringify({ ...i, body: i.body.toString('hex') }), before);
  assert.is.not(signed, i.headers);
  assert.equal(Object.keys(i.headers).sort(), ['content-type', 'host', 'x-amz-client-context', 'x-amz-invocation-type', 'x-amz-log-type']);
  // Signing the same input twice gives the same answer: nothing left over from the first.
  assert.equal(await signerFor(TEMPORARY).sign(i), signed);
});

test('a client-sent date or authorization in the input is replaced, not signed as given', async () => {
  const i = input({
    headers: { ...input().headers, 'x-amz-date': '20000101T000000Z', authorization: 'AWS4-HMAC-SHA256 forged' },
  });
  const signed = await signerFor(LONG_TERM).sign(i);
  assert.is(signed['x-amz-date'], amzDate(NOW));
  assert.not.match(signed['authorization']!, 'forged');
  ok(verify(signed, i, LONG_TERM));
});

test('concurrent signs with different bodies each verify, and only with their own body', async () => {
  const signer = signerFor(TEMPORARY);
  const inputs = Array.from({ length: 25 }, (_, n) =>
    input({ body: Buffer.from(JSON.stringify({ n, pad: 'x'.repeat(n * 37) })), query: { Qualifier: String(n + 1) } }),
  );
  const signed = await Promise.all(inputs.map((i) => signer.sign(i)));
  for (let n = 0; n < inputs.length; n++) {
    ok(verify(signed[n]!, inputs[n]!, TEMPORARY));
    const other = inputs[(n + 1) % inputs.length]!;
    assert.not.ok(verify(signed[n]!, inputs[n]!, TEMPORARY, { body: other.body }).ok);
  }
  assert.is(new Set(signed.map((s) => s.authorization)).size, inputs.length);
});

test('credentials are read per signature: a rotated key is used at once', async () => {
  let current = LONG_TERM;
  const signer = signerFor({ get: async () => current });
  const i = input();
  ok(verify(await signer.sign(i), i, LONG_TERM));
  current = TEMPORARY;
  ok(verify(await signer.sign(i), i, TEMPORARY));
});

test('a credential failure rejects sign with CredentialsUnavailable (503), not a generic error', async () => {
  const source: CredentialSource = { get: () => Promise.reject(new CredentialsUnavailableError('no credentials')) };
  const err = await signerFor(source).sign(input()).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(err, CredentialsUnavailableError);
  assert.is((err as CredentialsUnavailableError).status, 503);
});

test.run();
