// gateway-response.ts: Lambda's answer to a gateway-mode invocation becomes the HTTP
// response the function described (payload format 2.0, as a Function URL returns it),
// or a 502 FunctionError / InvalidFunctionResponse.
import { validateHeaderName, validateHeaderValue } from 'node:http';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeResponse, type DecodedResponse } from '../../src/gateway-response.ts';
import { FunctionError, InvalidFunctionResponseError, LambdaSignError, errorResponse } from '../../src/errors.ts';

const RID = '8f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f';
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const PNG_HEAD = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52]);

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
/** Headers as a plain object, so comparisons do not depend on the headers object's prototype. */
const plain = (r: DecodedResponse): DecodedResponse => ({ status: r.status, headers: { ...r.headers }, body: r.body });
const decode = (answer: unknown, requestId?: string): DecodedResponse => plain(decodeResponse(json(answer), undefined, requestId));

/** The error decodeResponse threw for `payload`; fails the test if it returned. */
function thrown(payload: Buffer, functionError?: string): LambdaSignError {
  let result: DecodedResponse;
  try {
    result = decodeResponse(payload, functionError);
  } catch (err) {
    assert.instance(err, LambdaSignError);
    return err as LambdaSignError;
  }
  assert.unreachable(`${payload.toString()} was accepted as ${JSON.stringify({ ...result, body: result.body.toString() })}`);
  throw new Error('unreachable');
}

/** Asserts that the answer is refused as InvalidFunctionResponse, 502. */
function refused(answer: unknown | Buffer): void {
  const err = thrown(Buffer.isBuffer(answer) ? answer : json(answer));
  assert.instance(err, InvalidFunctionResponseError);
  assert.equal({ code: err.code, status: err.status }, { code: 'InvalidFunctionResponse', status: 502 });
}

/** Every header decodeResponse returns must be one node:http can send (else writeHead throws: a 500, not a 502). */
function assertSendable(headers: DecodedResponse['headers']): void {
  for (const [name, value] of Object.entries(headers)) {
    validateHeaderName(name);
    for (const v of Array.isArray(value) ? value : [value]) validateHeaderValue(name, String(v));
  }
}

const setCookies = (r: DecodedResponse): string[] => {
  const v = r.headers['set-cookie'];
  return v === undefined ? [] : Array.isArray(v) ? v : [String(v)];
};

// ---------------------------------------------------------------------------------------
// Response objects.

test('a plain text answer: status, headers and body', () => {
  const r = decode({ statusCode: 200, headers: { 'Content-Type': 'text/plain; charset=utf-8' }, body: 'hello' });
  assert.equal(r, { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: Buffer.from('hello') });
  assert.ok(Buffer.isBuffer(r.body));
});

test('a UTF-8 text body is encoded as UTF-8', () => {
  const text = 'café — 日本 😀 \u0000 end';
  const r = decode({ statusCode: 200, body: text, isBase64Encoded: false });
  assert.equal([...r.body], [...Buffer.from(text, 'utf8')]);
});

test('isBase64Encoded false keeps a base64-looking body as text', () => {
  assert.is(decode({ statusCode: 200, body: 'aGVsbG8=', isBase64Encoded: false }).body.toString(), 'aGVsbG8=');
});

for (const status of [200, 201, 202, 204, 301, 302, 304, 400, 401, 404, 418, 429, 500, 503, 599]) {
  test(`statusCode ${status} passes through`, () => {
    assert.is(decode({ statusCode: status }).status, status);
  });
}

test('a redirect: Location kept, no body', () => {
  const r = decode({ statusCode: 301, headers: { Location: 'https://example.com/new?a=1&b=%20' } });
  assert.equal(r, { status: 301, headers: { location: 'https://example.com/new?a=1&b=%20' }, body: Buffer.alloc(0) });
});

