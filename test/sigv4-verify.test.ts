// The fake Lambda trusts this verifier to judge the daemon's signatures, so the verifier is
// itself checked against AWS's published vectors, against a second signer (aws4), and for
// each way a signature can be wrong.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import aws4 from 'aws4';
import { buildCanonicalRequest, verifySigV4, type VerifyInput } from './helpers/sigv4-verify.ts';

const FIXTURES = new URL('./fixtures/sigv4/', import.meta.url);
const SUITE_KEY = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
const SUITE_TOKEN_VECTOR = 'post-sts-header-before';
const SUITE_NOW = new Date('2015-08-30T12:36:00Z');
const VECTORS = [
  'get-vanilla', 'get-vanilla-query-order-key-case', 'get-utf8', 'get-space', 'get-header-key-duplicate',
  'get-header-value-trim', 'post-vanilla', 'post-header-key-sort', 'post-x-www-form-urlencoded', SUITE_TOKEN_VECTOR,
];

type Headers = Record<string, string | string[]>;
const read = (name: string, ext: string) => readFileSync(new URL(`${name}.${ext}`, FIXTURES), 'utf8');

// A .req file is an HTTP/1.1 message with '\n' line ends. The target may hold a space
// ('GET /example space/ HTTP/1.1'), so the method is the first word and the version the last.
function parseReq(text: string) {
  const blank = text.indexOf('\n\n');
  const head = blank < 0 ? text : text.slice(0, blank);
  const body = blank < 0 ? '' : text.slice(blank + 2);
  const [line, ...fields] = head.split('\n');
  const method = line!.slice(0, line!.indexOf(' '));
  const path = line!.slice(method.length + 1, line!.lastIndexOf(' '));
  const headers: Headers = {};
  for (const f of fields) {
    const name = f.slice(0, f.indexOf(':')).toLowerCase();
    const value = f.slice(f.indexOf(':') + 1);
    const prev = headers[name];
    headers[name] = prev === undefined ? value : [...(Array.isArray(prev) ? prev : [prev]), value];
  }
  return { method, path, headers, body: Buffer.from(body) };
}

function suiteInput(name: string, over: Partial<VerifyInput> = {}): VerifyInput {
  const req = parseReq(read(name, 'req'));
  const token = name === SUITE_TOKEN_VECTOR ? req.headers['x-amz-security-token'] as string : undefined;
  return {
    ...req,
    headers: { ...req.headers, authorization: read(name, 'authz') },
    service: 'service', region: 'us-east-1', now: SUITE_NOW,
    lookupKey: (id) => (id === SUITE_KEY.accessKeyId ? { secretAccessKey: SUITE_KEY.secretAccessKey, sessionToken: token } : undefined),
    ...over,
  };
}

for (const name of VECTORS) {
  test(`AWS vector ${name}: signature verifies`, () => {
    const r = verifySigV4(suiteInput(name));
    assert.ok(r.ok, r.ok ? '' : r.reason);
    assert.is(r.ok && r.accessKeyId, 'AKIDEXAMPLE');
  });

  test(`AWS vector ${name}: canonical request matches .creq`, () => {
    const creq = read(name, 'creq');
    const lines = creq.split('\n');
    const req = parseReq(read(name, 'req'));
    const signedHeaders = lines.at(-2)!.split(';');
    const payloadHash = lines.at(-1)!;
    if (name === 'post-x-www-form-urlencoded') {
      // The suite's .creq signs content-length while its .authz (checked above) does not, so
      // compare the rest: the header lines, the order, the form body's hash.
      const drop = (s: string) => s.replace('content-length:13\n', '').replace('content-length;', '');
      const built = buildCanonicalRequest({ ...req, signedHeaders: signedHeaders.filter((h) => h !== 'content-length'), payloadHash });
      assert.is(built, drop(creq));
      return;
    }
    assert.is(buildCanonicalRequest({ ...req, signedHeaders, payloadHash }), creq);
  });
}

