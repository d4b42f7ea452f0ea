// Through varnishd with the shipped vcl/lambda-sign.vcl: client → varnishd → the built CLI on
// a temporary socket → the signature-verifying fake Lambda. Bodies of every size and framing
// arrive signed, Varnish's own headers stay behind, and 64 clients at once all get answers.
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { useVarnishStack } from '../helpers/e2e.ts';
import { request } from '../helpers/varnish.ts';

const s = useVarnishStack(['--allow-function', 'e2e-*']);

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const noFailures = (): void => assert.equal(s.fake.failures.map((f) => f.reason), [], 'every signature verified');

test('a small POST through Varnish is signed, invoked, and answered', async () => {
  const before = s.fake.invocations.length;
  const body = JSON.stringify({ hello: 'varnish' });
  const res = await request(s.varnish.url, { path: '/lambda/e2e-echo', headers: { 'content-type': 'application/json' }, body });
  assert.is(res.status, 200, res.text());
  assert.ok(res.headers['x-varnish'], 'the answer came through Varnish');
  assert.is(res.headers['x-lambda-fallback'], undefined);
  noFailures();
  assert.is(s.fake.invocations.length, before + 1);
  const inv = s.fake.invocations[before]!;
  assert.ok(inv.verified);
  assert.is(inv.method, 'POST');
  assert.is(inv.functionName, 'e2e-echo');
  assert.is(inv.body.toString(), body);
  assert.is(inv.headers['content-type'], 'application/json');
  assert.is(res.json().bodySha256, sha256(body));
});

test('?Qualifier= in the public URL reaches Lambda as the Qualifier', async () => {
  const before = s.fake.invocations.length;
  const res = await request(s.varnish.url, { path: '/lambda/e2e-echo?Qualifier=live', body: '{}' });
  assert.is(res.status, 200, res.text());
  assert.is(s.fake.invocations[before]!.qualifier, 'live');
  noFailures();
});

test('a 5 MB POST arrives whole and signed', async () => {
  const before = s.fake.invocations.length;
  const body = randomBytes(5 * 1024 * 1024);
  const res = await request(s.varnish.url, {
    path: '/lambda/e2e-big',
    headers: { 'content-type': 'application/octet-stream' },
    body,
  });
  assert.is(res.status, 200, res.text());
  noFailures();
  const inv = s.fake.invocations[before]!;
  assert.is(inv.body.length, body.length);
  assert.is(res.json().bodySha256, sha256(body));
});

test('a chunked client body (no Content-Length) arrives whole and signed', async () => {
  const before = s.fake.invocations.length;
  const chunks = ['{"parts":[', '"one",', '"two",', `"${'x'.repeat(100_000)}"`, ']}'];
  const res = await request(s.varnish.url, {
    path: '/lambda/e2e-chunked',
    headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
    chunks,
  });
  assert.is(res.status, 200, res.text());
  noFailures();
  const inv = s.fake.invocations[before]!;
  assert.is(inv.body.toString(), chunks.join(''));
  assert.is(inv.headers['content-length'], String(Buffer.byteLength(chunks.join(''))), 'lambda-sign sends a length');
  assert.is(inv.headers['transfer-encoding'], undefined);
});

