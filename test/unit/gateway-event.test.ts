// gateway-event.ts: an HTTP request from Varnish becomes the payload-format-2.0 event a
// Lambda Function URL would deliver: path and query raw and decoded, cookies, headers
// (control and hop-by-hop ones removed), requestContext, and the body as text or base64.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildEvent, gatewayTime, isTextBody, type GatewayRequest } from '../../src/gateway-event.ts';

// 21/Nov/2026:12:40:00 +0000, the example the issue gives.
const NOW = Date.UTC(2026, 10, 21, 12, 40, 0);
const RID = 'c6af9ac6-7b61-4b6e-9a41-93e8deadbeef';

interface Event {
  version: string;
  routeKey: string;
  rawPath: string;
  rawQueryString: string;
  cookies?: string[];
  headers: Record<string, string>;
  queryStringParameters?: Record<string, string>;
  requestContext: {
    accountId: string;
    apiId: string;
    domainName: string;
    domainPrefix: string;
    http: { method: string; path: string; protocol: string; sourceIp: string; userAgent: string };
    requestId: string;
    routeKey: string;
    stage: string;
    time: string;
    timeEpoch: number;
  };
  body?: string;
  isBase64Encoded: boolean;
}

type Header = [string, string];

function request(url: string, headers: Header[] = [], body: Buffer = Buffer.alloc(0), method = 'GET', httpVersion = '1.1'): GatewayRequest {
  return { method, url, httpVersion, rawHeaders: headers.flat(), body };
}

/** The event as the function receives it: server.ts sends JSON.stringify(buildEvent(…)). */
type RequestId = Parameters<typeof buildEvent>[2];

function event(req: GatewayRequest, now = NOW, requestId: string = RID): Event {
  return JSON.parse(JSON.stringify(buildEvent(req, now, requestId as RequestId))) as Event;
}

const post = (contentType: string | undefined, body: Buffer): Event =>
  event(request('/upload', contentType === undefined ? [] : [['Content-Type', contentType]], body, 'POST'));

const bytes = (...b: number[]): Buffer => Buffer.from(b);
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const PNG_HEAD = bytes(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52);
const CANONICAL_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

// ---------------------------------------------------------------------------------------
// The whole event, field by field.

test('a GET without query, cookies or body: the complete event', () => {
  const e = event(
    request('/hello/world', [
      ['Host', 'www.example.com:8080'],
      ['User-Agent', 'curl/8.5.0'],
      ['Accept', '*/*'],
      ['X-Forwarded-For', '203.0.113.7, 10.0.0.1'],
      ['X-Lambda-Function', 'site'],
      ['Connection', 'keep-alive'],
    ]),
  );
  assert.equal(e, {
    version: '2.0',
    routeKey: '$default',
    rawPath: '/hello/world',
    rawQueryString: '',
    headers: {
      host: 'www.example.com:8080',
      'user-agent': 'curl/8.5.0',
      accept: '*/*',
      'x-forwarded-for': '203.0.113.7, 10.0.0.1',
    },
    requestContext: {
      accountId: 'anonymous',
      apiId: 'lambda-sign',
      domainName: 'www.example.com',
      domainPrefix: 'www',
      http: {
        method: 'GET',
        path: '/hello/world',
        protocol: 'HTTP/1.1',
        sourceIp: '10.0.0.1',
        userAgent: 'curl/8.5.0',
      },
      requestId: RID,
      routeKey: '$default',
      stage: '$default',
      time: '21/Nov/2026:12:40:00 +0000',
      timeEpoch: NOW,
    },
    isBase64Encoded: false,
  });
});

