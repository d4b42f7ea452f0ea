// An HTTP/1.1 server for one peer, Varnish, on a Unix socket: keep-alive connections
// carrying one request at a time. It replaces node:http, whose per-request objects
// (IncomingMessage and ServerResponse are full streams) and per-connection objects were
// the largest share of the daemon's own CPU and of its heap at thousands of connections.
// Requests arriving pipelined are kept and served in order, after the current answer.
import net from 'node:net';
import { STATUS_CODES } from 'node:http';
import { connectionListed } from '../headers.js';
import { BAD_VALUE, ChunkedDecoder, HttpParseError, parseHead, TOKEN, type RequestHead } from './parse.js';

/** Where a request body goes as it arrives. */
export interface BodySink {
  data(chunk: Buffer): void;
  end(): void;
  /** The body will not arrive whole: the client left, timed out or broke the framing. */
  abort(reason: string): void;
}

export type OutgoingHeaders = Record<string, string | number | readonly string[] | undefined>;

export interface Http1Options {
  /** Longest request head accepted (request line, fields and the blank line); longer is 431. */
  maxHeaderSize: number;
  /** Time from a request's first byte to the end of its head; then 408. */
  headersTimeoutMs: number;
  /** Time from a request's first byte to the end of its body; then 408. */
  requestTimeoutMs: number;
  /** An idle connection is closed after this long. */
  keepAliveTimeoutMs: number;
  /** The answer for a request that cannot be served: rendered by the caller, sent with connection: close. */
  errorPage(status: number, message: string): { headers: Record<string, string | number>; body: string };
  /** A malformed request, for the debug log. */
  onParseError?(err: HttpParseError): void;
  /**
   * False while no new request should be read. A request that begins to arrive then waits,
   * behind those that arrived before it, until reopen() finds this true again; what the client
   * sends meanwhile is held unparsed up to HOLD_MAX, and the rest waits in the socket. Without
   * it every request is read as it comes.
   */
  mayStart?(): boolean;
}

export type Handler = (req: Request, res: Response) => void;

// Body bytes held for a handler that has not asked for them yet, and pipelined bytes held
// during an answer, before the connection stops reading.
const MAX_QUEUED = 1 << 20;
// An answer this small leaves in one buffer with its head: one write, no writev.
const COALESCE_MAX = 16 << 10;
const TICK_MS = 1000;
// Waiting connections let in per event-loop turn while the gate is open: what each held is
// parsed at once, the rest read in the next turn's poll, before more are let in. A request counts against the
// gate only once its body is read and sent, so the gate is overrun by a few requests.
export const RESUME_PER_TURN = 4;

// Reads. Node reads a socket into a fresh 64 KiB allocation per read, shrunk to what came.
// Sockets accepted here read instead into buffers the connection chooses (net.Socket onread):
// - a request head, a chunked body, anything outside a large body, goes into one scratch
//   buffer of the same 64 KiB shared by every connection, and is copied out at once (reads
//   are never concurrent: each read's callback runs before the next read starts, on
//   whatever socket);
// - once a Content-Length body of BODY_READ_MIN bytes or more flows (a read filled its
//   buffer), the rest of it goes into a buffer bought for it (up to BODY_READ_MAX), read
//   after read, each read starting where the last one ended; the pieces are views of it,
//   handed on without a copy. A head whose body has not come yet buys nothing.
// A 256 KiB body then takes two or three reads instead of five (Varnish's socket holds about
// 200 KiB), and no read allocates and frees its own 64 KiB.
const SCRATCH = Buffer.allocUnsafeSlow(64 << 10);
const BODY_READ_MIN = 16 << 10;
const BODY_READ_MAX = 256 << 10;
// A connection waiting at the gate goes on reading, so that a client hanging up is seen at
// once, until it holds this much; then it stops, and the rest waits in the socket.
const HOLD_MAX = 16 << 10;

let dateSecond = -1;
let dateText = '';
/** The Date field (RFC 9110 §6.6.1), formatted once per second. */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