for (const [what, extra] of [
  ['no body field', {}],
  ['body null', { body: null }],
  ['body empty', { body: '' }],
  ['body empty, base64', { body: '', isBase64Encoded: true }],
  ['no body, isBase64Encoded true', { isBase64Encoded: true }],
] as [string, object][]) {
  test(`${what}: an empty body`, () => {
    assert.is(decode({ statusCode: 204, ...extra }).body.length, 0);
  });
}

// ---------------------------------------------------------------------------------------
// Base64 bodies, byte-exact.

const BINARY: [string, Buffer][] = [
  ['PNG header bytes', PNG_HEAD],
  ['all 256 byte values', ALL_BYTES],
  ['all 256 byte values, reversed', Buffer.from([...ALL_BYTES].reverse())],
  ['one byte (== padding)', Buffer.from([0xff])],
  ['two bytes (= padding)', Buffer.from([0x00, 0xfe])],
  ['three bytes (no padding)', Buffer.from([0xfb, 0xff, 0xbf])],
  ['invalid UTF-8', Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1])],
];

for (const [what, bytes] of BINARY) {
  test(`base64 body, ${what}: decoded byte-exact`, () => {
    const r = decode({ statusCode: 200, headers: { 'content-type': 'application/octet-stream' }, body: bytes.toString('base64'), isBase64Encoded: true });
    assert.equal([...r.body], [...bytes]);
  });
}

test('a 1 MiB binary body decodes byte-exact', () => {
  const bytes = Buffer.alloc(1 << 20);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
  const r = decode({ statusCode: 200, body: bytes.toString('base64'), isBase64Encoded: true });
  assert.ok(r.body.equals(bytes));
});

test('base64 wrapped at 76 columns (Python base64.encodebytes) decodes byte-exact', () => {
  const wrapped = ALL_BYTES.toString('base64').replace(/.{76}/g, '$&\n') + '\n';
  assert.ok(wrapped.includes('\n'));
  assert.ok(decode({ statusCode: 200, body: wrapped, isBase64Encoded: true }).body.equals(ALL_BYTES));
});

const BAD_BASE64: [string, string][] = [
  ['punctuation', '!!!!'],
  ['URL-safe alphabet', '-_-_'],
  ['padding in the middle', 'QQ==QQ=='],
  ['three padding characters', 'Q==='],
  ['a single character', 'Q'],
  ['five characters', 'QUJDR'],
  ['non-ASCII', 'QUJé'],
  ['a data: URL', 'data:image/png;base64,iVBORw0KGgo='],
];

for (const [what, body] of BAD_BASE64) {
  test(`bad base64 (${what}) → InvalidFunctionResponse`, () => {
    refused({ statusCode: 200, body, isBase64Encoded: true });
  });
}

// ---------------------------------------------------------------------------------------
// Headers: merging, cookies, values.

test('headers and multiValueHeaders are merged, names lower-cased, repeats joined with commas', () => {
  const r = decode({
    statusCode: 200,
    headers: { 'X-A': '1', 'Content-Type': 'text/html', Vary: 'Accept' },
    multiValueHeaders: { 'x-a': ['2', '3'], VARY: ['Origin'], 'Cache-Control': ['public', 'max-age=60'] },
  });
  assert.equal(r.headers, { 'x-a': '1,2,3', 'content-type': 'text/html', vary: 'Accept,Origin', 'cache-control': 'public,max-age=60' });
});

test('the same name in two cases in headers is joined', () => {
  assert.equal(decode({ statusCode: 200, headers: { 'X-A': '1', 'x-a': '2' } }).headers, { 'x-a': '1,2' });
});

test('cookies become one Set-Cookie each, commas inside them untouched', () => {
  const cookies = ['a=1; Path=/; HttpOnly', 'b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Secure', 'c=3; SameSite=Lax'];
  const r = decode({ statusCode: 200, cookies });
  assert.equal(r.headers['set-cookie'], cookies);
});

test('a single cookie is a single Set-Cookie', () => {
  assert.equal(setCookies(decode({ statusCode: 200, cookies: ['a=1; Path=/'] })), ['a=1; Path=/']);
});