test('a POST with query, cookies and a JSON body: the complete event', () => {
  const body = Buffer.from('{"name":"café","n":[1,2]}');
  const e = event(
    request(
      '/api/items?sort=name&tag=a&tag=b',
      [
        ['Host', 'api.example.com'],
        ['Content-Type', 'application/json'],
        ['Content-Length', String(body.length)],
        ['Cookie', 'session=abc; theme=dark'],
        ['X-Lambda-Function', 'api'],
      ],
      body,
      'POST',
    ),
  );
  assert.equal(e, {
    version: '2.0',
    routeKey: '$default',
    rawPath: '/api/items',
    rawQueryString: 'sort=name&tag=a&tag=b',
    cookies: ['session=abc', 'theme=dark'],
    headers: { host: 'api.example.com', 'content-type': 'application/json', 'content-length': String(body.length) },
    queryStringParameters: { sort: 'name', tag: 'a,b' },
    requestContext: {
      accountId: 'anonymous',
      apiId: 'lambda-sign',
      domainName: 'api.example.com',
      domainPrefix: 'api',
      http: { method: 'POST', path: '/api/items', protocol: 'HTTP/1.1', sourceIp: '', userAgent: '' },
      requestId: RID,
      routeKey: '$default',
      stage: '$default',
      time: '21/Nov/2026:12:40:00 +0000',
      timeEpoch: NOW,
    },
    body: '{"name":"café","n":[1,2]}',
    isBase64Encoded: false,
  });
});

/** Fails unless `v` is made only of JSON values: no undefined, Buffer, Date or function. */
function assertJson(v: unknown, path = 'event'): void {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
  if (typeof v === 'number') return void assert.ok(Number.isFinite(v), `${path} is not a finite number`);
  if (Array.isArray(v)) return v.forEach((x, i) => assertJson(x, `${path}[${i}]`));
  assert.ok(typeof v === 'object', `${path} is a ${typeof v}`);
  const proto = Object.getPrototypeOf(v);
  assert.ok(proto === Object.prototype || proto === null, `${path} is not a plain object`);
  for (const [k, x] of Object.entries(v as object)) assertJson(x, `${path}.${k}`);
}

test('the event is made only of JSON values (nothing lost by JSON.stringify)', () => {
  assertJson(buildEvent(request('/x?a=1', [['Cookie', 'a=1'], ['Content-Type', 'image/png']], PNG_HEAD, 'PUT'), NOW, RID as RequestId));
  assertJson(buildEvent(request('/'), NOW, RID as RequestId));
});

for (const method of ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
  test(`requestContext.http.method is ${method} as received`, () => {
    assert.is(event(request('/', [], Buffer.alloc(0), method)).requestContext.http.method, method);
  });
}

for (const version of ['1.1', '1.0']) {
  test(`requestContext.http.protocol for HTTP/${version}`, () => {
    assert.is(event(request('/', [], Buffer.alloc(0), 'GET', version)).requestContext.http.protocol, `HTTP/${version}`);
  });
}

test('userAgent is the User-Agent header, empty without one', () => {
  assert.is(event(request('/', [['User-Agent', 'Mozilla/5.0 (X11; Linux x86_64)']])).requestContext.http.userAgent, 'Mozilla/5.0 (X11; Linux x86_64)');
  assert.is(event(request('/')).requestContext.http.userAgent, '');
});

const HOSTS: [Header[], string, string][] = [
  // Host headers, domainName, domainPrefix
  [[['Host', 'api.example.com']], 'api.example.com', 'api'],
  [[['Host', 'api.example.com:8443']], 'api.example.com', 'api'],
  [[['Host', 'localhost']], 'localhost', 'localhost'],
  [[['Host', 'localhost:80']], 'localhost', 'localhost'],
  [[], '', ''],
];

for (const [headers, domainName, domainPrefix] of HOSTS) {
  test(`domainName and domainPrefix from ${JSON.stringify(headers)}`, () => {
    const ctx = event(request('/', headers)).requestContext;
    assert.equal({ domainName: ctx.domainName, domainPrefix: ctx.domainPrefix }, { domainName, domainPrefix });
  });
}

// ---------------------------------------------------------------------------------------
// Path and query string.

