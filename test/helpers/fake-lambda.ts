// A fake regional Lambda endpoint: HTTP/2 over TLS (or HTTP/1.1 when asked), which checks
// every SigV4 signature with the independent verifier and records what it received.
//
// Every request lands in `invocations` (signature good) or `failures` (signature bad), never
// both. `url` and `origin` are the same string, https://127.0.0.1:PORT, for --endpoint:
// 127.0.0.1 rather than localhost so the client never tries ::1 first.
import { setMaxListeners } from 'node:events';
import http2, { constants as h2 } from 'node:http2';
import https from 'node:https';
import type { Socket } from 'node:net';
import { createHash, randomUUID } from 'node:crypto';
import { verifySigV4 } from './sigv4-verify.ts';
import { gone, writeAnswer, type AnyRequest, type AnyResponse, type FakeAnswer } from './fake-answer.ts';

export type { FakeAnswer } from './fake-answer.ts';
type Keys = Map<string, { secretAccessKey: string; sessionToken?: string }>;

export interface FakeLambdaOptions {
  tls: { cert: string; key: string };
  region?: string;
  /** Mutable: tests add rotated keys. Default: AKIDTEST / secret-test-key. */
  keys?: Keys;
  /** Plain https.createServer, ALPN http/1.1 only. */
  http1Only?: boolean;
  /** After a session's N-th response, GOAWAY (NO_ERROR) and close it; HTTP/1.1: `connection: close`. */
  goawayEvery?: number;
  maxConcurrentStreams?: number;
  /** The fake's clock runs this far ahead of the host's (negative: behind); see `clockSkewMs`. */
  clockSkewMs?: number;
}

export interface Invocation {
  method: string; path: string; functionName: string; qualifier?: string;
  headers: Record<string, string | string[] | undefined>; body: Buffer;
  verified: boolean; reason?: string; authority?: string; httpVersion: string;
}

export type Handler = (inv: Invocation) => Promise<FakeAnswer> | FakeAnswer;

export interface FakeLambda {
  url: string; origin: string; port: number; region: string; keys: Keys;
  invocations: Invocation[]; failures: Invocation[];
  /** Sessions (HTTP/2) or TLS connections (HTTP/1.1) accepted so far. */
  sessions: number;
  /** GOAWAY frames sent because of goawayEvery. */
  goaways: number;
  inflight: number; maxInflight: number;
  /** Mutable: skew of the fake's clock, used to verify x-amz-date and for the Date header. */
  clockSkewMs: number;
  on(functionName: string, handler: Handler): void;
  setDefault(handler: Handler): void;
  close(): Promise<void>;
}

const INVOKE_PATH = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;
const SIGNATURE_MISMATCH = 'The request signature we calculated does not match the signature you provided. ' +
  'Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';

// Raw header pairs, so a repeated header stays a list: both Node APIs join repeats into
// one string with ', ', which is not how SigV4 joins them (',').
function headersOf(raw: string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase(), value = raw[i + 1]!;
    const prev = out[name];
    out[name] = prev === undefined ? value : [...(Array.isArray(prev) ? prev : [prev]), value];
  }
  return out;
}

const json = (status: number, errorType: string | undefined, body: unknown): FakeAnswer => ({
  status, body: JSON.stringify(body),
  headers: { 'content-type': 'application/json', ...(errorType ? { 'x-amzn-errortype': errorType } : {}) },
});

const echo: Handler = (inv) => json(200, undefined, {
  functionName: inv.functionName, qualifier: inv.qualifier, path: inv.path, bodyLength: inv.body.length,
  bodySha256: createHash('sha256').update(inv.body).digest('hex'),
  headers: Object.fromEntries(Object.entries(inv.headers).filter(([k]) => k !== 'authorization')),
});

