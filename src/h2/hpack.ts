// HPACK (RFC 7541) for our HTTP/2 client: a stateless encoder for requests and a full
// decoder (dynamic table, Huffman) for responses.
//
// The encoder never indexes: every request header is a literal without indexing, named
// from the static table when it can be, its value sent raw. That keeps no state to keep in
// step with the peer (no table-size updates, no eviction), costs no Huffman work per
// request, and only spends a few hundred bytes a request on the wire.

/** RFC 7541 Appendix A. Index 1 is STATIC[0]. */
const STATIC: ReadonlyArray<readonly [string, string]> = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''],
  ['etag', ''], ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''],
  ['if-modified-since', ''], ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''],
  ['last-modified', ''], ['link', ''], ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''],
  ['proxy-authorization', ''], ['range', ''], ['referer', ''], ['refresh', ''], ['retry-after', ''],
  ['server', ''], ['set-cookie', ''], ['strict-transport-security', ''], ['transfer-encoding', ''],
  ['user-agent', ''], ['vary', ''], ['via', ''], ['www-authenticate', ''],
];

/** First static index of each name, for literals with an indexed name. */
const STATIC_NAME = new Map<string, number>();
STATIC.forEach(([name], i) => {
  if (!STATIC_NAME.has(name)) STATIC_NAME.set(name, i + 1);
});
/** Whole static entries worth sending as one byte: index 2/3 (:method GET/POST), 7 (:scheme https). */
function staticField(name: string, value: string): number {
  if (name === ':method') return value === 'POST' ? 3 : value === 'GET' ? 2 : 0;
  if (name === ':scheme') return value === 'https' ? 7 : 0;
  return 0;
}

export class HpackError extends Error {}

// ---------------------------------------------------------------------------------------
// Encoder

/** Writes an HPACK integer with an N-bit prefix (RFC 7541 §5.1) at `at`; returns the end. */
function putInt(buf: Buffer, at: number, value: number, prefixBits: number, flags: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    buf[at++] = flags | value;
    return at;
  }
  buf[at++] = flags | max;
  value -= max;
  while (value >= 128) {
    buf[at++] = (value & 0x7f) | 0x80;
    value = Math.floor(value / 128);
  }
  buf[at++] = value;
  return at;
}

/**
 * One header block for `headers`, given as [name, value, name, value, …] (names lower-case,
 * pseudo-headers first, as HTTP/2 requires; values latin1).
 */
export function encodeHeaders(headers: readonly string[]): Buffer {
  let bound = 0;
  for (let i = 0; i < headers.length; i++) bound += headers[i]!.length + 6;
  const buf = Buffer.allocUnsafe(bound);
  let at = 0;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    const value = headers[i + 1]!;
    const whole = staticField(name, value);
    if (whole !== 0) {
      buf[at++] = 0x80 | whole;
      continue;
    }
    // §6.2.2: literal header field without indexing.
    const nameIndex = STATIC_NAME.get(name);
    if (nameIndex !== undefined) {
      at = putInt(buf, at, nameIndex, 4, 0x00);
    } else {
      buf[at++] = 0x00;
      at = putInt(buf, at, name.length, 7, 0x00);
      at += buf.write(name, at, 'latin1');
    }
    at = putInt(buf, at, value.length, 7, 0x00);
    at += buf.write(value, at, 'latin1');
  }
  return buf.subarray(0, at);
}

// ---------------------------------------------------------------------------------------
// Huffman (RFC 7541 Appendix B)
//
// The code is canonical: each symbol's code follows from the code lengths alone, taken in
// order of (length, symbol). LENGTHS holds the 257 lengths (symbols 0–255 and EOS), one
// letter each: 'a' is 5 bits, 'b' 6 bits, … 'z' 30 bits.
const LENGTHS =
  'isxxxxxxxtzxxzxxxxxxxxzxxxxxxxxxbffhibdgffdgdbbbaaabbbbbbbcdkbhfibccccccccccccccccccccccdcdioijbkabababbbaccbbbabcbaabccccckgjix' +
  'prpprrrsrssssststtrstssssqrsrsstrqprrssqsrrtqrssqqrqsrssprrrsrrsvvporsruvvvwwvtuoqvwwvwtqqvvxwwwptpqrqqsrruuttvsvwvvwwwwwxwwwwwvz';

interface HuffNode {
  sym: number; // -1 for internal nodes
  child: [HuffNode | undefined, HuffNode | undefined];
}

/**
 * A nibble-at-a-time decoder: for every internal node of the code tree (a state) and every
 * 4-bit input, the next state, the symbol emitted on the way (codes are at least 5 bits, so
 * at most one), and whether stopping there is valid padding (RFC 7541 §5.2: at most 7
 * bits, all ones).
 */
