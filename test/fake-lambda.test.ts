// The fake Lambda is the yardstick for the integration tests, so it is checked here with plain
// clients (node:http2, node:https, aws4, the SDK's own credential provider) before anything
// of the daemon's is pointed at it.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import http2 from 'node:http2';
import https from 'node:https';
import type { ConnectionOptions as TLSConnectionOptions, TLSSocket } from 'node:tls';
import { createHash } from 'node:crypto';
import aws4 from 'aws4';
import { fromHttp } from '@aws-sdk/credential-provider-http';
import { makeTestCA, type TestCA } from './helpers/tls.ts';
import { startFakeLambda, type FakeLambda, type FakeLambdaOptions } from './helpers/fake-lambda.ts';
import { startContainerCredentials } from './helpers/container-creds.ts';

const KEY = { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret-test-key' };
const ARN = 'arn:aws:lambda:us-west-2:123456789012:function:my-fn';
const invokePath = (fn: string, q = '') => `/2015-03-31/functions/${encodeURIComponent(fn)}/invocations${q}`;

let ca: TestCA;
let fake: FakeLambda;
const opened: { close(): Promise<void> }[] = [];

/** Fail instead of hanging: every wait in this file is bounded. */
function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms); });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

async function start(opts: Partial<FakeLambdaOptions> = {}): Promise<FakeLambda> {
  const f = await startFakeLambda({ tls: ca, ...opts });
  opened.push(f);
  return f;
}

interface Signed { path: string; headers: Record<string, string | string[]>; body: string }
function sign(f: FakeLambda, path: string, body = '{"hello":"world"}', creds: object = KEY, extra: Record<string, string | string[]> = {}): Signed {
  const req = aws4.sign({
    service: 'lambda', region: f.region, method: 'POST', host: `127.0.0.1:${f.port}`, path, body,
    headers: { 'content-type': 'application/json', ...extra },
  }, creds);
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(req.headers ?? {})) headers[k.toLowerCase()] = v as string | string[];
  return { path, headers, body };
}

interface Reply { status: number; headers: http2.IncomingHttpHeaders; body: Buffer; rstCode: number }
function h2post(session: http2.ClientHttp2Session, s: Signed): Promise<Reply> {
  const { host, ...rest } = s.headers;
  // HTTP/2 carries the host as :authority (RFC 9113 §8.3.1), and that is what aws4 signed.
  const stream = session.request({ ':method': 'POST', ':path': s.path, ':authority': host as string, ...rest });
  stream.end(s.body);
  return within(5000, new Promise((resolve) => {
    let status = 0, headers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => { headers = h; status = Number(h[':status']); });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => {});
    stream.on('close', () => resolve({ status, headers, body: Buffer.concat(chunks), rstCode: stream.rstCode ?? 0 }));
  }), `h2 POST ${s.path}`);
}

async function withSession<T>(f: FakeLambda, fn: (s: http2.ClientHttp2Session) => Promise<T>): Promise<T> {
  const session = http2.connect(f.origin, { ca: ca.ca });
  session.on('error', () => {});
  try { return await fn(session); } finally { session.destroy(); }
}

test.before(async () => {
  ca = await makeTestCA();
  fake = await start();
});

test.after(async () => {
  await Promise.all(opened.map((f) => f.close()));
  await ca?.cleanup();
});

test('a request signed by aws4 over HTTP/2 is verified and echoed', async () => {
  const body = '{"hello":"world"}';
  // A repeated header must reach the verifier as two values: SigV4 joins them with ','.
  const r = await withSession(fake, (s) => h2post(s, sign(fake, invokePath(ARN, '?Qualifier=%24LATEST'), body, KEY, { 'x-repeat': ['a', 'b'] })));
  assert.is(r.status, 200, r.body.toString());
  assert.is(r.headers['content-type'], 'application/json');
  assert.ok(r.headers['x-amzn-requestid'] && r.headers.date);
  const echo = JSON.parse(r.body.toString());
  assert.is(echo.functionName, ARN);
  assert.is(echo.qualifier, '$LATEST');
  assert.is(echo.bodyLength, body.length);
  assert.is(echo.bodySha256, createHash('sha256').update(body).digest('hex'));
  assert.is(echo.headers.authorization, undefined);
  assert.equal(echo.headers['x-repeat'], ['a', 'b']);
  const inv = fake.invocations.at(-1)!;
  assert.is(inv.verified, true);
  assert.is(inv.httpVersion, '2.0');
  assert.is(inv.authority, `127.0.0.1:${fake.port}`);
  assert.ok(inv.path.includes('%3A'), 'the raw path is recorded as it was on the wire');
});