export async function startFakeLambda(opts: FakeLambdaOptions): Promise<FakeLambda> {
  const region = opts.region ?? 'us-west-2';
  const keys: Keys = opts.keys ?? new Map([['AKIDTEST', { secretAccessKey: 'secret-test-key' }]]);
  const handlers = new Map<string, Handler>();
  let fallback: Handler = echo;
  const closing = new AbortController();
  // Every delayed answer listens on it; thousands may be pending in the load tests.
  setMaxListeners(0, closing.signal);
  const sockets = new Set<Socket>();
  const h2sessions = new Set<http2.ServerHttp2Session>();
  // Responses finished per session (or HTTP/1.1 socket), for goawayEvery.
  const perConn = new WeakMap<object, { done: number }>();
  const connState = (conn: object) => perConn.get(conn) ?? perConn.set(conn, { done: 0 }).get(conn)!;

  const fake: FakeLambda = {
    url: '', origin: '', port: 0, region, keys, invocations: [], failures: [], sessions: 0, goaways: 0,
    inflight: 0, maxInflight: 0, clockSkewMs: opts.clockSkewMs ?? 0,
    on: (name, handler) => void handlers.set(name, handler),
    setDefault: (handler) => void (fallback = handler),
    close,
  };
  const now = () => new Date(Date.now() + fake.clockSkewMs);

  async function answerFor(req: AnyRequest, body: Buffer): Promise<FakeAnswer> {
    const path = req.url ?? '';
    const headers = headersOf(req.rawHeaders);
    const result = verifySigV4({
      method: req.method ?? '', path, headers, body, service: 'lambda', region, now: now(),
      lookupKey: (id) => keys.get(id),
    });
    const q = path.indexOf('?');
    const pathname = q < 0 ? path : path.slice(0, q);
    const query = q < 0 ? '' : path.slice(q + 1);
    const match = INVOKE_PATH.exec(pathname);
    let functionName = '';
    try { functionName = match ? decodeURIComponent(match[1]!) : ''; } catch { /* stays '' → 404 */ }
    const inv: Invocation = {
      method: req.method ?? '', path, functionName, qualifier: new URLSearchParams(query).get('Qualifier') ?? undefined,
      headers, body, verified: result.ok, reason: result.ok ? undefined : result.reason,
      authority: (headers[':authority'] ?? headers.host) as string | undefined, httpVersion: req.httpVersion,
    };
    if (!result.ok) {
      fake.failures.push(inv);
      // Real Lambda echoes the canonical request in this message; the daemon must not log it.
      const message = result.canonicalRequest
        ? `${SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n'${result.canonicalRequest}'\n\n` +
          `The String-to-Sign should have been\n'${result.stringToSign}'\n`
        : result.reason;
      return json(403, 'InvalidSignatureException', { message });
    }
    fake.invocations.push(inv);
    if (!functionName || req.method !== 'POST') {
      return json(404, 'UnknownOperationException', { message: `no such operation: ${req.method} ${pathname}` });
    }
    try {
      return await (handlers.get(functionName) ?? fallback)(inv);
    } catch (err) {
      return json(500, 'ServiceException', { message: `fake handler threw: ${(err as Error)?.message}` });
    }
  }

  async function onRequest(req: AnyRequest, res: AnyResponse): Promise<void> {
    fake.inflight++;
    fake.maxInflight = Math.max(fake.maxInflight, fake.inflight);
    res.once('close', () => fake.inflight--);
    const conn = 'stream' in req ? req.stream.session : req.socket;
    const state = conn ? connState(conn) : { done: 0 };
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const answer = await answerFor(req, Buffer.concat(chunks));
      const extra: Record<string, string> = { date: now().toUTCString(), 'x-amzn-requestid': randomUUID() };
      const every = opts.goawayEvery;
      if (every && !('stream' in req) && (state.done + 1) % every === 0) extra.connection = 'close';
      // HTTP/2 'finish' comes with the stream's close, when stream.session is already unset.
      res.once('finish', () => {
        state.done++;
        if (every && 'stream' in req && state.done % every === 0) goaway(conn as http2.Http2Session);
      });
      await writeAnswer(req, res, answer, extra, closing.signal);
    } catch {
      // The client went away, or close() aborted a delay: nothing is left to answer.
      if (!gone(res) && !closing.signal.aborted && 'stream' in req) req.stream.close(h2.NGHTTP2_INTERNAL_ERROR);
    }
  }

  // Http2Session.close() itself sends GOAWAY(NO_ERROR, last-stream-id = the highest stream
  // handed to a handler), lets open streams finish, then closes; calling goaway() first would
  // put two GOAWAY frames on the wire. RFC 9113 §6.8: streams the client opened above that id
  // are refused (the client sees REFUSED_STREAM) and were never seen here, so are safe to retry.
  function goaway(session: http2.Http2Session): void {
    if (session.closed || session.destroyed) return;
    fake.goaways++;
    session.close();
  }

  const server = opts.http1Only
    ? https.createServer({ ...opts.tls, ALPNProtocols: ['http/1.1'] })
    : http2.createSecureServer({
      ...opts.tls, allowHTTP1: false,
      settings: opts.maxConcurrentStreams ? { maxConcurrentStreams: opts.maxConcurrentStreams } : undefined,
    });
  server.on('request', (req: AnyRequest, res: AnyResponse) => void onRequest(req, res));
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  if (opts.http1Only) server.on('secureConnection', () => fake.sessions++);
  server.on('session', (session: http2.ServerHttp2Session) => {
    fake.sessions++;
    h2sessions.add(session);
    session.on('error', () => {}); // a client vanishing mid-stream is normal here
    session.once('close', () => h2sessions.delete(session));
  });
  server.on('tlsClientError', () => {});

  async function close(): Promise<void> {
    closing.abort();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const session of h2sessions) session.destroy();
    for (const socket of sockets) socket.destroy();
    await closed;
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  fake.port = (server.address() as { port: number }).port;
  fake.url = fake.origin = `https://127.0.0.1:${fake.port}`;
  return fake;
}
