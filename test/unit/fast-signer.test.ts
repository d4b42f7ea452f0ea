// The fast signer must be indistinguishable from @smithy/signature-v4, the signer of
// record: the same headers, byte for byte, on AWS's SigV4 test vectors and on
// randomised Lambda requests; and the independent verifier must accept what it signs.
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { staticCredentials } from '../../src/credentials.ts';
import { canonicalPath, createFastSigner, fixedKeyHmac } from '../../src/fast-signer.ts';
import { invokeTarget, parseFunctionRef } from '../../src/route.ts';
import { createSigner } from '../../src/signer.ts';
import { verifySigV4 } from '../helpers/sigv4-verify.ts';

const FIXTURES = new URL('../fixtures/sigv4/', import.meta.url);
const read = (name: string, ext: string) => readFileSync(new URL(`${name}.${ext}`, FIXTURES), 'utf8');
const SUITE_KEY = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };
const SUITE_NOW = Date.parse('2015-08-30T12:36:00Z');

// Vectors whose requests fit a signer's input (one value per header name).
const VECTORS = ['get-vanilla', 'get-vanilla-query-order-key-case', 'get-utf8', 'get-space', 'get-header-value-trim', 'post-vanilla', 'post-header-key-sort', 'post-x-www-form-urlencoded', 'post-sts-header-before'];

function vectorInput(name: string) {
  const text = read(name, 'req');
  const blank = text.indexOf('\n\n');
  const head = blank < 0 ? text : text.slice(0, blank);
  const body = Buffer.from(blank < 0 ? '' : text.slice(blank + 2));
  const [line, ...fields] = head.split('\n');
  const method = line!.slice(0, line!.indexOf(' '));
  const target = line!.slice(method.length + 1, line!.lastIndexOf(' '));
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const query: Record<string, string> = {};
  if (q >= 0) for (const [k, v] of new URLSearchParams(target.slice(q + 1))) query[k] = v;
  const headers: Record<string, string> = {};
  let token: string | undefined;
  for (const f of fields) {
    const n = f.slice(0, f.indexOf(':')).toLowerCase();
    const v = f.slice(f.indexOf(':') + 1);
    if (n === 'x-amz-date') continue; // the signer adds it
    if (n === 'x-amz-security-token') token = v;
    else if (!(name === 'post-x-www-form-urlencoded' && n === 'content-length')) headers[n] = v; // its .authz leaves it unsigned
  }
  return { input: { method, path, query: q < 0 ? undefined : query, headers, body }, token };
}

for (const name of VECTORS) {
  test(`AWS vector ${name}: the fast signer's Authorization equals the suite's`, async () => {
    const { input, token } = vectorInput(name);
    const signer = createFastSigner({
      region: 'us-east-1',
      service: 'service',
      credentials: staticCredentials({ ...SUITE_KEY, sessionToken: token }),
      now: () => SUITE_NOW,
    });
    const signed = await signer.sign(input);
    assert.is(signed.authorization, read(name, 'authz').trim());
  });
}

// Randomised Lambda requests: every name form, qualifiers, optional headers, odd spacing.
const rnd = (n: number) => Math.floor(Math.random() * n);
const pick = <T>(xs: T[]): T => xs[rnd(xs.length)]!;
const NAMES = ['fn', 'my-function_2', 'a'.repeat(64), 'fn:prod', 'fn:$LATEST', 'fn:42', '123456789012:function:fn', '123456789012:function:fn:live', 'arn:aws:lambda:us-west-2:123456789012:function:fn', 'arn:aws-cn:lambda:cn-north-1:123456789012:function:x-y:v_1', 'arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:g'];
const VALUES = ['application/json', 'text/plain; charset=utf-8', '  padded   value  ', 'Event', 'RequestResponse', 'DryRun', 'Tail', 'eyJhIjoxfQ==', 'a\tb', 'one two three', 'no\u00a0break', ' em\u2003space ', '\ttab first', 'cr\r\nlf', 'trailing\t '];

