// http1/parse.ts: request heads and the chunked coding, table-driven; each refusal names
// the status the connection answers with.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ChunkedDecoder, HttpParseError, parseHead } from '../../src/http1/parse.ts';

const head = (lines: string[]): string => lines.join('\r\n');

test('a typical Varnish request', () => {
  const h = parseHead(
    head([
      'POST /2015-03-31/functions/f/invocations?Qualifier=v1 HTTP/1.1',
      'Host: localhost',
      'Content-Type: application/json',
      'X-Varnish: 32770',
      'Content-Length: 17',
    ]),
  );
  assert.is(h.method, 'POST');
  assert.is(h.url, '/2015-03-31/functions/f/invocations?Qualifier=v1');
  assert.is(h.httpVersion, '1.1');
  assert.equal(h.headers, { host: 'localhost', 'content-type': 'application/json', 'x-varnish': '32770', 'content-length': '17' });
  assert.equal(h.rawHeaders, ['Host', 'localhost', 'Content-Type', 'application/json', 'X-Varnish', '32770', 'Content-Length', '17']);
  assert.is(h.bodyLength, 17);
  assert.is(h.keepAlive, true);
  assert.is(h.expectContinue, false);
});

test('field values lose surrounding spaces and tabs, keep inner ones and obs-text', () => {
  const h = parseHead(head(['GET / HTTP/1.1', 'Host: x', 'A: \t one  two \t', 'B:', 'C: caf\xe9']));
  assert.is(h.headers['a'], 'one  two');
  assert.is(h.headers['b'], '');
  assert.is(h.headers['c'], 'caf\xe9');
});

test('repeated fields combine as node:http combines them', () => {
  const h = parseHead(
    head([
      'GET / HTTP/1.1',
      'Host: x',
      'X-A: 1',
      'x-a: 2',
      'Cookie: a=1',
      'Cookie: b=2',
      'Set-Cookie: s=1',
      'Set-Cookie: s=2',
      'Content-Type: text/plain',
      'Content-Type: application/json',
      'X-Lambda-Function: f',
      'X-Lambda-Function: g',
    ]),
  );
  assert.is(h.headers['x-a'], '1, 2');
  assert.is(h.headers['cookie'], 'a=1; b=2');
  assert.equal(h.headers['set-cookie'], ['s=1', 's=2']);
  assert.is(h.headers['content-type'], 'text/plain', 'the first content-type wins');
  assert.is(h.headers['x-lambda-function'], 'f, g');
});

const KEEP_ALIVE: [version: string, connection: string | undefined, keepAlive: boolean][] = [
  ['1.1', undefined, true],
  ['1.1', 'close', false],
  ['1.1', 'Keep-Alive, Close', false],
  ['1.1', 'keep-alive', true],
  ['1.0', undefined, false],
  ['1.0', 'keep-alive', true],
  ['1.0', 'close', false],
];
for (const [version, connection, keepAlive] of KEEP_ALIVE) {
  test(`HTTP/${version} with Connection: ${connection ?? '(none)'} → keep-alive ${keepAlive}`, () => {
    const lines = [`GET / HTTP/${version}`, 'Host: x'];
    if (connection !== undefined) lines.push(`Connection: ${connection}`);
    assert.is(parseHead(head(lines)).keepAlive, keepAlive);
  });
}

test('HTTP/1.0 needs no Host', () => {
  assert.is(parseHead('GET / HTTP/1.0').method, 'GET');
});

test('framing: chunked, a length, or none', () => {
  assert.is(parseHead(head(['POST / HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked'])).bodyLength, 'chunked');
  assert.is(parseHead(head(['POST / HTTP/1.1', 'Host: x', 'Transfer-Encoding:  Chunked '])).bodyLength, 'chunked');
  assert.is(parseHead(head(['POST / HTTP/1.1', 'Host: x', 'Content-Length: 0'])).bodyLength, 0);
  assert.is(parseHead(head(['POST / HTTP/1.1', 'Host: x', 'Content-Length: 262144'])).bodyLength, 262144);
  assert.is(parseHead(head(['POST / HTTP/1.1', 'Host: x'])).bodyLength, 0);
});

