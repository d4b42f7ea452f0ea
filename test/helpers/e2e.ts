// The pieces of an end-to-end run besides varnishd (varnish.ts): the built CLI as a child
// process pointed at the fake Lambda, optionally under systemd-socket-activate, an "origin"
// HTTP server for the fallback backend, and the shipped VCL with the test's addresses.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import { startFakeLambda, type FakeAnswer, type FakeLambda } from './fake-lambda.ts';
import { makeTestCA, type TestCA } from './tls.ts';
import { TEST_KEY } from './daemon.ts';
import { CLI, isolatedEnv, spawnDaemon, type DaemonProcess } from './process.ts';
import { shippedVcl, startVarnish, which, type Varnish } from './varnish.ts';

export const SOCKET_ACTIVATE = which('systemd-socket-activate', ['/usr/bin', '/lib/systemd', '/usr/lib/systemd']);
const SETPRIV = which('setpriv', ['/usr/bin']);
// If the test process dies (a crash, run.mjs's SIGKILL after its timeout), the kernel kills
// the daemon too. KILL, not TERM: with its stdout pipe gone, the daemon cannot log its way
// through a drain.
const ORPHAN_GUARD = SETPRIV === undefined ? [] : [SETPRIV, '--pdeathsig', 'KILL'];

export interface CliOptions {
  fake: FakeLambda;
  ca: TestCA;
  args?: string[];
  env?: Record<string, string>;
  /** Run under `systemd-socket-activate -l PATH…`: systemd's side of socket activation. */
  activationSocket?: string | string[];
}

/**
 * The built CLI (dist/cli.js) with dummy static credentials, trusting the test CA through
 * NODE_EXTRA_CA_CERTS, listening on `{socket}` (DaemonProcess.socketPath) unless activated.
 */
export function spawnCli(opts: CliOptions): DaemonProcess {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lambda-sign-e2e-'));
  const env = isolatedEnv(dir, {
    NODE_EXTRA_CA_CERTS: opts.ca.caFile,
    AWS_ACCESS_KEY_ID: TEST_KEY.accessKeyId,
    AWS_SECRET_ACCESS_KEY: TEST_KEY.secretAccessKey,
    ...opts.env,
  });
  const args = ['--region', 'us-west-2', '--socket', '{socket}', '--endpoint', opts.fake.url, ...(opts.args ?? [])];
  let command = [...ORPHAN_GUARD, process.execPath, CLI];
  if (opts.activationSocket !== undefined) {
    if (SOCKET_ACTIVATE === undefined) {
      throw new Error('systemd-socket-activate not found (Debian: apt-get install systemd)');
    }
    const sockets = Array.isArray(opts.activationSocket) ? opts.activationSocket : [opts.activationSocket];
    // systemd-socket-activate passes on only PATH, HOME, TERM and USER, plus what -E names.
    command = [
      ...ORPHAN_GUARD,
      SOCKET_ACTIVATE,
      ...sockets.flatMap((s) => ['-l', s]),
      ...Object.entries(env).flatMap(([k, v]) => ['-E', `${k}=${v}`]),
      process.execPath,
      CLI,
    ];
  }
  return spawnDaemon(args, env, { command, dir });
}

export interface OriginRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface Origin {
  port: number;
  requests: OriginRequest[];
  close(): Promise<void>;
}

/** The site behind Varnish: answers `200 origin: <METHOD> <URL>` and records each request. */
export async function startOrigin(): Promise<Origin> {
  const requests: OriginRequest[] = [];
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(parts) });
      const body = `origin: ${req.method} ${req.url}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** vcl/lambda-sign.vcl as shipped, with the test's daemon socket and origin port. */
export function lambdaSignVcl(socketPath: string, originPort: number): string {
  return shippedVcl('lambda-sign.vcl', [
    ['.path = "/run/lambda-sign.sock";', `.path = "${socketPath}";`],
    ['.port = "8080";', `.port = "${originPort}";`],
  ]);
}

/** vcl/url-mapping.vcl as shipped, with the test's daemon socket. */
export function urlMappingVcl(socketPath: string): string {
  return shippedVcl('url-mapping.vcl', [['.path = "/run/lambda-sign.sock";', `.path = "${socketPath}";`]]);
}

/** vcl/site.vcl as shipped, with the test's daemon socket. */
export function siteVcl(socketPath: string): string {
  return shippedVcl('site.vcl', [['.path = "/run/lambda-sign.sock";', `.path = "${socketPath}";`]]);
}

/** vcl/render.vcl as shipped, with the test's daemon socket. */
export function renderVcl(socketPath: string): string {
  return shippedVcl('render.vcl', [['.path = "/run/lambda-sign.sock";', `.path = "${socketPath}";`]]);
}

/**
 * What Lambda returns for a gateway-mode function: the Invoke answer (200, JSON) whose body
 * is the function's response object, as a Function URL handler writes it.
 */
export function functionAnswer(response: {
  statusCode: number;
  headers?: Record<string, string>;
  cookies?: string[];
  body?: string;
  isBase64Encoded?: boolean;
}): FakeAnswer {
  return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(response) };
}

/** Runs every cleanup step, even when an earlier one fails or before() stopped halfway. */
export async function stopAll(...steps: (() => unknown)[]): Promise<void> {
  for (const step of steps) {
    await Promise.resolve()
      .then(step)
      .catch((err) => console.error('cleanup:', err));
  }
}

/** `promise`, or a rejection naming `what` after `ms`: no test waits forever on a process. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export interface VarnishStack {
  ca: TestCA;
  fake: FakeLambda;
  origin: Origin;
  daemon: DaemonProcess;
  varnish: Varnish;
}

/**
 * The usual end-to-end chain, built before the suite's tests and stopped after them:
 * a fresh CA, the verifying fake Lambda, an origin, the built CLI with `args`, and varnishd
 * with the shipped lambda-sign.vcl pointed at both, once its probe says healthy.
 */
export function useVarnishStack(args: string[]): VarnishStack {
  const s = {} as VarnishStack;
  test.before(async () => {
    s.ca = await makeTestCA();
    s.fake = await startFakeLambda({ tls: { cert: s.ca.cert, key: s.ca.key } });
    s.origin = await startOrigin();
    s.daemon = spawnCli({ fake: s.fake, ca: s.ca, args });
    await s.daemon.waitFor(/"msg":"listening"/);
    s.varnish = await startVarnish({ vcl: lambdaSignVcl(s.daemon.socketPath, s.origin.port) });
    await s.varnish.waitHealthy('lambda_sign');
  });
  test.after(() => stopAll(() => s.varnish?.stop(), () => s.daemon?.cleanup(), () => s.origin?.close(), () => s.fake?.close(), () => s.ca?.cleanup()));
  return s;
}
