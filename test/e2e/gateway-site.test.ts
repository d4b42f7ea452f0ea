// Through varnishd with the shipped vcl/site.vcl: every page answered by the function "site"
// in gateway mode, cached by Varnish for the function's Cache-Control, cookies removed from
// anonymous requests and passed with session ones, and no client able to choose the
// function, the payload or the answer's decoding.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeTestCA, type TestCA } from '../helpers/tls.ts';
import { startFakeLambda, type FakeLambda, type Invocation } from '../helpers/fake-lambda.ts';
import type { DaemonProcess } from '../helpers/process.ts';
import { functionAnswer, siteVcl, spawnCli, stopAll } from '../helpers/e2e.ts';
import { request, startVarnish, type HttpReply, type Varnish } from '../helpers/varnish.ts';

let ca: TestCA;
let fake: FakeLambda;
let daemon: DaemonProcess;
let varnish: Varnish;

// "screenshot" is allowed too, so that a client's X-Lambda-Function leaking through would
// reach it rather than be refused by the allowlist.
const ALLOW = ['site', 'screenshot'].flatMap((f) => ['--allow-function', f]);

// What the function answers, by path: a lifetime, none, a refusal to be stored, a cookie.
const CACHE_CONTROL: Record<string, string | undefined> = {
  '/no-store': 'no-store',
  '/private': 'private, max-age=60',
  '/no-lifetime': undefined,
  '/sets-cookie': 'public, max-age=60',
};

test.before(async () => {
  ca = await makeTestCA();
  fake = await startFakeLambda({ tls: { cert: ca.cert, key: ca.key } });
  let n = 0;
  const site = (inv: Invocation) => {
    const ev = JSON.parse(inv.body.toString());
    const path: string = ev.rawPath;
    const cc = path in CACHE_CONTROL ? CACHE_CONTROL[path] : 'public, max-age=60';
    return functionAnswer({
      statusCode: 200,
      headers: { 'content-type': 'text/html; charset=utf-8', ...(cc === undefined ? {} : { 'cache-control': cc }) },
      cookies: path === '/sets-cookie' ? ['csrf=abc; Path=/; HttpOnly'] : undefined,
      body: `<p>${ev.requestContext.http.method} ${path} #${++n}</p>`,
    });
  };
  fake.on('site', site);
  fake.on('screenshot', () => functionAnswer({ statusCode: 200, body: 'the wrong function' }));
  daemon = spawnCli({ fake, ca, args: ALLOW });
  await daemon.waitFor(/"msg":"listening"/);
  varnish = await startVarnish({ vcl: siteVcl(daemon.socketPath) });
  await varnish.waitHealthy('lambda_sign');
});

test.after(() => stopAll(() => varnish?.stop(), () => daemon?.cleanup(), () => fake?.close(), () => ca?.cleanup()));

const get = (path: string, headers: Record<string, string> = {}): Promise<HttpReply> =>
  request(varnish.url, { method: 'GET', path, headers });
const event = (inv: Invocation): any => JSON.parse(inv.body.toString());
/** X-Varnish holds two transaction ids on a cache hit, one otherwise. */
const fromCache = (res: HttpReply): boolean => String(res.headers['x-varnish']).trim().split(/\s+/).length === 2;
const noFailures = (): void => assert.equal(fake.failures.map((f) => f.reason), [], 'every signature verified');

test('a page is invoked once, then served from the cache', async () => {
  const before = fake.invocations.length;
  const first = await get('/about?lang=en', { 'user-agent': 'e2e/1', 'x-forwarded-for': '203.0.113.9' });
  assert.is(first.status, 200, first.text());
  assert.is(first.headers['content-type'], 'text/html; charset=utf-8');
  assert.is(first.headers['cache-control'], 'public, max-age=60');
  assert.not.ok(fromCache(first));
  const second = await get('/about?lang=en');
  assert.is(second.status, 200);
  assert.ok(fromCache(second), `X-Varnish: ${second.headers['x-varnish']}`);
  assert.is(second.text(), first.text(), 'the same page');
  assert.is(fake.invocations.length, before + 1, 'one invocation for two requests');
  noFailures();

  const inv = fake.invocations[before]!;
  assert.ok(inv.verified);
  assert.is(inv.functionName, 'site');
  const ev = event(inv);
  assert.is(ev.version, '2.0');
  assert.is(ev.rawPath, '/about');
  assert.is(ev.rawQueryString, 'lang=en');
  assert.equal(ev.queryStringParameters, { lang: 'en' });
  assert.is(ev.requestContext.http.method, 'GET');
  assert.is(ev.headers['user-agent'], 'e2e/1');
  assert.is(ev.requestContext.domainName, '127.0.0.1');
  assert.is(ev.requestContext.http.sourceIp, '127.0.0.1', 'client.ip, not a hop the client made up');
  assert.is(ev.headers['x-forwarded-for'], '127.0.0.1');
});

test('HEAD is answered from the same cache entry', async () => {
  const before = fake.invocations.length;
  await get('/head-me');
  const res = await request(varnish.url, { method: 'HEAD', path: '/head-me' });
  assert.is(res.status, 200);
  assert.ok(fromCache(res));
  assert.is(res.body.length, 0);
  assert.is(fake.invocations.length, before + 1);
});

