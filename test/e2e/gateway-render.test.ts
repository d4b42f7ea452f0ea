// Through varnishd with the shipped vcl/render.vcl: GET /render/<url> invokes "screenshot"
// with a JSON payload built in VCL (X-Lambda-Payload), the PNG it answers arrives byte for
// byte and is cached for its Cache-Control, and addresses that could break out of the JSON
// string (VCL has no JSON escaper) are refused with 400 before anything is sent.
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeTestCA, type TestCA } from '../helpers/tls.ts';
import { startFakeLambda, type FakeLambda } from '../helpers/fake-lambda.ts';
import type { DaemonProcess } from '../helpers/process.ts';
import { functionAnswer, renderVcl, spawnCli, stopAll } from '../helpers/e2e.ts';
import { request, startVarnish, type HttpReply, type Varnish } from '../helpers/varnish.ts';

let ca: TestCA;
let fake: FakeLambda;
let daemon: DaemonProcess;
let varnish: Varnish;

// "site" is allowed too, so that a client's X-Lambda-Function leaking through would reach
// it rather than be refused by the allowlist.
const ALLOW = ['screenshot', 'site'].flatMap((f) => ['--allow-function', f]);

// A PNG signature and IHDR chunk start, then every byte value: any text decoding on the way
// (UTF-8, Latin-1, a stray newline conversion) would change it.
const PNG = Buffer.concat([
  Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'),
  Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
]);

test.before(async () => {
  ca = await makeTestCA();
  fake = await startFakeLambda({ tls: { cert: ca.cert, key: ca.key } });
  fake.on('screenshot', (inv) => {
    const { url } = JSON.parse(inv.body.toString()) as { url: string };
    return functionAnswer({
      statusCode: 200,
      // One short-lived host, to see the lifetime come from the answer.
      headers: { 'content-type': 'image/png', 'cache-control': url.startsWith('https://ttl1.example/') ? 'max-age=1' : 'public, max-age=3600' },
      isBase64Encoded: true,
      body: PNG.toString('base64'),
    });
  });
  fake.on('site', () => functionAnswer({ statusCode: 200, body: 'the wrong function' }));
  daemon = spawnCli({ fake, ca, args: ALLOW });
  await daemon.waitFor(/"msg":"listening"/);
  varnish = await startVarnish({ vcl: renderVcl(daemon.socketPath) });
  await varnish.waitHealthy('lambda_sign');
});

test.after(() => stopAll(() => varnish?.stop(), () => daemon?.cleanup(), () => fake?.close(), () => ca?.cleanup()));

const get = (path: string, headers: Record<string, string> = {}): Promise<HttpReply> =>
  request(varnish.url, { method: 'GET', path, headers });
const render = (url: string, query = ''): string => `/render/${encodeURIComponent(url)}${query}`;
const payload = (i: number): unknown => JSON.parse(fake.invocations[i]!.body.toString('utf8'));
const fromCache = (res: HttpReply): boolean => String(res.headers['x-varnish']).trim().split(/\s+/).length === 2;

test('the PNG arrives byte-exact, and the second request is served from the cache', async () => {
  const before = fake.invocations.length;
  const res = await get(render('https://example.com/'));
  assert.is(res.status, 200, res.text());
  assert.is(res.headers['content-type'], 'image/png');
  assert.is(Number(res.headers['content-length']), PNG.length);
  assert.ok(res.body.equals(PNG), 'byte for byte');
  assert.is(fake.invocations.length, before + 1);
  const inv = fake.invocations[before]!;
  assert.ok(inv.verified);
  assert.is(inv.functionName, 'screenshot');
  assert.equal(payload(before), { url: 'https://example.com/', width: 1280 });

  const again = await get(render('https://example.com/'));
  assert.ok(fromCache(again), `X-Varnish: ${again.headers['x-varnish']}`);
  assert.ok(again.body.equals(PNG));
  assert.is(fake.invocations.length, before + 1, 'rendered once');
  assert.equal(fake.failures.map((f) => f.reason), []);
});

test('the payload built in VCL is valid JSON carrying the decoded URL and the width', async () => {
  // Escapes of reserved characters come back; the others (%C3%BC, %20, %22, %2F inside a
  // segment) stay encoded, which is the same address and needs no JSON escaping.
  const urls = [
    "https://example.com/p%C3%BCr/a%2Fb?q=a%20b&tag=x&tag=y&quote=%22&t=(1)*!'$,;:@[]#top",
    'http://example.com:8080/',
    'https://sub.example.co.uk',
  ];
  for (const [i, url] of urls.entries()) {
    const before = fake.invocations.length;
    const width = [768, 1920, 320][i]!;
    const res = await get(render(url, `?width=${width}`));
    assert.is(res.status, 200, `${url}: ${res.text()}`);
    assert.is(fake.invocations.length, before + 1, url);
    const body = fake.invocations[before]!.body.toString('utf8');
    assert.is(body, JSON.stringify({ url, width }), 'exactly the JSON VCL builds');
    assert.equal(payload(before), { url, width });
  }
});

