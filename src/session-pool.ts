// A pool of HTTP/2 connections to one origin.
//
// Why not http2-wrapper's Agent: it keeps handing out sessions that received GOAWAY
// (http2-wrapper issue #89), so every later request fails with
// ERR_HTTP2_GOAWAY_SESSION; and its ClientRequest layer costs ~20% on the hot path
// (its own README's benchmark). Why not node:http2 sessions either: see h2/connection.ts.
// We keep http2-wrapper for ALPN negotiation (its resolveProtocol coalesces probes and
// hands back the negotiated TLS socket) and run our own HTTP/2 client on that socket.
import net from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import http2wrapper from 'http2-wrapper';
import { H2Connection, type SendBacklog } from './h2/connection.js';

/** Thrown by reserve() or `ready` when the origin negotiated HTTP/1.1: the caller switches transport. */
export class NoHttp2Error extends Error {
  constructor() {
    super('origin does not offer h2');
  }
}

/** A connect or TLS failure: no byte of any request was sent (RFC 9113 §8.7). */
export class ConnectError extends Error {}

export class PooledSession {
  active = 0;
  /** Until the peer's SETTINGS arrive, assume RFC 9113 §6.5.2's recommended minimum. */
  limit = 100;
  dead = false;
  /** Set once connected; until then callers wait on `ready`. */
  session: H2Connection | undefined;
  constructor(readonly ready: Promise<void>) {}
}

export interface SessionPoolOptions {
  origin: URL;
  ca?: string[];
  connectTimeoutMs: number;
  /** A session with no streams for this long is closed. */
  idleTimeoutMs: number;
  /** Upper bound on streams per session, whatever the peer allows. */
  maxStreamsPerSession?: number;
  /** Shared by the sessions: request-body bytes they have yet to send. */
  backlog?: SendBacklog;
  /** A session with streams open that has heard nothing for this long is sent a PING. */
  pingAfterMs?: number;
  /** …and is closed, its streams failed, when this long passes with no answer. */
  pingTimeoutMs?: number;
  /** A body that waits this long for send window, no byte going out, has its stream reset. */
  stuckTimeoutMs?: number;
}

// Responses (rendered pages, images) should not stall on 64 KiB windows.
const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 8 << 20;

export class SessionPool {
  private readonly sessions: PooledSession[] = [];
  /** Every connected session until its socket closes, the retired ones with streams left too. */
  private readonly connected = new Map<H2Connection, PooledSession>();
  /** http2-wrapper's record of what each origin negotiated (see connect()). */
  private readonly alpnCache = new Map<string, string>();
  private readonly resolveProtocol = http2wrapper.auto.createResolveProtocol(this.alpnCache, new Map());
  private readonly pingAfterMs: number;
  private readonly pingTimeoutMs: number;
  private readonly stuckTimeoutMs: number;
  private readonly liveness: NodeJS.Timeout;
  private checkedAt = performance.now();
  private readonly host: string;
  private readonly port: number;
  private readonly servername: string | undefined;
  private closing = false;
  /** Set once ALPN said http/1.1. */
  http1Only = false;

  constructor(private readonly opts: SessionPoolOptions) {
    this.host = opts.origin.hostname.replace(/^\[|\]$/g, '');
    this.port = Number(opts.origin.port || 443);
    // RFC 6066 §3: SNI carries host names, never IP literals.
    this.servername = net.isIP(this.host) === 0 ? this.host : undefined;
    this.pingAfterMs = opts.pingAfterMs ?? 10_000;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 10_000;
    this.stuckTimeoutMs = opts.stuckTimeoutMs ?? 30_000;
    // One timer for the pool, a few times per PING period, at most once a second.
    const every = Math.max(10, Math.min(1000, this.pingAfterMs / 4, this.pingTimeoutMs / 4));
    this.liveness = setInterval(() => this.checkAlive(every), every).unref();
  }

  get size(): number {
    return this.sessions.length;
  }

  /** Streams open (or reserved) on the sessions in the pool. */
  get streams(): number {
    let n = 0;
    for (const s of this.sessions) n += s.active;
    return n;
  }

  /**
   * Reserves a stream slot, without a promise in the common case: a connected session
   * with room first, else one still connecting, else a new one. The caller awaits
   * `ready` when `session` is not set yet; release() gives the slot back.
   */
  reserve(): PooledSession {
    if (this.http1Only) throw new NoHttp2Error();
    if (this.closing) throw new ConnectError('upstream is closing');
    let connecting: PooledSession | undefined;
    for (const s of this.sessions) {
      if (s.active >= s.limit) continue;
      if (s.session !== undefined) {
        if (s.session.closing) {
          // Out of stream ids, or told to go away: it finishes what it has.
          this.retire(s);
          return this.reserve();
        }
        s.active++;
        return s;
      }
      connecting ??= s;
    }
    const s = connecting ?? this.open();
    s.active++;
    return s;
  }

  release(s: PooledSession): void {
    s.active--;
    if (s.active === 0 && s.dead) s.session?.close();
  }