test('a tampered request gets 403 InvalidSignatureException and lands in failures', async () => {
  const before = { ok: fake.invocations.length, bad: fake.failures.length };
  const signed = sign(fake, invokePath('my-fn'));
  // Same length as the signed body: a longer one would break content-length before the signature.
  const r = await withSession(fake, (s) => h2post(s, { ...signed, body: '{"hello":"WORLD"}' }));
  assert.is(r.status, 403);
  assert.is(r.headers['x-amzn-errortype'], 'InvalidSignatureException');
  assert.match(JSON.parse(r.body.toString()).message, /Canonical String for this request/);
  assert.is(fake.failures.length, before.bad + 1);
  assert.is(fake.invocations.length, before.ok, 'failures are not invocations');
  assert.is(fake.failures.at(-1)!.reason, 'signature: mismatch');
});

test('unknown path is 404, handler errors are 500', async () => {
  fake.on('throws', () => { throw new Error('kaboom'); });
  await withSession(fake, async (s) => {
    assert.is((await h2post(s, sign(fake, '/2015-03-31/functions/x'))).status, 404);
    const r = await h2post(s, sign(fake, invokePath('throws')));
    assert.is(r.status, 500);
    assert.is(r.headers['x-amzn-errortype'], 'ServiceException');
  });
});

test('handlers: slow chunked bodies, delays, and REFUSED_STREAM resets', async () => {
  fake.on('chunky', () => ({ status: 200, chunks: ['a', 'b', 'c'], chunkDelayMs: 30 }));
  fake.on('refuse', () => ({ status: 0, reset: 'refused' }));
  fake.on('slow', () => ({ status: 202, delayMs: 50, body: 'late' }));
  await withSession(fake, async (s) => {
    const t0 = Date.now();
    const chunky = await h2post(s, sign(fake, invokePath('chunky')));
    assert.is(chunky.body.toString(), 'abc');
    assert.ok(Date.now() - t0 >= 55, 'the chunks were paced');
    assert.is((await h2post(s, sign(fake, invokePath('refuse')))).rstCode, http2.constants.NGHTTP2_REFUSED_STREAM);
    const slow = await h2post(s, sign(fake, invokePath('slow')));
    assert.equal([slow.status, slow.body.toString()], [202, 'late']);
  });
});

test('a client cancelling mid-body ends the exchange; the fake keeps serving', async () => {
  const f = await start();
  f.on('drip', () => ({ status: 200, chunks: ['1', '2', '3', '4'], chunkDelayMs: 50 }));
  await withSession(f, async (s) => {
    const signed = sign(f, invokePath('drip'));
    const { host, ...rest } = signed.headers;
    const stream = s.request({ ':method': 'POST', ':path': signed.path, ':authority': host as string, ...rest });
    stream.end(signed.body);
    stream.on('error', () => {});
    await within(2000, new Promise((r) => stream.once('data', r)), 'first chunk');
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await within(2000, (async () => { while (f.inflight > 0) await new Promise((r) => setTimeout(r, 5)); })(), 'inflight back to 0');
    assert.is((await h2post(s, sign(f, invokePath('echo')))).status, 200);
  });
});

test('inflight and maxInflight count concurrent requests', async () => {
  const f = await start();
  f.setDefault(() => ({ status: 200, delayMs: 100, body: '{}' }));
  await withSession(f, (s) => Promise.all([1, 2, 3].map(() => h2post(s, sign(f, invokePath('fn'))))));
  assert.is(f.maxInflight, 3);
  assert.is(f.inflight, 0);
});