function randomRequest() {
  const fn = parseFunctionRef(pick(NAMES));
  const qualifier = rnd(3) === 0 ? pick(['$LATEST', 'v1', '7', 'live_2']) : undefined;
  const target = invokeTarget(fn, qualifier);
  const body = rnd(5) === 0 ? Buffer.alloc(0) : randomBytes(rnd(3) === 0 ? 70_000 : rnd(300));
  const headers: Record<string, string> = { host: pick(['lambda.us-west-2.amazonaws.com', '127.0.0.1:8443', 'lambda.cn-north-1.amazonaws.com.cn']), 'content-length': String(body.length) };
  for (const h of ['content-type', 'x-amz-invocation-type', 'x-amz-log-type', 'x-amz-client-context']) if (rnd(2) === 0) headers[h] = pick(VALUES);
  return { method: 'POST', path: target.upstreamPath, query: qualifier === undefined ? undefined : { Qualifier: qualifier }, headers, body };
}

test('500 randomised Lambda requests: fast and smithy sign byte-identically, and the verifier agrees', async () => {
  for (let i = 0; i < 500; i++) {
    const at = Date.parse('2020-01-01T00:00:00Z') + rnd(10 * 365 * 86400) * 1000 + rnd(1000);
    const token = rnd(2) === 0 ? `IQoJ${randomBytes(24).toString('base64')}` : undefined;
    const creds = { accessKeyId: `AKID${rnd(1000)}`, secretAccessKey: randomBytes(30).toString('base64'), sessionToken: token };
    const source = staticCredentials(creds);
    const region = pick(['us-west-2', 'eu-central-1', 'cn-north-1']);
    const fast = createFastSigner({ region, credentials: source, now: () => at });
    const smithy = createSigner({ region, credentials: source, now: () => at });
    const input = randomRequest();
    const a = await fast.sign(input);
    const b = await smithy.sign(input);
    assert.equal(a, b, `request ${i}: ${JSON.stringify({ ...input, body: input.body.length })}`);
    assert.equal(fast.signNow(input), b, `request ${i}: signNow`);
    const wire = input.query === undefined ? input.path : `${input.path}?Qualifier=${encodeURIComponent(input.query.Qualifier!)}`;
    const v = verifySigV4({
      method: 'POST', path: wire, headers: a, body: input.body, service: 'lambda', region, now: new Date(at),
      lookupKey: (id) => (id === creds.accessKeyId ? creds : undefined),
    });
    assert.ok(v.ok, v.ok ? '' : `request ${i}: ${v.reason}`);
  }
});

test('headers outside the fast path (upper case, unsignable) are signed by smithy itself', async () => {
  const source = staticCredentials({ accessKeyId: 'AKID', secretAccessKey: 'secret' });
  const fast = createFastSigner({ region: 'us-west-2', credentials: source, now: () => 1_700_000_000_000 });
  const smithy = createSigner({ region: 'us-west-2', credentials: source, now: () => 1_700_000_000_000 });
  for (const extra of [{ 'Content-Type': 'x' }, { 'user-agent': 'ua' }, { 'x-amz-date': '20200101T000000Z' }, { 'proxy-x': '1' }]) {
    const input = { method: 'POST', path: '/2015-03-31/functions/fn/invocations', headers: { host: 'h', ...extra }, body: Buffer.from('{}') };
    assert.equal(await fast.sign(input), await smithy.sign(input), JSON.stringify(extra));
  }
});

test('signNow signs only what it can sign at once: credentials in hand, fast-path headers', async () => {
  const t = 1_700_000_000_000;
  const creds = { accessKeyId: 'AKID', secretAccessKey: 'secret' };
  const input = { method: 'POST', path: '/2015-03-31/functions/fn/invocations', headers: { host: 'h' }, body: Buffer.from('{}') };
  // No peek (a source that can only be awaited), or nothing in hand: undefined, never a guess.
  assert.is(createFastSigner({ region: 'us-west-2', credentials: { get: async () => creds }, now: () => t }).signNow(input), undefined);
  assert.is(createFastSigner({ region: 'us-west-2', credentials: { get: async () => creds, peek: () => undefined }, now: () => t }).signNow(input), undefined);
  const fast = createFastSigner({ region: 'us-west-2', credentials: staticCredentials(creds), now: () => t });
  const smithy = createSigner({ region: 'us-west-2', credentials: staticCredentials(creds), now: () => t });
  assert.equal(fast.signNow(input), await smithy.sign(input));
  // Headers smithy must sign: left to sign(), which hands them to smithy.
  assert.is(fast.signNow({ ...input, headers: { host: 'h', 'User-Agent': 'x' } }), undefined);
});