test('headers Varnish or the client add never reach Lambda', async () => {
  const before = s.fake.invocations.length;
  const res = await request(s.varnish.url, {
    path: '/lambda/e2e-headers',
    headers: {
      'content-type': 'application/json',
      'x-forwarded-for': '203.0.113.7',
      via: '1.1 some-proxy',
      cookie: 'session=secret',
      authorization: 'AWS4-HMAC-SHA256 Credential=AKIDEVIL/20200101/us-west-2/lambda/aws4_request, SignedHeaders=host, Signature=00',
      'x-amz-security-token': 'client-token',
      'x-amz-date': '20200101T000000Z',
      'x-amz-client-context': 'Y2xpZW50',
      'x-amz-invocation-type': 'Event',
      'x-custom': 'kept out',
    },
    body: '{}',
  });
  assert.is(res.status, 200, res.text());
  noFailures();
  const inv = s.fake.invocations[before]!;
  const names = Object.keys(inv.headers).filter((h) => !h.startsWith(':'));
  for (const h of ['x-varnish', 'via', 'x-forwarded-for', 'cookie', 'x-amz-security-token', 'x-custom', 'x-amz-client-context', 'x-amz-invocation-type']) {
    assert.not.ok(names.includes(h), `${h} reached Lambda: ${names.join(', ')}`);
  }
  // What is left is what lambda-sign builds and signs.
  const allowed = new Set(['host', 'content-type', 'content-length', 'x-amz-date', 'x-amz-content-sha256', 'authorization']);
  assert.equal(names.filter((h) => !allowed.has(h)), [], `unexpected headers at Lambda: ${names.join(', ')}`);
  assert.ok(String(inv.headers.authorization).includes('Credential=AKIDTEST/'), "lambda-sign's signature, not the client's");
  // Varnish did send X-Varnish to lambda-sign: its request log line carries the id.
  const line = await s.daemon.waitFor(/"msg":"request".*e2e-headers|e2e-headers.*"msg":"request"/);
  assert.match(String(JSON.parse(line).id), /^\d+$/);
});

test('invocations are never cached: the same POST twice invokes twice', async () => {
  const before = s.fake.invocations.length;
  for (let i = 0; i < 2; i++) {
    const res = await request(s.varnish.url, { path: '/lambda/e2e-twice', body: '{"same":true}' });
    assert.is(res.status, 200);
  }
  assert.is(s.fake.invocations.length, before + 2);
});

test('64 concurrent clients, 4 requests each: every answer is theirs, none fails', async () => {
  // Slow enough that all 64 overlap. (A handler's own sleep, not the fake's delayMs, whose
  // per-answer abort listener makes Node warn above ten at once.)
  s.fake.on('e2e-concurrent', async (inv) => {
    await sleep(150);
    return { status: 200, headers: { 'content-type': 'application/json' }, body: inv.body };
  });
  const before = s.fake.invocations.length;
  const peak = s.fake.maxInflight;
  const clients = Array.from({ length: 64 }, async (_, c) => {
    const results: string[] = [];
    for (let r = 0; r < 4; r++) {
      const body = JSON.stringify({ client: c, round: r, pad: 'p'.repeat(c * 100) });
      const res = await request(s.varnish.url, { path: '/lambda/e2e-concurrent', headers: { 'content-type': 'application/json' }, body });
      if (res.status !== 200) results.push(`client ${c} round ${r}: ${res.status} ${res.text().slice(0, 200)}`);
      else if (res.text() !== body) results.push(`client ${c} round ${r}: someone else's answer`);
    }
    return results;
  });
  const errors = (await Promise.all(clients)).flat();
  assert.equal(errors, []);
  assert.is(s.fake.invocations.length - before, 256);
  noFailures();
  assert.ok(s.fake.maxInflight >= Math.max(peak, 32), `only ${s.fake.maxInflight} invocations were in flight at once`);
  assert.not.ok(s.daemon.lines.some((l) => /"level":(40|50|60)/.test(l) && l.includes('e2e-concurrent')), 'no warning or error logged');
});

test('origin URLs are not sent to lambda-sign', async () => {
  const before = s.fake.invocations.length;
  const res = await request(s.varnish.url, { method: 'GET', path: '/index.html' });
  assert.is(res.status, 200);
  assert.is(res.text(), 'origin: GET /index.html');
  assert.is(s.fake.invocations.length, before);
});

test('GET on an invocation URL is 405, a malformed one 404; neither reaches lambda-sign', async () => {
  const before = s.fake.invocations.length;
  const get = await request(s.varnish.url, { method: 'GET', path: '/lambda/e2e-echo' });
  assert.is(get.status, 405);
  assert.is(get.headers.allow, 'POST');
  assert.is(get.json().error, 'MethodNotAllowed');
  const bad = await request(s.varnish.url, { path: '/lambda/../etc/passwd', body: '{}' });
  assert.is(bad.status, 404);
  assert.is(bad.json().error, 'NotFound');
  assert.is(s.fake.invocations.length, before);
});

test.run();