const TARGETS: [string, string, string][] = [
  // request target, rawPath, rawQueryString
  ['/', '/', ''],
  ['/a/b', '/a/b', ''],
  ['/a/b?', '/a/b', ''],
  ['/a/b?x=1', '/a/b', 'x=1'],
  ['/products/shoes%20red', '/products/shoes%20red', ''],
  ['/a%2Fb/c%3Fd', '/a%2Fb/c%3Fd', ''],
  ['/caf%C3%A9/%E2%82%AC', '/caf%C3%A9/%E2%82%AC', ''],
  ['/a+b', '/a+b', ''],
  ['//double//slash/', '//double//slash/', ''],
  ['/%2e%2e/x', '/%2e%2e/x', ''],
  ['/a?b?c', '/a', 'b?c'],
  ['/s?q=a+b%2Bc&x=%20', '/s', 'q=a+b%2Bc&x=%20'],
  ['/s?caf%C3%A9=1&&', '/s', 'caf%C3%A9=1&&'],
];

for (const [target, rawPath, rawQueryString] of TARGETS) {
  test(`${target}: rawPath, http.path and rawQueryString kept raw`, () => {
    const e = event(request(target));
    assert.is(e.rawPath, rawPath);
    assert.is(e.requestContext.http.path, rawPath);
    assert.is(e.rawQueryString, rawQueryString);
  });
}

for (const target of ['/', '/a/b', '/a/b?']) {
  test(`${target}: no queryStringParameters without a query`, () => {
    assert.not.ok('queryStringParameters' in event(request(target)));
  });
}

const QUERIES: [string, string, Record<string, string>][] = [
  ['single', 'a=1', { a: '1' }],
  ['several keys', 'a=1&b=2&c=3', { a: '1', b: '2', c: '3' }],
  ['a repeated key, joined with commas in order', 'a=1&b=x&a=2&a=3', { a: '1,2,3', b: 'x' }],
  ['percent-encoded UTF-8', 'q=caf%C3%A9%20au%20lait', { q: 'café au lait' }],
  ['lower-case percent-encoding', 'q=%e2%82%ac', { q: '€' }],
  ['+ is a space, %2B a plus', 'q=a+b%2Bc', { q: 'a b+c' }],
  ['encoded & and = inside a value', 'x=a%26b%3Dc', { x: 'a&b=c' }],
  ['an encoded key, repeated', 'a%5B%5D=1&a%5B%5D=2', { 'a[]': '1,2' }],
  ['a key without =', 'flag&x=1', { flag: '', x: '1' }],
  ['an empty value', 'x=', { x: '' }],
  ['a comma inside a value', 'x=a,b', { x: 'a,b' }],
  ['a value containing =', 'token=abc==', { token: 'abc==' }],
  ['bad percent-encoding is kept literally', 'x=%ZZ&y=100%', { x: '%ZZ', y: '100%' }],
  ['empty pairs are skipped', '&a=1&&b=2&', { a: '1', b: '2' }],
  ['keys are case-sensitive', 'A=1&a=2', { A: '1', a: '2' }],
];

for (const [what, query, expected] of QUERIES) {
  test(`queryStringParameters: ${what} (${query})`, () => {
    const e = event(request(`/p?${query}`));
    assert.equal(e.queryStringParameters, expected);
    assert.is(e.rawQueryString, query);
  });
}

// Bug: parameters were collected in a plain object, so a key named after an
// Object.prototype member found the inherited function ("function Object() { [native
// code] },1") and __proto__ was silently lost. Query strings are client-controlled.
test('query keys named constructor, toString, hasOwnProperty and __proto__ are ordinary keys', () => {
  const e = event(request('/p?constructor=1&toString=2&hasOwnProperty=3&__proto__=4&valueOf=5&valueOf=6'));
  // Compared as entries: an own hasOwnProperty key trips uvu's diff, and a __proto__ key
  // in an object literal would set the prototype instead.
  assert.equal(Object.entries(e.queryStringParameters!), [
    ['constructor', '1'],
    ['toString', '2'],
    ['hasOwnProperty', '3'],
    ['__proto__', '4'],
    ['valueOf', '5,6'],
  ]);
});

// ---------------------------------------------------------------------------------------
// Cookies.