test('the signing clock follows correctClock', async () => {
  const source = staticCredentials({ accessKeyId: 'AKID', secretAccessKey: 'secret' });
  const t = Date.parse('2026-11-21T12:00:00Z');
  const fast = createFastSigner({ region: 'us-west-2', credentials: source, now: () => t });
  const input = { method: 'POST', path: '/2015-03-31/functions/fn/invocations', headers: { host: 'h' }, body: Buffer.alloc(0) };
  assert.is((await fast.sign(input))['x-amz-date'], '20261121T120000Z');
  fast.correctClock(new Date(t + 30 * 60_000), t);
  assert.is(fast.clockOffsetMs, 30 * 60_000);
  assert.is((await fast.sign(input))['x-amz-date'], '20261121T123000Z');
});

test('a new day or new credentials derive a new signing key', async () => {
  let t = Date.parse('2026-11-21T23:59:59Z');
  let creds = { accessKeyId: 'AKID1', secretAccessKey: 'one' };
  const source = { get: async () => creds };
  const fast = createFastSigner({ region: 'us-west-2', credentials: source, now: () => t });
  const smithy = createSigner({ region: 'us-west-2', credentials: source, now: () => t });
  const input = { method: 'POST', path: '/2015-03-31/functions/fn/invocations', headers: { host: 'h' }, body: Buffer.from('x') };
  for (const step of [() => {}, () => (t += 2000), () => (creds = { accessKeyId: 'AKID2', secretAccessKey: 'two' })]) {
    step();
    assert.equal(await fast.sign(input), await smithy.sign(input));
  }
});

test('canonical paths: normalised and encoded once more, as smithy does for non-S3 services', () => {
  const cases: [string, string][] = [
    ['/2015-03-31/functions/arn%3Aaws%3Alambda/invocations', '/2015-03-31/functions/arn%253Aaws%253Alambda/invocations'],
    ['/a/./b/../c/', '/a/c/'],
    ['//a//b', '/a/b'],
    ["/(x)!*'", '/%28x%29%21%2A%27'],
    ['/', '/'],
  ];
  for (const [path, expected] of cases) assert.is(canonicalPath(path), expected, path);
});

test('the fast signer does not modify its input', async () => {
  const source = staticCredentials({ accessKeyId: 'AKID', secretAccessKey: 'secret', sessionToken: 't' });
  const fast = createFastSigner({ region: 'us-west-2', credentials: source });
  const headers = { host: 'h', 'content-type': 'application/json' };
  await fast.sign({ method: 'POST', path: '/x', headers, body: Buffer.alloc(1) });
  assert.equal(headers, { host: 'h', 'content-type': 'application/json' });
});

test('fixedKeyHmac equals node:crypto HMAC-SHA256 for messages around its scratch size, reused', () => {
  for (const keyLength of [32, 16, 64, 100]) {
    const key = randomBytes(keyLength);
    const hmac = fixedKeyHmac(key);
    // 512 bytes fit the scratch buffer; past it the message takes another path. Each length
    // twice with different content, so that leftovers from a longer message would show.
    for (const length of [0, 1, 63, 64, 140, 511, 512, 513, 2000, 140, 1]) {
      for (let k = 0; k < 2; k++) {
        const message = randomBytes(length).toString('base64').slice(0, length);
        assert.is(hmac(message), createHmac('sha256', key).update(message).digest('hex'), `key ${keyLength} B, message ${length} B`);
      }
    }
  }
});

test('a body in parts signs exactly as the same bytes in one Buffer, with both signers', async () => {
  const credentials = staticCredentials({ accessKeyId: 'AKID', secretAccessKey: 'secret', sessionToken: 'tok' });
  const at = Date.UTC(2026, 10, 21, 12, 0, 0);
  const parts = [randomBytes(70_000), Buffer.alloc(0), randomBytes(3)];
  const input = (body: Buffer | Buffer[]) => ({
    method: 'POST',
    path: '/2015-03-31/functions/f/invocations',
    headers: { host: 'lambda.us-west-2.amazonaws.com', 'content-type': 'application/json', 'content-length': '70003' },
    body,
  });
  const fast = createFastSigner({ region: 'us-west-2', credentials, now: () => at });
  const smithy = createSigner({ region: 'us-west-2', credentials, now: () => at });
  const whole = await fast.sign(input(Buffer.concat(parts)));
  assert.equal(await fast.sign(input(parts)), whole);
  assert.equal(await smithy.sign(input(parts)), whole);
  // And the payload hash really is over every part.
  assert.not.equal(await fast.sign(input(parts.slice(0, 1))), whole);
});

test.run();