const HUFF_NEXT = new Uint16Array(256 * 16);
const HUFF_SYM = new Int16Array(256 * 16); // -1 none, -2 invalid (EOS or no such code)
const HUFF_ACCEPT = new Uint8Array(256);

(function buildHuffman() {
  const lengths = Array.from(LENGTHS, (c) => c.charCodeAt(0) - 92);
  if (lengths.length !== 257) throw new Error('HPACK Huffman table is corrupt');
  const order = lengths.map((_, s) => s).sort((a, b) => lengths[a]! - lengths[b]! || a - b);
  const root: HuffNode = { sym: -1, child: [undefined, undefined] };
  let code = 0;
  let prev = lengths[order[0]!]!;
  for (const s of order) {
    const len = lengths[s]!;
    code *= 2 ** (len - prev);
    prev = len;
    let node = root;
    for (let bit = len - 1; bit >= 0; bit--) {
      const b = Math.floor(code / 2 ** bit) % 2;
      node.child[b] ??= { sym: -1, child: [undefined, undefined] };
      node = node.child[b]!;
    }
    node.sym = s;
    code++;
  }
  // Number the internal nodes; remember which ones are reached by ≤ 7 one-bits.
  const ids = new Map<HuffNode, number>();
  const accept: boolean[] = [];
  const walk = (n: HuffNode, depth: number, allOnes: boolean): void => {
    if (n.sym !== -1) return;
    ids.set(n, ids.size);
    accept.push(allOnes && depth <= 7);
    walk(n.child[0]!, depth + 1, false);
    walk(n.child[1]!, depth + 1, allOnes);
  };
  walk(root, 0, true);
  if (ids.size !== 256) throw new Error('HPACK Huffman table is corrupt');
  for (const [node, id] of ids) {
    HUFF_ACCEPT[id] = accept[id] ? 1 : 0;
    for (let nibble = 0; nibble < 16; nibble++) {
      let n = node;
      let sym = -1;
      for (let bit = 3; bit >= 0; bit--) {
        n = n.child[(nibble >> bit) & 1]!;
        if (n.sym !== -1) {
          sym = n.sym === 256 ? -2 : n.sym;
          n = root;
        }
      }
      HUFF_NEXT[id * 16 + nibble] = ids.get(n)!;
      HUFF_SYM[id * 16 + nibble] = sym;
    }
  }
})();

let scratch = Buffer.allocUnsafe(4096);

/** Decodes a Huffman-coded string (its decoded length is at most 8/5 of its coded length). */
export function huffmanDecode(src: Buffer, start: number, end: number): string {
  const need = Math.ceil(((end - start) * 8) / 5);
  if (scratch.length < need) scratch = Buffer.allocUnsafe(Math.max(need, scratch.length * 2));
  const out = scratch;
  let n = 0;
  let state = 0;
  for (let i = start; i < end; i++) {
    const byte = src[i]!;
    let t = state * 16 + (byte >> 4);
    let sym = HUFF_SYM[t]!;
    if (sym === -2) throw new HpackError('invalid Huffman code');
    if (sym >= 0) out[n++] = sym;
    state = HUFF_NEXT[t]!;
    t = state * 16 + (byte & 15);
    sym = HUFF_SYM[t]!;
    if (sym === -2) throw new HpackError('invalid Huffman code');
    if (sym >= 0) out[n++] = sym;
    state = HUFF_NEXT[t]!;
  }
  if (HUFF_ACCEPT[state] !== 1) throw new HpackError('invalid Huffman padding');
  return out.toString('latin1', 0, n);
}

// ---------------------------------------------------------------------------------------
// Decoder

const ENTRY_OVERHEAD = 32;

export class HpackDecoder {
  // The dynamic table as a ring, oldest at `head`: servers index a fresh value in most
  // answers (a request id), so every answer inserts one entry and evicts another, and
  // Array.shift() for each eviction showed in profiles. An entry takes at least 32 bytes
  // of the table, so limit / 32 + 1 slots always suffice.
  private readonly names: string[];
  private readonly values: string[];
  private head = 0;
  private count = 0;
  private size = 0;
  /** What we allow the peer (our SETTINGS_HEADER_TABLE_SIZE; 4096 by default). */
  private readonly limit: number;
  private max: number;
  /**
   * The most a decoded header list may weigh, counted as SETTINGS_MAX_HEADER_LIST_SIZE
   * counts it (RFC 9113 §6.5.2: name + value + 32 per field). A few bytes of indexed
   * fields can name a 4 KB table entry again and again, so the encoded size bounds
   * nothing: 256 KiB of them would decode to a gigabyte.
   */
  readonly maxList: number;

  constructor(limit = 4096, maxList = 64 << 10) {
    this.limit = limit;
    this.maxList = maxList;
    this.max = limit;
    const slots = Math.floor(limit / ENTRY_OVERHEAD) + 1;
    this.names = new Array<string>(slots).fill('');
    this.values = new Array<string>(slots).fill('');
  }

