// The request pipeline, top to bottom:
//   route → read bounded body → outbound headers → sign → upstream.forward → stream back
// Gateway mode (X-Lambda-Function) builds the body from the HTTP request instead, and
// decodes the function's answer back into HTTP.
import { performance } from 'node:perf_hooks';
import { createAdmission, type Hold } from './admission.js';
import type { Config } from './config.js';
import type { CredentialSource } from './credentials.js';
import { bodyLength, collect, joinBody, readBody, type Body } from './body.js';
import {
  errorResponse,
  InvalidFunctionResponseError,
  InvalidPayloadError,
  InvalidRequestError,
  PayloadTooLargeError,
  ProbeFailedError,
  ShuttingDownError,
  toLambdaSignError,
  UpstreamTimeoutError,
} from './errors.js';
import { buildEvent } from './gateway-event.js';
import { decodeResponse } from './gateway-response.js';
import { outboundHeaders, responseHeaders } from './headers.js';
import { Http1Server, type Request, type Response } from './http1/server.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { createProbe } from './probe.js';
import { checkAllowed, compileAllowlist, invokeTarget, parseFunctionRef, route, type FunctionRef } from './route.js';
import type { Signer } from './signer.js';
import { Cancel, takeCompleteBody, type Upstream, type UpstreamResponse } from './upstream.js';

export interface ServerDeps {
  config: Config;
  signer: Signer;
  upstream: Upstream;
  credentials: CredentialSource;
  log: Logger;
  metrics?: Metrics;
  now?: () => number;
}

export interface LambdaSignServer {
  readonly listener: Http1Server['listener'];
  /** Serves the connections another listener on the same socket accepts (listen.ts addAcceptors). */
  acceptFrom(listener: Http1Server['listener']): void;
  readonly inflight: number;
  /** Stops accepting, lets in-flight requests finish until the deadline, then cuts the rest. */
  drain(deadlineMs: number): Promise<void>;
}

/** Cancels the upstream exchange when Varnish hangs up; never rendered. */
class ClientGoneError extends Error {}

interface RequestLog {
  fn?: string;
  mode?: 'invoke' | 'gateway';
  status?: number;
  upstreamStatus?: number;
  retries?: number;
  error?: string;
  bytesIn?: number;
  bytesOut?: number;
  /** Set once an invocation holds an admission slot and buffer bytes. */
  hold?: Hold;
  /** Varnish's connection for this request has closed. */
  closed?: boolean;
  /** Called once Varnish's connection closes: the invocation's hook (one 'close' listener per request, not two). */
  onClose?: () => void;
}

/** An upstream exchange in progress: its answer, and the hook that ends its timer. */
interface Exchange {
  up: UpstreamResponse;
  cancel: Cancel;
  /** Stops the timer and records the upstream duration; call once the answer is consumed. */
  done(): void;
}

// AWS SDKs adopt the server's clock when a signature is refused and the clocks are at
// least this far apart (the same 5 minutes SigV4 allows).
const SKEW_LIMIT_MS = 5 * 60_000;
const PROBE_TIMEOUT_MS = 3000;

// Lambda caps synchronous answers at 6 MB; a decoded answer is held in memory, so bound it.
const MAX_DECODED_ANSWER = 8 << 20;
const GATEWAY_MODES = new Set(['http', 'raw']);

