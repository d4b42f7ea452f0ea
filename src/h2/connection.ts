// A lean HTTP/2 client connection (RFC 9113) over one TLS socket, for the hot path.
//
// Why not node:http2: measured behind Varnish, its client costs ~85 µs of CPU per request
// on this daemon's hosts (a Duplex per stream, header objects converted twice, nghttp2
// callbacks), more than everything else lambda-sign does. This client does only what an
// invocation needs: requests with a body already in memory, answers streamed back with
// flow control, and the connection-level duties (SETTINGS, PING, WINDOW_UPDATE, GOAWAY).
// Frames written in one event-loop turn leave in one write, or in writes of a TLS record or more.
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import type { Socket } from 'node:net';
import { bodyLength, type Body } from '../body.js';
import { encodeHeaders, HpackDecoder, HpackError } from './hpack.js';

// §6: frame types.
const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;

// Flags.
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;

// §7: error codes.
export const NO_ERROR = 0x0;
export const PROTOCOL_ERROR = 0x1;
export const INTERNAL_ERROR = 0x2;
export const FLOW_CONTROL_ERROR = 0x3;
export const STREAM_CLOSED = 0x5;
export const FRAME_SIZE_ERROR = 0x6;
export const REFUSED_STREAM = 0x7;
export const CANCEL = 0x8;
export const COMPRESSION_ERROR = 0x9;

// §6.5.2: settings.
const SETTINGS_HEADER_TABLE_SIZE = 0x1;
const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;
const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const DEFAULT_WINDOW = 65_535;
const MAX_WINDOW = 0x7fffffff;
const OUR_MAX_FRAME = 16_384;
/** A response header block larger than this is refused (the stream is reset). */
const MAX_HEADER_BLOCK = 256 << 10;
/**
 * Nor may the decoded list weigh more than this (RFC 9113 §6.5.2's measure; we announce it).
 * Lambda's answers carry a few KB of headers, and Varnish takes 32 KiB of response head by
 * default (http_resp_size).
 */
const MAX_HEADER_LIST = 64 << 10;
/** DATA payloads at most this long are copied into the batched write; longer ones go by reference. */
const COPY_LIMIT = 4096;
/**
 * Frames leave at the end of the event-loop turn, or as soon as this many bytes wait (a full
 * TLS record). In a burst, a turn can take a thousand requests from Varnish; holding all of
 * their frames until the turn ends would delay the first by the whole burst.
 */
const FLUSH_AT = 16 << 10;
/** Stream ids are 31 bits; stop opening streams well before they run out. */
const LAST_CLIENT_STREAM_ID = 0x7fff0000;
const EMPTY = Buffer.alloc(0);

export interface H2Options {
  /** Our per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE). */
  streamWindow?: number;
  /** Our connection receive window. */
  connectionWindow?: number;
  /** Where this connection counts the request-body bytes it has yet to send. */
  backlog?: SendBacklog;
}

/**
 * Request-body bytes handed to streams and not yet framed, because the peer's flow-control
 * window is closed, over every connection that shares it. The HTTP/1.1 side reads it to
 * stop taking new requests while the upstream is the narrow point.
 */
export class SendBacklog {
  bytes = 0;
  /** Below this many bytes, a decrease calls onLow. */
  low = 0;
  onLow: (() => void) | undefined;

  /** @internal */
  sent(n: number): void {
    this.bytes -= n;
    if (this.bytes < this.low) this.onLow?.();
  }
}

/** Why a stream ended without an answer, or why its body was cut. */
export class H2StreamError extends Error {
  constructor(
    message: string,
    /** RST_STREAM code received, when the peer reset the stream. */
    readonly rstCode: number | undefined,
    /** True when the peer provably never processed the request (RFC 9113 §8.7). */
    readonly unprocessed: boolean,
  ) {
    super(message);
  }
}

/**
 * The side that opened a stream. An object rather than callbacks: it is kept for the whole
 * exchange, and one object is cheaper to keep (and to collect) than a closure per event.
 */
export interface StreamOwner {
  /** Once: the response headers arrived (err undefined), or the reason there will be none. */
  streamResponse(stream: H2Stream, err: H2StreamError | undefined): void;
  /** Once: the stream is closed at the protocol level (its slot is free). */
  streamClosed(stream: H2Stream): void;
}