test('Set-Cookie from headers, multiValueHeaders and cookies are all kept, none joined', () => {
  const r = decode({
    statusCode: 200,
    headers: { 'Set-Cookie': 'h=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT' },
    multiValueHeaders: { 'set-cookie': ['m1=1', 'm2=2'] },
    cookies: ['c=3'],
  });
  assert.equal(setCookies(r), ['h=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT', 'm1=1', 'm2=2', 'c=3']);
});

test('no cookies, empty cookies or null cookies: no Set-Cookie', () => {
  for (const extra of [{}, { cookies: [] }, { cookies: null }]) {
    assert.not.ok('set-cookie' in decode({ statusCode: 200, ...extra }).headers, JSON.stringify(extra));
  }
});

test('numeric and boolean header values become strings', () => {
  const r = decode({
    statusCode: 200,
    headers: { 'X-Count': 42, 'X-Zero': 0, 'X-Ratio': 0.5, 'X-Neg': -1, 'X-On': true, 'X-Off': false },
    multiValueHeaders: { 'X-Multi': [1, true, 'x'] },
  });
  assert.equal(r.headers, {
    'x-count': '42',
    'x-zero': '0',
    'x-ratio': '0.5',
    'x-neg': '-1',
    'x-on': 'true',
    'x-off': 'false',
    'x-multi': '1,true,x',
  });
});

test('headers: null and multiValueHeaders: null mean none', () => {
  assert.equal(decode({ statusCode: 200, headers: null, multiValueHeaders: null, body: 'x' }).headers, {});
});

test('unusual but valid header names (every tchar) are accepted', () => {
  const name = "x-!#$%&'*+.^_`|~09az";
  assert.equal(decode({ statusCode: 200, headers: { [name.toUpperCase()]: 'v' } }).headers, { [name]: 'v' });
});

test('a tab inside a header value is allowed (RFC 9110 §5.5)', () => {
  assert.equal(decode({ statusCode: 200, headers: { 'x-a': 'a\tb' } }).headers, { 'x-a': 'a\tb' });
});

// Framing is the daemon's; connection-specific fields are not the function's to set.
const DROPPED = ['Content-Length', 'Transfer-Encoding', 'Connection', 'Keep-Alive', 'Proxy-Connection', 'TE', 'Trailer', 'Upgrade'];

for (const name of DROPPED) {
  test(`${name} set by the function is dropped (headers and multiValueHeaders)`, () => {
    const value = name === 'Content-Length' ? '999' : name === 'Transfer-Encoding' ? 'chunked' : 'x';
    const a = decode({ statusCode: 200, headers: { [name]: value, 'X-Kept': '1' }, body: 'hi' });
    assert.equal(a.headers, { 'x-kept': '1' });
    const b = decode({ statusCode: 200, multiValueHeaders: { [name.toLowerCase()]: [value, value], 'X-Kept': ['1'] }, body: 'hi' });
    assert.equal(b.headers, { 'x-kept': '1' });
  });
}

// Bug: headers.ts treats proxy-authenticate, proxy-authorization and http2-settings as
// hop-by-hop when passing Lambda's own answers on, but the decoder let a function set them.
test('proxy-authenticate, proxy-authorization and http2-settings set by the function are dropped (as in headers.ts)', () => {
  const r = decode({
    statusCode: 200,
    headers: { 'Proxy-Authenticate': 'Basic realm="x"', 'Proxy-Authorization': 'Basic eDp5', 'HTTP2-Settings': 'AAMAAABk', 'X-Kept': '1' },
  });
  assert.equal(r.headers, { 'x-kept': '1' });
});

// Bug: headers are collected in a plain object, so a header named after an
// Object.prototype member joined onto the inherited function ("function Object() {
// [native code] },v") and a __proto__ header was silently lost.
test('header names constructor, toString and __proto__ from the function are ordinary headers', () => {
  const r = decodeResponse(Buffer.from('{"statusCode":200,"headers":{"Constructor":"a","toString":"b","__proto__":"c"}}'), undefined);
  assert.equal(Object.entries(r.headers), [
    ['constructor', 'a'],
    ['tostring', 'b'],
    ['__proto__', 'c'],
  ]);
});