const COOKIES: [string, Header[], string[] | undefined][] = [
  ['one cookie', [['Cookie', 'session=abc']], ['session=abc']],
  ['several in one header', [['Cookie', 'a=1; b=2; c=3']], ['a=1', 'b=2', 'c=3']],
  ['several without spaces', [['Cookie', 'a=1;b=2']], ['a=1', 'b=2']],
  ['several Cookie headers, in order', [['Cookie', 'a=1; b=2'], ['Accept', '*/*'], ['cookie', 'c=3']], ['a=1', 'b=2', 'c=3']],
  ['= inside a value', [['Cookie', 'token=YWJj==; x=y']], ['token=YWJj==', 'x=y']],
  ['a trailing semicolon', [['Cookie', 'a=1; b=2;']], ['a=1', 'b=2']],
  ['upper-case header name', [['COOKIE', 'a=1']], ['a=1']],
  ['no Cookie header', [['Accept', '*/*']], undefined],
  ['an empty Cookie header', [['Cookie', '']], undefined],
];

for (const [what, headers, cookies] of COOKIES) {
  test(`cookies: ${what}`, () => {
    const e = event(request('/', headers));
    if (cookies === undefined) assert.not.ok('cookies' in e, 'cookies is omitted');
    else assert.equal(e.cookies, cookies);
    assert.not.ok('cookie' in e.headers, 'Cookie is never in headers');
  });
}

// ---------------------------------------------------------------------------------------
// Headers.

test('header names are lower-cased, values kept as given', () => {
  const e = event(
    request('/', [
      ['Content-Type', 'Text/HTML; Charset=UTF-8'],
      ['X-Custom-THING', ' Mixed Case, with comma '],
      ['accept-language', 'fr-CH, fr;q=0.9'],
    ]),
  );
  assert.equal(e.headers, {
    'content-type': 'Text/HTML; Charset=UTF-8',
    'x-custom-thing': ' Mixed Case, with comma ',
    'accept-language': 'fr-CH, fr;q=0.9',
  });
});

test('repeated headers are joined with commas, in order, whatever their case', () => {
  const e = event(
    request('/', [
      ['Accept', 'text/html'],
      ['X-A', '1'],
      ['accept', 'application/json'],
      ['x-a', '2'],
      ['X-Forwarded-For', '203.0.113.7'],
      ['X-A', '3'],
      ['X-Forwarded-For', '10.0.0.1'],
    ]),
  );
  assert.equal(e.headers, {
    accept: 'text/html,application/json',
    'x-a': '1,2,3',
    'x-forwarded-for': '203.0.113.7,10.0.0.1',
  });
});

const CONTROL_HEADERS: Header[] = [
  ['X-Lambda-Function', 'marker-function'],
  ['x-lambda-payload', '{"marker":"marker-payload"}'],
  ['X-LAMBDA-RESPONSE', 'marker-response'],
  ['X-Lambda-Anything-Else', 'marker-other'],
];

for (const [name, value] of CONTROL_HEADERS) {
  test(`${name} is never shown to the function`, () => {
    const e = event(request('/', [['Accept', '*/*'], [name, value]]));
    assert.equal(e.headers, { accept: '*/*' });
    assert.not.ok(JSON.stringify(e).includes(value), 'the value appears nowhere in the event');
  });
}

test('headers that merely contain "lambda" are passed on', () => {
  const e = event(request('/', [['X-Lambdas', '1'], ['Lambda-Function', '2'], ['X-My-Lambda-Function', '3']]));
  assert.equal(e.headers, { 'x-lambdas': '1', 'lambda-function': '2', 'x-my-lambda-function': '3' });
});

// RFC 9110 §7.6.1: connection-specific fields are the hop's, not the function's.
const HOP_BY_HOP: Header[] = [
  ['Connection', 'keep-alive'],
  ['Keep-Alive', 'timeout=5'],
  ['Proxy-Connection', 'keep-alive'],
  ['TE', 'trailers'],
  ['Trailer', 'X-Checksum'],
  ['Transfer-Encoding', 'chunked'],
  ['Upgrade', 'websocket'],
];