export class Request {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: '1.0' | '1.1';
  readonly headers: Record<string, string | string[]>;
  readonly rawHeaders: string[];
  /** The declared Content-Length, or -1 for a chunked body. */
  readonly contentLength: number;
  /** The whole body has arrived. */
  complete: boolean;
  private sink: BodySink | undefined;
  private queue: Buffer[] | undefined;
  private queued = 0;
  private failure: string | undefined;
  /** Set once the handler gave up on the body; what still comes is not wanted. */
  private stopped = false;

  constructor(
    head: RequestHead,
    private readonly conn: Connection,
  ) {
    this.method = head.method;
    this.url = head.url;
    this.httpVersion = head.httpVersion;
    this.headers = head.headers;
    this.rawHeaders = head.rawHeaders;
    this.contentLength = head.bodyLength === 'chunked' ? -1 : head.bodyLength;
    this.complete = head.bodyLength === 0;
  }

  /** Hands the body to `sink`: what already arrived at once, the rest as it comes. */
  read(sink: BodySink): void {
    this.sink = sink;
    const queue = this.queue;
    if (queue !== undefined) {
      this.queue = undefined;
      this.queued = 0;
      for (const chunk of queue) {
        if (this.sink !== sink) return;
        sink.data(chunk);
      }
      this.conn.resumeReading();
    }
    if (this.sink !== sink) return;
    if (this.failure !== undefined) sink.abort(this.failure);
    else if (this.complete) this.endSink();
  }

  /** The handler wants no more of the body: the connection stops reading, and closes after the answer. */
  stopReading(): void {
    this.sink = undefined;
    this.stopped = true;
    this.queue = undefined;
    if (!this.complete) this.conn.pauseReading();
  }

  /** @internal */
  _data(chunk: Buffer): void {
    if (this.sink !== undefined) return this.sink.data(chunk);
    if (this.stopped) return;
    (this.queue ??= []).push(chunk);
    this.queued += chunk.length;
    if (this.queued > MAX_QUEUED) this.conn.pauseReading();
  }

  /** @internal */
  _end(): void {
    this.complete = true;
    this.endSink();
  }

  /**
   * The sink is done once the body has ended: let go of it, so that what it holds (a body
   * reader's closures) dies young instead of staying alive for the whole upstream call.
   */
  private endSink(): void {
    const sink = this.sink;
    this.sink = undefined;
    sink?.end();
  }

  /** @internal */
  _abort(reason: string): void {
    if (this.complete || this.failure !== undefined) return;
    this.failure = reason;
    this.sink?.abort(reason);
  }
}

/**
 * The handler's side of a response. One object for the request's whole life, rather than a
 * closure per hook: at thousands of requests in flight, every object kept is GC work.
 */
export interface ResponseOwner {
  /** Once: the answer is complete (handed to the kernel) or the connection closed first. */
  responseClosed(): void;
  /** A write that returned false has been flushed. */
  responseDrained(): void;
}

export class Response {
  statusCode = 200;
  headersSent = false;
  /** The whole answer has been handed to the kernel. */
  writableFinished = false;
  /** The connection closed before the answer was complete. */
  destroyed = false;
  /** False: the connection closes after this answer. */
  shouldKeepAlive: boolean;
  /** The handler's side: hears when the answer is over and when a full socket drains. */
  owner: ResponseOwner | undefined;
  private head: string | undefined;
  private chunked = false;
  private bodyless = false;
  private ended = false;
  /** The server answered in the handler's place (a timeout). */
  private preempted = false;

  constructor(
    private readonly conn: Connection,
    private readonly req: Request,
    keepAlive: boolean,
  ) {
    this.shouldKeepAlive = keepAlive;
  }

