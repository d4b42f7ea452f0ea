// HTTP/1.1 request parsing (RFC 9112), strict where leniency lets two parsers disagree:
// no obs-fold, no whitespace before a colon, no bare CR or LF, no Content-Length beside
// Transfer-Encoding, no duplicate Content-Length, no transfer coding but chunked. Our peer is
// Varnish, which sends clean HTTP/1.1; anything else is refused rather than guessed at.
import http from 'node:http';
import { connectionListed } from '../headers.js';

/** A request that cannot be parsed: the status to answer with, then the connection closes. */
export class HttpParseError extends Error {
  constructor(
    readonly status: 400 | 408 | 417 | 431 | 505,
    message: string,
  ) {
    super(message);
  }
}

export interface RequestHead {
  method: string;
  url: string;
  httpVersion: '1.0' | '1.1';
  /** Lower-case names, duplicates combined as node:http combines them. */
  headers: Record<string, string | string[]>;
  /** Names and values as received, alternating. */
  rawHeaders: string[];
  /** Body framing: a Content-Length, 'chunked', or 0 for none. */
  bodyLength: number | 'chunked';
  keepAlive: boolean;
  /** The client waits for "100 Continue" before it sends the body. */
  expectContinue: boolean;
}

// RFC 9110 §5.6.2 token (a field name), and a field value's forbidden bytes: controls
// other than HTAB (§5.5). Shared by everything that reads or writes HTTP fields.
export const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
export const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
// request-line = method SP request-target SP HTTP-version (RFC 9112 §3); the target is
// visible ASCII (RFC 3986: anything else is percent-encoded; node:http refuses raw UTF-8 too).
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP\/(\d)\.(\d)$/;
const METHODS = new Set(http.METHODS);
const ABSOLUTE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;

// node:http keeps the first of these when they repeat (IncomingMessage's matchKnownFields);
// the daemon reads headers as node:http would, so the rules do not change under it.
const FIRST_WINS = new Set([
  'content-type', 'content-length', 'user-agent', 'referer', 'host', 'authorization', 'proxy-authorization',
  'if-modified-since', 'if-unmodified-since', 'from', 'location', 'max-forwards', 'retry-after', 'etag',
  'last-modified', 'server', 'age', 'expires',
]);

/**
 * Parses a request head: `text` is its bytes as latin1, without the blank line that ends
 * it. Throws HttpParseError for anything RFC 9112 does not allow.
 */