for (const [name, value] of HOP_BY_HOP) {
  test(`hop-by-hop ${name} is removed, end-to-end headers kept`, () => {
    const e = event(request('/', [['Host', 'example.com'], [name, value], ['Content-Length', '0'], ['Via', '1.1 varnish']]));
    assert.equal(e.headers, { host: 'example.com', 'content-length': '0', via: '1.1 varnish' });
  });
}

// Bug: only the fixed list was removed; RFC 9110 §7.6.1 makes every field named by
// Connection hop-by-hop too (headers.ts already honours this on the response side).
test('fields named by Connection are hop-by-hop and removed (RFC 9110 §7.6.1)', () => {
  const e = event(request('/', [['Connection', 'close, X-Hop-Secret'], ['X-Hop-Secret', 'varnish-internal'], ['Accept', '*/*']]));
  assert.equal(e.headers, { accept: '*/*' });
});

// Bug: headers.ts treats proxy-authorization, proxy-authenticate and http2-settings as
// hop-by-hop, but the event kept them; a client's proxy credentials reached the function.
test('proxy-authorization, proxy-authenticate and http2-settings are hop-by-hop too (as in headers.ts)', () => {
  const e = event(
    request('/', [
      ['Proxy-Authorization', 'Basic cHJveHk6c2VjcmV0'],
      ['Proxy-Authenticate', 'Basic realm="p"'],
      ['HTTP2-Settings', 'AAMAAABkAARAAAAAAAIAAAAA'],
      ['Accept', '*/*'],
    ]),
  );
  assert.equal(e.headers, { accept: '*/*' });
});

// Bug: headers were collected in a plain object, so a header named after an
// Object.prototype member became "function Object() { [native code] },value", and a
// __proto__ header vanished.
test('headers named constructor, toString and __proto__ are ordinary headers', () => {
  const e = event(request('/', [['Constructor', 'a'], ['toString', 'b'], ['__proto__', 'c'], ['hasOwnProperty', 'd']]));
  assert.equal(Object.entries(e.headers), [
    ['constructor', 'a'],
    ['tostring', 'b'],
    ['__proto__', 'c'],
    ['hasownproperty', 'd'],
  ]);
});

// ---------------------------------------------------------------------------------------
// requestContext.http.sourceIp: the last X-Forwarded-For hop, the one Varnish appended;
// the ones before it are whatever the client claimed.

const SOURCE_IPS: [string, Header[], string][] = [
  ['no X-Forwarded-For', [], ''],
  ['one hop', [['X-Forwarded-For', '203.0.113.7']], '203.0.113.7'],
  ['several hops', [['X-Forwarded-For', '6.6.6.6, 10.0.0.1, 203.0.113.7']], '203.0.113.7'],
  ['several hops without spaces', [['X-Forwarded-For', '6.6.6.6,203.0.113.7']], '203.0.113.7'],
  ['spaces around the last hop', [['X-Forwarded-For', '6.6.6.6 ,  203.0.113.7  ']], '203.0.113.7'],
  ['several X-Forwarded-For headers', [['X-Forwarded-For', '198.51.100.9, 10.0.0.1'], ['x-forwarded-for', '10.0.0.2']], '10.0.0.2'],
  ['IPv6', [['X-Forwarded-For', '6.6.6.6, 2001:db8::1']], '2001:db8::1'],
];

for (const [what, headers, sourceIp] of SOURCE_IPS) {
  test(`sourceIp with ${what}`, () => {
    const e = event(request('/', headers));
    assert.is(e.requestContext.http.sourceIp, sourceIp);
  });
}

test('X-Forwarded-For stays in headers as received', () => {
  const e = event(request('/', [['X-Forwarded-For', '203.0.113.7, 10.0.0.1']]));
  assert.is(e.headers['x-forwarded-for'], '203.0.113.7, 10.0.0.1');
});

// ---------------------------------------------------------------------------------------
// time, timeEpoch, requestId.

const TIMES: [number, string][] = [
  [Date.UTC(2026, 10, 21, 12, 40, 0), '21/Nov/2026:12:40:00 +0000'],
  [Date.UTC(2027, 0, 5, 3, 4, 5), '05/Jan/2027:03:04:05 +0000'],
  [Date.UTC(2026, 11, 31, 23, 59, 59, 999), '31/Dec/2026:23:59:59 +0000'],
  [Date.UTC(2028, 1, 29, 0, 0, 0, 1), '29/Feb/2028:00:00:00 +0000'],
  [0, '01/Jan/1970:00:00:00 +0000'],
];