  writeHead(status: number, headers: OutgoingHeaders): void {
    if (this.headersSent) throw new Error('the response head was already sent');
    // An unread body, or a server shutting down, ends the connection after this answer: say so.
    if (!this.req.complete || this.conn.draining) this.shouldKeepAlive = false;
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    let length = false;
    let date = false;
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      // Never let a header value start a second response (response splitting).
      if (!TOKEN.test(name)) throw new InvalidHeaderError(`invalid header name ${JSON.stringify(name)}`);
      if (name.length === 14 && name.toLowerCase() === 'content-length') length = true;
      else if (name.length === 4 && name.toLowerCase() === 'date') date = true;
      else if (name.length === 10 && name.toLowerCase() === 'connection') {
        // The connection's fate is the server's to state, once: only `close` is taken from the caller.
        if (connectionListed(String(value))?.has('close')) this.shouldKeepAlive = false;
        continue;
      }
      if (typeof value === 'object') {
        for (const v of value) head += field(name, v);
      } else {
        head += field(name, typeof value === 'number' ? String(value) : value);
      }
    }
    // RFC 9110 §9.3.2 and §15.4.5, §15.3.5: HEAD, 304 and 204 answers carry no content.
    this.bodyless = this.req.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    if (!length && !this.bodyless) {
      // Without a length: chunked for HTTP/1.1, the connection's end for HTTP/1.0.
      if (this.req.httpVersion === '1.1') {
        head += 'transfer-encoding: chunked\r\n';
        this.chunked = true;
      } else this.shouldKeepAlive = false;
    }
    if (!date) head += `date: ${httpDate()}\r\n`;
    if (!this.shouldKeepAlive) head += 'connection: close\r\n';
    else if (this.req.httpVersion === '1.0') head += 'connection: keep-alive\r\n';
    this.head = head + '\r\n';
    this.statusCode = status;
    this.headersSent = true;
  }

  /** Sends a piece of the body; false when the caller should wait for responseDrained. */
  write(chunk: Buffer): boolean {
    if (this.ended || this.destroyed) return false;
    const socket = this.conn.socket;
    if (this.bodyless || chunk.length === 0) return this.flushHead();
    socket.cork();
    if (this.head !== undefined) socket.write(this.takeHead(), 'latin1');
    let ok: boolean;
    if (this.chunked) {
      socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      socket.write(chunk);
      ok = socket.write('\r\n', 'latin1');
    } else ok = socket.write(chunk);
    socket.uncork();
    return ok;
  }

  /** Sends the last of the body (if any) and completes the answer. */
  end(chunk?: Buffer | string): void {
    if (this.ended || this.destroyed) return;
    let body = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (!this.headersSent) this.writeHead(this.statusCode, { 'content-length': body?.length ?? 0 });
    this.ended = true;
    if (this.bodyless || body?.length === 0) body = undefined;
    const socket = this.conn.socket;
    const done = this.conn.onFlushed;
    const head = this.head;
    if (this.chunked) {
      socket.cork();
      if (head !== undefined) socket.write(this.takeHead(), 'latin1');
      if (body !== undefined) {
        socket.write(`${body.length.toString(16)}\r\n`, 'latin1');
        socket.write(body);
        socket.write('\r\n0\r\n\r\n', 'latin1', done);
      } else socket.write('0\r\n\r\n', 'latin1', done);
      socket.uncork();
    } else if (head === undefined) {
      socket.write(body ?? '', done);
    } else if (body === undefined) {
      socket.write(this.takeHead(), 'latin1', done);
    } else if (body.length <= COALESCE_MAX) {
      this.head = undefined;
      const out = Buffer.allocUnsafe(head.length + body.length);
      out.write(head, 0, 'latin1');
      body.copy(out, head.length);
      socket.write(out, done);
    } else {
      socket.cork();
      socket.write(this.takeHead(), 'latin1');
      socket.write(body, done);
      socket.uncork();
    }
  }

  /** Abandons the answer and the connection: the client sees an incomplete response. */
  destroy(): void {
    // A preempting answer (408) is on its way out and closes the connection itself.
    if (!this.preempted) this.conn.socket.destroy();
  }

  private flushHead(): boolean {
    if (this.head === undefined) return true;
    return this.conn.socket.write(this.takeHead(), 'latin1');
  }

  private takeHead(): string {
    const head = this.head!;
    this.head = undefined;
    return head;
  }

  /** @internal Completed (flushed) or cut short; tells the handler once. */
  _closed(finished: boolean): void {
    if (this.writableFinished || this.destroyed) return;
    if (finished) this.writableFinished = true;
    else this.destroyed = true;
    this.ended = true;
    const owner = this.owner;
    this.owner = undefined;
    owner?.responseClosed();
  }

  /** @internal The connection failed the request itself (a timeout): the handler's answer is moot. */
  _preempt(status: number): void {
    this.statusCode = status;
    this.headersSent = true;
    this.ended = true;
    this.preempted = true;
  }
}