  /** The ring slot of dynamic index `index` (62 is the newest), or -1 when there is none. */
  private slot(index: number): number {
    const back = index - STATIC.length;
    if (back > this.count) return -1;
    return (this.head + this.count - back) % this.names.length;
  }

  /**
   * Decodes one complete header block into name/value pairs, appended to `out` as
   * [name, value, name, value, …]. Returns false when the list weighs more than `maxList`:
   * `out` is then left as it was, and the rest of the block is still decoded for the
   * changes it makes to the table (§4.3). Throws HpackError on anything malformed: a
   * connection error (COMPRESSION_ERROR) for the caller.
   */
  decode(block: Buffer, out: string[]): boolean {
    let at = 0;
    const end = block.length;
    let first = true;
    const start = out.length;
    let weight = 0;
    let fits = true;
    while (at < end) {
      const b = block[at]!;
      if (b & 0x80) {
        const [index, next] = readInt(block, at, 7);
        at = next;
        this.field(index, out);
      } else if (b & 0x40) {
        at = this.literal(block, at, 6, out, true);
      } else if (b & 0x20) {
        // §4.2: size updates only at the start of a block.
        if (!first) throw new HpackError('dynamic table size update after a header field');
        const [size, next] = readInt(block, at, 5);
        at = next;
        if (size > this.limit) throw new HpackError('dynamic table size update above our limit');
        this.max = size;
        this.evict(0);
        continue;
      } else {
        at = this.literal(block, at, 4, out, false);
      }
      first = false;
      if (!fits) out.length = start;
      else {
        const n = out.length;
        weight += out[n - 2]!.length + out[n - 1]!.length + ENTRY_OVERHEAD;
        if (weight > this.maxList) {
          fits = false;
          out.length = start;
        }
      }
    }
    return fits;
  }

  private field(index: number, out: string[]): void {
    if (index === 0) throw new HpackError('header field index 0');
    if (index <= STATIC.length) {
      const e = STATIC[index - 1]!;
      out.push(e[0], e[1]);
      return;
    }
    const d = this.slot(index);
    if (d < 0) throw new HpackError(`header field index ${index} out of range`);
    out.push(this.names[d]!, this.values[d]!);
  }

  private nameAt(index: number): string {
    if (index <= STATIC.length) return STATIC[index - 1]![0];
    const d = this.slot(index);
    if (d < 0) throw new HpackError(`header name index ${index} out of range`);
    return this.names[d]!;
  }

  private literal(block: Buffer, at: number, prefix: number, out: string[], index: boolean): number {
    const [nameIndex, afterIndex] = readInt(block, at, prefix);
    at = afterIndex;
    let name: string;
    if (nameIndex === 0) {
      [name, at] = readString(block, at);
    } else {
      name = this.nameAt(nameIndex);
    }
    let value: string;
    [value, at] = readString(block, at);
    out.push(name, value);
    if (index) this.insert(name, value);
    return at;
  }

  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    // §4.4: an entry larger than the table empties it and is not added.
    this.evict(size);
    if (size > this.max) return;
    const at = (this.head + this.count) % this.names.length;
    this.names[at] = name;
    this.values[at] = value;
    this.count++;
    this.size += size;
  }

  /** Evicts the oldest entries until `room` more bytes fit. */
  private evict(room: number): void {
    while (this.count > 0 && this.size + room > this.max) {
      const h = this.head;
      this.size -= this.names[h]!.length + this.values[h]!.length + ENTRY_OVERHEAD;
      this.names[h] = '';
      this.values[h] = '';
      this.head = (h + 1) % this.names.length;
      this.count--;
    }
  }
}

function readInt(buf: Buffer, at: number, prefixBits: number): [number, number] {
  if (at >= buf.length) throw new HpackError('truncated integer');
  const max = (1 << prefixBits) - 1;
  let value = buf[at++]! & max;
  if (value < max) return [value, at];
  let shift = 0;
  for (;;) {
    if (at >= buf.length) throw new HpackError('truncated integer');
    const b = buf[at++]!;
    value += (b & 0x7f) * 2 ** shift;
    if (value > 0x7fffffff) throw new HpackError('integer too large');
    if ((b & 0x80) === 0) return [value, at];
    shift += 7;
  }
}

function readString(buf: Buffer, at: number): [string, number] {
  if (at >= buf.length) throw new HpackError('truncated string');
  const huffman = (buf[at]! & 0x80) !== 0;
  const [len, start] = readInt(buf, at, 7);
  const end = start + len;
  if (end > buf.length) throw new HpackError('truncated string');
  return [huffman ? huffmanDecode(buf, start, end) : buf.toString('latin1', start, end), end];
}