export function parseHead(text: string): RequestHead {
  let eol = text.indexOf('\r\n');
  if (eol < 0) eol = text.length;
  const m = REQUEST_LINE.exec(text.slice(0, eol));
  if (m === null) throw new HttpParseError(400, 'malformed request line');
  if (m[3] !== '1') throw new HttpParseError(505, 'only HTTP/1.x is served here');
  const httpVersion = m[4] === '0' ? '1.0' : '1.1';
  const method = m[1]!;
  // The methods node:http (llhttp) knows, as before this parser: an unknown one is refused.
  if (!METHODS.has(method)) throw new HttpParseError(400, 'unknown method');
  if (method === 'CONNECT') throw new HttpParseError(400, 'CONNECT is not served here');
  // RFC 9112 §3.2: origin-form (/path), absolute-form (scheme://…), or * for OPTIONS.
  const url = m[2]!;
  if (url.charCodeAt(0) !== 47 /* / */ && !(url === '*' && method === 'OPTIONS') && !ABSOLUTE.test(url)) {
    throw new HttpParseError(400, 'malformed request target');
  }

  const headers: Record<string, string | string[]> = {};
  const rawHeaders: string[] = [];
  let contentLength: string | undefined;
  let transferEncoding: string | undefined;
  let hosts = 0;
  let pos = eol + 2;
  while (pos < text.length) {
    let end = text.indexOf('\r\n', pos);
    if (end < 0) end = text.length;
    const colon = text.indexOf(':', pos);
    if (colon < 0 || colon > end) throw new HttpParseError(400, 'header line without a colon');
    // RFC 9112 §5.1: whitespace before the colon, and obs-fold (§5.2), are refused.
    const name = text.slice(pos, colon);
    if (!TOKEN.test(name)) throw new HttpParseError(400, 'invalid header name');
    const value = trimOws(text, colon + 1, end);
    if (BAD_VALUE.test(value)) throw new HttpParseError(400, 'invalid header value');
    rawHeaders.push(name, value);
    const key = name.toLowerCase();
    if (key === 'content-length') {
      if (contentLength !== undefined) throw new HttpParseError(400, 'Content-Length given more than once');
      contentLength = value;
    } else if (key === 'host') {
      hosts++;
    } else if (key === 'transfer-encoding') {
      transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
    }
    add(headers, key, value);
    pos = end + 2;
  }

  // RFC 9112 §3.2: an HTTP/1.1 request without Host, or with two, is refused (as node:http does).
  if (httpVersion === '1.1' && hosts !== 1) throw new HttpParseError(400, hosts === 0 ? 'missing Host header' : 'Host given more than once');

  let bodyLength: number | 'chunked' = 0;
  if (transferEncoding !== undefined) {
    // RFC 9112 §6.1 and §6.3: both framings at once is how requests are smuggled.
    if (contentLength !== undefined) throw new HttpParseError(400, 'Content-Length together with Transfer-Encoding');
    if (httpVersion === '1.0') throw new HttpParseError(400, 'Transfer-Encoding in an HTTP/1.0 request');
    if (transferEncoding.trim().toLowerCase() !== 'chunked') throw new HttpParseError(400, 'unsupported Transfer-Encoding');
    bodyLength = 'chunked';
  } else if (contentLength !== undefined) {
    if (!/^\d{1,15}$/.test(contentLength)) throw new HttpParseError(400, 'invalid Content-Length');
    bodyLength = Number(contentLength);
  }

  const connection = connectionListed(headers['connection']);
  const keepAlive = httpVersion === '1.1' ? connection?.has('close') !== true : connection?.has('keep-alive') === true;

  let expectContinue = false;
  const expect = headers['expect'];
  if (expect !== undefined && httpVersion === '1.1') {
    // RFC 9110 §10.1.1: 100-continue is the only expectation defined.
    if (typeof expect !== 'string' || expect.toLowerCase() !== '100-continue') throw new HttpParseError(417, 'unsupported Expect');
    expectContinue = true;
  }
  return { method, url, httpVersion, headers, rawHeaders, bodyLength, keepAlive, expectContinue };
}

function trimOws(s: string, start: number, end: number): string {
  while (start < end && (s.charCodeAt(start) === 32 || s.charCodeAt(start) === 9)) start++;
  while (end > start && (s.charCodeAt(end - 1) === 32 || s.charCodeAt(end - 1) === 9)) end--;
  return s.slice(start, end);
}

function add(headers: Record<string, string | string[]>, key: string, value: string): void {
  const prev = headers[key];
  if (prev === undefined) {
    headers[key] = key === 'set-cookie' ? [value] : value;
  } else if (key === 'set-cookie') {
    (prev as string[]).push(value);
  } else if (!FIRST_WINS.has(key)) {
    headers[key] = `${prev as string}${key === 'cookie' ? '; ' : ', '}${value}`;
  }
}

const enum Chunk {
  Size,
  SizeWs,
  Ext,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  Trailer,
  Done,
}

// A chunk size fits in 2^53 with this many hex digits; more is refused, not wrapped.
const MAX_SIZE_DIGITS = 13;
// A chunk-size line (size, whitespace, extensions) longer than this is refused: its bytes
// count against no body limit, so a peer could otherwise stream them forever
// (node:http caps it too, since CVE-2024-22019).
const MAX_SIZE_LINE = 4096;
const MAX_TRAILER_BYTES = 16 << 10;

/**
 * The chunked transfer coding (RFC 9112 §7.1), decoded incrementally: `push` takes the bytes
 * as they arrive, hands the data on, and returns how many bytes it consumed (the rest,
 * after the last chunk and the trailer section, belongs to the next request).
 */
export class ChunkedDecoder {
  private state = Chunk.Size;
  private size = 0;
  private digits = 0;
  private left = 0;
  private trailerBytes = 0;
  private sizeLineBytes = 0;
  /** Data of the current push() not yet handed on: many small chunks go on as one Buffer. */
  private pending: Buffer[] = [];
  /** Bytes of the current trailer line: 0 at the start of a line. */
  private lineBytes = 0;
  private cr = false;

