// Through varnishd with the shipped vcl/url-mapping.vcl, its gateway rows: GET (with query
// strings) on a mapped URL becomes a Function URL event for the table's function, and the
// answer is cached per URL for its Cache-Control. (Its invoke rows: url-mapping.test.ts.)
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeTestCA, type TestCA } from '../helpers/tls.ts';
import { startFakeLambda, type FakeLambda, type Invocation } from '../helpers/fake-lambda.ts';
import type { DaemonProcess } from '../helpers/process.ts';
import { functionAnswer, spawnCli, stopAll, urlMappingVcl } from '../helpers/e2e.ts';
import { request, startVarnish, type HttpReply, type Varnish } from '../helpers/varnish.ts';

let ca: TestCA;
let fake: FakeLambda;
let daemon: DaemonProcess;
let varnish: Varnish;

// The allowlist the VCL's header comment recommends.
const ALLOW = ['image-resize', 'page-render', 'event-sink', 'product-catalog', 'search'].flatMap((f) => ['--allow-function', f]);

// Both gateway functions answer with what they saw; product-catalog gives its answers a
// lifetime, search gives none.
const reflect = (cacheControl: string | undefined) => (inv: Invocation) => {
  const ev = JSON.parse(inv.body.toString());
  return functionAnswer({
    statusCode: 200,
    headers: { 'content-type': 'application/json', ...(cacheControl === undefined ? {} : { 'cache-control': cacheControl }) },
    body: JSON.stringify({ fn: inv.functionName, rawPath: ev.rawPath, rawQueryString: ev.rawQueryString, n: fake.invocations.length }),
  });
};

test.before(async () => {
  ca = await makeTestCA();
  fake = await startFakeLambda({ tls: { cert: ca.cert, key: ca.key } });
  fake.on('product-catalog', reflect('public, max-age=60'));
  fake.on('search', reflect(undefined));
  daemon = spawnCli({ fake, ca, args: ALLOW });
  await daemon.waitFor(/"msg":"listening"/);
  varnish = await startVarnish({ vcl: urlMappingVcl(daemon.socketPath) });
  await varnish.waitHealthy('lambda_sign');
});

test.after(() => stopAll(() => varnish?.stop(), () => daemon?.cleanup(), () => fake?.close(), () => ca?.cleanup()));

const get = (path: string, headers: Record<string, string> = {}): Promise<HttpReply> =>
  request(varnish.url, { method: 'GET', path, headers });
const event = (inv: Invocation): any => JSON.parse(inv.body.toString());
const fromCache = (res: HttpReply): boolean => String(res.headers['x-varnish']).trim().split(/\s+/).length === 2;

test('GET with a query string reaches the function as rawQueryString and queryStringParameters', async () => {
  const before = fake.invocations.length;
  const res = await get('/api/products?color=red&color=blue&size=42&q=red%20shoes&empty=&flag', {
    host: 'Shop.Example.COM',
    'x-forwarded-for': '203.0.113.9',
  });
  assert.is(res.status, 200, res.text());
  assert.is(res.headers['content-type'], 'application/json');
  assert.is(fake.invocations.length, before + 1);
  const inv = fake.invocations[before]!;
  assert.ok(inv.verified);
  assert.equal(fake.failures.map((f) => f.reason), []);
  assert.is(inv.functionName, 'product-catalog');
  assert.is(inv.qualifier, undefined);
  assert.is(inv.path, '/2015-03-31/functions/product-catalog/invocations', "Lambda's Invoke path");
  const ev = event(inv);
  assert.is(ev.version, '2.0');
  assert.is(ev.rawPath, '/api/products');
  assert.is(ev.rawQueryString, 'color=red&color=blue&size=42&q=red%20shoes&empty=&flag');
  assert.equal(ev.queryStringParameters, { color: 'red,blue', size: '42', q: 'red shoes', empty: '', flag: '' });
  assert.is(ev.requestContext.http.method, 'GET');
  assert.is(ev.requestContext.http.path, '/api/products');
  assert.is(ev.requestContext.domainName, 'shop.example.com', 'Host lower-cased');
  assert.is(ev.requestContext.http.sourceIp, '127.0.0.1', 'client.ip, not a hop the client made up');
  assert.equal(res.json(), { fn: 'product-catalog', rawPath: '/api/products', rawQueryString: ev.rawQueryString, n: before + 1 });
});

test('rows match a path and what is below it (/api/products/…), or exactly (/api/search)', async () => {
  const before = fake.invocations.length;
  assert.is((await get('/api/products/sku-123?fields=name,price')).status, 200);
  assert.is((await get('/api/search?q=shoes')).status, 200);
  assert.is((await get('/api/search')).status, 200);
  assert.is(fake.invocations.length, before + 3);
  const [a, b, c] = fake.invocations.slice(before).map((inv) => [inv.functionName, event(inv)] as const);
  assert.is(a![0], 'product-catalog');
  assert.is(a![1].rawPath, '/api/products/sku-123');
  assert.equal(a![1].queryStringParameters, { fields: 'name,price' });
  assert.is(b![0], 'search');
  assert.equal(b![1].queryStringParameters, { q: 'shoes' });
  assert.is(c![1].rawQueryString, '');
  assert.is(c![1].queryStringParameters, undefined);
});