/** One request/response exchange. The stream itself is the response body. */
export class H2Stream extends Readable {
  id = 0;
  status = 0;
  /** Response headers, lower-case names; repeated names become arrays. */
  headers: Record<string, string | string[]> = {};
  rstCode: number | undefined;
  /** The exchange is over at the protocol level (both sides ended, or reset). */
  over = false;
  /** Who hears of the answer's headers and of the stream's end (see StreamOwner). */
  owner: StreamOwner | undefined;

  // Sending side.
  /** @internal */ sendWindow: number;
  /** @internal The request body's parts (one Buffer, or the chunks it arrived in). */
  body: readonly Buffer[] | undefined;
  /** @internal Where sending is: the part, the offset in it, and the bytes sent and due. */
  bodyPart = 0;
  /** @internal */ bodyAt = 0;
  /** @internal */ bodySent = 0;
  /** @internal */ bodySize = 0;
  /** @internal */ localEnded = false;
  /** @internal In the connection's list of streams waiting for send window. */
  blocked = false;
  /** @internal When the body started, or last had bytes go out (performance.now()). */
  movedAt = 0;
  // Receiving side.
  /** @internal */ recvWindow: number;
  /** @internal */ remoteEnded = false;
  /** @internal */ responded = false;
  /** @internal */ received = 0;
  /** @internal Content-Length of the answer, or -1 when it has none (or no body is allowed). */
  expected = -1;
  /** @internal */ head = false;

  constructor(private readonly conn: H2Connection, sendWindow: number, recvWindow: number) {
    super({ highWaterMark: 64 << 10 });
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** Answer data that arrived before anyone read: kept out of the Readable until then. */
  private early: Buffer[] | undefined;
  private earlyEnded = false;
  private reading = false;

  /** @internal Answer data from the peer. */
  deliver(data: Buffer): void {
    if (this.reading) this.push(data);
    else (this.early ??= []).push(data);
  }

  /** @internal The peer ended the answer. */
  deliverEnd(): void {
    if (this.reading) this.push(null);
    else this.earlyEnded = true;
  }

  /** Consumer wants more: what arrived before it read, then the window the peer has used. */
  override _read(): void {
    if (!this.reading) {
      // Most answers are taken whole (takeComplete) and never pass through the Readable's
      // buffer; one that is read as a stream gets what came early first, in order.
      this.reading = true;
      const early = this.early;
      this.early = undefined;
      if (early !== undefined) for (const chunk of early) this.push(chunk);
      if (this.earlyEnded) return void this.push(null);
    }
    this.conn.creditStream(this);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // A body dropped before its end: tell the peer we no longer want it.
    if (!this.over) this.conn.reset(this, CANCEL);
    cb(err);
  }

  /**
   * The whole answer, when all of it has arrived and nothing has started reading it: the
   * common small answer, handed over without the stream's flowing machinery. Otherwise
   * undefined, and the caller reads the stream as usual.
   */
  takeComplete(): Buffer | undefined {
    if (!this.remoteEnded || this.destroyed || this.reading || this.readableFlowing !== null) return undefined;
    const early = this.early;
    this.early = undefined;
    this.reading = true;
    // End the Readable as the stream path would ('end', then 'close' for its listeners).
    this.push(null);
    this.read();
    return early === undefined ? EMPTY : early.length === 1 ? early[0]! : Buffer.concat(early);
  }

  /** RST_STREAM with `code` and ends the body with `reason` (never as a clean end). */
  cancel(reason: Error, code = CANCEL): void {
    if (!this.over) this.conn.reset(this, code);
    this.destroy(reason);
  }
}

/**
 * Events: 'remoteSettings' (the peer's SETTINGS applied), 'goaway' (code, lastStreamId),
 * 'close' (the socket is gone; once).
 */
export class H2Connection extends EventEmitter {
  readonly streams = new Map<number, H2Stream>();
  /** The peer's SETTINGS_MAX_CONCURRENT_STREAMS (unlimited until it says). */
  maxConcurrentStreams = Infinity;
  goawayLastStreamId: number | undefined;
  destroyed = false;
  /** No new streams: GOAWAY received or sent, or stream ids are running out. */
  closing = false;
  /** When the peer last sent anything (performance.now() at the read: steps of the wall clock do not move it). */
  heardAt = performance.now();
  /** When our PING left, while nothing at all has come back since (see checkAlive); else 0. */
  pingAt = 0;

