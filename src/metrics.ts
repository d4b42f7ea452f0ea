// Prometheus metrics (prom-client), served on their own listener (--metrics), never on
// the socket Varnish talks to.
import fs from 'node:fs';
import http from 'node:http';
import client from 'prom-client';
import { removeStale } from './listen.js';

export interface Metrics {
  readonly registry: client.Registry;
  /**
   * `claim`: whether `fn` may take one of the capped label slots; when false, a name not
   * labelled yet counts as "other". Only names Lambda ran (a 2xx) should claim (see server.ts).
   */
  request(fn: string | undefined, status: number, errorCode: string | undefined, bytesIn: number, bytesOut: number, claim?: boolean): void;
  upstreamDuration(fn: string, seconds: number, claim?: boolean): void;
  inflight(delta: 1 | -1): void;
  retry(reason: string): void;
  credentialRefresh(ok: boolean): void;
  clockSkewCorrection(): void;
}

// A client choosing function names must not grow the label set without bound.
const MAX_FUNCTION_LABELS = 500;

export function createMetrics(opts: { sessions?: () => number; waiting?: () => number; defaultMetrics?: boolean } = {}): Metrics {
  const registry = new client.Registry();
  if (opts.defaultMetrics !== false) client.collectDefaultMetrics({ register: registry });
  const requests = new client.Counter({
    name: 'lambda_sign_requests_total',
    help: 'Requests answered, by function (bare name) and the status sent to Varnish',
    labelNames: ['function', 'status'] as const,
    registers: [registry],
  });
  const duration = new client.Histogram({
    name: 'lambda_sign_upstream_duration_seconds',
    help: 'Time from sending an invocation to the end of Lambda\'s answer',
    labelNames: ['function'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
    registers: [registry],
  });
  const inflight = new client.Gauge({ name: 'lambda_sign_inflight_requests', help: 'Invocations being handled', registers: [registry] });
  new client.Gauge({
    name: 'lambda_sign_upstream_sessions',
    help: 'Open HTTP/2 sessions to the Lambda endpoint',
    registers: [registry],
    collect() {
      this.set(opts.sessions?.() ?? 0);
    },
  });
  new client.Gauge({
    name: 'lambda_sign_waiting_connections',
    help: 'Varnish connections whose request waits unread while request bodies queue for Lambda\'s flow-control window',
    registers: [registry],
    collect() {
      this.set(opts.waiting?.() ?? 0);
    },
  });
  const retries = new client.Counter({
    name: 'lambda_sign_retries_total',
    help: 'Invocations sent again because Lambda provably did not process them (RFC 9113 §8.7), or after a clock-skew correction',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const errors = new client.Counter({
    name: 'lambda_sign_errors_total',
    help: 'Errors answered by lambda-sign itself, by code',
    labelNames: ['code'] as const,
    registers: [registry],
  });
  const refreshes = new client.Counter({
    name: 'lambda_sign_credential_refreshes_total',
    help: 'Credential refreshes, by result',
    labelNames: ['result'] as const,
    registers: [registry],
  });
  const skew = new client.Counter({
    name: 'lambda_sign_clock_skew_corrections_total',
    help: 'Times the signing clock was corrected from Lambda\'s Date header',
    registers: [registry],
  });
  const bytesIn = new client.Counter({ name: 'lambda_sign_request_bytes_total', help: 'Bytes sent to Lambda in invocation bodies', registers: [registry] });
  const bytesOut = new client.Counter({ name: 'lambda_sign_response_bytes_total', help: 'Response body bytes sent to Varnish', registers: [registry] });

  // Children cached per label value: labels() hashes its arguments on every call. The keys
  // are bounded because label() caps the function names.
  const cached = <T>(map: Map<string, T>, key: string, make: () => T): T => {
    let child = map.get(key);
    if (child === undefined) map.set(key, (child = make()));
    return child;
  };
  const seen = new Set<string>();
  const requestChildren = new Map<string, client.Counter.Internal>();
  const durationChildren = new Map<string, client.Histogram.Internal<'function'>>();
  const label = (fn: string | undefined, claim: boolean): string => {
    if (fn === undefined) return '-';
    if (seen.has(fn)) return fn;
    if (!claim || seen.size >= MAX_FUNCTION_LABELS) return 'other';
    seen.add(fn);
    return fn;
  };

  return {
    registry,
    request(fn, status, code, inBytes, outBytes, claim = true) {
      const fnLabel = label(fn, claim);
      cached(requestChildren, `${fnLabel}\0${status}`, () => requests.labels(fnLabel, String(status))).inc();
      if (code !== undefined) errors.inc({ code });
      if (inBytes > 0) bytesIn.inc(inBytes);
      if (outBytes > 0) bytesOut.inc(outBytes);
    },
    upstreamDuration(fn, seconds, claim = true) {
      const fnLabel = label(fn, claim);
      cached(durationChildren, fnLabel, () => duration.labels(fnLabel)).observe(seconds);
    },
    inflight(delta) {
      inflight.inc(delta);
    },
    retry(reason) {
      retries.inc({ reason });
    },
    credentialRefresh(ok) {
      refreshes.inc({ result: ok ? 'ok' : 'failed' });
    },
    clockSkewCorrection() {
      skew.inc();
    },
  };
}

export interface MetricsListener {
  readonly address: string;
  close(): Promise<void>;
}

/** What the listener serves: one process's registry, or the cluster's aggregate. */
export interface MetricsSource {
  metrics(): Promise<string>;
  readonly contentType: string;
}

export async function serveMetrics(source: MetricsSource, target: { host: string; port: number } | { path: string }): Promise<MetricsListener> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('metrics are at GET /metrics\n');
      return;
    }
    source.metrics().then(
      (text) => res.writeHead(200, { 'content-type': source.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics unavailable: ${(err as Error).message}\n`),
    );
  });
  if ('path' in target) await removeStale(target.path);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen('path' in target ? { path: target.path } : { host: target.host, port: target.port }, () => resolve());
  });
  const addr = server.address();
  const address = typeof addr === 'string' ? addr : `${addr!.address}:${addr!.port}`;
  return {
    address,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
        if ('path' in target) fs.rmSync(target.path, { force: true });
      }),
  };
}