test('answers are cached per URL, query string included, for their Cache-Control', async () => {
  const before = fake.invocations.length;
  // A cookie reaching the function could personalise an answer that is then cached for all.
  const p1 = await get('/api/products?page=1', { cookie: 'session=abc' });
  const again = await get('/api/products?page=1', { cookie: 'session=xyz' });
  const p2 = await get('/api/products?page=2');
  assert.not.ok(fromCache(p1));
  assert.ok(fromCache(again), 'the same URL: from the cache (its cookie removed)');
  assert.is(again.text(), p1.text());
  assert.not.ok(fromCache(p2), 'another query string: another entry');
  assert.is(fake.invocations.length, before + 2);
  assert.is(event(fake.invocations[before]!).cookies, undefined, 'cookies never reach the function');
  assert.is(event(fake.invocations[before]!).headers.cookie, undefined);
  assert.is(p1.headers['cache-control'], 'public, max-age=60');
});

test('answers without Cache-Control are not stored', async () => {
  const before = fake.invocations.length;
  await get('/api/search?q=boots');
  const again = await get('/api/search?q=boots');
  assert.not.ok(fromCache(again));
  assert.is(fake.invocations.length, before + 2);
});

test('a request with Authorization is passed to the function, never stored', async () => {
  const before = fake.invocations.length;
  await get('/api/products?mine=1', { authorization: 'Bearer t0ken' });
  const again = await get('/api/products?mine=1', { authorization: 'Bearer t0ken' });
  assert.not.ok(fromCache(again));
  assert.is(fake.invocations.length, before + 2);
  assert.is(event(fake.invocations[before]!).headers.authorization, 'Bearer t0ken');
  // lambda-sign's own signature is on the invocation, not the client's token.
  assert.match(String(fake.invocations[before]!.headers.authorization), /^AWS4-HMAC-SHA256 Credential=AKIDTEST\//);
});

test("a client's X-Lambda-* headers choose neither the function, nor the payload, nor a raw answer", async () => {
  const before = fake.invocations.length;
  const res = await get('/api/products?client=choice', {
    'x-lambda-function': 'image-resize',
    'x-lambda-payload': '{"evil":true}',
    'x-lambda-response': 'raw',
    'x-lambda-sign-gateway': 'search',
  });
  assert.is(res.status, 200, res.text());
  assert.is(fake.invocations.length, before + 1);
  const inv = fake.invocations[before]!;
  assert.is(inv.functionName, 'product-catalog', "the table's function");
  const ev = event(inv);
  assert.is(ev.version, '2.0', 'an event, not the client payload');
  assert.is(ev.rawQueryString, 'client=choice');
  for (const h of Object.keys(ev.headers)) assert.not.match(h, /^x-lambda-/, `${h} reached the function`);
  // Decoded (http): the function's body, not Lambda's {"statusCode":…} answer.
  assert.is(res.json().fn, 'product-catalog');
});

test("on an unmapped URL, a client's X-Lambda-Function reaches nothing: 404", async () => {
  const before = fake.invocations.length;
  for (const path of ['/', '/api/productsx?a=1', '/products', '/api/search/x', '/api/searches?q=1', '/healthz']) {
    const res = await get(path, { 'x-lambda-function': 'product-catalog' });
    assert.is(res.status, 404, path);
    assert.equal(res.json(), { error: 'NotFound', message: 'no function is mapped to this URL' }, "Varnish's answer");
    assert.is(res.headers['x-lambda-sign-error'], undefined, 'not an answer from lambda-sign');
  }
  assert.is(fake.invocations.length, before);
});

test('a gateway row with another method is 405 (Allow: GET, HEAD) and reaches nothing', async () => {
  const before = fake.invocations.length;
  for (const method of ['POST', 'DELETE', 'PURGE']) {
    const res = await request(varnish.url, { method, path: '/api/products?x=1', body: '{}' });
    assert.is(res.status, 405, method);
    assert.is(res.headers.allow, 'GET, HEAD');
    assert.equal(res.json(), { error: 'MethodNotAllowed', message: 'use GET' });
  }
  assert.is(fake.invocations.length, before);
});

test('HEAD on a gateway row is answered from the GET entry', async () => {
  const before = fake.invocations.length;
  await get('/api/products?head=1');
  const res = await request(varnish.url, { method: 'HEAD', path: '/api/products?head=1' });
  assert.is(res.status, 200);
  assert.ok(fromCache(res));
  assert.is(fake.invocations.length, before + 1);
});

test('invoke rows are unchanged: POST /api/render is a raw invocation, never cached, whatever X-Lambda-* the client sends', async () => {
  const before = fake.invocations.length;
  const spoof = { 'x-lambda-function': 'search', 'x-lambda-sign-gateway': 'search', 'x-lambda-response': 'raw' };
  for (let i = 0; i < 2; i++) {
    const res = await request(varnish.url, { path: '/api/render?x=1', headers: { 'content-type': 'application/json', ...spoof }, body: '{"raw":true}' });
    assert.is(res.status, 200, res.text());
  }
  assert.is(fake.invocations.length, before + 2);
  const inv = fake.invocations[before]!;
  assert.is(inv.functionName, 'page-render');
  assert.is(inv.body.toString(), '{"raw":true}', 'the body is the payload, not an event');
});

test.run();