  private nextId = 1;
  private readonly decoder = new HpackDecoder(4096, MAX_HEADER_LIST);
  private readonly streamWindow: number;
  private readonly connectionWindow: number;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = 16_384;
  private connSendWindow = DEFAULT_WINDOW;
  private connRecvUnacked = 0;
  /** Streams with body left to send, waiting for window. */
  private blocked: H2Stream[] = [];

  // Reading.
  private pending: Buffer | undefined;
  private headerBlock: Buffer[] | undefined;
  private headerBlockSize = 0;
  private headerStreamId = 0;
  private headerEndStream = false;

  // Writing: small frames are copied into `batch`; parts holds what leaves in the next write.
  private parts: Buffer[] = [];
  private batch = Buffer.allocUnsafe(16 << 10);
  private batchAt = 0;
  private batchStart = 0;
  /** Bytes in `parts`, not yet handed to the socket. */
  private partsBytes = 0;
  private flushScheduled = false;
  private readonly backlog: SendBacklog;

  constructor(readonly socket: Socket, opts: H2Options = {}) {
    super();
    this.streamWindow = opts.streamWindow ?? 1 << 20;
    this.connectionWindow = opts.connectionWindow ?? 8 << 20;
    this.backlog = opts.backlog ?? new SendBacklog();
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
    socket.on('drain', () => this.retryBlocked());

    // §3.4: the preface, our SETTINGS, then the connection window we want.
    this.copyInto(PREFACE);
    const settings: Array<[number, number]> = [
      [SETTINGS_ENABLE_PUSH, 0],
      [SETTINGS_INITIAL_WINDOW_SIZE, this.streamWindow],
      [SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST],
    ];
    this.frame(SETTINGS, 0, 0, settings.length * 6);
    for (const [id, value] of settings) {
      this.batch.writeUInt16BE(id, this.batchAt);
      this.batch.writeUInt32BE(value, this.batchAt + 2);
      this.batchAt += 6;
    }
    if (this.connectionWindow > DEFAULT_WINDOW) this.windowUpdate(0, this.connectionWindow - DEFAULT_WINDOW);
    this.flush();
  }

  /** Streams open (sent, not yet closed). */
  get active(): number {
    return this.streams.size;
  }

  /**
   * Starts a request: HEADERS now, the body as flow control allows. `headers` is
   * [name, value, …] with the pseudo-headers first. Throws if the connection takes no new
   * streams (nothing was sent).
   */
  request(headers: string[], body: Body | undefined): H2Stream {
    if (this.destroyed || this.closing) throw new H2StreamError('the connection takes no new streams', undefined, true);
    const stream = new H2Stream(this, this.peerInitialWindow, this.streamWindow);
    stream.id = this.nextId;
    stream.head = headers[1] === 'HEAD';
    this.nextId += 2;
    if (this.nextId > LAST_CLIENT_STREAM_ID) this.closing = true;
    this.streams.set(stream.id, stream);
    const block = encodeHeaders(headers);
    const parts = body === undefined ? [] : Buffer.isBuffer(body) ? [body] : body;
    const size = body === undefined ? 0 : bodyLength(body);
    this.headers(stream.id, block, size === 0);
    if (size === 0) {
      stream.localEnded = true;
    } else {
      stream.body = parts;
      stream.bodySize = size;
      this.backlog.bytes += size;
      stream.movedAt = performance.now();
      this.sendBody(stream);
    }
    this.scheduleFlush();
    return stream;
  }

  /** Stops taking streams; the socket ends once the open ones finish. */
  close(): void {
    if (this.destroyed) return;
    if (!this.closing) {
      this.closing = true;
      this.goaway(NO_ERROR);
    }
    if (this.streams.size === 0) this.end();
  }

  /** Tears the connection down; open streams fail with `err`. */
  destroy(err?: Error): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.closing = true;
    const reason = err ?? new Error('connection closed');
    for (const s of [...this.streams.values()]) {
      // A stream above a GOAWAY's last id never reached the application.
      const unprocessed = this.goawayLastStreamId !== undefined && s.id > this.goawayLastStreamId;
      this.fail(s, new H2StreamError(`HTTP/2 connection lost: ${reason.message}`, undefined, unprocessed));
    }
    this.blocked = [];
    this.socket.destroy();
    this.emit('close');
  }

