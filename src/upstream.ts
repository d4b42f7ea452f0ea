// Sends signed requests to the Lambda endpoint: HTTP/2 through the session pool,
// HTTP/1.1 keep-alive when ALPN says so (or for an http:// test endpoint), and
// retries only what RFC 9113 §8.7 says the server never processed.
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { bodyLength, type Body } from './body.js';
import { UpstreamUnavailableError } from './errors.js';
import { H2Stream, REFUSED_STREAM, SendBacklog, type H2StreamError, type StreamOwner } from './h2/connection.js';
import { NoHttp2Error, SessionPool, type PooledSession } from './session-pool.js';


export interface UpstreamRequest {
  readonly method: string;
  /** Path and query as sent on the wire. */
  readonly target: string;
  /** Signed headers, lower-case, including host. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Body;
}

export interface UpstreamResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders | Record<string, string | string[]>;
  readonly body: Readable;
  readonly protocol: 'h2' | 'http/1.1';
  /** How many times the request was sent again before this answer. */
  readonly retries: number;
}

/**
 * The whole body of an answer that has already arrived in full and is still unread, taking
 * it; undefined otherwise (then read `body` as a stream).
 */
export function takeCompleteBody(body: Readable): Buffer | undefined {
  return body instanceof H2Stream ? body.takeComplete() : undefined;
}

export type RetryReason = 'refused_stream' | 'goaway' | 'connect';

/** Hears that an invocation was cancelled. */
export interface CancelListener {
  cancelled(reason: Error): void;
}

/**
 * Cancels an invocation: the client hung up, or its time ran out. A lighter stand-in
 * for AbortController (whose EventTarget and DOMException showed in profiles): one
 * listener at a time, the upstream attempt in progress.
 */
export class Cancel {
  reason: Error | undefined;
  private listener: CancelListener | undefined;
  cancel(reason: Error): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    const l = this.listener;
    this.listener = undefined;
    l?.cancelled(reason);
  }
  /** Sets the listener; if already cancelled, tells it at once (a late listener must not miss it). */
  listen(l: CancelListener): void {
    if (this.reason !== undefined) return l.cancelled(this.reason);
    this.listener = l;
  }
  /** Removes `l` only if it is still the listener: a finished attempt must not unhook a retry's. */
  unlisten(l: CancelListener): void {
    if (this.listener === l) this.listener = undefined;
  }
}

/**
 * Hears, exactly once, how an exchange turned out: the answer's headers, or why there is
 * none (UpstreamUnavailableError, or the cancel's reason).
 */
export interface Receiver {
  answered(up: UpstreamResponse): void;
  failed(err: Error): void;
}

export interface Upstream {
  /**
   * Sends a request and tells `to` how it went; never throws. Unprocessed attempts are
   * sent again. Nothing is kept per request but the attempt in progress: no promise, no
   * closure, which matters with thousands of invocations waiting on Lambda.
   */
  send(req: UpstreamRequest, cancel: Cancel | undefined, to: Receiver): void;
  /** Open HTTP/2 sessions (0 on HTTP/1.1). */
  readonly sessions: number;
  /** HTTP/2 streams open on them. */
  readonly streams: number;
  /** Request-body bytes waiting for the HTTP/2 peer's flow-control window (none on HTTP/1.1). */
  readonly backlog?: SendBacklog;
  /** Sends GOAWAY and lets open streams finish, for at most graceMs. */
  close(graceMs?: number): Promise<void>;
}

export interface UpstreamOptions {
  endpoint: URL;
  /** Trusted roots; undefined means Node's (which include NODE_EXTRA_CA_CERTS). */
  ca?: string[];
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** HTTP/2 liveness: see SessionPoolOptions (10 s, 10 s and 30 s by default). */
  pingAfterMs?: number;
  pingTimeoutMs?: number;
  stuckTimeoutMs?: number;
  /** Retries of unprocessed requests, RFC 9113 §8.7. */
  maxRetries?: number;
  onRetry?: (reason: RetryReason) => void;
}

/** A request that provably never reached the application: safe to send again. */
class Unprocessed extends Error {
  constructor(readonly reason: RetryReason, options?: { cause?: unknown }) {
    super(`request not processed (${reason})`, options);
  }
}

/** The sending side shared by every attempt: transports and the retry rule. */
class Sender {
  constructor(
    readonly pool: SessionPool | undefined,
    readonly h1: Http1Client,
    readonly maxRetries: number,
    readonly onRetry: ((reason: RetryReason) => void) | undefined,
  ) {}