/** writeHead refused a header name or value that could split the response. */
export class InvalidHeaderError extends TypeError {}

function field(name: string, value: string): string {
  if (BAD_VALUE.test(value)) throw new InvalidHeaderError(`invalid value for header ${JSON.stringify(name)}`);
  return `${name}: ${value}\r\n`;
}

const enum Phase {
  /** Between requests, nothing buffered. */
  Idle,
  /** Part of a request head has arrived. */
  Head,
  /** A request is being served. */
  Active,
  Closed,
}

class Connection {
  phase = Phase.Idle;
  /** When the current phase began (ms): idle since, or the request's first byte. */
  since = Date.now();
  private buf: Buffer | undefined;
  /** The storage `buf` starts at, when append() made it: room to grow into. */
  private spare: Buffer | undefined;
  private searchFrom = 0;
  private req: Request | undefined;
  private res: Response | undefined;
  private bodyLeft = 0;
  private chunks: ChunkedDecoder | undefined;
  /** The body framing was broken: nothing after it on this connection can be parsed. */
  private broken = false;
  private paused = false;
  /** In the server's queue: holds the start of a request that waits for the gate to open. */
  waiting = false;
  /** Feeding the body of a request to its Request, bound once per connection. */
  private readonly bodyData = (chunk: Buffer): void => this.req!._data(chunk);
  /** What is left of the buffer bought for the current body: the next read goes there. */
  private room: Buffer | undefined;
  /** The last read filled its buffer: more is likely waiting in the socket. */
  private lastReadFull = false;
  /** The write that ends an answer: flushed, or failed because the connection died. */
  readonly onFlushed = (err?: Error | null): void => (err ? void this.socket.destroy() : this.finished());

  constructor(
    readonly socket: net.Socket,
    private readonly server: Http1Server,
    /** The socket reads into nextReadBuffer() and calls onRead(); else it emits 'data'. */
    ownReads: boolean,
  ) {
    if (!ownReads) socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', () => {});
    socket.on('close', () => this.onClose());
    socket.on('drain', () => this.res?.owner?.responseDrained());
  }

  get draining(): boolean {
    return this.server.closing;
  }

  /** Between requests, and not holding one back: closing it loses nothing. */
  get idle(): boolean {
    return this.phase === Phase.Idle && !this.waiting;
  }

  /** Called about once a second: enforces the three timeouts. */
  tick(now: number): void {
    const o = this.server.options;
    const age = now - this.since;
    if (this.phase === Phase.Idle) {
      // A waiting connection may hold a request the client has sent: it is not idle.
      if (age > o.keepAliveTimeoutMs && !this.waiting) this.socket.destroy();
    } else if (this.phase === Phase.Head) {
      if (age > o.headersTimeoutMs) this.refuse(new HttpParseError(408, 'request not received in time'));
    } else if (this.phase === Phase.Active && !this.req!.complete && age > o.requestTimeoutMs) {
      this.refuse(new HttpParseError(408, 'request not received in time'));
    }
  }

