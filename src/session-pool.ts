// A pool of HTTP/2 sessions to one origin.
//
// Why not http2-wrapper's Agent: it keeps handing out sessions that received GOAWAY
// (http2-wrapper issue #89), so every later request fails with
// ERR_HTTP2_GOAWAY_SESSION; and its ClientRequest layer costs ~20% on the hot path
// (its own README's benchmark). We keep http2-wrapper for ALPN negotiation (its
// resolveProtocol coalesces probes and hands back the negotiated TLS socket) and
// drive node:http2 sessions directly.
import http2, { type ClientHttp2Session } from 'node:http2';
import net from 'node:net';
import type { TLSSocket } from 'node:tls';
import http2wrapper from 'http2-wrapper';

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
  goawayLastStreamId: number | undefined;
  /** Set once connected; until then callers wait on `ready`. */
  session: ClientHttp2Session | undefined;
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
}

const SESSION_SETTINGS: http2.Settings = {
  enablePush: false,
  // Responses (rendered pages, images) should not stall on 64 KiB windows.
  initialWindowSize: 1 << 20,
};
const CONNECTION_WINDOW = 8 << 20;

export class SessionPool {
  private readonly sessions: PooledSession[] = [];
  private readonly resolveProtocol = http2wrapper.auto.createResolveProtocol(new Map(), new Map());
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
    if (s.active === 0 && s.session !== undefined && !s.session.destroyed) s.session.close();
  }

  /** GOAWAY to every session; resolves when their streams have finished, or after graceMs. */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
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

  private async connect(): Promise<ClientHttp2Session> {
    const result = await this.resolveProtocol({
      host: this.host,
      port: this.port,
      servername: this.servername ?? '',
      ca: this.opts.ca,
      ALPNProtocols: ['h2', 'http/1.1'],
      resolveSocket: true,
      timeout: this.opts.connectTimeoutMs,
    } as unknown as Parameters<typeof this.resolveProtocol>[0]);
    const socket = (result as { socket?: TLSSocket }).socket;
    if (result.timeout) {
      socket?.destroy();
      throw new Error(`TLS connect timed out after ${this.opts.connectTimeoutMs} ms`);
    }
    if (result.alpnProtocol !== 'h2') {
      socket?.destroy();
      this.http1Only = true;
      throw new NoHttp2Error();
    }
    socket?.setTimeout(0);
    const session = http2.connect(this.opts.origin, {
      ...(socket !== undefined
        ? { createConnection: () => socket }
        : { ca: this.opts.ca, servername: this.servername, ALPNProtocols: ['h2'] }),
      settings: SESSION_SETTINGS,
      // Queued request bodies count against this (in MB); bound memory elsewhere.
      maxSessionMemory: 1024,
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => session.destroy(new Error('HTTP/2 connect timed out')), this.opts.connectTimeoutMs);
      const onError = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      session.once('error', onError);
      session.once('connect', () => {
        clearTimeout(timer);
        session.off('error', onError);
        resolve(session);
      });
    });
  }

  private watch(p: PooledSession, s: ClientHttp2Session): void {
    s.setLocalWindowSize(CONNECTION_WINDOW);
    const max = this.opts.maxStreamsPerSession ?? 1000;
    const applySettings = (): void => {
      p.limit = Math.max(1, Math.min(s.remoteSettings.maxConcurrentStreams ?? 100, max));
    };
    s.on('remoteSettings', applySettings);
    s.on('goaway', (_code: number, lastStreamId: number) => {
      p.goawayLastStreamId = lastStreamId;
      this.retire(p);
    });
    s.on('error', () => this.retire(p));
    s.on('close', () => this.retire(p));
    s.setTimeout(this.opts.idleTimeoutMs, () => {
      if (p.active === 0) this.retire(p);
    });
    // Let an idle pool not keep the process alive.
    s.unref();
    // Connected after close() or retire(): retire() already ran and will not close it again.
    if (this.closing || p.dead) {
      p.dead = true;
      if (p.active === 0) s.close();
    }
  }
}
