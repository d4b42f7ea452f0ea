// Starting the Node processes of the benchmark: lambda-sign itself (the built CLI, as
// systemd would run it), the naive SDK proxy and the slow upstream. Each runs in its own
// process so that /proc can charge CPU and memory to exactly one of them.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { start, waitForListen } from './procs.mjs';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = path.join(ROOT, 'dist', 'cli.js');
const NAIVE = fileURLToPath(new URL('./naive-proxy.mjs', import.meta.url));
const SLOW = fileURLToPath(new URL('./slow-upstream.mjs', import.meta.url));

export const REGION = 'us-east-1';
export const FUNCTION = 'bench';

/**
 * An environment with static credentials and nothing ambient: no shared config files, no
 * instance metadata probe (which would stall start-up), trust for the bench CA.
 */
export function nodeEnv(dir, caFile) {
  const env = { HOME: dir };
  for (const k of ['PATH', 'LANG', 'TZ']) if (process.env[k] !== undefined) env[k] = process.env[k];
  return {
    ...env,
    AWS_ACCESS_KEY_ID: 'AKIDBENCHEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'bench/secret/key/EXAMPLEKEY',
    AWS_CONFIG_FILE: path.join(dir, 'no-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'no-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
    NODE_EXTRA_CA_CERTS: caFile,
  };
}

/**
 * The node flags of a "#!/usr/bin/env -S node FLAGS" first line: the daemon runs with the
 * flags it runs with when installed (systemd starts the `lambda-sign` script).
 */
export function shebangFlags(file) {
  const first = fs.readFileSync(file, 'utf8').split('\n', 1)[0];
  const m = /^#!\/usr\/bin\/env -S node((?: +\S+)*) *$/.exec(first);
  return m === null ? [] : m[1].trim().split(/ +/).filter((f) => f !== '');
}

/** GET over a Unix socket; resolves with the status (or 0 when the socket refuses). */
function getStatus(socketPath, urlPath) {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: urlPath, headers: { host: 'lambda-sign' }, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

/**
 * lambda-sign on `socket`, signing for `endpoint`. Ready once /healthz says 200.
 * `cpuProfDir`: run under node --cpu-prof; the profile is written there when it exits.
 * `cli`: another build's cli.js (bench/ab.mjs); this checkout's by default.
 * `args`: more of lambda-sign's flags (`--workers 2`).
 */
export async function startLambdaSign({ name = 'lambda-sign', dir, socket, endpoint, caFile, cpuProfDir, cli = CLI, args: extra = [] }) {
  fs.mkdirSync(dir, { recursive: true });
  const args = [
    ...shebangFlags(cli),
    ...(process.env.BENCH_LS_NODE_FLAGS ?? '').split(/\s+/).filter((f) => f !== ''),
    ...(cpuProfDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', cpuProfDir]),
    cli,
    '--region', REGION,
    '--socket', socket,
    '--endpoint', endpoint,
    // As an operator would run it; also keeps the start-up warning out of the log.
    '--allow-function', FUNCTION,
    // One log line per request at info would measure pino, not the proxy.
    '--log-level', 'warn',
    ...extra,
  ];
  const proc = start(name, process.execPath, args, { env: nodeEnv(dir, caFile) });
  await waitForListen({ path: socket }, proc);
  for (const until = Date.now() + 15_000; ; await sleep(100)) {
    if ((await getStatus(socket, '/healthz')) === 200) break;
    if (Date.now() > until || proc.exitCode !== undefined) {
      throw new Error(`${name}: /healthz not 200 within 15 s:\n${proc.output()}`);
    }
  }
  return { proc, socket };
}

/** The naive SDK proxy on `socket`, calling `endpoint`. */
export async function startNaiveProxy({ name = 'naive', dir, socket, endpoint, caFile }) {
  fs.mkdirSync(dir, { recursive: true });
  const proc = start(name, process.execPath, [NAIVE, '--socket', socket, '--endpoint', endpoint, '--region', REGION], {
    env: nodeEnv(dir, caFile),
  });
  await proc.waitFor(/listening/, 15_000);
  await waitForListen({ path: socket }, proc);
  return { proc, socket };
}

/**
 * The 1-second upstream. Resolves with its URL and `sustained(t0, durationS)`: its answers
 * per second (from the counts it prints) in the steady part of a run that started at
 * performance.now() = t0 and lasts durationS, from 2.5 s in (nothing can finish in the first
 * second) to 0.25 s before the end. It resolves then, while the run is still going.
 */
export async function startSlowUpstream({ dir, certFile, keyFile, delayMs = 1000, body }) {
  let last = { n: 0, t: Date.now() };
  const onLine = (line) => {
    const m = /^served (\d+) (\d+)$/.exec(line);
    if (m) last = { n: Number(m[1]), t: Number(m[2]) };
  };
  const proc = start('slow-upstream', process.execPath, [
    SLOW, '--cert', certFile, '--key', keyFile, '--delay-ms', String(delayMs), ...(body ? ['--body', body] : []),
  ], { env: nodeEnv(dir, certFile), onLine });
  const line = await proc.waitFor(/listening on \d+/, 15_000);
  const port = Number(/listening on (\d+)/.exec(line)[1]);
  const sustained = async (t0, durationS) => {
    const at = async (s) => {
      await sleep(Math.max(0, t0 + s * 1000 - performance.now()));
      return last;
    };
    const a = await at(2.5);
    const b = await at(durationS - 0.25);
    return b.t > a.t ? ((b.n - a.n) * 1000) / (b.t - a.t) : NaN;
  };
  return { proc, port, url: `https://127.0.0.1:${port}`, sustained };
}