test('the same address spelled two ways is one cache entry, another width another', async () => {
  const before = fake.invocations.length;
  const a = await get('/render/https%3A%2F%2Fexample.com%2Fspelled%3Fa%3D1');
  const b = await get('/render/https:%2F%2Fexample.com/spelled%3Fa=1');
  const c = await get('/render/https%3a%2f%2fexample.com%2fspelled%3fa%3d1');
  assert.is(a.status, 200, a.text());
  assert.ok(fromCache(b), 'b from the cache');
  assert.ok(fromCache(c), 'c (lower-case escapes) from the cache');
  assert.is(fake.invocations.length, before + 1);
  assert.equal(payload(before), { url: 'https://example.com/spelled?a=1', width: 1280 });
  await get('/render/https%3A%2F%2Fexample.com%2Fspelled%3Fa%3D1?width=390');
  assert.is(fake.invocations.length, before + 2);
  assert.equal(payload(before + 1), { url: 'https://example.com/spelled?a=1', width: 390 });
});

test("cached for the answer's Cache-Control (max-age=1), then rendered again", async () => {
  const path = render('https://ttl1.example/');
  const before = fake.invocations.length;
  const first = await get(path);
  assert.is(first.headers['cache-control'], 'max-age=1');
  assert.ok(fromCache(await get(path)), 'fresh: from the cache');
  assert.is(fake.invocations.length, before + 1);
  await sleep(1300);
  // Expired: Varnish renders again (in the background, serving the stale copy meanwhile,
  // for default_grace), rather than keeping it for its default_ttl of 2 minutes.
  const later = await get(path);
  assert.ok(later.body.equals(PNG));
  const until = Date.now() + 3000;
  while (fake.invocations.length < before + 2 && Date.now() < until) await sleep(50);
  assert.is(fake.invocations.length, before + 2, 'rendered again after max-age');
});

// Each of these, pasted into {"url":"…"}, would break or rewrite the JSON, or is no web page.
const REFUSED: [what: string, path: string][] = [
  // Valid JSON whose last "url" wins: the client would choose the address fetched.
  ['a JSON injection (raw quotes)', '/render/https://example.com/","url":"http://169.254.169.254/latest/meta-data/'],
  ['a raw backslash', '/render/https://example.com/a\\'],
  ['a raw brace and quote', '/render/https://example.com/"}'],
  ['a raw byte above 0x7E', '/render/https://example.com/\u00fc'],
  ['a lone percent sign', render('https://example.com/100%')],
  ['a bad percent escape', '/render/https://example.com/%zz'],
  ['a file: address', render('file:///etc/passwd')],
  ['a javascript: address', render('javascript:alert(1)')],
  ['user@host', render('https://user@evil.example/')],
  ['an IPv6 literal', render('http://[::1]/')],
  ['no host', render('https:///path')],
  ['a raw query string on the target', '/render/https://example.com/a?b=c'],
  ['a width not in the list', render('https://example.com/', '?width=1000')],
  ['a width with a leading zero', render('https://example.com/', '?width=0768')],
  ['another option', render('https://example.com/', '?width=768&height=10')],
  ['an address over 2048 characters', render(`https://example.com/${'a'.repeat(2040)}`)],
  ['an empty address', '/render/'],
];

for (const [what, path] of REFUSED) {
  test(`refused with 400 before anything is sent: ${what}`, async () => {
    const before = fake.invocations.length;
    const res = await get(path);
    assert.is(res.status, 400, `${path}: ${res.status} ${res.text().slice(0, 300)}`);
    assert.is(res.headers['content-type'], 'application/json');
    assert.is(res.json().error, 'InvalidUrl');
    assert.is(res.headers['x-lambda-sign-error'], undefined, "Varnish's answer, not lambda-sign's");
    assert.is(fake.invocations.length, before, 'nothing reached Lambda');
  });
}

test('the longest accepted address (2048 characters) is rendered', async () => {
  const url = `https://example.com/${'a'.repeat(2048 - 'https://example.com/'.length)}`;
  const before = fake.invocations.length;
  const res = await get(render(url));
  assert.is(res.status, 200, res.text());
  assert.equal(payload(before), { url, width: 1280 });
});

test("a client's X-Lambda-* and X-Render-* headers choose neither the function, nor the payload, nor a raw answer", async () => {
  const before = fake.invocations.length;
  const res = await get(render('https://example.com/mine'), {
    'x-lambda-function': 'site',
    'x-lambda-payload': '{"url":"http://169.254.169.254/latest/meta-data/","width":1}',
    'x-lambda-response': 'raw',
    'x-render-url': 'http://169.254.169.254/',
    'x-render-width': '1',
  });
  assert.is(res.status, 200, res.text());
  assert.is(fake.invocations.length, before + 1);
  assert.is(fake.invocations[before]!.functionName, 'screenshot');
  assert.equal(payload(before), { url: 'https://example.com/mine', width: 1280 });
  assert.is(res.headers['content-type'], 'image/png', 'decoded, not the raw Invoke answer');
  assert.ok(res.body.equals(PNG));
});

for (const path of ['/', '/render', '/renderer/x', '/healthz', '/2015-03-31/functions/screenshot/invocations']) {
  test(`unknown URL ${path} is 404 and reaches nothing`, async () => {
    const before = fake.invocations.length;
    const res = await get(path);
    assert.is(res.status, 404);
    assert.is(res.json().error, 'NotFound');
    assert.is(res.headers['x-lambda-sign-error'], undefined);
    assert.is(fake.invocations.length, before);
  });
}

test('POST and other methods are 405 and reach nothing', async () => {
  const before = fake.invocations.length;
  for (const method of ['POST', 'PUT', 'PURGE', 'BREW']) {
    const res = await request(varnish.url, { method, path: render('https://example.com/'), body: '{}' });
    assert.is(res.status, 405, method);
    assert.is(res.headers.allow, 'GET, HEAD');
  }
  assert.is(fake.invocations.length, before);
});

test.run();
