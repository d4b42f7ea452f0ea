// HPACK: the decoder against RFC 7541's worked examples (Appendix C), the Huffman code's
// edge cases, and the encoder by round trip. Interoperability with nghttp2 (node:http2's
// encoder and decoder) is tested in test/integration/h2-client.test.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { encodeHeaders, HpackDecoder, HpackError, huffmanDecode } from '../../src/h2/hpack.ts';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const huff = (s: string): string => {
  const b = hex(s);
  return huffmanDecode(b, 0, b.length);
};
const pairs = (flat: string[]): string[][] => {
  const out: string[][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
};
const decode = (d: HpackDecoder, block: string): string[][] => {
  const out: string[] = [];
  d.decode(hex(block), out);
  return pairs(out);
};

test('Huffman: the strings of RFC 7541 C.4', () => {
  assert.is(huff('f1e3 c2e5 f23a 6ba0 ab90 f4ff'), 'www.example.com');
  assert.is(huff('a8eb 1064 9cbf'), 'no-cache');
  assert.is(huff('25a8 49e9 5ba9 7d7f'), 'custom-key');
  assert.is(huff('25a8 49e9 5bb8 e8b4 bf'), 'custom-value');
});

test('Huffman: the strings of RFC 7541 C.6 (response, dates and cookies)', () => {
  assert.is(huff('6402'), '302');
  assert.is(huff('aec3 771a 4b'), 'private');
  assert.is(huff('d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff'), 'Mon, 21 Oct 2013 20:13:21 GMT');
  assert.is(huff('9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3'), 'https://www.example.com');
});

test('Huffman: padding must be at most 7 one-bits; EOS is never a symbol', () => {
  // '0' is 00000 (5 bits); three 1-bits of padding complete the byte.
  assert.is(huff('07'), '0');
  // Padding with a 0 bit in it.
  assert.throws(() => huff('00'), (e: unknown) => e instanceof HpackError);
  // A whole byte of padding (8 one-bits) after '0': too long.
  assert.throws(() => huff('07 ff'), (e: unknown) => e instanceof HpackError);
  // 32 one-bits contain EOS (30 of them).
  assert.throws(() => huff('ffff ffff'), (e: unknown) => e instanceof HpackError);
  assert.is(huff(''), '');
});

test('decoder: RFC 7541 C.3, three requests sharing a dynamic table (no Huffman)', () => {
  const d = new HpackDecoder();
  assert.equal(decode(d, '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d'), [
    [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'],
  ]);
  assert.equal(decode(d, '8286 84be 5808 6e6f 2d63 6163 6865'), [
    [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache'],
  ]);
  assert.equal(decode(d, '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65'), [
    [':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value'],
  ]);
});

test('decoder: RFC 7541 C.4, the same requests with Huffman', () => {
  const d = new HpackDecoder();
  assert.equal(decode(d, '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff')[3], [':authority', 'www.example.com']);
  assert.equal(decode(d, '8286 84be 5886 a8eb 1064 9cbf')[4], ['cache-control', 'no-cache']);
  assert.equal(decode(d, '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf')[4], ['custom-key', 'custom-value']);
});

test('decoder: RFC 7541 C.5, responses evicting from a 256-byte table', () => {
  // A peer that shrinks the table first (§6.3), then fills and overflows it.
  const d = new HpackDecoder();
  const first = decode(
    d,
    '3fe1 01' + // size update to 256
      '4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
  );
  assert.equal(first, [[':status', '302'], ['cache-control', 'private'], ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'], ['location', 'https://www.example.com']]);
  // The second response evicts ":status: 302" and indexes ":status: 307".
  assert.equal(decode(d, '4803 3330 37c1 c0bf'), [[':status', '307'], ['cache-control', 'private'], ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'], ['location', 'https://www.example.com']]);
  // The table now holds four entries (62–65); 66 does not exist.
  assert.throws(() => decode(d, 'c2'), (e: unknown) => e instanceof HpackError);
});

// HPACK integers (RFC 7541 §5.1) and raw strings, for hand-built blocks.
function hpackInt(first: number, prefix: number, value: number): number[] {
  const max = (1 << prefix) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  value -= max;
  while (value >= 128) {
    out.push((value % 128) + 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}
const hpackString = (s: string): number[] => [...hpackInt(0, 7, s.length), ...Buffer.from(s, 'latin1')];

test('decoder: thousands of inserts and evictions agree with a plain model of the table (wrap-around)', () => {
  // A server that indexes a fresh value in every answer (a request id) cycles the table
  // many times over; the model is RFC 7541 §2.3 and §4 written as plainly as possible.
  let seed = 7;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (const limit of [4096, 256]) {
    const d = new HpackDecoder(limit);
    let model: [string, string][] = []; // newest first
    let max = limit;
    const fits = (): void => {
      let size = model.reduce((n, [a, b]) => n + a.length + b.length + 32, 0);
      while (size > max) {
        const [a, b] = model.pop()!;
        size -= a.length + b.length + 32;
      }
    };
    for (let block = 0; block < 3000; block++) {
      const bytes: number[] = [];
      const want: string[][] = [];
      if (rnd(50) === 0) {
        // A size update (start of a block only), sometimes to zero.
        max = rnd(3) === 0 ? 0 : 64 + rnd(limit - 63);
        bytes.push(...hpackInt(0x20, 5, max));
        fits();
      }
      for (let f = 0; f < 1 + rnd(6); f++) {
        if (model.length > 0 && rnd(2) === 0) {
          const back = rnd(model.length);
          bytes.push(...hpackInt(0x80, 7, 62 + back));
          want.push([...model[back]!]);
        } else {
          const name = `x-id-${rnd(20)}`;
          const value = 'v'.repeat(rnd(rnd(10) === 0 ? limit : 60)) + block;
          bytes.push(0x40, ...hpackString(name), ...hpackString(value));
          want.push([name, value]);
          model.unshift([name, value]);
          fits();
        }
      }
      const out: string[] = [];
      d.decode(Buffer.from(bytes), out);
      assert.equal(pairs(out), want, `limit ${limit}, block ${block}`);
    }
    // One past the newest-to-oldest range is an error, not a stale slot.
    assert.throws(() => d.decode(Buffer.from(hpackInt(0x80, 7, 62 + model.length)), []), (e: unknown) => e instanceof HpackError);
  }
});

test('decoder: malformed blocks are errors, never guesses', () => {
  const bad = (block: string, limit?: number) =>
    assert.throws(() => decode(new HpackDecoder(limit), block), (e: unknown) => e instanceof HpackError, block);
  bad('80'); // index 0
  bad('be'); // dynamic index 62 in an empty table
  bad('3fe2 1f'); // size update to 4097, above our 4096
  bad('82 3f01'); // size update after a field
  bad('40 05 616263'); // name length 5, only 3 bytes
  bad('ff'); // truncated integer
  bad('ff ff ff ff ff 0f'); // integer above 2^31
});

test('regression: a few bytes naming one large table entry again and again no longer decode to megabytes', () => {
  // Nothing bounded the decoded list, only the encoded block: one 4,000-byte entry and
  // 100,000 one-byte references to it (about 100 KB on the wire) decoded to 400 MB.
  const d = new HpackDecoder(4096, 64 << 10);
  const entry = [0x40, ...hpackString('x-a'), ...hpackString('a'.repeat(4000))];
  const bomb = Buffer.from([0x88, ...entry, ...new Array<number>(100_000).fill(0xbe)]);
  const out = ['kept', 'as it was'];
  assert.is(d.decode(bomb, out), false);
  assert.equal(out, ['kept', 'as it was']);
  // The block was still decoded to its end, table included: the next block refers to the entry.
  const next: string[] = [];
  assert.is(d.decode(Buffer.from([0x88, 0xbe]), next), true);
  assert.equal(next, [':status', '200', 'x-a', 'a'.repeat(4000)]);
  // Past the limit, a malformed field is still an error (the table must stay in step).
  assert.throws(() => new HpackDecoder(4096, 64 << 10).decode(Buffer.from([...entry, ...new Array<number>(20).fill(0xbe), 0xc0]), []), (e: unknown) => e instanceof HpackError);
});

test('decoder: a list weighing exactly the limit is whole; one byte more is refused', () => {
  // Each field weighs name + value + 32 (RFC 9113 §6.5.2): 'x-b' + 61 bytes + 32 = 96.
  const field = [0x00, ...hpackString('x-b'), ...hpackString('v'.repeat(61))];
  const block = (extra: number[]) => Buffer.from([...field, ...field, ...extra]);
  const out: string[] = [];
  assert.is(new HpackDecoder(4096, 192).decode(block([]), out), true);
  assert.is(out.length, 4);
  assert.is(new HpackDecoder(4096, 191).decode(block([]), []), false);
  assert.is(new HpackDecoder(4096, 192).decode(block([0x00, ...hpackString('y'), ...hpackString('')]), []), false);
});

test('encoder: what it writes decodes to the same fields, in order', () => {
  const fields = [
    ':method', 'POST', ':scheme', 'https', ':authority', 'lambda.us-east-1.amazonaws.com',
    ':path', '/2015-03-31/functions/f/invocations?Qualifier=live',
    'content-type', 'application/json', 'content-length', '64',
    'x-amz-date', '20261121T120000Z', 'authorization', `AWS4-HMAC-SHA256 Credential=AKID/20261121/us-east-1/lambda/aws4_request, Signature=${'a'.repeat(64)}`,
    'x-amz-security-token', 'T'.repeat(1500), 'x-odd', 'é ÿ', 'empty', '',
  ];
  const block = encodeHeaders(fields);
  const out: string[] = [];
  new HpackDecoder().decode(block, out);
  assert.equal(out, fields);
  // POST and https are one byte each (static table entries 3 and 7).
  assert.is(block[0], 0x83);
  assert.is(block[1], 0x87);
});

test('encoder: lengths that need a multi-byte integer (RFC 7541 §5.1)', () => {
  for (const n of [126, 127, 128, 255, 16_383, 16_384, 100_000]) {
    const fields = ['x-long', 'v'.repeat(n)];
    const out: string[] = [];
    // 100,000 bytes weigh more than the default limit on a decoded list.
    new HpackDecoder(4096, Infinity).decode(encodeHeaders(fields), out);
    assert.equal(out, fields, String(n));
  }
});

test.run();