  /** One attempt; `retries` is how many were made before it. */
  attempt(req: UpstreamRequest, cancel: Cancel | undefined, to: Receiver, retries: number): void {
    if (cancel?.reason !== undefined) return to.failed(cancel.reason);
    const pool = this.pool;
    if (pool === undefined || pool.http1Only) return this.viaHttp1(req, cancel, to, retries);
    let session: PooledSession;
    try {
      session = pool.reserve();
    } catch (err) {
      return this.connectFailed(err, req, cancel, to, retries);
    }
    if (session.session !== undefined) return new H2Attempt(this, pool, session, req, cancel, to, retries).start();
    session.ready.then(
      () => new H2Attempt(this, pool, session, req, cancel, to, retries).start(),
      (err: unknown) => this.connectFailed(err, req, cancel, to, retries),
    );
  }

  private viaHttp1(req: UpstreamRequest, cancel: Cancel | undefined, to: Receiver, retries: number): void {
    this.h1.request(req, cancel, retries).then(
      (up) => to.answered(up),
      (err: unknown) => this.attemptFailed(err, req, cancel, to, retries),
    );
  }

  private connectFailed(err: unknown, req: UpstreamRequest, cancel: Cancel | undefined, to: Receiver, retries: number): void {
    if (err instanceof NoHttp2Error) return this.viaHttp1(req, cancel, to, retries);
    this.attemptFailed(new Unprocessed('connect', { cause: err }), req, cancel, to, retries);
  }

  /** An attempt got no answer: send it again if it was provably not processed, else fail. */
  attemptFailed(err: unknown, req: UpstreamRequest, cancel: Cancel | undefined, to: Receiver, retries: number): void {
    if (cancel?.reason !== undefined) return to.failed(cancel.reason);
    if (err instanceof Unprocessed && retries < this.maxRetries) {
      this.onRetry?.(err.reason);
      // On a later turn, as an awaited retry was: a GOAWAY fails many streams at once, and
      // their retries must not reserve sessions while the pool is still retiring this one.
      queueMicrotask(() => this.attempt(req, cancel, to, retries + 1));
      return;
    }
    if (err instanceof UpstreamUnavailableError) return to.failed(err);
    to.failed(new UpstreamUnavailableError('Lambda endpoint unavailable', { cause: err }));
  }
}

export function createUpstream(opts: UpstreamOptions): Upstream {
  const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
  const secure = opts.endpoint.protocol === 'https:';
  const backlog = new SendBacklog();
  const pool = secure
    ? new SessionPool({
        origin: opts.endpoint,
        ca: opts.ca,
        connectTimeoutMs,
        idleTimeoutMs: opts.idleTimeoutMs ?? 60_000,
        pingAfterMs: opts.pingAfterMs,
        pingTimeoutMs: opts.pingTimeoutMs,
        stuckTimeoutMs: opts.stuckTimeoutMs,
        backlog,
      })
    : undefined;
  const sender = new Sender(pool, new Http1Client(opts.endpoint, opts.ca, connectTimeoutMs), opts.maxRetries ?? 2, opts.onRetry);

  return {
    send(req, cancel, to) {
      sender.attempt(req, cancel, to, 0);
    },
    get sessions() {
      return pool?.size ?? 0;
    },
    get streams() {
      return pool?.streams ?? 0;
    },
    backlog,
    async close(graceMs = 5000) {
      await pool?.close(graceMs);
      sender.h1.close();
    },
  };
}

/** A body nobody reads must not throw its error: readers see it through 'close' without 'end'. */
function ignore(): void {}

/** A stream's Readable side closed: its attempt no longer listens for a cancel. */
function unhookCancel(this: H2Stream): void {
  const attempt = this.owner as H2Attempt;
  attempt.cancel?.unlisten(attempt);
}

/** One request on an HTTP/2 session: the stream's owner, and the cancel's listener. */
class H2Attempt implements StreamOwner, CancelListener {
  private stream: H2Stream | undefined;
  /** `to` was told (or is about to be, for an answer). */
  private settled = false;

  constructor(
    private readonly sender: Sender,
    private readonly pool: SessionPool,
    private readonly pooled: PooledSession,
    /** Kept to send again while that may happen: until the answer's headers. */
    private req: UpstreamRequest | undefined,
    readonly cancel: Cancel | undefined,
    private readonly to: Receiver,
    private readonly retries: number,
  ) {}

  start(): void {
    const { pool, pooled, cancel } = this;
    const req = this.req!;
    if (cancel?.reason !== undefined) {
      // Cancelled while a session was being connected: send nothing.
      pool.release(pooled);
      return this.to.failed(cancel.reason);
    }
    // RFC 9113 §8.3: pseudo-headers first; :authority replaces Host and carries the same,
    // signed, value.
    const headers: string[] = [':method', req.method, ':scheme', 'https', ':authority', '', ':path', req.target];
    for (const name in req.headers) {
      if (name === 'host') headers[5] = req.headers[name]!;
      else headers.push(name, req.headers[name]!);
    }
    let stream: H2Stream;
    try {
      stream = pooled.session!.request(headers, req.body);
    } catch (err) {
      // The connection is closing (GOAWAY) or gone: nothing was sent.
      pool.release(pooled);
      pool.retire(pooled);
      return this.sender.attemptFailed(new Unprocessed('goaway', { cause: err }), req, cancel, this.to, this.retries);
    }
    this.stream = stream;
    stream.owner = this;
    stream.on('error', ignore);
    stream.on('close', unhookCancel);
    cancel?.listen(this);
  }

