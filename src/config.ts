import { parseFunctionRef } from './route.js';

// Options → a frozen Config. Validation happens here, once, and every failure names
// the flag (or the environment variable) it came from.

export class ConfigError extends Error {
  constructor(readonly option: string, message: string) {
    super(`${option}: ${message}`);
  }
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  readonly region: string;
  readonly socketPath: string;
  readonly socketMode: number;
  /** A descriptor passed by systemd socket activation; when set, socketPath is not used. */
  readonly listenFd?: number;
  readonly endpoint: URL;
  /** The host Lambda sees in :authority / Host, and the one that is signed. */
  readonly signingHost: string;
  readonly allowFunctions: readonly string[];
  readonly maxBody: number;
  readonly timeoutMs: number;
  readonly drainTimeoutMs: number;
  readonly logLevel: LogLevel;
  readonly profile?: string;
  readonly caFile?: string;
  readonly maxInflight: number;
  readonly maxBuffered: number;
  /** A function /healthz checks with a DryRun invocation. */
  readonly probeFunction?: string;
  readonly metrics?: { host: string; port: number } | { path: string };
  /** The SigV4 implementation: the specialised fast path, or @smithy/signature-v4 for every request. */
  readonly signer: 'fast' | 'smithy';
  /** Processes serving the socket (node:cluster); 1 means no cluster. */
  readonly workers: number;
}

/** What commander hands over: strings, as typed. */
export interface RawOptions {
  region?: string;
  socket?: string;
  socketMode?: string;
  endpoint?: string;
  allowFunction?: string[];
  maxBody?: string;
  timeout?: string;
  drainTimeout?: string;
  logLevel?: string;
  profile?: string;
  caFile?: string;
  maxInflight?: string;
  maxBuffered?: string;
  probeFunction?: string;
  metrics?: string;
  signer?: string;
  workers?: string;
}

export type Env = Readonly<Record<string, string | undefined>>;

export const DEFAULTS = Object.freeze({
  socket: '/run/lambda-sign.sock',
  socketMode: '660',
  maxBody: '6291456', // Lambda's synchronous invoke payload limit
  timeout: '900', // Lambda's maximum function timeout
  drainTimeout: '30',
  logLevel: 'info',
  maxInflight: '4096',
  maxBuffered: String(1 << 30), // 1 GiB of request and decoded-answer buffers
  signer: 'fast',
  workers: 'auto',
});

const REGION_RE = /^[a-z]{2,4}(?:-[a-z]+)+-\d{1,2}$/;

// The partitions whose regions live under a DNS suffix of their own (the AWS SDK's
// partitions table); every other region, GovCloud included, is under amazonaws.com.
const DNS_SUFFIXES: readonly [prefix: string, suffix: string][] = [
  ['cn-', 'amazonaws.com.cn'],
  ['eusc-', 'amazonaws.eu'],
  ['us-isob-', 'sc2s.sgov.gov'],
  ['us-isof-', 'csp.hci.ic.gov'],
  ['us-iso-', 'c2s.ic.gov'],
  ['eu-isoe-', 'cloud.adc-e.uk'],
];

export function defaultEndpoint(region: string): string {
  const suffix = DNS_SUFFIXES.find(([prefix]) => region.startsWith(prefix))?.[1] ?? 'amazonaws.com';
  return `https://lambda.${region}.${suffix}`;
}

/** --workers auto: half the CPUs, leaving the rest to Varnish (which does as much work per request), at most 16. */
export function autoWorkers(cpus: number): number {
  return Math.max(1, Math.min(16, Math.floor(cpus / 2)));
}