test('x-amzn-requestid is added when Lambda gave a request id, not otherwise', () => {
  const answer = { statusCode: 200, headers: { 'content-type': 'text/plain' }, body: 'x' };
  assert.equal(decode(answer, RID).headers, { 'content-type': 'text/plain', 'x-amzn-requestid': RID });
  assert.equal(decode(answer).headers, { 'content-type': 'text/plain' });
});

const VALID_ANSWERS: unknown[] = [
  { statusCode: 200, headers: { 'Content-Type': 'text/html', 'X-N': 1, 'X-B': false }, cookies: ['a=1', 'b=2'], body: 'x' },
  { statusCode: 302, multiValueHeaders: { Link: ['</a>; rel=preload', '</b>; rel=preload'] } },
  { statusCode: 200, headers: { 'content-type': 'text/plain; charset=iso-8859-1', 'x-latin1': 'caf\u00e9' } },
  { statusCode: 200, headers: { 'x-tab': 'a\tb', 'Content-Length': '3', Connection: 'close' } },
  { a: 1 },
];

for (const answer of VALID_ANSWERS) {
  test(`every decoded header can be sent by node:http: ${JSON.stringify(answer)}`, () => {
    assertSendable(decode(answer, RID).headers);
  });
}

// ---------------------------------------------------------------------------------------
// Header injection and invalid header names/values.

const INJECTIONS: [string, string][] = [
  ['CRLF', 'a\r\nSet-Cookie: evil=1'],
  ['LF', 'a\nX-Evil: 1'],
  ['CR', 'a\rb'],
  ['NUL', 'a\u0000b'],
  ['CRLF CRLF (response splitting)', 'a\r\n\r\n<html>evil</html>'],
  ['a trailing CRLF', 'a\r\n'],
];

for (const [what, value] of INJECTIONS) {
  test(`${what} in a header value is refused (headers, multiValueHeaders, cookies)`, () => {
    refused({ statusCode: 200, headers: { 'X-A': value } });
    refused({ statusCode: 200, multiValueHeaders: { 'X-A': ['ok', value] } });
    refused({ statusCode: 200, cookies: ['ok=1', value] });
  });
}

// Bug: only CR, LF and NUL were refused. Any other control character (RFC 9110 §5.5
// allows only HTAB) passed the decoder and made res.writeHead throw ERR_INVALID_CHAR in
// server.ts: a 500 InternalError instead of a 502 InvalidFunctionResponse.
for (const [what, value] of [
  ['\\x01', 'a\u0001b'],
  ['ESC', 'a\u001b[31mred'],
  ['DEL', 'a\u007fb'],
  ['vertical tab', 'a\u000bb'],
] as [string, string][]) {
  test(`a ${what} control character in a header value is refused`, () => {
    refused({ statusCode: 200, headers: { 'X-A': value } });
  });
}

// Bug: a value with characters above U+00FF (node:http sends header strings as
// Latin-1) passed the decoder and made res.writeHead throw ERR_INVALID_CHAR: a 500.
// Either refusing it (502) or sending its UTF-8 bytes would do; crashing would not.
for (const value of ['attachment; filename="€uro.pdf"', '日本語', '😀']) {
  test(`a header value beyond Latin-1 (${value}) is refused or made sendable`, () => {
    let r: DecodedResponse;
    try {
      r = decode({ statusCode: 200, headers: { 'Content-Disposition': value } });
    } catch (err) {
      assert.instance(err, InvalidFunctionResponseError);
      return;
    }
    assertSendable(r.headers);
  });
}

const BAD_NAMES = ['', 'X A', 'X:A', 'X-A:', 'X\r\nY', 'X\nY', '(x)', 'x/y', 'x@y', 'é', 'x"y', 'x{y}', ':status'];