test('anonymous cookies are removed: the page is cached and the function sees none', async () => {
  const before = fake.invocations.length;
  const a = await get('/pricing', { cookie: '_ga=GA1.1.1; consent=yes' });
  const b = await get('/pricing', { cookie: 'theme=dark' });
  assert.is(a.status, 200);
  assert.ok(fromCache(b));
  assert.is(b.text(), a.text());
  assert.is(fake.invocations.length, before + 1);
  const ev = event(fake.invocations[before]!);
  assert.is(ev.cookies, undefined);
  assert.is(ev.headers.cookie, undefined);
});

test('a session cookie is passed: every request reaches the function, with its cookies', async () => {
  await get('/dashboard'); // an anonymous copy in the cache, which a session must never get
  const before = fake.invocations.length;
  const a = await get('/dashboard', { cookie: '_ga=GA1.1.1; session=s3cr3t' });
  const b = await get('/dashboard', { cookie: 'session=s3cr3t' });
  assert.is(a.status, 200);
  assert.not.ok(fromCache(a));
  assert.not.ok(fromCache(b));
  assert.is.not(a.text(), b.text(), 'two renderings');
  assert.is(fake.invocations.length, before + 2);
  assert.equal(event(fake.invocations[before]!).cookies, ['_ga=GA1.1.1', 'session=s3cr3t']);
  assert.equal(event(fake.invocations[before + 1]!).cookies, ['session=s3cr3t']);
  // A cookie whose name merely ends in "session" is not a session.
  const c = await get('/dashboard', { cookie: 'nosession=1' });
  assert.ok(fromCache(c));
});

test('/account, /login, /logout and /admin are always passed, with cookies', async () => {
  for (const path of ['/account', '/login?next=/', '/logout', '/admin/users']) {
    const before = fake.invocations.length;
    await get(path, { cookie: 'csrf=abc' });
    await get(path, { cookie: 'csrf=abc' });
    assert.is(fake.invocations.length, before + 2, path);
    assert.equal(event(fake.invocations[before]!).cookies, ['csrf=abc'], path);
  }
});

for (const path of Object.keys(CACHE_CONTROL)) {
  test(`a page answered with ${CACHE_CONTROL[path] ?? 'no Cache-Control'}${path === '/sets-cookie' ? ' and Set-Cookie' : ''} is not stored`, async () => {
    const before = fake.invocations.length;
    const a = await get(path);
    const b = await get(path);
    assert.is(a.status, 200);
    assert.not.ok(fromCache(b));
    assert.is(fake.invocations.length, before + 2);
    if (path === '/sets-cookie') assert.equal(b.headers['set-cookie'], ['csrf=abc; Path=/; HttpOnly']);
  });
}

test('POST is passed to the function with its body and cookies', async () => {
  const before = fake.invocations.length;
  const body = 'name=Ada&message=h%C3%A9llo';
  const res = await request(varnish.url, {
    method: 'POST',
    path: '/contact',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: 'csrf=abc' },
    body,
  });
  assert.is(res.status, 200, res.text());
  assert.match(res.text(), /^<p>POST \/contact #\d+<\/p>$/);
  assert.is(fake.invocations.length, before + 1);
  const ev = event(fake.invocations[before]!);
  assert.is(ev.requestContext.http.method, 'POST');
  assert.is(ev.body, body);
  assert.is(ev.isBase64Encoded, false);
  assert.equal(ev.cookies, ['csrf=abc']);
});

test("a client's X-Lambda-* headers choose neither the function, nor the payload, nor a raw answer", async () => {
  const before = fake.invocations.length;
  const res = await get('/client-choice', {
    'x-lambda-function': 'screenshot',
    'x-lambda-payload': '{"url":"http://169.254.169.254/"}',
    'x-lambda-response': 'raw',
  });
  assert.is(res.status, 200, res.text());
  assert.is(fake.invocations.length, before + 1);
  const inv = fake.invocations[before]!;
  assert.is(inv.functionName, 'site', "the VCL's function");
  const ev = event(inv);
  assert.is(ev.version, '2.0', 'an event, not the client payload');
  assert.is(ev.rawPath, '/client-choice');
  for (const h of Object.keys(ev.headers)) assert.not.match(h, /^x-lambda-/, `${h} reached the function`);
  // Decoded (http), not Lambda's raw answer.
  assert.is(res.headers['content-type'], 'text/html; charset=utf-8');
  assert.match(res.text(), /^<p>GET \/client-choice #\d+<\/p>$/);
});

test('other methods are 405 and never piped to lambda-sign', async () => {
  const before = fake.invocations.length;
  for (const method of ['PURGE', 'PROPFIND', 'BREW']) {
    const res = await request(varnish.url, { method, path: '/about' });
    assert.is(res.status, 405, method);
    assert.is(res.headers.allow, 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS');
    assert.is(res.headers['x-lambda-sign-error'], undefined, "Varnish's answer, not lambda-sign's");
  }
  assert.is(fake.invocations.length, before);
});

test.run();