test('Expect: 100-continue is recognised on HTTP/1.1 and ignored on HTTP/1.0', () => {
  assert.is(parseHead(head(['POST / HTTP/1.1', 'Host: x', 'Expect: 100-Continue', 'Content-Length: 3'])).expectContinue, true);
  assert.is(parseHead(head(['POST / HTTP/1.0', 'Expect: 100-continue', 'Content-Length: 3'])).expectContinue, false);
});

const REFUSED: [what: string, lines: string[], status: number][] = [
  ['garbage', ['HELLO'], 400],
  ['a missing version', ['GET /'], 400],
  ['two spaces in the request line', ['GET  / HTTP/1.1', 'Host: x'], 400],
  ['a space in the target', ['GET /a b HTTP/1.1', 'Host: x'], 400],
  ['a control byte in the target', ['GET /a\x01 HTTP/1.1', 'Host: x'], 400],
  ['lower-case http', ['GET / http/1.1'], 400],
  ['HTTP/2.0', ['GET / HTTP/2.0'], 505],
  ['HTTP/9.9', ['POST /x HTTP/9.9'], 505],
  ['CONNECT', ['CONNECT example.com:443 HTTP/1.1'], 400],
  ['a method node:http does not know', ['POT / HTTP/1.1', 'Host: x'], 400],
  ['a field without a colon', ['GET / HTTP/1.1', 'Host: x', 'Host localhost'], 400],
  ['whitespace before the colon (RFC 9112 §5.1)', ['GET / HTTP/1.1', 'Host: x', 'Host : localhost'], 400],
  ['obs-fold (RFC 9112 §5.2)', ['GET / HTTP/1.1', 'Host: x', 'X-A: one', ' two'], 400],
  ['an empty field name', ['GET / HTTP/1.1', 'Host: x', ': x'], 400],
  ['a bare LF inside a field', ['GET / HTTP/1.1', 'Host: x', 'X-A: one\nX-B: two'], 400],
  ['a bare CR inside a field', ['GET / HTTP/1.1', 'Host: x', 'X-A: one\rtwo'], 400],
  ['NUL in a value', ['GET / HTTP/1.1', 'Host: x', 'X-A: a\x00b'], 400],
  ['Content-Length twice, even equal', ['POST / HTTP/1.1', 'Host: x', 'Content-Length: 2', 'Content-Length: 2'], 400],
  ['Content-Length with a sign', ['POST / HTTP/1.1', 'Host: x', 'Content-Length: +2'], 400],
  ['Content-Length as a list', ['POST / HTTP/1.1', 'Host: x', 'Content-Length: 2, 2'], 400],
  ['Content-Length beyond 2^53', ['POST / HTTP/1.1', 'Host: x', 'Content-Length: 9999999999999999'], 400],
  ['Content-Length and chunked', ['POST / HTTP/1.1', 'Host: x', 'Content-Length: 2', 'Transfer-Encoding: chunked'], 400],
  ['a coding other than chunked', ['POST / HTTP/1.1', 'Host: x', 'Transfer-Encoding: gzip'], 400],
  ['chunked not alone', ['POST / HTTP/1.1', 'Host: x', 'Transfer-Encoding: gzip, chunked'], 400],
  ['chunked twice', ['POST / HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], 400],
  ['Transfer-Encoding in HTTP/1.0', ['POST / HTTP/1.0', 'Transfer-Encoding: chunked'], 400],
  ['an unknown expectation', ['POST / HTTP/1.1', 'Host: x', 'Expect: 200-ok'], 417],
  ['no Host in HTTP/1.1 (RFC 9112 §3.2)', ['GET / HTTP/1.1'], 400],
  ['two Host fields', ['GET / HTTP/1.1', 'Host: a', 'host: b'], 400],
];
for (const [what, lines, status] of REFUSED) {
  test(`refused: ${what} → ${status}`, () => {
    try {
      parseHead(head(lines));
    } catch (err) {
      assert.instance(err, HttpParseError);
      assert.is((err as HttpParseError).status, status);
      return;
    }
    assert.unreachable('parsed');
  });
}

/** Decodes `input` split into pieces of `step` bytes; returns the data and the bytes left over. */
function decode(input: string, step = input.length): { data: string; rest: string; done: boolean } {
  let data = '';
  const d = new ChunkedDecoder((c) => (data += c.toString('latin1')));
  const bytes = Buffer.from(input, 'latin1');
  let rest = '';
  for (let i = 0; i < bytes.length; i += step) {
    const piece = bytes.subarray(i, i + step);
    if (d.done) {
      rest += piece.toString('latin1');
      continue;
    }
    const used = d.push(piece, 0);
    rest += piece.subarray(used).toString('latin1');
  }
  return { data, rest, done: d.done };
}

const CHUNKED: [what: string, input: string, data: string, rest: string][] = [
  ['one chunk', '5\r\nhello\r\n0\r\n\r\n', 'hello', ''],
  ['several chunks, hex sizes in both cases', 'a\r\n0123456789\r\nB\r\nabcdefghijk\r\n0\r\n\r\n', '0123456789abcdefghijk', ''],
  ['leading zeros', '0005\r\nhello\r\n000\r\n\r\n', 'hello', ''],
  ['extensions, with BWS before them', '5;name=value\r\nhello\r\n3 ;x\r\nabc\r\n0;last\r\n\r\n', 'helloabc', ''],
  ['trailer fields, dropped', '2\r\nok\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n', 'ok', ''],
  ['the next request after the body', '2\r\nok\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n', 'ok', 'GET / HTTP/1.1\r\n\r\n'],
  ['data that looks like framing', '8\r\n0\r\n\r\nx\r\n\r\n0\r\n\r\n', '0\r\n\r\nx\r\n', ''],
];
for (const [what, input, data, rest] of CHUNKED) {
  for (const step of [input.length, 1, 3]) {
    test(`chunked: ${what} (pieces of ${step})`, () => {
      const out = decode(input, step);
      assert.is(out.done, true);
      assert.is(out.data, data);
      assert.is(out.rest, rest);
    });
  }
}

test('chunked: an unfinished body is not done', () => {
  assert.is(decode('5\r\nhel').done, false);
  assert.is(decode('5\r\nhello\r\n0\r\n').done, false, 'the blank line after the last chunk is still due');
});

const BAD_CHUNKED: [what: string, input: string, status: number][] = [
  ['a non-hex size', 'zz\r\n{}\r\n0\r\n\r\n', 400],
  ['an empty size', '\r\n', 400],
  ['a negative size', '-1\r\n', 400],
  ['two numbers in the size', '1 2\r\nab\r\n', 400],
  ['a size beyond 2^52', 'fffffffffffffff\r\n', 400],
  ['a bare LF after the size', '2\nok\r\n', 400],
  ['data longer than its size', '2\r\nokay\r\n', 400],
  ['a control byte in an extension', '2;\x01\r\nok\r\n', 400],
  ['a bare LF in the trailer section', '0\r\nX: 1\n\r\n', 400],
];
for (const [what, input, status] of BAD_CHUNKED) {
  test(`chunked refused: ${what} → ${status}`, () => {
    try {
      decode(input);
    } catch (err) {
      assert.instance(err, HttpParseError);
      assert.is((err as HttpParseError).status, status);
      return;
    }
    assert.unreachable('decoded');
  });
}

test('chunked: a trailer section without end is refused once it passes its bound', () => {
  try {
    decode(`0\r\nX: ${'a'.repeat(20_000)}`);
  } catch (err) {
    assert.is((err as HttpParseError).status, 431);
    return;
  }
  assert.unreachable('decoded');
});

test('chunked: a size line that never ends is refused at its bound, not read forever', () => {
  for (const input of [`1;${'a'.repeat(5000)}`, `1${' '.repeat(5000)}`, `${'0'.repeat(12)}1;x\r\n`]) {
    let status = 0;
    try {
      decode(input);
    } catch (err) {
      status = (err as HttpParseError).status;
    }
    if (input.length > 4096) assert.is(status, 400, `${input.slice(0, 10)}…`);
    else assert.is(status, 0, 'a short line with leading zeros and an extension is fine');
  }
});

test('chunked: many small chunks in one read reach the body as one Buffer', () => {
  const pieces: Buffer[] = [];
  const d = new ChunkedDecoder((c) => pieces.push(c));
  const input = Buffer.from('1\r\na\r\n'.repeat(1000) + '0\r\n\r\n', 'latin1');
  assert.is(d.push(input, 0), input.length);
  assert.ok(d.done);
  assert.is(pieces.length, 1, 'one Buffer, not a thousand');
  assert.is(pieces[0]!.toString(), 'a'.repeat(1000));
});

test.run();