  /**
   * Liveness, for a peer that vanished without a FIN (a NAT or load-balancer entry dropped,
   * a host gone) or stopped reading: TCP alone would leave its streams waiting for their
   * whole time limit. With streams open and nothing heard for `quietMs`, a PING goes out
   * (RFC 9113 §6.7); when `ackMs` pass and nothing has come back, neither its ACK nor
   * anything else, the connection is destroyed and its streams fail. They are not retried:
   * they may have run.
   * `judge` false defers that verdict, for a caller whose event loop was held up and may
   * not have read an ACK that is waiting in the socket.
   * And a stream whose body has waited `stuckMs` for send window without a byte going
   * out is reset.
   */
  checkAlive(now: number, quietMs: number, ackMs: number, judge = true, stuckMs = Infinity): void {
    if (this.destroyed) return;
    // A peer that answers PINGs but never opens a window again holds the bodies waiting on
    // it (and, through the backlog, the read gate) until --timeout. Lambda reads a request
    // whole before it runs anything, so a body that has not moved this long will not: its
    // stream is reset (a 502, not retried), and the other streams go on. If the
    // connection's own window is shut, no body can go out on it any more: it takes no new
    // streams and closes once the others are answered.
    if (judge && this.blocked.length > 0) {
      let expired = false;
      for (const s of [...this.blocked]) {
        if (now - s.movedAt < stuckMs) continue;
        expired = true;
        this.streamError(s, CANCEL, `no send window for ${stuckMs / 1000} s`);
      }
      if (expired && this.connSendWindow <= 0) this.close();
    }
    if (this.pingAt !== 0) {
      if (judge && now - this.pingAt >= ackMs) {
        this.destroy(new Error(`no answer to PING within ${ackMs / 1000} s`));
      }
      return;
    }
    if (this.streams.size === 0 || now - this.heardAt < quietMs) return;
    this.pingAt = now;
    this.frame(PING, 0, 0, 8);
    this.batch.fill(0, this.batchAt, this.batchAt + 8);
    this.batchAt += 8;
    this.scheduleFlush();
  }

  // -------------------------------------------------------------------------------------
  // Receiving

  private onData(chunk: Buffer): void {
    this.heardAt = performance.now();
    // Anything from the peer answers a PING as well as its ACK would: it is there.
    this.pingAt = 0;
    let buf = chunk;
    if (this.pending !== undefined) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let at = 0;
    try {
      while (buf.length - at >= 9) {
        const length = (buf[at]! << 16) | (buf[at + 1]! << 8) | buf[at + 2]!;
        if (length > OUR_MAX_FRAME) throw new ConnectionError(FRAME_SIZE_ERROR, `frame of ${length} bytes`);
        if (buf.length - at - 9 < length) break;
        const type = buf[at + 3]!;
        const flags = buf[at + 4]!;
        const id = buf.readUInt32BE(at + 5) & 0x7fffffff;
        const payload = buf.subarray(at + 9, at + 9 + length);
        at += 9 + length;
        this.onFrame(type, flags, id, payload);
        if (this.destroyed) return;
      }
    } catch (err) {
      if (err instanceof ConnectionError) return this.connectionError(err.code, err.message);
      throw err;
    }
    if (at < buf.length) this.pending = buf.subarray(at);
    this.scheduleFlush();
  }