test('goawayEvery: GOAWAY(NO_ERROR, last stream) after the N-th response; the next session is new', async () => {
  const f = await start({ goawayEvery: 2 });
  await withSession(f, async (s) => {
    const goaway = new Promise<[number, number]>((resolve) => s.once('goaway', (code, last) => resolve([code, last])));
    assert.is((await h2post(s, sign(f, invokePath('a')))).status, 200);
    assert.is(f.goaways, 0);
    assert.is((await h2post(s, sign(f, invokePath('b')))).status, 200);
    assert.equal(await within(2000, goaway, 'GOAWAY'), [http2.constants.NGHTTP2_NO_ERROR, 3]);
    assert.is(f.goaways, 1);
  });
  await withSession(f, (s) => h2post(s, sign(f, invokePath('c'))));
  assert.is(f.sessions, 2);
});

test('http1Only negotiates http/1.1 and refuses h2', async () => {
  const f = await start({ http1Only: true });
  const s = sign(f, invokePath('fn'));
  const r = await within(5000, new Promise<{ version: string; alpn: string | false | null; status: number }>((resolve, reject) => {
    // ALPNProtocols goes through to tls.connect, though https.RequestOptions does not declare it.
    const options: https.RequestOptions & TLSConnectionOptions = {
      method: 'POST', headers: s.headers, ca: ca.ca, agent: false, ALPNProtocols: ['http/1.1'],
    };
    const req = https.request(`${f.origin}${s.path}`, options, (res) => {
      res.resume();
      res.on('end', () => resolve({ version: res.httpVersion, alpn: (res.socket as TLSSocket).alpnProtocol, status: res.statusCode! }));
    });
    req.on('error', reject);
    req.end(s.body);
  }), 'https request');
  assert.equal(r, { version: '1.1', alpn: 'http/1.1', status: 200 });
  assert.is(f.invocations[0]!.httpVersion, '1.1');
  const h2err = await within(5000, new Promise<Error>((resolve) => {
    const session = http2.connect(f.origin, { ca: ca.ca });
    session.on('error', resolve);
    session.on('connect', () => { session.destroy(); resolve(new Error('unexpectedly connected')); });
  }), 'h2 connect to http1Only');
  assert.not.match(h2err.message, /unexpectedly/);
});

test('close() is prompt with a slow request in flight', async () => {
  const f = await startFakeLambda({ tls: ca });
  f.setDefault(() => ({ status: 200, delayMs: 60_000, body: 'never' }));
  const session = http2.connect(f.origin, { ca: ca.ca });
  session.on('error', () => {});
  const pending = h2post(session, sign(f, invokePath('fn')));
  await within(2000, (async () => { while (f.inflight === 0) await new Promise((r) => setTimeout(r, 5)); })(), 'request to arrive');
  const t0 = Date.now();
  await within(2000, f.close(), 'close()');
  assert.ok(Date.now() - t0 < 500, `close took ${Date.now() - t0} ms`);
  assert.is.not((await pending).status, 200);
  session.destroy();
});

test('container credentials: the SDK provider accepts them, and the fake Lambda knows the key', async () => {
  const creds = await startContainerCredentials({ keys: fake.keys, ttlMs: 60 * 60_000 });
  opened.push(creds);
  const got = await within(5000, fromHttp({ awsContainerCredentialsFullUri: creds.url })(), 'fromHttp');
  assert.is(creds.issued, 1);
  assert.ok(got.sessionToken && got.expiration && got.expiration.getTime() > Date.now());
  assert.ok(fake.keys.has(got.accessKeyId));
  await withSession(fake, async (s) => {
    assert.is((await h2post(s, sign(fake, invokePath('fn'), '{}', got))).status, 200);
    const { 'x-amz-security-token': _t, ...noToken } = sign(fake, invokePath('fn'), '{}', got).headers;
    const r = await h2post(s, { path: invokePath('fn'), headers: noToken, body: '{}' });
    assert.is(r.status, 403);
    assert.match(fake.failures.at(-1)!.reason!, /x-amz-security-token: missing/);
  });
});

test.run();