  constructor(private readonly onData: (chunk: Buffer) => void) {}

  get done(): boolean {
    return this.state === Chunk.Done;
  }

  push(buf: Buffer, start: number): number {
    let i = start;
    const n = buf.length;
    while (i < n && this.state !== Chunk.Done) {
      const c = buf[i]!;
      if (this.state <= Chunk.Ext && ++this.sizeLineBytes > MAX_SIZE_LINE) throw new HttpParseError(400, 'chunk size line too long');
      switch (this.state) {
        case Chunk.Size: {
          const v = hexValue(c);
          if (v >= 0) {
            if (++this.digits > MAX_SIZE_DIGITS) throw new HttpParseError(400, 'chunk size too large');
            this.size = this.size * 16 + v;
            i++;
            break;
          }
          if (this.digits === 0) throw new HttpParseError(400, 'invalid chunk size');
          if (c === 0x0d) this.state = Chunk.SizeLf;
          else if (c === 0x3b /* ; */) this.state = Chunk.Ext;
          else if (c === 0x20 || c === 0x09) this.state = Chunk.SizeWs;
          else throw new HttpParseError(400, 'invalid chunk size');
          i++;
          break;
        }
        case Chunk.SizeWs:
          // BWS before an extension (§7.1.1); "1 2" must not read as a size of 1.
          if (c === 0x3b) this.state = Chunk.Ext;
          else if (c === 0x0d) this.state = Chunk.SizeLf;
          else if (c !== 0x20 && c !== 0x09) throw new HttpParseError(400, 'invalid chunk size');
          i++;
          break;
        case Chunk.Ext:
          // Extensions are allowed and ignored (§7.1.1); controls in them are not.
          if (c === 0x0d) this.state = Chunk.SizeLf;
          else if (c !== 0x09 && (c < 0x20 || c === 0x7f)) throw new HttpParseError(400, 'invalid chunk extension');
          i++;
          break;
        case Chunk.SizeLf:
          if (c !== 0x0a) throw new HttpParseError(400, 'chunk size line not ended by CRLF');
          i++;
          if (this.size === 0) {
            this.state = Chunk.Trailer;
            this.lineBytes = 0;
            this.cr = false;
          } else {
            this.left = this.size;
            this.state = Chunk.Data;
          }
          this.size = 0;
          this.digits = 0;
          this.sizeLineBytes = 0;
          break;
        case Chunk.Data: {
          const take = Math.min(this.left, n - i);
          this.pending.push(buf.subarray(i, i + take));
          i += take;
          this.left -= take;
          if (this.left === 0) this.state = Chunk.DataCr;
          break;
        }
        case Chunk.DataCr:
          if (c !== 0x0d) throw new HttpParseError(400, 'chunk data not ended by CRLF');
          this.state = Chunk.DataLf;
          i++;
          break;
        case Chunk.DataLf:
          if (c !== 0x0a) throw new HttpParseError(400, 'chunk data not ended by CRLF');
          this.state = Chunk.Size;
          i++;
          break;
        case Chunk.Trailer:
          // Trailer fields are read and dropped; an empty line ends them (§7.1.2).
          if (++this.trailerBytes > MAX_TRAILER_BYTES) throw new HttpParseError(431, 'trailer section too large');
          i++;
          if (this.cr) {
            if (c !== 0x0a) throw new HttpParseError(400, 'bare CR in the trailer section');
            this.cr = false;
            if (this.lineBytes === 0) this.state = Chunk.Done;
            this.lineBytes = 0;
          } else if (c === 0x0d) {
            this.cr = true;
          } else if (c === 0x0a || (c < 0x20 && c !== 0x09) || c === 0x7f) {
            throw new HttpParseError(400, 'invalid byte in the trailer section');
          } else {
            this.lineBytes++;
          }
          break;
      }
    }
    this.flush();
    return i - start;
  }

  /**
   * Hands on the data of this push() as one Buffer: a body sent in tiny chunks would
   * otherwise become a Buffer object per chunk (millions for a few MB), far more memory
   * than the bytes that --max-body and --max-buffered account for.
   */
  private flush(): void {
    const pending = this.pending;
    if (pending.length === 0) return;
    this.pending = [];
    this.onData(pending.length === 1 ? pending[0]! : Buffer.concat(pending));
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}
