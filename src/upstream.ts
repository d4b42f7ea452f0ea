// Sends signed requests to the Lambda endpoint: HTTP/2 through the session pool,
// HTTP/1.1 keep-alive when ALPN says so (or for an http:// test endpoint), and
// retries only what RFC 9113 §8.7 says the server never processed.
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { bodyLength, type Body } from './body.js';
import { UpstreamUnavailableError } from './errors.js';
import { H2Stream, REFUSED_STREAM } from './h2/connection.js';
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

/**
 * Cancels an invocation: the client hung up, or its time ran out. A lighter stand-in
 * for AbortController (whose EventTarget and DOMException showed in profiles): one
 * listener at a time, the upstream attempt in progress.
 */
export class Cancel {
  reason: Error | undefined;
  private listener: ((reason: Error) => void) | undefined;
  cancel(reason: Error): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    const l = this.listener;
    this.listener = undefined;
    l?.(reason);
  }
  /** Sets the listener; if already cancelled, calls it at once (a late listener must not miss it). */
  listen(fn: (reason: Error) => void): void {
    if (this.reason !== undefined) return fn(this.reason);
    this.listener = fn;
  }
  /** Removes `fn` only if it is still the listener: a finished attempt must not unhook a retry's. */
  unlisten(fn: (reason: Error) => void): void {
    if (this.listener === fn) this.listener = undefined;
  }
}

export interface Upstream {
  /** Resolves at response headers; rejects with UpstreamUnavailableError or the cancel's reason. */
  forward(req: UpstreamRequest, cancel?: Cancel): Promise<UpstreamResponse>;
  /** Open HTTP/2 sessions (0 on HTTP/1.1). */
  readonly sessions: number;
  /** HTTP/2 streams open on them. */
  readonly streams: number;
  /** Sends GOAWAY and lets open streams finish, for at most graceMs. */
  close(graceMs?: number): Promise<void>;
}

export interface UpstreamOptions {
  endpoint: URL;
  /** Trusted roots; undefined means Node's (which include NODE_EXTRA_CA_CERTS). */
  ca?: string[];
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
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

export function createUpstream(opts: UpstreamOptions): Upstream {
  const maxRetries = opts.maxRetries ?? 2;
  const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
  const secure = opts.endpoint.protocol === 'https:';
  const pool = secure
    ? new SessionPool({ origin: opts.endpoint, ca: opts.ca, connectTimeoutMs, idleTimeoutMs: opts.idleTimeoutMs ?? 60_000 })
    : undefined;
  const h1 = new Http1Client(opts.endpoint, opts.ca, connectTimeoutMs);

  // Not async: on a connected session the stream's own promise is the answer, with no
  // second promise around it.
  const once = (req: UpstreamRequest, signal: Cancel | undefined, retries: number): Promise<UpstreamResponse> => {
    if (pool === undefined || pool.http1Only) return h1.request(req, signal, retries);
    const connectFailed = (err: unknown): Promise<UpstreamResponse> =>
      err instanceof NoHttp2Error ? h1.request(req, signal, retries) : Promise.reject(new Unprocessed('connect', { cause: err }));
    let session: PooledSession;
    try {
      session = pool.reserve();
    } catch (err) {
      return connectFailed(err);
    }
    if (session.session !== undefined) return requestOnSession(pool, session, req, signal, retries);
    return session.ready.then(() => requestOnSession(pool, session, req, signal, retries), connectFailed);
  };

  return {
    async forward(req, signal) {
      for (let attempt = 0; ; attempt++) {
        if (signal?.reason !== undefined) throw signal.reason;
        try {
          return await once(req, signal, attempt);
        } catch (err) {
          if (signal?.reason !== undefined) throw signal.reason;
          if (err instanceof Unprocessed) {
            if (attempt < maxRetries) {
              opts.onRetry?.(err.reason);
              continue;
            }
            throw new UpstreamUnavailableError('Lambda endpoint unavailable', { cause: err });
          }
          if (err instanceof UpstreamUnavailableError) throw err;
          throw new UpstreamUnavailableError('Lambda endpoint unavailable', { cause: err });
        }
      }
    },
    get sessions() {
      return pool?.size ?? 0;
    },
    get streams() {
      return pool?.streams ?? 0;
    },
    async close(graceMs = 5000) {
      await pool?.close(graceMs);
      h1.close();
    },
  };
}

function requestOnSession(
  pool: SessionPool,
  pooled: PooledSession,
  req: UpstreamRequest,
  signal: Cancel | undefined,
  retries: number,
): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    if (signal?.reason !== undefined) {
      // Cancelled while a session was being connected: send nothing.
      pool.release(pooled);
      return reject(signal.reason);
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
      reject(new Unprocessed('goaway', { cause: err }));
      return;
    }
    let responded = false;
    const onAbort = (reason: Error): void => {
      // RST_STREAM(CANCEL) tells Lambda we no longer want the answer, and the body ends
      // with the reason: whoever reads it sees an error, never a truncated success.
      stream.cancel(reason);
      if (!responded) reject(reason);
    };
    signal?.listen(onAbort);
    // Errors reach readers through 'close' without 'end'; an unread body must not throw.
    stream.on('error', () => {});
    stream.onClose = () => pool.release(pooled);
    stream.once('close', () => signal?.unlisten(onAbort));
    stream.onResponse = (err) => {
      if (err === undefined) {
        responded = true;
        resolve({ status: stream.status, headers: stream.headers, body: stream, protocol: 'h2', retries });
        return;
      }
      signal?.unlisten(onAbort);
      if (signal?.reason !== undefined) return;
      // RFC 9113 §8.7: REFUSED_STREAM, or a stream above GOAWAY's last-stream-id, was not
      // processed and may be retried; anything else may have run.
      if (err.unprocessed) return reject(new Unprocessed(err.rstCode === REFUSED_STREAM ? 'refused_stream' : 'goaway', { cause: err }));
      reject(new UpstreamUnavailableError('Lambda closed the stream before answering', { cause: err }));
    };
  });
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
      const onAbort = (reason: Error): void => {
        r.destroy();
        if (!responded) reject(reason);
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