  cancelled(reason: Error): void {
    // RST_STREAM(CANCEL) tells Lambda we no longer want the answer, and the body ends
    // with the reason: whoever reads it sees an error, never a truncated success.
    this.stream!.cancel(reason);
    if (this.settled) return;
    this.settled = true;
    this.to.failed(reason);
  }

  streamResponse(stream: H2Stream, err: H2StreamError | undefined): void {
    if (err === undefined) {
      if (this.settled) return;
      this.settled = true;
      this.req = undefined;
      // After the rest of this read is parsed: a small answer's DATA usually came with its
      // HEADERS, and then it is handed over whole (takeComplete) instead of streamed.
      process.nextTick(answer, this.to, {
        status: stream.status,
        headers: stream.headers,
        body: stream,
        protocol: 'h2',
        retries: this.retries,
      } satisfies UpstreamResponse);
      return;
    }
    this.cancel?.unlisten(this);
    if (this.settled) return;
    // RFC 9113 §8.7: REFUSED_STREAM, or a stream above GOAWAY's last-stream-id, was not
    // processed and may be retried; anything else may have run.
    this.settled = true;
    const failure = err.unprocessed
      ? new Unprocessed(err.rstCode === REFUSED_STREAM ? 'refused_stream' : 'goaway', { cause: err })
      : new UpstreamUnavailableError('Lambda closed the stream before answering', { cause: err });
    this.sender.attemptFailed(failure, this.req!, this.cancel, this.to, this.retries);
  }

  streamClosed(): void {
    this.pool.release(this.pooled);
  }
}

function answer(to: Receiver, up: UpstreamResponse): void {
  to.answered(up);
}

// Errors raised while a fresh connection is being set up: nothing was sent.
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET']);

class Http1Client {
  private readonly agent: http.Agent;
  private readonly mod: typeof http | typeof https;
  private readonly host: string;
  private readonly port: number;
  private readonly servername: string | undefined;

  constructor(endpoint: URL, ca: string[] | undefined, private readonly connectTimeoutMs: number) {
    const secure = endpoint.protocol === 'https:';
    this.mod = secure ? https : http;
    this.host = endpoint.hostname.replace(/^\[|\]$/g, '');
    this.port = Number(endpoint.port || (secure ? 443 : 80));
    this.servername = net.isIP(this.host) === 0 ? this.host : undefined;
    const agentOpts = { keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024, scheduling: 'lifo' as const };
    this.agent = secure ? new https.Agent({ ...agentOpts, ca }) : new http.Agent(agentOpts);
  }

  request(req: UpstreamRequest, signal: Cancel | undefined, retries: number): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      const r = this.mod.request({
        agent: this.agent,
        host: this.host,
        port: this.port,
        servername: this.servername,
        method: req.method,
        path: req.target,
        headers: { ...req.headers, 'content-length': String(bodyLength(req.body)) },
        timeout: this.connectTimeoutMs,
      });
      let responded = false;
      let connected = false;
      const onAbort: CancelListener = {
        cancelled(reason) {
          r.destroy();
          if (!responded) reject(reason);
        },
      };
      signal?.listen(onAbort);
      r.once('socket', (sock) => {
        if (r.reusedSocket || !(sock as net.Socket).connecting) connected = true;
        else sock.once(this.mod === https ? 'secureConnect' : 'connect', () => (connected = true));
      });
      // The socket timeout only guards connecting; Lambda may think for minutes.
      r.once('timeout', () => {
        if (!connected) r.destroy(new Error('connect timed out'));
      });
      r.once('response', (res) => {
        responded = true;
        res.once('close', () => signal?.unlisten(onAbort));
        resolve({ status: res.statusCode ?? 502, headers: res.headers, body: res, protocol: 'http/1.1', retries });
      });
      r.on('error', (err: NodeJS.ErrnoException) => {
        if (responded) return;
        signal?.unlisten(onAbort);
        if (signal?.reason !== undefined) return;
        if (!connected && !r.reusedSocket && err.code !== undefined && CONNECT_ERRORS.has(err.code)) {
          return reject(new Unprocessed('connect', { cause: err }));
        }
        reject(new UpstreamUnavailableError('Lambda endpoint unavailable', { cause: err }));
      });
      if (Buffer.isBuffer(req.body)) r.end(req.body);
      else {
        for (const part of req.body) r.write(part);
        r.end();
      }
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