export function createServer(deps: ServerDeps): LambdaSignServer {
  const { config, signer, upstream, credentials, log, metrics } = deps;
  const now = deps.now ?? Date.now;
  const allowed = compileAllowlist(config.allowFunctions);
  const admission = createAdmission(config.maxInflight, config.maxBuffered);
  const probe =
    config.probeFunction === undefined ? undefined : createProbe({ dryRun: () => dryRun(parseFunctionRef(config.probeFunction!)) });
  let inflight = 0;
  let draining = false;
  let drained: (() => void) | undefined;

  const server = new Http1Server(
    {
      // Headers up to 64 KiB: X-Lambda-Payload carries a whole JSON payload built in VCL.
      maxHeaderSize: 64 << 10,
      headersTimeoutMs: 60_000,
      requestTimeoutMs: 300_000,
      // Varnish reuses idle backend connections for up to backend_idle_timeout (60 s);
      // closing ours first would race its reuse, so stay open a little longer.
      keepAliveTimeoutMs: 65_000,
      errorPage(_status, message) {
        const e = errorResponse(new InvalidRequestError(message));
        return { headers: e.headers, body: String(e.body) };
      },
      onParseError: (err) => log.debug({ err }, 'malformed request'),
    },
    (req, res) => {
      inflight++;
      const started = performance.now();
      const entry: RequestLog = {};
      res.onClose = () => {
        inflight--;
        entry.closed = true;
        const hold = entry.hold;
        if (hold !== undefined) {
          hold.release();
          admission.leave();
          metrics?.inflight(-1);
        }
        // 499, as nginx logs it: the client closed the connection before any answer.
        const status = entry.status ?? (res.headersSent ? res.statusCode : 499);
        const complete = res.writableFinished;
        metrics?.request(entry.fn, status, entry.error, entry.bytesIn ?? 0, entry.bytesOut ?? 0);
        const level = status >= 500 || !complete ? 'warn' : 'info';
        // The line is only built when it will be written: at 10,000 req/s it is not free.
        if (log.isLevelEnabled(level)) {
          const line = {
            id: req.headers['x-varnish'],
            method: req.method,
            mode: entry.mode,
            fn: entry.fn,
            status,
            upstreamStatus: entry.upstreamStatus,
            retries: entry.retries,
            bytesIn: entry.bytesIn,
            bytesOut: entry.bytesOut,
            error: entry.error,
            ms: Math.round((performance.now() - started) * 10) / 10,
            complete,
          };
          log[level](line, 'request');
        }
        if (draining && inflight === 0) drained?.();
        entry.onClose?.();
      };
      const gatewayFn = req.headers['x-lambda-function'];
      const work = gatewayFn === undefined ? handle(req, res, entry) : gateway(req, res, entry, gatewayFn);
      work.catch((err) => fail(res, entry, err));
    },
  );

  /** The raw Invoke API: Lambda's own path, body and answer. */
  async function handle(req: Request, res: Response, entry: RequestLog): Promise<void> {
    const r = route(req.method, req.url);
    if (r.kind === 'health') return health(res);
    entry.mode = 'invoke';
    entry.fn = r.fn.name;
    checkAllowed(allowed, r.fn);
    admit(entry);
    const body = await readBody(req, config.maxBody, undefined, entry.hold!.take);
    entry.bytesIn = bodyLength(body);
    const ex = await invoke(r.fn, r.qualifier, outboundHeaders(req.headers), body, res, entry);
    streamBack(ex, res, entry);
  }

  /** Gateway mode: any method and path, the function chosen by VCL in X-Lambda-Function. */
  async function gateway(req: Request, res: Response, entry: RequestLog, fnHeader: string | string[]): Promise<void> {
    entry.mode = 'gateway';
    if (typeof fnHeader !== 'string') throw new InvalidRequestError('X-Lambda-Function given more than once');
    const fn = parseFunctionRef(fnHeader.trim());
    entry.fn = fn.name;
    checkAllowed(allowed, fn);
    const mode = req.headers['x-lambda-response'] ?? 'http';
    if (typeof mode !== 'string' || !GATEWAY_MODES.has(mode)) throw new InvalidRequestError('X-Lambda-Response must be http or raw');
    admit(entry);
    const hold = entry.hold!;

    const body = await readBody(req, config.maxBody, undefined, hold.take);
    const given = req.headers['x-lambda-payload'];
    let payload: Buffer;
    if (typeof given === 'string') {
      // Header values arrive as latin1; the bytes VCL sent are UTF-8 JSON.
      payload = Buffer.from(given, 'latin1');
      hold.take(payload.length);
      try {
        JSON.parse(payload.toString('utf8'));
      } catch {
        throw new InvalidPayloadError('X-Lambda-Payload is not valid JSON');
      }
    } else {
      const event = buildEvent({ method: req.method, url: req.url, httpVersion: req.httpVersion, rawHeaders: req.rawHeaders, body: joinBody(body) });
      payload = Buffer.from(JSON.stringify(event));
      hold.take(payload.length);
    }
    if (payload.length > config.maxBody) {
      throw new PayloadTooLargeError(`the encoded event is larger than --max-body (${config.maxBody} bytes)`);
    }
    entry.bytesIn = payload.length;
    const ex = await invoke(fn, undefined, { 'content-type': 'application/json' }, payload, res, entry);
    // Raw mode, and Lambda's own errors (429, 404, 5xx…), pass through untouched.
    if (mode === 'raw' || ex.up.status !== 200) return streamBack(ex, res, entry);
    let answer: Buffer;
    try {
      answer = await collect(
        ex.up.body,
        MAX_DECODED_ANSWER,
        () => new InvalidFunctionResponseError('the answer is larger than Lambda allows'),
        hold.take,
      );
    } catch (err) {
      if (ex.cancel.reason !== undefined) throw ex.cancel.reason;
      // The rest of the answer is useless: cancel it instead of reading it to the end.
      ex.up.body.destroy();
      throw err;
    } finally {
      ex.done();
    }
    const h = ex.up.headers;
    const fnError = h['x-amz-function-error'];
    const requestId = h['x-amzn-requestid'];
    const decoded = decodeResponse(answer, typeof fnError === 'string' ? fnError : undefined, typeof requestId === 'string' ? requestId : undefined);
    entry.status = decoded.status;
    // RFC 9110 §6.4.1: 204 and 304 carry no content, and 204 no Content-Length either.
    const bodyless = decoded.status === 204 || decoded.status === 304;
    entry.bytesOut = bodyless ? 0 : decoded.body.length;
    if (!bodyless) decoded.headers['content-length'] = decoded.body.length;
    res.writeHead(decoded.status, decoded.headers);
    res.end(bodyless ? undefined : decoded.body);
  }

  /** Counts an invocation against --max-inflight and gives it a buffer account. */
  function admit(entry: RequestLog): void {
    admission.enter();
    entry.hold = admission.hold();
    metrics?.inflight(1);
  }

  /**
   * Signs and sends one invocation; resolves at Lambda's response headers. `res` is the
   * client whose hang-up cancels the invocation (none for the health probe).
   */
  async function invoke(
    fn: FunctionRef,
    qualifier: string | undefined,
    headers: Record<string, string>,
    body: Body,
    res: Response | undefined,
    entry: RequestLog,
    timeoutMs = config.timeoutMs,
  ): Promise<Exchange> {
    const target = invokeTarget(fn, qualifier);
    // Watch for a hang-up from here on: one during signing (a credential lookup can take
    // seconds) must stop the invocation from being sent at all.
    const abort = new Cancel();
    if (res !== undefined) {
      entry.onClose = () => {
        clearTimeout(timer);
        if (!res.writableFinished) abort.cancel(new ClientGoneError('client closed the connection'));
      };
    }
    let timer: NodeJS.Timeout | undefined;
    headers.host = config.signingHost;
    headers['content-length'] = String(bodyLength(body));
    const input = {
      method: 'POST',
      path: target.upstreamPath,
      query: qualifier === undefined ? undefined : { Qualifier: qualifier },
      headers,
      body,
    };
    let signed: Record<string, string>;
    try {
      // Credentials in hand (the common case): signed without a promise or a turn.
      signed = signer.signNow?.(input) ?? (await signer.sign(input));
    } catch (err) {
      entry.onClose = undefined;
      throw err;
    }
    if (entry.closed || abort.reason !== undefined) throw new ClientGoneError('client closed the connection');

    const started = performance.now();
    timer = setTimeout(
      () => abort.cancel(new UpstreamTimeoutError(`no complete answer from Lambda within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    let finished = false;
    const done = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      metrics?.upstreamDuration(fn.name, (performance.now() - started) / 1000);
    };
    try {
      const request = { method: 'POST', target: target.upstreamTarget, headers: signed, body };
      let up = await upstream.forward(request, abort);
      const serverDate = skewedDate(up);
      if (serverDate !== undefined) {
        // The request was refused, not executed: adopt Lambda's clock and send it once more.
        up.body.resume();
        signer.correctClock(serverDate, now());
        metrics?.clockSkewCorrection();
        metrics?.retry('clock_skew');
        log.warn({ offsetMs: signer.clockOffsetMs }, 'Lambda refused a signature and its clock differs from ours; signing with its clock');
        signed = await signer.sign(input);
        const retried = await upstream.forward({ ...request, headers: signed }, abort);
        up = { ...retried, retries: retried.retries + up.retries + 1 };
      }
      entry.upstreamStatus = up.status;
      entry.retries = up.retries;
      return { up, cancel: abort, done };
    } catch (err) {
      done();
      throw err;
    }
  }

  /** Lambda's Date, when it refused our signature and its clock is SKEW_LIMIT_MS or more from ours. */
  function skewedDate(up: UpstreamResponse): Date | undefined {
    if (up.status !== 403) return undefined;
    const type = up.headers['x-amzn-errortype'];
    if (typeof type !== 'string' || !type.startsWith('InvalidSignatureException')) return undefined;
    const date = up.headers['date'];
    const t = typeof date === 'string' ? Date.parse(date) : NaN;
    if (!Number.isFinite(t) || Math.abs(t - (now() + signer.clockOffsetMs)) < SKEW_LIMIT_MS) return undefined;
    return new Date(t);
  }

  /** The probe: a DryRun invocation, 204 when Lambda would run the function. */
  async function dryRun(fn: FunctionRef): Promise<void> {
    // A probe answers in seconds or not at all; never hold /healthz for --timeout.
    const headers = { 'x-amz-invocation-type': 'DryRun', 'content-type': 'application/json' };
    const ex = await invoke(fn, undefined, headers, Buffer.from('{}'), undefined, {}, Math.min(config.timeoutMs, PROBE_TIMEOUT_MS));
    ex.up.body.resume();
    ex.done();
    if (ex.up.status !== 204 && ex.up.status !== 200) {
      const type = ex.up.headers['x-amzn-errortype'];
      throw new ProbeFailedError(`DryRun of ${fn.name} answered ${ex.up.status}${typeof type === 'string' ? ` ${type.split(':')[0]}` : ''}`);
    }
  }

  /** Lambda's answer to Varnish as it arrives, with backpressure both ways. */
  function streamBack(ex: Exchange, res: Response, entry: RequestLog): void {
    // A hand-rolled pipe: stream.pipeline() costs an AbortController and a DOMException
    // per request, which showed in profiles at 10,000+ req/s.
    const body = ex.up.body;
    res.writeHead(ex.up.status, responseHeaders(ex.up.headers));
    // Most answers are small and complete by now: one write, no stream plumbing.
    const whole = takeCompleteBody(body);
    if (whole !== undefined) {
      entry.bytesOut = whole.length;
      ex.done();
      res.end(whole.length > 0 ? whole : undefined);
      return;
    }
    let out = 0;
    const onDrain = (): void => void body.resume();
    body.on('data', (chunk: Buffer) => {
      out += chunk.length;
      if (!res.write(chunk)) body.pause();
    });
    res.onDrain = onDrain;
    body.once('end', () => {
      entry.bytesOut = out;
      ex.done();
      res.end();
    });
    // Errors surface through 'close' without 'end' below.
    body.on('error', () => {});
    body.once('close', () => {
      res.onDrain = undefined;
      if (body.readableEnded) return;
      // Headers are out: the only honest signal left is an incomplete response.
      entry.bytesOut = out;
      entry.error = ex.cancel.reason !== undefined ? toLambdaSignError(ex.cancel.reason).code : 'UpstreamStreamError';
      ex.done();
      res.destroy();
    });
  }

  async function health(res: Response): Promise<void> {
    if (draining) throw new ShuttingDownError('lambda-sign is shutting down');
    await credentials.get();
    await probe?.check();
    const body = '{"status":"ok"}';
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length, 'cache-control': 'no-store' });
    res.end(body);
  }

  function fail(res: Response, entry: RequestLog, err: unknown): void {
    if (err instanceof ClientGoneError) return void res.destroy();
    const e = toLambdaSignError(err);
    entry.error = e.code;
    if (e.status >= 500 && e.code !== 'UpstreamTimeout' && e.code !== 'FunctionError') log.warn({ err: e, fn: entry.fn }, e.message);
    if (res.headersSent || res.destroyed) return void res.destroy();
    const out = errorResponse(e);
    entry.status = out.status;
    // A body we did not read to the end leaves the connection unusable: the server
    // closes it after this answer.
    entry.bytesOut = out.body.length;
    res.writeHead(out.status, out.headers);
    res.end(out.body);
  }

  return {
    listener: server.listener,
    acceptFrom: (l) => server.acceptFrom(l),
    get inflight() {
      return inflight;
    },
    drain(deadlineMs) {
      draining = true;
      server.close();
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
