// The request pipeline, top to bottom:
//   route → read bounded body → outbound headers → sign → upstream.forward → stream back
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { pipeline } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Config } from './config.js';
import type { CredentialSource } from './credentials.js';
import { BodyTooLargeError, readBody } from './body.js';
import {
  errorResponse,
  InvalidRequestError,
  ShuttingDownError,
  toLambdaSignError,
  UpstreamTimeoutError,
} from './errors.js';
import { outboundHeaders, responseHeaders } from './headers.js';
import type { Logger } from './log.js';
import { checkAllowed, compileAllowlist, route } from './route.js';
import type { Signer } from './signer.js';
import type { Upstream } from './upstream.js';

export interface ServerDeps {
  config: Config;
  signer: Signer;
  upstream: Upstream;
  credentials: CredentialSource;
  log: Logger;
}

export interface LambdaSignServer {
  readonly http: http.Server;
  readonly inflight: number;
  /** Stops accepting, lets in-flight requests finish until the deadline, then cuts the rest. */
  drain(deadlineMs: number): Promise<void>;
}

/** Raised into the upstream signal when Varnish hangs up; never rendered. */
class ClientGoneError extends Error {}

interface RequestLog {
  fn?: string;
  status?: number;
  upstreamStatus?: number;
  retries?: number;
  error?: string;
  bytesIn?: number;
}

export function createServer(deps: ServerDeps): LambdaSignServer {
  const { config, signer, upstream, credentials, log } = deps;
  const allowed = compileAllowlist(config.allowFunctions);
  let inflight = 0;
  let draining = false;
  let drained: (() => void) | undefined;

  const server = http.createServer({ noDelay: true }, (req, res) => {
    inflight++;
    const started = performance.now();
    const entry: RequestLog = {};
    if (draining) res.shouldKeepAlive = false;
    res.once('close', () => {
      inflight--;
      const line = {
        id: req.headers['x-varnish'],
        method: req.method,
        ...entry,
        status: entry.status ?? res.statusCode,
        ms: Math.round((performance.now() - started) * 10) / 10,
        complete: res.writableFinished,
      };
      if (line.status >= 500 || !line.complete) log.warn(line, 'request');
      else log.info(line, 'request');
      if (draining && inflight === 0) drained?.();
    });
    handle(req, res, entry).catch((err) => fail(req, res, entry, err));
  });
  // Varnish reuses idle backend connections for up to backend_idle_timeout (60 s);
  // closing ours first would race its reuse, so stay open a little longer.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 60_000;
  server.requestTimeout = 300_000;

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') return void socket.destroy();
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const e = errorResponse(new InvalidRequestError(status === 431 ? 'request headers too large' : 'malformed HTTP request'));
    const head = Object.entries(e.headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n${head}connection: close\r\n\r\n${e.body}`);
    log.debug({ err }, 'malformed request');
  });

  async function handle(req: IncomingMessage, res: ServerResponse, entry: RequestLog): Promise<void> {
    const r = route(req.method ?? '', req.url ?? '');
    if (r.kind === 'health') return health(res);
    entry.fn = r.fn.name;
    checkAllowed(allowed, r.fn);

    const body = await readBody(req, config.maxBody);
    entry.bytesIn = body.length;
    const headers = outboundHeaders(req.headers);
    headers.host = config.signingHost;
    headers['content-length'] = String(body.length);
    const signed = await signer.sign({
      method: 'POST',
      path: r.upstreamPath,
      query: r.qualifier === undefined ? undefined : { Qualifier: r.qualifier },
      headers,
      body,
    });

    const abort = new AbortController();
    const timer = setTimeout(
      () => abort.abort(new UpstreamTimeoutError(`no complete answer from Lambda within ${config.timeoutMs / 1000} s`)),
      config.timeoutMs,
    );
    res.once('close', () => {
      clearTimeout(timer);
      if (!res.writableFinished) abort.abort(new ClientGoneError('client closed the connection'));
    });

    const up = await upstream.forward({ method: 'POST', target: r.upstreamTarget, headers: signed, body }, abort.signal);
    entry.upstreamStatus = up.status;
    entry.retries = up.retries;
    res.writeHead(up.status, responseHeaders(up.headers));
    pipeline(up.body, res, (err) => {
      clearTimeout(timer);
      if (err !== undefined && err !== null) {
        // Headers are out: the only honest signal left is an incomplete response.
        entry.error = abort.signal.aborted ? toLambdaSignError(abort.signal.reason).code : 'UpstreamStreamError';
        res.destroy();
      }
    });
  }

  async function health(res: ServerResponse): Promise<void> {
    if (draining) throw new ShuttingDownError('lambda-sign is shutting down');
    await credentials.get();
    const body = '{"status":"ok"}';
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length, 'cache-control': 'no-store' });
    res.end(body);
  }

  function fail(req: IncomingMessage, res: ServerResponse, entry: RequestLog, err: unknown): void {
    if (err instanceof ClientGoneError) return void res.destroy();
    const e = toLambdaSignError(err);
    entry.error = e.code;
    if (e.status >= 500 && e.code !== 'UpstreamTimeout') log.warn({ err: e, fn: entry.fn }, e.message);
    if (res.headersSent || res.destroyed) return void res.destroy();
    const out = errorResponse(e);
    entry.status = out.status;
    // A body we did not read to the end leaves the connection unusable.
    if (!req.complete) res.shouldKeepAlive = false;
    res.writeHead(out.status, out.headers);
    res.end(out.body);
    if (e instanceof BodyTooLargeError && !e.drained) res.once('finish', () => req.socket.destroySoon());
  }

  return {
    http: server,
    get inflight() {
      return inflight;
    },
    drain(deadlineMs) {
      draining = true;
      server.close();
      server.closeIdleConnections();
      if (inflight === 0) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          log.warn({ inflight }, 'drain deadline reached; closing remaining connections');
          server.closeAllConnections();
          resolve();
        }, deadlineMs);
        drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    },
  };
}