export function buildConfig(raw: RawOptions, env: Env = {}, listenFd?: number, cpus = 1): Config {
  const region = pick(raw.region, env.AWS_REGION, env.AWS_DEFAULT_REGION);
  if (region === undefined) {
    throw new ConfigError('--region', 'required (or set AWS_REGION / AWS_DEFAULT_REGION)');
  }
  if (!REGION_RE.test(region)) throw new ConfigError('--region', `not an AWS region: ${JSON.stringify(region)}`);

  const endpointSource =
    raw.endpoint ? '--endpoint' : env.AWS_ENDPOINT_URL_LAMBDA ? 'AWS_ENDPOINT_URL_LAMBDA' : env.AWS_ENDPOINT_URL ? 'AWS_ENDPOINT_URL' : '--endpoint';
  const endpointText = pick(raw.endpoint, env.AWS_ENDPOINT_URL_LAMBDA, env.AWS_ENDPOINT_URL) ?? defaultEndpoint(region);
  const endpoint = parseEndpoint(endpointText, endpointSource);

  const socketMode = raw.socketMode ?? DEFAULTS.socketMode;
  if (!/^0?[0-7]{3}$/.test(socketMode)) throw new ConfigError('--socket-mode', 'expected octal permissions such as 660');

  const logLevel = raw.logLevel ?? DEFAULTS.logLevel;
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError('--log-level', `expected one of ${LOG_LEVELS.join(', ')}`);
  }

  const allowFunctions = (raw.allowFunction ?? []).map((g) => {
    if (!/^[a-zA-Z0-9_*?-]{1,64}$/.test(g)) {
      throw new ConfigError('--allow-function', `${JSON.stringify(g)}: a glob over function names uses [A-Za-z0-9_-] with * and ?`);
    }
    return g;
  });

  const socketPath = raw.socket ?? DEFAULTS.socket;
  if (socketPath.length === 0 || Buffer.byteLength(socketPath) > 107) {
    throw new ConfigError('--socket', 'a Unix socket path must be 1 to 107 bytes');
  }

  return Object.freeze({
    region,
    socketPath,
    socketMode: parseInt(socketMode, 8),
    listenFd,
    endpoint,
    signingHost: endpoint.host, // URL.host omits the default port, as Host must
    allowFunctions: Object.freeze(allowFunctions),
    maxBody: integer('--max-body', raw.maxBody ?? DEFAULTS.maxBody, 1, 1 << 30),
    timeoutMs: seconds('--timeout', raw.timeout ?? DEFAULTS.timeout, 3600),
    drainTimeoutMs: seconds('--drain-timeout', raw.drainTimeout ?? DEFAULTS.drainTimeout, 3600),
    logLevel: logLevel as LogLevel,
    profile: pick(raw.profile, env.AWS_PROFILE),
    caFile: raw.caFile,
    maxInflight: integer('--max-inflight', raw.maxInflight ?? DEFAULTS.maxInflight, 1, 1_000_000),
    maxBuffered: integer('--max-buffered', raw.maxBuffered ?? DEFAULTS.maxBuffered, 1, 2 ** 40),
    probeFunction: probeFunction(raw.probeFunction),
    metrics: raw.metrics === undefined ? undefined : metricsTarget(raw.metrics),
    signer: signerKind(raw.signer ?? DEFAULTS.signer),
    workers: (raw.workers ?? DEFAULTS.workers) === 'auto' ? autoWorkers(cpus) : integer('--workers', raw.workers!, 1, 256),
  });
}

function signerKind(text: string): 'fast' | 'smithy' {
  if (text !== 'fast' && text !== 'smithy') throw new ConfigError('--signer', 'expected fast or smithy');
  return text;
}

function probeFunction(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  try {
    return parseFunctionRef(text).id;
  } catch (err) {
    throw new ConfigError('--probe-function', (err as Error).message);
  }
}

function metricsTarget(text: string): { host: string; port: number } | { path: string } {
  try {
    return parseMetricsTarget(text);
  } catch (err) {
    throw new ConfigError('--metrics', (err as Error).message);
  }
}

/** `host:port` (IPv6 as `[::1]:9464`) or a Unix socket path. */
export function parseMetricsTarget(text: string): { host: string; port: number } | { path: string } {
  if (text.startsWith('/')) return { path: text };
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (m === null || Number(m[3]) > 65535) throw new Error('expected host:port (e.g. 127.0.0.1:9464) or an absolute socket path');
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

function pick(...values: (string | undefined)[]): string | undefined {
  return values.find((v) => v !== undefined && v !== '');
}

function parseEndpoint(text: string, option: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(option, `not a URL: ${JSON.stringify(text)}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError(option, 'must be an https:// (or, for local testing, http://) URL');
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    throw new ConfigError(option, 'must be an origin only, without path or query');
  }
  if (url.username !== '' || url.password !== '') throw new ConfigError(option, 'must not carry credentials');
  return url;
}

function integer(option: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) throw new ConfigError(option, `expected a whole number, got ${JSON.stringify(text)}`);
  const n = Number(text);
  if (n < min || n > max) throw new ConfigError(option, `must be between ${min} and ${max}`);
  return n;
}

function seconds(option: string, text: string, max: number): number {
  if (!/^\d+(?:\.\d+)?$/.test(text)) throw new ConfigError(option, `expected seconds, got ${JSON.stringify(text)}`);
  const ms = Math.round(Number(text) * 1000);
  // Rounded to whole milliseconds first, so 0.0001 cannot become a 0 ms timer.
  if (ms < 1 || ms > max * 1000) throw new ConfigError(option, `must be at least 0.001 and at most ${max} seconds`);
  return ms;
}