  private onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    // §6.10: nothing may come between HEADERS and its CONTINUATIONs.
    if (this.headerBlock !== undefined && (type !== CONTINUATION || id !== this.headerStreamId)) {
      throw new ConnectionError(PROTOCOL_ERROR, 'header block interrupted');
    }
    switch (type) {
      case DATA:
        return this.onDataFrame(flags, id, payload);
      case HEADERS:
        return this.onHeaders(flags, id, payload);
      case CONTINUATION:
        if (this.headerBlock === undefined) throw new ConnectionError(PROTOCOL_ERROR, 'CONTINUATION without HEADERS');
        return this.addHeaderFragment(flags, payload);
      case RST_STREAM:
        return this.onRst(id, payload);
      case SETTINGS:
        return this.onSettings(flags, id, payload);
      case PING:
        if (id !== 0 || payload.length !== 8) throw new ConnectionError(PROTOCOL_ERROR, 'bad PING');
        if ((flags & ACK) === 0) {
          this.frame(PING, ACK, 0, 8);
          this.copyInto(payload);
        }
        return;
      case GOAWAY:
        return this.onGoaway(id, payload);
      case WINDOW_UPDATE:
        return this.onWindowUpdate(id, payload);
      case PUSH_PROMISE:
        // We said SETTINGS_ENABLE_PUSH 0 (§8.4).
        throw new ConnectionError(PROTOCOL_ERROR, 'PUSH_PROMISE with push disabled');
      case PRIORITY:
      default:
        // §5.5: unknown frame types are ignored.
        return;
    }
  }

  private onDataFrame(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new ConnectionError(PROTOCOL_ERROR, 'DATA on stream 0');
    // Flow control counts the whole frame, padding included (§6.1).
    this.connRecvUnacked += payload.length;
    if (this.connRecvUnacked >= this.connectionWindow / 2) {
      this.windowUpdate(0, this.connRecvUnacked);
      this.connRecvUnacked = 0;
    }
    const stream = this.streams.get(id);
    if (stream === undefined || stream.remoteEnded) {
      // A stream we reset or that already ended: its data is discarded (§5.1, closed state).
      if (id >= this.nextId) throw new ConnectionError(PROTOCOL_ERROR, 'DATA on an idle stream');
      return;
    }
    if (!stream.responded) return this.streamError(stream, PROTOCOL_ERROR, 'DATA before HEADERS');
    let data = payload;
    if (flags & PADDED) data = unpad(payload);
    stream.recvWindow -= payload.length;
    if (stream.recvWindow < 0) return this.streamError(stream, FLOW_CONTROL_ERROR, 'peer overran the stream window');
    stream.received += data.length;
    // §8.1.1: more than Content-Length is malformed.
    if (stream.expected !== -1 && stream.received > stream.expected) {
      return this.streamError(stream, PROTOCOL_ERROR, 'answer longer than its Content-Length');
    }
    if (data.length > 0 && !stream.destroyed) stream.deliver(data);
    if (flags & END_STREAM) this.remoteEnd(stream);
  }

  private onHeaders(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new ConnectionError(PROTOCOL_ERROR, 'HEADERS on stream 0');
    let block = payload;
    if (flags & PADDED) block = unpad(block);
    if (flags & PRIORITY_FLAG) {
      if (block.length < 5) throw new ConnectionError(FRAME_SIZE_ERROR, 'short HEADERS priority');
      block = block.subarray(5);
    }
    this.headerStreamId = id;
    this.headerEndStream = (flags & END_STREAM) !== 0;
    this.headerBlock = [];
    this.headerBlockSize = 0;
    this.addHeaderFragment(flags, block);
  }

  private addHeaderFragment(flags: number, fragment: Buffer): void {
    this.headerBlock!.push(fragment);
    this.headerBlockSize += fragment.length;
    if (this.headerBlockSize > MAX_HEADER_BLOCK * 2) throw new ConnectionError(PROTOCOL_ERROR, 'header block too large');
    if ((flags & END_HEADERS) === 0) return;
    const parts = this.headerBlock!;
    this.headerBlock = undefined;
    const block = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    // Every block must be decoded, even for a stream we no longer want: it changes the
    // decoder's table (§4.3).
    const fields: string[] = [];
    let fits: boolean;
    try {
      fits = this.decoder.decode(block, fields);
    } catch (err) {
      if (err instanceof HpackError) throw new ConnectionError(COMPRESSION_ERROR, err.message);
      throw err;
    }
    const stream = this.streams.get(this.headerStreamId);
    if (stream === undefined || stream.remoteEnded) return;
    if (!fits || block.length > MAX_HEADER_BLOCK) return this.streamError(stream, PROTOCOL_ERROR, 'response headers too large');
    if (!stream.responded) {
      let status = 0;
      const headers: Record<string, string | string[]> = {};
      for (let i = 0; i < fields.length; i += 2) {
        const name = fields[i]!;
        const value = fields[i + 1]!;
        if (name === ':status') {
          status = Number(value);
          continue;
        }
        if (name.charCodeAt(0) === 58) continue; // other pseudo-headers have no place here
        const prev = headers[name];
        if (prev === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
        else if (typeof prev === 'string') headers[name] = [prev, value];
        else prev.push(value);
      }
      if (!Number.isInteger(status) || status < 100 || status > 999) {
        return this.streamError(stream, PROTOCOL_ERROR, 'response without a valid :status');
      }
      // §8.1: 1xx answers are interim; the final one follows.
      if (status < 200) {
        if (this.headerEndStream) return this.streamError(stream, PROTOCOL_ERROR, 'interim response ends the stream');
        return;
      }
      stream.status = status;
      stream.headers = headers;
      const length = headers['content-length'];
      if (typeof length === 'string' && !stream.head && status !== 204 && status !== 304) {
        const n = Number(length);
        if (!/^\d+$/.test(length) || !Number.isSafeInteger(n)) return this.streamError(stream, PROTOCOL_ERROR, 'invalid Content-Length');
        stream.expected = n;
      }
      stream.responded = true;
      stream.owner?.streamResponse(stream, undefined);
    }
    // The end of a headers-only answer, or trailers (which an invocation has no use for).
    if (this.headerEndStream) this.remoteEnd(stream);
  }

  private onRst(id: number, payload: Buffer): void {
    if (id === 0 || payload.length !== 4) throw new ConnectionError(PROTOCOL_ERROR, 'bad RST_STREAM');
    const stream = this.streams.get(id);
    if (stream === undefined) return;
    const code = payload.readUInt32BE(0);
    stream.rstCode = code;
    // §8.1: NO_ERROR after a complete answer only asks us to stop sending the body. An
    // answer is complete at END_STREAM, or once it holds all its Content-Length (some
    // servers, node:http2 among them, reset instead of ending a flow-controlled stream).
    if (code === NO_ERROR && (stream.remoteEnded || (stream.responded && stream.received === stream.expected))) {
      if (!stream.remoteEnded) {
        stream.remoteEnded = true;
        if (!stream.destroyed) stream.deliverEnd();
      }
      stream.localEnded = true;
      this.closeStream(stream);
      return;
    }
    this.fail(stream, new H2StreamError(`stream reset by the peer (code ${code})`, code, code === REFUSED_STREAM));
  }

  private onSettings(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw new ConnectionError(PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & ACK) return;
    if (payload.length % 6 !== 0) throw new ConnectionError(FRAME_SIZE_ERROR, 'bad SETTINGS length');
    for (let at = 0; at < payload.length; at += 6) {
      const key = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      if (key === SETTINGS_MAX_CONCURRENT_STREAMS) this.maxConcurrentStreams = value;
      else if (key === SETTINGS_INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new ConnectionError(FLOW_CONTROL_ERROR, 'initial window too large');
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const s of this.streams.values()) s.sendWindow += delta;
      } else if (key === SETTINGS_MAX_FRAME_SIZE) {
        if (value < 16_384 || value > 16_777_215) throw new ConnectionError(PROTOCOL_ERROR, 'bad MAX_FRAME_SIZE');
        this.peerMaxFrame = value;
      }
      // HEADER_TABLE_SIZE only bounds an encoder's table, and ours keeps none.
      void SETTINGS_HEADER_TABLE_SIZE;
    }
    this.frame(SETTINGS, ACK, 0, 0);
    this.emit('remoteSettings');
    this.retryBlocked();
  }

  private onGoaway(id: number, payload: Buffer): void {
    if (id !== 0 || payload.length < 8) throw new ConnectionError(PROTOCOL_ERROR, 'bad GOAWAY');
    const last = payload.readUInt32BE(0) & 0x7fffffff;
    const code = payload.readUInt32BE(4);
    this.goawayLastStreamId = Math.min(last, this.goawayLastStreamId ?? last);
    this.closing = true;
    // Streams above `last` were never processed: fail them now so they can be retried.
    for (const s of [...this.streams.values()]) {
      if (s.id > last) this.fail(s, new H2StreamError('stream above GOAWAY last-stream-id', undefined, true));
    }
    this.emit('goaway', code, last);
    if (this.streams.size === 0) this.end();
  }

  private onWindowUpdate(id: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(FRAME_SIZE_ERROR, 'bad WINDOW_UPDATE');
    const inc = payload.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) throw new ConnectionError(PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.connSendWindow += inc;
      if (this.connSendWindow > MAX_WINDOW) throw new ConnectionError(FLOW_CONTROL_ERROR, 'connection window overflow');
      this.retryBlocked();
      return;
    }
    const stream = this.streams.get(id);
    if (stream === undefined) return;
    if (inc === 0) return this.streamError(stream, PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
    stream.sendWindow += inc;
    if (stream.sendWindow > MAX_WINDOW) return this.streamError(stream, FLOW_CONTROL_ERROR, 'stream window overflow');
    if (!stream.localEnded) this.retryBlocked();
  }

  /** The consumer took data: return the stream's window once half of it is used. */
  creditStream(stream: H2Stream): void {
    if (stream.remoteEnded || stream.over) return;
    const used = this.streamWindow - stream.recvWindow;
    if (used >= this.streamWindow / 2) {
      stream.recvWindow = this.streamWindow;
      this.windowUpdate(stream.id, used);
      this.scheduleFlush();
    }
  }

  // -------------------------------------------------------------------------------------
  // Stream life

  private remoteEnd(stream: H2Stream): void {
    // §8.1.1: an answer shorter than its Content-Length is malformed, not complete.
    if (stream.expected !== -1 && stream.received !== stream.expected) {
      return this.streamError(stream, PROTOCOL_ERROR, `answer of ${stream.received} bytes, Content-Length ${stream.expected}`);
    }
    stream.remoteEnded = true;
    if (!stream.destroyed) stream.deliverEnd();
    if (stream.localEnded) this.closeStream(stream);
    // else: still uploading; the peer answered early, and a RST_STREAM(NO_ERROR) may follow.
  }

  private closeStream(stream: H2Stream): void {
    if (stream.over) return;
    stream.over = true;
    // Reset or failed while uploading: what was not sent never will be.
    if (stream.bodySent < stream.bodySize) {
      const unsent = stream.bodySize - stream.bodySent;
      stream.bodySent = stream.bodySize;
      stream.body = undefined;
      this.backlog.sent(unsent);
    }
    this.streams.delete(stream.id);
    if (stream.blocked) {
      stream.blocked = false;
      // Not in the list while retryBlocked has it in hand.
      const i = this.blocked.indexOf(stream);
      if (i !== -1) this.blocked.splice(i, 1);
    }
    stream.owner?.streamClosed(stream);
    if (this.closing && this.streams.size === 0) this.end();
  }

  /** Ends a stream with an error: no answer yet → streamResponse(err); else its body errors. */
  private fail(stream: H2Stream, err: H2StreamError): void {
    this.closeStream(stream);
    if (!stream.responded) {
      // Marked as answered (by the error) so that the owner is told only once.
      stream.responded = true;
      stream.owner?.streamResponse(stream, err);
    }
    if (!stream.destroyed && !stream.readableEnded) stream.destroy(err);
  }

  /** RST_STREAM(code) from our side. */
  reset(stream: H2Stream, code: number): void {
    if (stream.over) return;
    if (!this.destroyed) {
      this.frame(RST_STREAM, 0, stream.id, 4);
      this.batch.writeUInt32BE(code, this.batchAt);
      this.batchAt += 4;
      this.scheduleFlush();
    }
    this.closeStream(stream);
  }

  private streamError(stream: H2Stream, code: number, message: string): void {
    this.reset(stream, code);
    this.fail(stream, new H2StreamError(message, undefined, false));
  }

  private connectionError(code: number, message: string): void {
    if (this.destroyed) return;
    this.goaway(code);
    this.flush();
    this.destroy(new Error(`HTTP/2 protocol error: ${message}`));
  }

  // -------------------------------------------------------------------------------------
  // Sending

  private sendBody(stream: H2Stream): void {
    const parts = stream.body!;
    const before = stream.bodySent;
    while (stream.bodySent < stream.bodySize) {
      const part = parts[stream.bodyPart]!;
      if (stream.bodyAt === part.length) {
        // A frame never spans two parts: the next one starts where this part ends.
        stream.bodyPart++;
        stream.bodyAt = 0;
        continue;
      }
      const n = Math.min(part.length - stream.bodyAt, stream.sendWindow, this.connSendWindow, this.peerMaxFrame);
      if (n <= 0) {
        // A flag, not a search of the list: a connection can have a hundred streams waiting.
        if (!stream.blocked) {
          stream.blocked = true;
          this.blocked.push(stream);
        }
        break;
      }
      const last = stream.bodySent + n === stream.bodySize;
      const chunk = part.subarray(stream.bodyAt, stream.bodyAt + n);
      this.frame(DATA, last ? END_STREAM : 0, stream.id, n);
      if (n <= COPY_LIMIT) this.copyInto(chunk);
      else this.reference(chunk);
      stream.bodyAt += n;
      stream.bodySent += n;
      stream.sendWindow -= n;
      this.connSendWindow -= n;
    }
    if (stream.bodySent > before) {
      this.backlog.sent(stream.bodySent - before);
      stream.movedAt = performance.now();
    }
    // Blocked: retryBlocked sends the rest when the window opens.
    if (stream.bodySent < stream.bodySize) return;
    stream.localEnded = true;
    stream.body = undefined;
    if (stream.remoteEnded) this.closeStream(stream);
  }

  private retryBlocked(): void {
    if (this.blocked.length === 0 || this.destroyed) return;
    const waiting = this.blocked;
    this.blocked = [];
    for (const s of waiting) {
      s.blocked = false;
      if (!s.over) this.sendBody(s);
    }
    this.scheduleFlush();
  }

  private headers(id: number, block: Buffer, endStream: boolean): void {
    let at = 0;
    let first = true;
    do {
      const n = Math.min(block.length - at, this.peerMaxFrame);
      const end = at + n === block.length;
      const type = first ? HEADERS : CONTINUATION;
      const flags = (end ? END_HEADERS : 0) | (first && endStream ? END_STREAM : 0);
      this.frame(type, flags, id, n);
      this.copyInto(block.subarray(at, at + n));
      at += n;
      first = false;
    } while (at < block.length);
  }

  private windowUpdate(id: number, increment: number): void {
    this.frame(WINDOW_UPDATE, 0, id, 4);
    this.batch.writeUInt32BE(increment, this.batchAt);
    this.batchAt += 4;
  }

  private goaway(code: number): void {
    this.frame(GOAWAY, 0, 0, 8);
    // We accept no streams from the peer, so the last one we processed is 0.
    this.batch.writeUInt32BE(0, this.batchAt);
    this.batch.writeUInt32BE(code, this.batchAt + 4);
    this.batchAt += 8;
  }

  /** Writes a frame header into the batch, with room for `room` more bytes after it. */
  private frame(type: number, flags: number, id: number, length: number): number {
    this.ensure(9 + Math.min(length, COPY_LIMIT));
    const b = this.batch;
    const at = this.batchAt;
    b[at] = length >>> 16;
    b[at + 1] = (length >>> 8) & 0xff;
    b[at + 2] = length & 0xff;
    b[at + 3] = type;
    b[at + 4] = flags;
    b.writeUInt32BE(id, at + 5);
    this.batchAt = at + 9;
    return at;
  }

  private copyInto(data: Buffer): void {
    this.ensure(data.length);
    data.copy(this.batch, this.batchAt);
    this.batchAt += data.length;
  }

  /** A large payload leaves by reference, after what the batch holds so far. */
  private reference(data: Buffer): void {
    this.cut();
    this.parts.push(data);
    this.partsBytes += data.length;
  }

  /** Moves the batch's unsent bytes into `parts`. */
  private cut(): void {
    if (this.batchAt > this.batchStart) {
      this.parts.push(this.batch.subarray(this.batchStart, this.batchAt));
      this.partsBytes += this.batchAt - this.batchStart;
      this.batchStart = this.batchAt;
    }
  }

  private ensure(n: number): void {
    if (this.batch.length - this.batchAt >= n) return;
    this.cut();
    // The old batch's bytes are referenced from `parts`; start a fresh one.
    this.batch = Buffer.allocUnsafe(Math.max(16 << 10, n));
    this.batchAt = 0;
    this.batchStart = 0;
  }

  private scheduleFlush(): void {
    if (this.destroyed) return;
    if (this.partsBytes + this.batchAt - this.batchStart >= FLUSH_AT) return this.flush();
    if (this.flushScheduled) return;
    if (this.batchAt === this.batchStart && this.parts.length === 0) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    this.cut();
    const parts = this.parts;
    if (parts.length === 0 || this.destroyed) return;
    // The bytes handed to the socket are never written again: the batch only moves forward.
    this.parts = [];
    this.partsBytes = 0;
    if (parts.length === 1) {
      this.socket.write(parts[0]!);
    } else {
      this.socket.cork();
      for (const p of parts) this.socket.write(p);
      this.socket.uncork();
    }
  }

  private end(): void {
    if (this.destroyed) return;
    this.flush();
    this.socket.end();
  }
}

class ConnectionError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

function unpad(payload: Buffer): Buffer {
  if (payload.length < 1) throw new ConnectionError(PROTOCOL_ERROR, 'padded frame without its length');
  const pad = payload[0]!;
  if (pad >= payload.length) throw new ConnectionError(PROTOCOL_ERROR, 'padding longer than the frame');
  return payload.subarray(1, payload.length - pad);
}