  pauseReading(): void {
    if (!this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  resumeReading(): void {
    if (this.paused && !this.broken) {
      this.paused = false;
      this.socket.resume();
    }
  }

  close(): void {
    this.socket.destroy();
  }

  /** Where the socket's next read goes (called after each read). */
  nextReadBuffer(): Buffer {
    const left = this.bodyLeft;
    if (this.phase === Phase.Active && left > 0 && !this.broken) {
      const room = this.room;
      if (room !== undefined && room.length >= Math.min(left, BODY_READ_MIN)) return room;
      if (left >= BODY_READ_MIN && this.lastReadFull && !this.paused && !this.socket.destroyed) {
        return (this.room = Buffer.allocUnsafeSlow(Math.min(left, BODY_READ_MAX)));
      }
    }
    this.room = undefined;
    return SCRATCH;
  }

  /** `n` bytes were read into `buf`, the buffer nextReadBuffer() gave. */
  onRead(n: number, buf: Buffer): void {
    this.lastReadFull = n === buf.length;
    let chunk: Buffer;
    if (buf === SCRATCH) {
      chunk = Buffer.allocUnsafe(n);
      SCRATCH.copy(chunk, 0, 0, n);
    } else {
      chunk = buf.subarray(0, n);
      this.room = buf.subarray(n);
    }
    this.onData(chunk);
  }

  private onData(chunk: Buffer): void {
    // Refused, or closing after its last answer: nothing more is read.
    if (this.phase === Phase.Closed) return;
    // A request's first bytes take their place at the gate now, behind the requests that
    // arrived before them, whichever connections those came on. Held, not parsed, until the
    // gate lets this connection in (takeHeld).
    if (this.waiting || (this.phase === Phase.Idle && this.server.wait(this))) {
      this.append(chunk);
      this.hold();
      return;
    }
    if (this.phase === Phase.Active) {
      const req = this.req!;
      let used = 0;
      if (!req.complete && !this.broken) used = this.feedBody(chunk, 0);
      if (used < chunk.length && !this.broken) {
        // The next request, sent before this one's answer: kept for later, bounded.
        this.append(used === 0 ? chunk : chunk.subarray(used));
        if (this.buf!.length > MAX_QUEUED) this.pauseReading();
      }
      return;
    }
    if (this.phase === Phase.Idle) {
      this.phase = Phase.Head;
      this.since = Date.now();
    }
    this.append(chunk);
    this.parse();
  }

  /**
   * Adds bytes to the unparsed ones. They grow into a buffer of doubling size, so a head
   * sent a byte at a time costs linear copying, not quadratic.
   */
  private append(chunk: Buffer): void {
    const buf = this.buf;
    if (buf === undefined) {
      this.buf = chunk;
      this.spare = undefined;
      return;
    }
    const length = buf.length + chunk.length;
    let store = this.spare;
    // Only while `buf` is still the start of that storage (parsing moves it along).
    const growable = store !== undefined && store.buffer === buf.buffer && store.byteOffset === buf.byteOffset;
    if (store === undefined || !growable || store.length < length) {
      store = Buffer.allocUnsafe(Math.max(length * 2, 4096));
      buf.copy(store, 0);
    }
    chunk.copy(store, buf.length);
    this.spare = store;
    this.buf = store.subarray(0, length);
  }

  /** Parses and starts buffered requests, one at a time. */
  private parse(): void {
    let buf = this.buf;
    if (buf === undefined || this.phase === Phase.Active || this.phase === Phase.Closed) return;
    // RFC 9112 §2.2: empty lines before a request line are ignored (as node:http does).
    if (buf[0] === 13 || buf[0] === 10) {
      let at = 0;
      while (at + 1 < buf.length && buf[at] === 13 && buf[at + 1] === 10) at += 2;
      if (at > 0) {
        buf = at < buf.length ? buf.subarray(at) : undefined;
        this.buf = buf;
        this.searchFrom = 0;
        if (buf === undefined) {
          // Only empty lines: still between requests (keep-alive timeout, and the gate for the next).
          this.phase = Phase.Idle;
          this.since = Date.now();
          return;
        }
      }
    }
    const max = this.server.options.maxHeaderSize;
    const end = buf.indexOf('\r\n\r\n', this.searchFrom, 'latin1');
    if (end < 0 || end + 4 > max) {
      if (end >= 0 || buf.length > max) return this.refuse(new HttpParseError(431, 'request headers too large'));
      this.searchFrom = Math.max(0, buf.length - 3);
      return;
    }
    let head: RequestHead;
    try {
      head = parseHead(buf.toString('latin1', 0, end));
    } catch (err) {
      if (err instanceof HttpParseError) return this.refuse(err);
      throw err;
    }
    const rest = end + 4;
    this.buf = rest < buf.length ? buf.subarray(rest) : undefined;
    this.searchFrom = 0;
    const req = new Request(head, this);
    const res = new Response(this, req, head.keepAlive && !this.server.closing);
    this.req = req;
    this.res = res;
    this.phase = Phase.Active;
    if (head.bodyLength === 'chunked') this.chunks = new ChunkedDecoder(this.bodyData);
    else this.bodyLeft = head.bodyLength;
    // RFC 9110 §10.1.1: a client that expects 100-continue waits for it before the body.
    if (head.expectContinue && !req.complete && this.buf === undefined) this.socket.write('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
    try {
      this.server.handler(req, res);
    } catch {
      // A handler that throws has no answer to give: the connection cannot go on.
      this.socket.destroy();
      return;
    }
    const pending = this.buf;
    if (pending !== undefined && !req.complete && this.req === req) {
      this.buf = undefined;
      const used = this.feedBody(pending, 0);
      if (used < pending.length && !this.broken) this.buf = pending.subarray(used);
    }
    if (this.paused === false && this.buf !== undefined && this.buf.length > MAX_QUEUED) this.pauseReading();
  }

  /** Waiting at the gate: reads on until it holds HOLD_MAX, so that a hang-up is seen. */
  private hold(): void {
    if (this.buf!.length >= HOLD_MAX) this.pauseReading();
    else this.resumeReading();
  }

  /** Let in by the gate: parses what arrived while it waited. */
  takeHeld(): void {
    if (this.phase !== Phase.Idle || this.buf === undefined) return;
    this.phase = Phase.Head;
    this.since = Date.now();
    this.parse();
  }

  /** Passes body bytes from `chunk` to the request; returns how many were body. */
  private feedBody(chunk: Buffer, start: number): number {
    const req = this.req!;
    if (this.chunks !== undefined) {
      let used: number;
      try {
        used = this.chunks.push(chunk, start);
      } catch (err) {
        this.broken = true;
        this.pauseReading();
        req._abort(err instanceof HttpParseError ? err.message : 'malformed chunked body');
        return chunk.length - start;
      }
      if (this.chunks.done) {
        this.chunks = undefined;
        req._end();
      }
      return used;
    }
    const take = Math.min(this.bodyLeft, chunk.length - start);
    this.bodyLeft -= take;
    req._data(start === 0 && take === chunk.length ? chunk : chunk.subarray(start, start + take));
    if (this.bodyLeft === 0) req._end();
    return take;
  }

  /** The current answer has been flushed: close, or go on with the next request. */
  private finished(): void {
    const req = this.req;
    const res = this.res;
    if (req === undefined || res === undefined || this.phase !== Phase.Active) return;
    this.req = undefined;
    this.res = undefined;
    this.chunks = undefined;
    res._closed(true);
    if (!res.shouldKeepAlive || !req.complete || this.broken || this.server.closing) {
      this.phase = Phase.Closed;
      this.socket.destroySoon(); // ends, and closes once flushed: a client that never closes its side does not linger
      return;
    }
    this.since = Date.now();
    this.phase = Phase.Idle;
    // A request sent before this answer (pipelined) arrived too: it passes the gate like any other.
    if (this.buf !== undefined && this.server.wait(this)) return this.hold();
    // Before the next request starts: it may pause the socket again (a body it refuses).
    this.resumeReading();
    if (this.buf !== undefined) {
      this.phase = Phase.Head;
      this.parse();
    }
  }

  /** Answers a request that cannot be served with its status, then closes. */
  private refuse(err: HttpParseError): void {
    this.server.options.onParseError?.(err);
    const res = this.res;
    if (res !== undefined && res.headersSent) return void this.socket.destroy();
    res?._preempt(err.status);
    this.req?._abort(err.message);
    this.phase = Phase.Closed;
    this.buf = undefined;
    const page = this.server.options.errorPage(err.status, err.message);
    let head = `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status]}\r\n`;
    for (const [k, v] of Object.entries(page.headers)) head += `${k}: ${v}\r\n`;
    this.socket.end(`${head}date: ${httpDate()}\r\nconnection: close\r\n\r\n${page.body}`);
    this.socket.destroySoon();
  }

  private onEnd(): void {
    // A client that stops sending has gone, as node:http reads it too (httpAllowHalfOpen
    // false): Varnish never half-closes, and a hang-up must cancel the invocation at once.
    this.socket.destroy();
  }

  private onClose(): void {
    this.phase = Phase.Closed;
    this.server.forget(this);
    const req = this.req;
    const res = this.res;
    this.req = undefined;
    this.res = undefined;
    req?._abort('request body ended early');
    res?._closed(false);
  }
}

/** The listener and its connections. */
export class Http1Server {
  readonly listener: net.Server;
  closing = false;
  private readonly conns = new Set<Connection>();
  /** More listeners on the same socket (listen.ts addAcceptors), closed with the main one. */
  private readonly extra: net.Server[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** Connections whose request waits for the gate to open, first come first, from `queueHead` on. */
  private queue: Connection[] = [];
  private queueHead = 0;
  private resumeScheduled = false;
  private readonly onConnection = (socket: net.Socket): void => void this.connected(socket, false);
  private readonly resumeSome = (): void => {
    this.resumeScheduled = false;
    const mayStart = this.options.mayStart;
    const q = this.queue;
    let n = RESUME_PER_TURN;
    const released: Connection[] = [];
    while (this.queueHead < q.length && n > 0 && (mayStart === undefined || mayStart())) {
      const conn = q[this.queueHead++]!;
      if (this.release(conn)) {
        released.push(conn);
        n--;
      }
    }
    if (this.queueHead === q.length) {
      this.queue = [];
      this.queueHead = 0;
    } else {
      if (this.queueHead >= 1024 && this.queueHead * 2 >= q.length) {
        this.queue = q.slice(this.queueHead);
        this.queueHead = 0;
      }
      if (n === 0) this.reopen();
    }
    // Let in together: what they held is parsed once the batch is chosen and the queue put
    // in order, as what is still in their sockets is read in the next poll.
    for (const conn of released) conn.takeHeld();
  };

  constructor(
    readonly options: Http1Options,
    readonly handler: Handler,
  ) {
    this.listener = net.createServer({ allowHalfOpen: true }, this.onConnection);
    // The timeouts are checked on one timer for all connections, at a quarter of the
    // shortest of them (at most once a second), instead of a timer per connection.
    const tick = Math.max(10, Math.min(TICK_MS, options.headersTimeoutMs / 4, options.requestTimeoutMs / 4, options.keepAliveTimeoutMs / 4));
    this.listener.on('listening', () => {
      this.timer ??= setInterval(() => this.tick(), tick).unref();
      this.ownReads(this.listener);
    });
    this.listener.on('close', () => {
      clearInterval(this.timer);
      this.timer = undefined;
    });
  }

  get connections(): number {
    return this.conns.size;
  }

  /**
   * Serves the connections another listener on the same socket accepts. Call before it
   * listens: its sockets are set up as the main listener's (half-close = the client left).
   */
  acceptFrom(listener: net.Server): void {
    this.extra.push(listener);
    (listener as net.Server & { allowHalfOpen: boolean }).allowHalfOpen = true;
    listener.on('connection', this.onConnection);
    // Closed while it was being set up (a SIGTERM during start-up): it must not start
    // taking connections only to reset them during the drain.
    listener.once('listening', () => {
      if (this.closing) listener.close();
      else this.ownReads(listener);
    });
  }

  private connected(socket: net.Socket, ownReads: boolean): Connection | undefined {
    if (this.closing) return void socket.destroy();
    const conn = new Connection(socket, this, ownReads);
    this.conns.add(conn);
    return conn;
  }

  /**
   * Takes over the listener's accepts: its sockets are made here, reading into buffers their
   * connection chooses (see SCRATCH), and are counted on the listener as net.Server counts
   * its own. A listener whose handle has no accept callback keeps Node's way.
   */
  private ownReads(listener: net.Server): void {
    type Accepting = { onconnection?: (err: number, client: unknown) => void };
    const handle = (listener as net.Server & { _handle?: Accepting | null })._handle;
    const original = handle?.onconnection;
    if (handle == null || typeof original !== 'function') return;
    const counted = listener as net.Server & { _connections: number };
    handle.onconnection = (err, client) => {
      if (err !== 0 || client == null) return original.call(handle, err, client);
      let conn: Connection | undefined;
      const socket = new net.Socket({
        handle: client,
        allowHalfOpen: true,
        readable: true,
        writable: true,
        onread: {
          buffer: () => (conn === undefined ? SCRATCH : conn.nextReadBuffer()),
          callback: (n: number, buf: Uint8Array) => void conn?.onRead(n, buf as Buffer),
        },
      } as net.SocketConstructorOpts);
      counted._connections++;
      const owned = socket as net.Socket & { server: net.Server; _server: net.Server };
      owned.server = listener;
      owned._server = listener;
      conn = this.connected(socket, true);
    };
  }

  /**
   * Stops accepting and closes idle connections; busy ones close after their answer.
   * Requests waiting for the gate are let in and served (each answer then closes its
   * connection), and so is one that arrives on an idle connection within the next two
   * event-loop turns (Varnish may have sent it just before); then the promise resolves and
   * the connections still idle are closed.
   */
  close(): Promise<void> {
    this.closing = true;
    if (this.listener.listening) this.listener.close();
    for (const l of this.extra) if (l.listening) l.close();
    const released = this.queue.slice(this.queueHead).filter((conn) => this.release(conn));
    this.queue = [];
    this.queueHead = 0;
    for (const conn of released) conn.takeHeld();
    // Idle connections too are read once more: a request sent on one just before is served.
    // What a waiting connection held is parsed as it is released; what is still in its
    // socket is read in the next poll, and parsed then.
    return new Promise((resolve) =>
      setImmediate(() =>
        setImmediate(() => {
          this.closeIdleConnections();
          resolve();
        }),
      ),
    );
  }

  /** Connections whose request waits, unread, for the gate to open. */
  get waiting(): number {
    let n = 0;
    for (let i = this.queueHead; i < this.queue.length; i++) if (this.queue[i]!.waiting) n++;
    return n;
  }

  closeIdleConnections(): void {
    for (const c of this.conns) if (c.idle) c.close();
  }

  closeAllConnections(): void {
    for (const c of this.conns) c.close();
  }

  /** @internal */
  forget(conn: Connection): void {
    this.conns.delete(conn);
    conn.waiting = false;
  }

  /**
   * @internal An idle connection whose next request has begun to arrive: if the gate is shut,
   * or other requests wait already, it queues, holding what arrives unparsed. Returns whether
   * it did. Requests are so let in in the order they arrived, not in the order their
   * connections fell idle: Varnish reuses its most recently freed connection first, so many
   * connections sit idle between requests.
   */
  wait(conn: Connection): boolean {
    const mayStart = this.options.mayStart;
    if (mayStart === undefined || this.closing) return false;
    // Entries of connections that closed while they waited hold nobody up.
    while (this.queueHead < this.queue.length && !this.queue[this.queueHead]!.waiting) this.queueHead++;
    if (this.queueHead === this.queue.length && mayStart()) return false;
    // It goes on reading until it holds HOLD_MAX, so that a hang-up is seen while it waits.
    conn.waiting = true;
    this.queue.push(conn);
    this.reopen();
    return true;
  }

  /** Takes a connection off the wait (its caller then calls takeHeld); false if it closed while it waited. */
  private release(conn: Connection): boolean {
    if (!conn.waiting) return false;
    conn.waiting = false;
    conn.since = Date.now(); // idle from now, for the keep-alive timeout
    conn.resumeReading();
    return true;
  }

  /** The gate may be open: resumes waiting connections, a few per event-loop turn. */
  reopen(): void {
    if (this.resumeScheduled || this.queueHead === this.queue.length) return;
    this.resumeScheduled = true;
    setImmediate(this.resumeSome);
  }

  private tick(): void {
    const now = Date.now();
    for (const c of this.conns) c.tick(now);
  }
}