for (const [ms, time] of TIMES) {
  test(`time ${time} and timeEpoch ${ms} from an injected now`, () => {
    const ctx = event(request('/'), ms).requestContext;
    assert.is(ctx.time, time);
    assert.is(ctx.timeEpoch, ms);
    assert.is(gatewayTime(ms), time);
  });
}

test('gatewayTime names every month in English, in UTC', () => {
  const names = Array.from({ length: 12 }, (_, m) => gatewayTime(Date.UTC(2026, m, 15, 12)).split('/')[1]);
  assert.equal(names, ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']);
});

test('time is UTC whatever the local time zone (+05:30, +14:00, -10:00)', () => {
  // Node applies a change of TZ at once; restored so no other test depends on it.
  const saved = process.env.TZ;
  try {
    for (const tz of ['Asia/Kolkata', 'Pacific/Kiritimati', 'Pacific/Honolulu']) {
      process.env.TZ = tz;
      assert.is(gatewayTime(Date.UTC(2026, 11, 31, 23, 59, 59)), '31/Dec/2026:23:59:59 +0000', tz);
      assert.is(event(request('/')).requestContext.time, '21/Nov/2026:12:40:00 +0000', tz);
    }
  } finally {
    if (saved === undefined) delete process.env.TZ;
    else process.env.TZ = saved;
  }
});

test('requestId is the injected one', () => {
  assert.is(event(request('/'), NOW, 'my-request-id').requestContext.requestId, 'my-request-id');
});

test('by default, now is the current time and requestId a fresh UUID', () => {
  const before = Date.now();
  const a = buildEvent(request('/')) as unknown as Event;
  const b = buildEvent(request('/')) as unknown as Event;
  const after = Date.now();
  assert.ok(a.requestContext.timeEpoch >= before && a.requestContext.timeEpoch <= after);
  assert.is(a.requestContext.time, gatewayTime(a.requestContext.timeEpoch));
  assert.match(a.requestContext.requestId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.is.not(a.requestContext.requestId, b.requestContext.requestId);
});

// ---------------------------------------------------------------------------------------
// Bodies: text types as text when valid UTF-8, everything else base64, every byte kept.

const TEXT_BODIES: [string, string][] = [
  ['application/json', '{"a":[1,2,{"b":null}],"s":"x\\"y"}'],
  ['application/json; charset=utf-8', '{"name":"café 日本 😀"}'],
  ['APPLICATION/JSON', '[]'],
  ['text/html; charset=utf-8', '<!doctype html><p>café — 日本 😀</p>\n'],
  ['text/plain', 'line 1\r\nline 2\ttab\u0000nul'],
  ['text/csv', 'a,b\n1,2\n'],
  ['text/event-stream', 'data: x\n\n'],
  ['application/x-www-form-urlencoded', 'a=1&b=caf%C3%A9+au+lait'],
  ['application/x-www-form-urlencoded; charset=UTF-8', 'q=%E2%82%AC'],
  ['application/vnd.api+json', '{"data":{"type":"items"}}'],
  ['application/problem+json; charset=utf-8', '{"title":"Bad"}'],
  ['application/hal+json', '{"_links":{}}'],
  ['application/ld+json', '{"@context":"https://schema.org"}'],
  ['application/xml', '<a>é</a>'],
  ['image/svg+xml', '<svg xmlns="http://www.w3.org/2000/svg"/>'],
  ['application/javascript', 'console.log("é")'],
];

for (const [contentType, text] of TEXT_BODIES) {
  test(`text body, ${contentType}: passed as text, byte-exact`, () => {
    const sent = Buffer.from(text, 'utf8');
    const e = post(contentType, sent);
    assert.is(e.isBase64Encoded, false);
    assert.is(e.body, text);
    assert.ok(Buffer.from(e.body!, 'utf8').equals(sent), 'UTF-8 of the body is the bytes sent');
  });
}

// Bug: the fatal TextDecoder is built without ignoreBOM, so it consumes a leading
// UTF-8 byte-order mark: the function got three bytes fewer than the client sent.
test('a text body starting with a UTF-8 BOM keeps the BOM (byte-exact)', () => {
  const sent = Buffer.concat([bytes(0xef, 0xbb, 0xbf), Buffer.from('{"a":1}')]);
  const e = post('application/json', sent);
  const received = e.isBase64Encoded ? Buffer.from(e.body!, 'base64') : Buffer.from(e.body!, 'utf8');
  assert.equal([...received], [...sent]);
});

const BINARY_BODIES: [string, string | undefined, Buffer][] = [
  ['PNG header bytes', 'image/png', PNG_HEAD],
  ['all 256 byte values', 'application/octet-stream', ALL_BYTES],
  ['all 256 byte values, no content-type', undefined, ALL_BYTES],
  ['ASCII text without a content-type', undefined, Buffer.from('hello')],
  ['ASCII text declared octet-stream', 'application/octet-stream', Buffer.from('{"a":1}')],
  ['a PDF', 'application/pdf', Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n', 'latin1')],
  ['multipart', 'multipart/form-data; boundary=x', Buffer.from('--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n')],
  ['gzip', 'application/gzip', bytes(0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03)],
  ['text/plain with invalid UTF-8', 'text/plain', bytes(0x61, 0xff, 0xfe, 0x62)],
  ['text/html; charset=iso-8859-1 with a Latin-1 é', 'text/html; charset=iso-8859-1', Buffer.from('<p>café</p>', 'latin1')],
  ['application/json with truncated UTF-8', 'application/json', bytes(0x22, 0xe2, 0x82, 0x22)],
  ['text/plain with an overlong encoding', 'text/plain', bytes(0xc0, 0xaf)],
  ['text/plain with an encoded surrogate', 'text/plain', bytes(0xed, 0xa0, 0x80)],
  ['+json type with invalid UTF-8', 'application/vnd.api+json', bytes(0x7b, 0x80, 0x7d)],
  ['one zero byte', 'application/octet-stream', bytes(0)],
];

for (const [what, contentType, sent] of BINARY_BODIES) {
  test(`binary body, ${what}: base64, exact round-trip`, () => {
    const e = post(contentType, sent);
    assert.is(e.isBase64Encoded, true);
    assert.is(e.body, sent.toString('base64'));
    assert.match(e.body!, CANONICAL_BASE64);
    assert.equal([...Buffer.from(e.body!, 'base64')], [...sent]);
  });
}

test('a 1 MiB random binary body round-trips exactly', () => {
  const sent = Buffer.alloc(1 << 20);
  for (let i = 0; i < sent.length; i++) sent[i] = (i * 2654435761) >>> 24;
  const e = post('application/octet-stream', sent);
  assert.is(e.isBase64Encoded, true);
  assert.ok(Buffer.from(e.body!, 'base64').equals(sent));
});

for (const [what, headers] of [
  ['no content-type', []],
  ['application/json', [['Content-Type', 'application/json'], ['Content-Length', '0']]],
  ['image/png', [['Content-Type', 'image/png']]],
] as [string, Header[]][]) {
  test(`an empty body (${what}): no body field, isBase64Encoded false`, () => {
    const e = event(request('/', headers, Buffer.alloc(0), 'POST'));
    assert.not.ok('body' in e);
    assert.is(e.isBase64Encoded, false);
  });
}

test('isTextBody: undefined for binary types and invalid UTF-8, the text otherwise', () => {
  assert.is(isTextBody(undefined, Buffer.from('a')), undefined);
  assert.is(isTextBody('image/png', Buffer.from('a')), undefined);
  assert.is(isTextBody('text/plain', bytes(0xff)), undefined);
  assert.is(isTextBody('text/plain; charset=utf-8', Buffer.from('é')), 'é');
  assert.is(isTextBody('application/json', Buffer.alloc(0)), '');
});

test.run();