  /** Takes a session out of rotation at once; its open streams may still finish. */
  retire(s: PooledSession): void {
    if (s.dead) return;
    s.dead = true;
    const i = this.sessions.indexOf(s);
    if (i !== -1) this.sessions.splice(i, 1);
    if (s.active === 0 && s.session !== undefined) s.session.close();
  }

  /** PINGs the quiet sessions with streams open and closes those that did not answer; resets bodies that cannot go out. */
  /** @internal One tick of the liveness timer (`now` given by tests). */
  checkAlive(every: number, now = performance.now()): void {
    // A tick that comes late means the event loop was held, and an ACK may be waiting
    // unread: ask, but judge on a later tick.
    const judge = now - this.checkedAt < every * 3;
    this.checkedAt = now;
    for (const [c, p] of this.connected) {
      c.checkAlive(now, this.pingAfterMs, this.pingTimeoutMs, judge, this.stuckTimeoutMs);
      // Closed by the check (its send window stayed shut): out of rotation at once.
      if (c.closing) this.retire(p);
    }
  }

  /** GOAWAY to every session; resolves when their streams have finished, or after graceMs. */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    clearInterval(this.liveness);
    const all = [...this.sessions];
    for (const s of all) this.retire(s);
    await Promise.race([
      Promise.all(
        all.map((s) => (s.session === undefined || s.session.destroyed ? undefined : new Promise((r) => s.session!.once('close', r)))),
      ),
      new Promise((r) => setTimeout(r, graceMs).unref()),
    ]);
    for (const s of all) s.session?.destroy();
  }

  private open(): PooledSession {
    let settle!: (err?: Error) => void;
    const ready = new Promise<void>((resolve, reject) => {
      settle = (err) => (err === undefined ? resolve() : reject(err));
    });
    // Only waiters see a connect failure; the pool itself must not crash on it.
    ready.catch(() => {});
    const pooled = new PooledSession(ready);
    this.sessions.push(pooled);
    this.connect().then(
      (session) => {
        pooled.session = session;
        this.watch(pooled, session);
        settle();
      },
      (err: unknown) => {
        this.retire(pooled);
        settle(err instanceof NoHttp2Error ? err : new ConnectError('could not connect to the endpoint', { cause: err }));
      },
    );
    return pooled;
  }

  private async connect(): Promise<H2Connection> {
    const result = await this.resolveProtocol({
      host: this.host,
      port: this.port,
      servername: this.servername ?? '',
      ca: this.opts.ca,
      ALPNProtocols: ['h2', 'http/1.1'],
      resolveSocket: true,
      timeout: this.opts.connectTimeoutMs,
    } as unknown as Parameters<typeof this.resolveProtocol>[0]);
    let socket = (result as { socket?: TLSSocket }).socket;
    // A probe that timed out says nothing of the origin's protocols, but http2-wrapper
    // caches its null all the same, and hands it to the probes that waited on it: forget
    // it, so that the next connection asks again instead of taking it for "no h2" (null;
    // an origin without ALPN gives false).
    if (result.timeout || result.alpnProtocol == null) {
      socket?.destroy();
      this.alpnCache.clear();
      throw new Error(`TLS connect timed out after ${this.opts.connectTimeoutMs} ms`);
    }
    if (result.alpnProtocol !== 'h2') {
      socket?.destroy();
      this.http1Only = true;
      throw new NoHttp2Error();
    }
    // The protocol was known already (resolveProtocol caches it): connect ourselves.
    socket ??= await this.tlsConnect();
    socket.setTimeout(0);
    return new H2Connection(socket, { streamWindow: STREAM_WINDOW, connectionWindow: CONNECTION_WINDOW, backlog: this.opts.backlog });
  }

  private tlsConnect(): Promise<TLSSocket> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host: this.host, port: this.port, servername: this.servername, ca: this.opts.ca, ALPNProtocols: ['h2'] });
      const timer = setTimeout(() => socket.destroy(new Error(`TLS connect timed out after ${this.opts.connectTimeoutMs} ms`)), this.opts.connectTimeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        if (socket.alpnProtocol !== 'h2') {
          socket.destroy();
          reject(new Error(`the endpoint negotiated ${socket.alpnProtocol || 'no protocol'} instead of h2`));
          return;
        }
        socket.removeAllListeners('error');
        resolve(socket);
      });
    });
  }

  private watch(p: PooledSession, c: H2Connection): void {
    const max = this.opts.maxStreamsPerSession ?? 1000;
    c.on('remoteSettings', () => {
      p.limit = Math.max(1, Math.min(c.maxConcurrentStreams, max));
    });
    this.connected.set(c, p);
    c.on('goaway', () => this.retire(p));
    c.on('close', () => {
      this.connected.delete(c);
      this.retire(p);
    });
    c.socket.setTimeout(this.opts.idleTimeoutMs, () => {
      if (p.active === 0) this.retire(p);
    });
    // Let an idle pool not keep the process alive.
    c.socket.unref();
    // Connected after close() or retire(): retire() already ran and will not close it again.
    if (this.closing || p.dead) {
      p.dead = true;
      if (p.active === 0) c.close();
    }
  }
}
