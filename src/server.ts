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
  InvalidUpstreamResponseError,
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
import { Http1Server, InvalidHeaderError, type Request, type Response, type ResponseOwner } from './http1/server.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { createProbe } from './probe.js';
import { checkAllowed, compileAllowlist, invokeTarget, parseFunctionRef, route, type FunctionRef } from './route.js';
import type { SignInput, Signer } from './signer.js';
import { Cancel, takeCompleteBody, type Receiver, type Upstream, type UpstreamRequest, type UpstreamResponse } from './upstream.js';

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
  /** Connections whose next request waits unread (see QUEUE_AT_BACKLOG). */
  readonly waiting: number;
  /** Stops accepting, lets in-flight requests finish until the deadline, then cuts the rest. */
  drain(deadlineMs: number): Promise<void>;
}

/** Cancels the upstream exchange when Varnish hangs up; never rendered. */
class ClientGoneError extends Error {}

// AWS SDKs adopt the server's clock when a signature is refused and the clocks are at
// least this far apart (the same 5 minutes SigV4 allows).
const SKEW_LIMIT_MS = 5 * 60_000;
const PROBE_TIMEOUT_MS = 3000;

// Lambda caps synchronous answers at 6 MB; a decoded answer is held in memory, so bound it.
const MAX_DECODED_ANSWER = 8 << 20;
const GATEWAY_MODES = new Set(['http', 'raw']);
// Past this many request-body bytes waiting for Lambda's flow-control window, new requests
// wait unread in their connections (first come, first let in) instead of joining the pile:
// the upstream is the narrow point, and what is read now would only wait in memory.
const QUEUE_AT_BACKLOG = 8 << 20;

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

  /**
   * One request, from its head to the end of its answer: what the log line says about it,
   * its share of the admission bounds, and the invocation in progress. It is also the
   * invocation's Cancel, the upstream's Receiver and the response's owner, so that a
   * request waiting on Lambda keeps this one object alive instead of a chain of promises,
   * async frames and closures (at 2,000 in flight, those were collected over and over).
   */
  class Call extends Cancel implements Receiver, ResponseOwner {
    // The log line.
    fn: string | undefined;
    mode: 'invoke' | 'gateway' | undefined;
    status: number | undefined;
    upstreamStatus: number | undefined;
    retries: number | undefined;
    error: string | undefined;
    bytesIn: number | undefined;
    bytesOut: number | undefined;
    /** Set once an invocation holds an admission slot and buffer bytes. */
    hold: Hold | undefined;
    /** Varnish's connection for this request has closed. */
    closed = false;

    // The invocation.
    timeoutMs = config.timeoutMs;
    /** What was signed and sent: kept to sign again with Lambda's clock. */
    input: SignInput | undefined;
    request: UpstreamRequest | undefined;
    private sentAt = 0;
    private timer: NodeJS.Timeout | undefined;
    private finished = false;
    /** Retries spent before a resend with Lambda's clock; undefined until one. */
    private resent: number | undefined;
    /** Where the answer goes when it is not streamed straight back (gateway mode, the probe). */
    waiter: { resolve: (up: UpstreamResponse) => void; reject: (err: Error) => void } | undefined;
    /** The answer being streamed back, paused while Varnish's socket is full. */
    streaming: UpstreamResponse['body'] | undefined;

    readonly started = performance.now();

    constructor(
      readonly req: Request | undefined,
      readonly res: Response | undefined,
    ) {
      super();
    }

    /**
     * Whether this call's function may take a metrics label of its own: only once Lambda
     * ran it (2xx; a function error is a 200). A client choosing names that we refuse, that
     * do not exist (404) or that the role may not invoke (403: IAM is checked before the
     * name) would otherwise use up the capped label set, and the real functions would be
     * counted as "other".
     */
    get labelled(): boolean {
      return this.upstreamStatus !== undefined && this.upstreamStatus >= 200 && this.upstreamStatus < 300;
    }

    /** Starts the invocation's clock; it is cancelled when the time is up. */
    sent(): void {
      this.sentAt = performance.now();
      this.timer = setTimeout(timedOut, this.timeoutMs, this);
    }

    /** Stops the timer and records the upstream duration; called once the answer is consumed. */
    done(): void {
      if (this.finished || this.sentAt === 0) return;
      this.finished = true;
      clearTimeout(this.timer);
      metrics?.upstreamDuration(this.fn!, (performance.now() - this.sentAt) / 1000, this.labelled);
    }

    answered(up: UpstreamResponse): void {
      if (this.resent === undefined) {
        const serverDate = skewedDate(up);
        if (serverDate !== undefined) return void this.resend(up, serverDate);
      } else up = { ...up, retries: up.retries + this.resent };
      // Nothing is signed or sent again from here: let the request and its body go.
      this.input = undefined;
      this.request = undefined;
      this.upstreamStatus = up.status;
      this.retries = up.retries;
      const waiter = this.waiter;
      if (waiter !== undefined) return waiter.resolve(up);
      try {
        streamBack(this, up);
      } catch (err) {
        fail(this, err);
      }
    }

    failed(err: Error): void {
      this.input = undefined;
      this.request = undefined;
      this.done();
      const waiter = this.waiter;
      if (waiter !== undefined) waiter.reject(err);
      else fail(this, err);
    }

    /** The request was refused, not executed: adopt Lambda's clock and send it once more. */
    private async resend(up: UpstreamResponse, serverDate: Date): Promise<void> {
      up.body.resume();
      this.resent = up.retries + 1;
      signer.correctClock(serverDate, now());
      metrics?.clockSkewCorrection();
      metrics?.retry('clock_skew');
      log.warn({ offsetMs: signer.clockOffsetMs }, 'Lambda refused a signature and its clock differs from ours; signing with its clock');
      let signed: Record<string, string>;
      try {
        signed = await signer.sign(this.input!);
      } catch (err) {
        return this.failed(err as Error);
      }
      upstream.send({ ...this.request!, headers: signed }, this, this);
    }

    responseClosed(): void {
      const res = this.res!;
      const req = this.req!;
      inflight--;
      this.closed = true;
      const hold = this.hold;
      if (hold !== undefined) {
        hold.release();
        admission.leave();
        metrics?.inflight(-1);
      }
      // 499, as nginx logs it: the client closed the connection before any answer.
      const status = this.status ?? (res.headersSent ? res.statusCode : 499);
      const complete = res.writableFinished;
      metrics?.request(this.fn, status, this.error, this.bytesIn ?? 0, this.bytesOut ?? 0, this.labelled);
      const level = status >= 500 || !complete ? 'warn' : 'info';
      // The line is only built when it will be written: at 10,000 req/s it is not free.
      if (log.isLevelEnabled(level)) {
        const line = {
          id: req.headers['x-varnish'],
          method: req.method,
          mode: this.mode,
          fn: this.fn,
          status,
          upstreamStatus: this.upstreamStatus,
          retries: this.retries,
          bytesIn: this.bytesIn,
          bytesOut: this.bytesOut,
          error: this.error,
          ms: Math.round((performance.now() - this.started) * 10) / 10,
          complete,
        };
        log[level](line, 'request');
      }
      if (draining && inflight === 0) drained?.();
      clearTimeout(this.timer);
      if (!complete) this.cancel(new ClientGoneError('client closed the connection'));
    }

    responseDrained(): void {
      this.streaming?.resume();
    }
  }

  /** A Call's timer ran out. */
  function timedOut(call: Call): void {
    call.cancel(new UpstreamTimeoutError(`no complete answer from Lambda within ${call.timeoutMs / 1000} s`));
  }

  const backlog = upstream.backlog;
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
      ...(backlog === undefined ? {} : { mayStart: () => backlog.bytes < QUEUE_AT_BACKLOG }),
    },
    (req, res) => {
      inflight++;
      const call = new Call(req, res);
      res.owner = call;
      const gatewayFn = req.headers['x-lambda-function'];
      const work = gatewayFn === undefined ? handle(call, req) : gateway(call, req, gatewayFn);
      work.catch((err) => fail(call, err));
    },
  );
  if (backlog !== undefined) {
    backlog.low = QUEUE_AT_BACKLOG;
    backlog.onLow = () => server.reopen();
  }

  /**
   * The raw Invoke API: Lambda's own path, body and answer. Returns once the invocation is
   * sent; the answer comes to call.answered, and is streamed back from there.
   */
  async function handle(call: Call, req: Request): Promise<void> {
    const r = route(req.method, req.url);
    if (r.kind === 'health') return health(call.res!);
    call.mode = 'invoke';
    call.fn = r.fn.name;
    checkAllowed(allowed, r.fn);
    admit(call);
    const body = await readBody(req, config.maxBody, undefined, call.hold);
    call.bytesIn = bodyLength(body);
    await invoke(call, r.fn, r.qualifier, outboundHeaders(req.headers), body);
  }

  /** Gateway mode: any method and path, the function chosen by VCL in X-Lambda-Function. */
  async function gateway(call: Call, req: Request, fnHeader: string | string[]): Promise<void> {
    call.mode = 'gateway';
    if (typeof fnHeader !== 'string') throw new InvalidRequestError('X-Lambda-Function given more than once');
    const fn = parseFunctionRef(fnHeader.trim());
    call.fn = fn.name;
    checkAllowed(allowed, fn);
    const mode = req.headers['x-lambda-response'] ?? 'http';
    if (typeof mode !== 'string' || !GATEWAY_MODES.has(mode)) throw new InvalidRequestError('X-Lambda-Response must be http or raw');
    admit(call);
    const hold = call.hold!;

    const body = await readBody(req, config.maxBody, undefined, hold);
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
    call.bytesIn = payload.length;
    // Raw mode, and Lambda's own errors (429, 404, 5xx…), pass through untouched.
    if (mode === 'raw') return invoke(call, fn, undefined, { 'content-type': 'application/json' }, payload);
    const up = await invokeAndWait(call, fn, { 'content-type': 'application/json' }, payload);
    if (up.status !== 200) return streamBack(call, up);
    let answer: Buffer;
    try {
      answer = await collect(up.body, MAX_DECODED_ANSWER, () => new InvalidFunctionResponseError('the answer is larger than Lambda allows'), hold);
    } catch (err) {
      if (call.reason !== undefined) throw call.reason;
      // The rest of the answer is useless: cancel it instead of reading it to the end.
      up.body.destroy();
      throw err;
    } finally {
      call.done();
    }
    const h = up.headers;
    const fnError = h['x-amz-function-error'];
    const requestId = h['x-amzn-requestid'];
    const decoded = decodeResponse(answer, typeof fnError === 'string' ? fnError : undefined, typeof requestId === 'string' ? requestId : undefined);
    call.status = decoded.status;
    // RFC 9110 §6.4.1: 204 and 304 carry no content, and 204 no Content-Length either.
    const bodyless = decoded.status === 204 || decoded.status === 304;
    call.bytesOut = bodyless ? 0 : decoded.body.length;
    if (!bodyless) decoded.headers['content-length'] = decoded.body.length;
    const res = call.res!;
    res.writeHead(decoded.status, decoded.headers);
    res.end(bodyless ? undefined : decoded.body);
  }

  /** Counts an invocation against --max-inflight and gives it a buffer account. */
  function admit(call: Call): void {
    admission.enter();
    call.hold = admission.hold();
    metrics?.inflight(1);
  }

  /**
   * Signs and sends one invocation; resolves once it is sent. The answer's headers, or the
   * failure, come to call.answered / call.failed.
   */
  async function invoke(call: Call, fn: FunctionRef, qualifier: string | undefined, headers: Record<string, string>, body: Body): Promise<void> {
    const target = invokeTarget(fn, qualifier);
    call.fn = fn.name;
    headers.host = config.signingHost;
    headers['content-length'] = String(bodyLength(body));
    const input: SignInput = {
      method: 'POST',
      path: target.upstreamPath,
      query: qualifier === undefined ? undefined : { Qualifier: qualifier },
      headers,
      body,
    };
    // Credentials in hand (the common case): signed without a promise or a turn. A hang-up
    // during signing (a credential lookup can take seconds) stops it from being sent at all.
    const signed = signer.signNow?.(input) ?? (await signer.sign(input));
    if (call.closed || call.reason !== undefined) throw new ClientGoneError('client closed the connection');
    call.input = input;
    call.request = { method: 'POST', target: target.upstreamTarget, headers: signed, body };
    call.sent();
    upstream.send(call.request, call, call);
  }

  /** invoke(), then the answer's headers, for callers that read the answer themselves. */
  function invokeAndWait(call: Call, fn: FunctionRef, headers: Record<string, string>, body: Body): Promise<UpstreamResponse> {
    return new Promise((resolve, reject) => {
      call.waiter = { resolve, reject };
      invoke(call, fn, undefined, headers, body).catch(reject);
    });
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
    const call = new Call(undefined, undefined);
    // A probe answers in seconds or not at all; never hold /healthz for --timeout.
    call.timeoutMs = Math.min(config.timeoutMs, PROBE_TIMEOUT_MS);
    const headers = { 'x-amz-invocation-type': 'DryRun', 'content-type': 'application/json' };
    const up = await invokeAndWait(call, fn, headers, Buffer.from('{}'));
    up.body.resume();
    call.done();
    if (up.status !== 204 && up.status !== 200) {
      const type = up.headers['x-amzn-errortype'];
      throw new ProbeFailedError(`DryRun of ${fn.name} answered ${up.status}${typeof type === 'string' ? ` ${type.split(':')[0]}` : ''}`);
    }
  }

  /** Lambda's answer to Varnish as it arrives, with backpressure both ways. */
  function streamBack(call: Call, up: UpstreamResponse): void {
    // A hand-rolled pipe: stream.pipeline() costs an AbortController and a DOMException
    // per request, which showed in profiles at 10,000+ req/s.
    const res = call.res!;
    const body = up.body;
    try {
      res.writeHead(up.status, responseHeaders(up.headers));
    } catch (err) {
      // The answer cannot be passed on, so it will not be read: let its stream (and its
      // place in the session) go now rather than when Lambda ends it.
      body.destroy();
      call.done();
      if (!(err instanceof InvalidHeaderError)) throw err;
      throw new InvalidUpstreamResponseError('Lambda answered with a header that cannot be passed on over HTTP/1.1', { cause: err });
    }
    // Most answers are small and complete by now: one write, no stream plumbing.
    const whole = takeCompleteBody(body);
    if (whole !== undefined) {
      call.bytesOut = whole.length;
      call.done();
      res.end(whole.length > 0 ? whole : undefined);
      return;
    }
    let out = 0;
    call.streaming = body;
    body.on('data', (chunk: Buffer) => {
      out += chunk.length;
      if (!res.write(chunk)) body.pause();
    });
    body.once('end', () => {
      call.bytesOut = out;
      call.done();
      res.end();
    });
    // Errors surface through 'close' without 'end' below.
    body.on('error', () => {});
    body.once('close', () => {
      call.streaming = undefined;
      if (body.readableEnded) return;
      // Headers are out: the only honest signal left is an incomplete response.
      call.bytesOut = out;
      call.error = call.reason !== undefined ? toLambdaSignError(call.reason).code : 'UpstreamStreamError';
      call.done();
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

  function fail(call: Call, err: unknown): void {
    const res = call.res!;
    if (err instanceof ClientGoneError) return void res.destroy();
    const e = toLambdaSignError(err);
    call.error = e.code;
    if (e.status >= 500 && e.code !== 'UpstreamTimeout' && e.code !== 'FunctionError') log.warn({ err: e, fn: call.fn }, e.message);
    if (res.headersSent || res.destroyed) return void res.destroy();
    const out = errorResponse(e);
    call.status = out.status;
    // A body we did not read to the end leaves the connection unusable: the server
    // closes it after this answer.
    call.bytesOut = out.body.length;
    res.writeHead(out.status, out.headers);
    res.end(out.body);
  }

  return {
    listener: server.listener,
    acceptFrom: (l) => server.acceptFrom(l),
    get inflight() {
      return inflight;
    },
    get waiting() {
      return server.waiting;
    },
    async drain(deadlineMs) {
      draining = true;
      await server.close();
      if (inflight === 0) return;
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