for (const name of BAD_NAMES) {
  test(`invalid header name ${JSON.stringify(name)} is refused (headers, multiValueHeaders)`, () => {
    refused({ statusCode: 200, headers: { [name]: 'v' } });
    refused({ statusCode: 200, multiValueHeaders: { [name]: ['v'] } });
  });
}

const BAD_VALUES: [string, unknown][] = [
  ['null', null],
  ['an object', { a: 1 }],
  ['an array', ['a', 'b']],
];

for (const [what, value] of BAD_VALUES) {
  test(`a header value that is ${what} is refused`, () => {
    refused({ statusCode: 200, headers: { 'X-A': value } });
  });
}

// ---------------------------------------------------------------------------------------
// Answers that are not valid response objects.

const BAD_STATUS: unknown[] = [0, 99, 600, 700, 1000, -200, 200.5, 99.9, '200', '404', null, true, [200], {}, 1e21];

for (const statusCode of BAD_STATUS) {
  test(`statusCode ${JSON.stringify(statusCode)} → InvalidFunctionResponse`, () => {
    refused({ statusCode, body: 'x' });
  });
}

// Bug: 1xx codes passed (the range check starts at 100). A 1xx is an interim response
// (RFC 9110 §15.2), never a final one: node:http writes "HTTP/1.1 100 Continue", drops the
// body and never sends a final response, so Varnish waits for one until it times out
// (and 101 claims a protocol switch that never happens).
for (const statusCode of [100, 101, 103, 199]) {
  test(`statusCode ${statusCode} (interim, not a final response) → InvalidFunctionResponse`, () => {
    refused({ statusCode, body: 'x' });
  });
}

const BAD_SHAPES: [string, unknown][] = [
  ['headers a string', { statusCode: 200, headers: 'content-type: text/plain' }],
  ['headers a number', { statusCode: 200, headers: 42 }],
  ['headers true', { statusCode: 200, headers: true }],
  ['headers an array', { statusCode: 200, headers: [['content-type', 'text/plain']] }],
  ['headers an empty array', { statusCode: 200, headers: [] }],
  ['multiValueHeaders a string', { statusCode: 200, multiValueHeaders: 'x' }],
  ['multiValueHeaders an array', { statusCode: 200, multiValueHeaders: [] }],
  ['a multiValueHeaders value not an array', { statusCode: 200, multiValueHeaders: { 'x-a': 'v' } }],
  ['a multiValueHeaders element an object', { statusCode: 200, multiValueHeaders: { 'x-a': [{}] } }],
  ['cookies a string', { statusCode: 200, cookies: 'a=1' }],
  ['cookies an object', { statusCode: 200, cookies: { a: '1' } }],
  ['a cookie a number', { statusCode: 200, cookies: [1] }],
  ['a cookie null', { statusCode: 200, cookies: ['a=1', null] }],
  ['body a number', { statusCode: 200, body: 42 }],
  ['body true', { statusCode: 200, body: true }],
  ['body an object', { statusCode: 200, body: { a: 1 } }],
  ['body an array', { statusCode: 200, body: ['a'] }],
  ['isBase64Encoded "true"', { statusCode: 200, body: 'aGk=', isBase64Encoded: 'true' }],
  ['isBase64Encoded "false"', { statusCode: 200, body: 'hi', isBase64Encoded: 'false' }],
  ['isBase64Encoded 1', { statusCode: 200, body: 'aGk=', isBase64Encoded: 1 }],
  ['isBase64Encoded 0', { statusCode: 200, body: 'hi', isBase64Encoded: 0 }],
  ['isBase64Encoded an object, no body', { statusCode: 200, isBase64Encoded: {} }],
];

for (const [what, answer] of BAD_SHAPES) {
  test(`${what} → InvalidFunctionResponse`, () => {
    refused(answer);
  });
}