// The verifier's own tests: one way of being wrong each, on a Lambda-shaped request.
const LAMBDA_KEY = { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret-test-key' };
const ARN_PATH = '/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-west-2%3A123456789012%3Afunction%3Amy-fn/invocations';

interface SignOpts { path?: string; body?: string; key?: typeof LAMBDA_KEY & { sessionToken?: string }; region?: string; service?: string; headers?: Headers }
function signLambda(o: SignOpts = {}) {
  const key = o.key ?? LAMBDA_KEY;
  const req = aws4.sign({
    service: o.service ?? 'lambda', region: o.region ?? 'us-west-2', method: 'POST',
    host: 'lambda.us-west-2.amazonaws.com', path: o.path ?? `${ARN_PATH}?Qualifier=%24LATEST`,
    headers: { 'content-type': 'application/json', ...o.headers }, body: o.body ?? '{"hello":"world"}',
  }, key);
  const headers: Headers = {};
  for (const [k, v] of Object.entries(req.headers ?? {})) headers[k.toLowerCase()] = String(v);
  return { method: req.method!, path: req.path!, headers, body: Buffer.from(String(req.body ?? '')) };
}

const keys = new Map<string, { secretAccessKey: string; sessionToken?: string }>([[LAMBDA_KEY.accessKeyId, LAMBDA_KEY]]);
const lambdaInput = (req: ReturnType<typeof signLambda>, over: Partial<VerifyInput> = {}): VerifyInput => ({
  ...req, service: 'lambda', region: 'us-west-2', lookupKey: (id) => keys.get(id), ...over,
});
const failsWith = (input: VerifyInput, pattern: RegExp) => {
  const r = verifySigV4(input);
  assert.not.ok(r.ok, 'expected a failure');
  if (!r.ok) assert.match(r.reason, pattern);
};

// aws4 (like the SDKs) encodes each path segment as it is on the wire for every service but S3,
// so '%3A' in an ARN is signed as '%253A' — the verifier must agree, or real Lambda would not.
test('aws4 cross-check: Lambda invoke of a full ARN with a qualifier verifies', () => {
  const req = signLambda();
  assert.ok(req.path.includes('%3A'), 'the path on the wire keeps %3A');
  const r = verifySigV4(lambdaInput(req));
  assert.ok(r.ok, r.ok ? '' : r.reason);
  assert.ok(r.ok && r.signedHeaders.includes('content-type'));
});

test('aws4 cross-check: plain name, partial ARN, empty body, binary body', () => {
  for (const o of [
    { path: '/2015-03-31/functions/my-function/invocations' },
    { path: '/2015-03-31/functions/123456789012%3Afunction%3Amy-fn/invocations?Qualifier=prod' },
    { body: '' },
    { body: Buffer.from([0, 255, 128, 10]).toString('latin1') },
  ]) {
    const r = verifySigV4(lambdaInput(signLambda(o)));
    assert.ok(r.ok, `${JSON.stringify(o)}: ${r.ok ? '' : r.reason}`);
  }
});

test('aws4 cross-check: session credentials verify, with the token signed', () => {
  const temp = { accessKeyId: 'ASIATEMP', secretAccessKey: 'temp-secret', sessionToken: 'token/with+chars==' };
  keys.set(temp.accessKeyId, temp);
  const r = verifySigV4(lambdaInput(signLambda({ key: temp })));
  assert.ok(r.ok && r.signedHeaders.includes('x-amz-security-token'), r.ok ? '' : r.reason);
});

test('single-encoding the ARN path (the S3 rule) does not match a Lambda signature', () => {
  failsWith(lambdaInput(signLambda(), { doubleEncodePath: false }), /^signature: mismatch/);
});

test('rejects a tampered body', () => {
  failsWith(lambdaInput({ ...signLambda(), body: Buffer.from('{"hello":"mallory"}') }), /^signature: mismatch/);
});

test('rejects a wrong secret', () => {
  failsWith(lambdaInput(signLambda({ key: { ...LAMBDA_KEY, secretAccessKey: 'wrong' } })), /^signature: mismatch/);
});

test('rejects an unknown access key id', () => {
  failsWith(lambdaInput(signLambda({ key: { ...LAMBDA_KEY, accessKeyId: 'AKIDNOBODY' } })), /unknown access key id 'AKIDNOBODY'/);
});

test('rejects when host is not signed', () => {
  const req = signLambda();
  const auth = (req.headers.authorization as string).replace(/SignedHeaders=([^,]*)/, (_, h: string) =>
    'SignedHeaders=' + h.split(';').filter((x) => x !== 'host').join(';'));
  failsWith(lambdaInput({ ...req, headers: { ...req.headers, authorization: auth } }), /'host' is not signed/);
});

test('uses :authority for host on HTTP/2, and fails when it differs from what was signed', () => {
  const req = signLambda();
  const { host, ...rest } = req.headers;
  assert.ok(verifySigV4(lambdaInput({ ...req, headers: { ...rest, ':authority': host } })).ok);
  failsWith(lambdaInput({ ...req, headers: { ...rest, ':authority': 'evil.example' } }), /^signature: mismatch/);
});

test('rejects an expired or future x-amz-date (more than 15 minutes off)', () => {
  failsWith(suiteInput('get-vanilla', { now: undefined }), /x-amz-date: 20150830T123600Z is \d+s earlier .*signature expired/);
  failsWith(suiteInput('get-vanilla', { now: new Date('2015-08-30T12:20:00Z') }), /later than the server clock/);
  assert.ok(verifySigV4(suiteInput('get-vanilla', { now: new Date('2015-08-30T12:50:00Z') })).ok, 'within 15 minutes');
});

test('rejects a session key request without its token, or with the wrong one', () => {
  const input = suiteInput(SUITE_TOKEN_VECTOR);
  const { 'x-amz-security-token': _token, ...noToken } = input.headers;
  failsWith({ ...input, headers: noToken }, /x-amz-security-token: missing/);
  failsWith({ ...input, headers: { ...input.headers, 'x-amz-security-token': 'other' } }, /does not match/);
});

test('rejects a token that is present but not signed (post-sts-header-after)', () => {
  const input = suiteInput('post-vanilla');
  const token = 'AQoDYXdzEPT//////////wEXAMPLE';
  failsWith({ ...input, headers: { ...input.headers, 'x-amz-security-token': token },
    lookupKey: () => ({ secretAccessKey: SUITE_KEY.secretAccessKey, sessionToken: token }) }, /present but not signed/);
});

test('rejects a scope with the wrong region, service or day', () => {
  failsWith(lambdaInput(signLambda({ region: 'eu-west-1' })), /region 'eu-west-1', expected 'us-west-2'/);
  failsWith(lambdaInput(signLambda({ service: 'execute-api' })), /service 'execute-api', expected 'lambda'/);
  failsWith(suiteInput('get-vanilla', { headers: { ...suiteInput('get-vanilla').headers,
    authorization: read('get-vanilla', 'authz').replace('/20150830/', '/20150831/') } }), /date 20150831 is not the day/);
});

test('checks x-amz-content-sha256 against the body when present', () => {
  const body = '{"a":1}';
  const good = createHash('sha256').update(body).digest('hex');
  assert.ok(verifySigV4(lambdaInput(signLambda({ body, headers: { 'x-amz-content-sha256': good } }))).ok);
  const req = signLambda({ body, headers: { 'x-amz-content-sha256': good } });
  failsWith(lambdaInput({ ...req, body: Buffer.from('{"a":2}') }), /x-amz-content-sha256: .* not the SHA-256/);
});

test('never throws on garbage', () => {
  const base = lambdaInput(signLambda());
  const cases: [Partial<VerifyInput>, RegExp][] = [
    [{ headers: {} }, /authorization: header missing/],
    [{ headers: { ...base.headers, authorization: 'Basic Zm9vOmJhcg==' } }, /algorithm 'Basic'/],
    [{ headers: { ...base.headers, authorization: 'AWS4-HMAC-SHA256 garbage' } }, /no Credential= field/],
    [{ headers: { ...base.headers, authorization: ['a', 'b'] } }, /appears 2 times/],
    [{ headers: { ...base.headers, 'x-amz-date': 'yesterday' } }, /not YYYYMMDDTHHMMSSZ/],
    [{ path: 'no-slash' }, /does not start with '\/'/],
    [{ path: '/a?x=%zz' }, /malformed percent-encoding/],
    [{ path: '/\ud800' }, /^verifier: unexpected input|^signature/],
    [{ lookupKey: () => { throw new Error('boom'); } }, /verifier: unexpected input \(boom\)/],
  ];
  for (const [over, re] of cases) failsWith({ ...base, ...over }, re);
});

test.run();