const NOT_JSON: [string, Buffer][] = [
  ['empty', Buffer.alloc(0)],
  ['whitespace', Buffer.from(' \n')],
  ['plain text', Buffer.from('hello')],
  ['truncated JSON', Buffer.from('{"statusCode":200,"body":"x"')],
  ['a trailing comma', Buffer.from('{"statusCode":200,}')],
  ['single quotes', Buffer.from("{'statusCode':200}")],
  ['undefined', Buffer.from('undefined')],
  ['NaN', Buffer.from('NaN')],
  ['two JSON values', Buffer.from('{} {}')],
  ['PNG bytes', PNG_HEAD],
];

for (const [what, payload] of NOT_JSON) {
  test(`an answer that is not JSON (${what}) → InvalidFunctionResponse`, () => {
    refused(payload);
  });
}

// ---------------------------------------------------------------------------------------
// Bare JSON: a JSON answer without statusCode is a 200 application/json body, verbatim.

const BARE: [string, string][] = [
  ['an object', '{"message":"hi","n":[1,2]}'],
  ['an object with odd spacing', '{ "b" : 2 ,\n  "a":1 }\n'],
  ['an empty object', '{}'],
  ['an object with body and headers but no statusCode', '{"body":"x","headers":{"content-type":"text/html"}}'],
  ['an object with a StatusCode in the wrong case', '{"StatusCode":500}'],
  ['an array', '[1,"two",{"three":3}]'],
  ['an empty array', '[]'],
  ['an array of response objects', '[{"statusCode":500}]'],
  ['a string', '"hello"'],
  ['a string with escapes', '"caf\\u00e9 \\"q\\""'],
  ['a number', '42'],
  ['a float', '3.14'],
  ['a negative number', '-1e3'],
  ['true', 'true'],
  ['false', 'false'],
  ['null', 'null'],
  ['UTF-8 text', '{"s":"日本 😀"}'],
];

for (const [what, text] of BARE) {
  test(`bare JSON, ${what}: 200 application/json, the payload verbatim`, () => {
    const payload = Buffer.from(text, 'utf8');
    const r = plain(decodeResponse(payload, undefined));
    assert.equal(r, { status: 200, headers: { 'content-type': 'application/json' }, body: payload });
  });
}

test('bare JSON carries x-amzn-requestid too', () => {
  const r = plain(decodeResponse(Buffer.from('[1]'), undefined, RID));
  assert.equal(r.headers, { 'content-type': 'application/json', 'x-amzn-requestid': RID });
});

// ---------------------------------------------------------------------------------------
// Function errors.

const FUNCTION_ERRORS: [string, string, Buffer][] = [
  [
    'an unhandled Node error',
    'Unhandled',
    Buffer.from('{"errorType":"TypeError","errorMessage":"x is not a function","trace":["TypeError: x is not a function","    at Runtime.handler (/var/task/index.mjs:3:9)"]}'),
  ],
  ['a handled Python error, UTF-8', 'Handled', Buffer.from('{"errorMessage": "échec 日本", "errorType": "ValueError", "stackTrace": []}\n')],
  ['a timeout', 'Unhandled', Buffer.from('{"errorMessage":"2026-11-21T12:40:00.000Z 1f2e Task timed out after 3.00 seconds"}')],
  ['an error that looks like a valid response', 'Unhandled', json({ statusCode: 200, body: 'ok' })],
  ['an error body that is not JSON', 'Unhandled', Buffer.from('not json \xff\x00', 'latin1')],
  ['an empty error body', 'Unhandled', Buffer.alloc(0)],
];

for (const [what, functionError, payload] of FUNCTION_ERRORS) {
  test(`X-Amz-Function-Error, ${what}: FunctionError 502 with the exact payload bytes`, () => {
    const err = thrown(payload, functionError);
    assert.instance(err, FunctionError);
    assert.equal({ code: err.code, status: err.status }, { code: 'FunctionError', status: 502 });
    assert.equal([...(err as FunctionError).payload], [...payload]);
    const res = errorResponse(err);
    assert.is(res.status, 502);
    assert.equal([...Buffer.from(res.body)], [...payload], 'the client gets the function error JSON, byte for byte');
  });
}

test.run();
