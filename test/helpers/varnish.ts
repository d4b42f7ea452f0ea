// varnishd for end-to-end tests: one instance per test file, on loopback, with its own
// working directory, stopped in `after` even when a test failed.
//
// - `-a 127.0.0.1:0` and `debug.listen_address` (what varnishtest does): the kernel picks the
//   port, so there is no window between finding a free port and binding it.
// - `-j none`: no privilege separation. Run as root, varnishd would otherwise start its worker
//   as user vcache, which cannot reach a daemon socket in a 0700 temporary directory (the probe
//   logs "Open error 13 (Permission denied)"). As another user, -j none is the default anyway.
// - `setpriv --pdeathsig TERM`: if the test process dies (a crash, run.mjs's SIGKILL after
//   its timeout), the kernel sends varnishd SIGTERM, and varnishd stops its worker. Nothing
//   outlives the test run.
// - Readiness is the manager's "Child launched OK" line, then the address from the CLI,
//   never a sleep.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const VCL_DIR = path.join(ROOT, 'vcl');

/** The first executable `cmd` on PATH, then in `fallbacks`. */
export function which(cmd: string, fallbacks: string[] = []): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), ...fallbacks];
  for (const d of dirs) {
    const p = path.join(d, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return undefined;
}

// Debian installs them in /usr/sbin, which a non-root PATH may lack.
export const VARNISHD = which('varnishd', ['/usr/sbin']);
export const VARNISHADM = which('varnishadm', ['/usr/bin', '/usr/sbin']);
const SETPRIV = which('setpriv', ['/usr/bin']);

export function requireVarnish(): string {
  if (VARNISHD === undefined || VARNISHADM === undefined) {
    throw new Error('varnishd not found: the end-to-end tests need Varnish 7 (Debian: apt-get install varnish)');
  }
  return VARNISHD;
}

export interface CompileResult {
  ok: boolean;
  /** varnishd -C writes the C source and all messages to stderr; this keeps the messages. */
  messages: string;
}

/**
 * `varnishd -C -f FILE`: compiles VCL (and the C it turns into) without starting anything.
 * With `-j none`: run as root, varnishd -C would read FILE as the varnish user, and a checkout
 * under /root (as on some CI machines) is not readable to it.
 */
export async function compileVcl(file: string): Promise<CompileResult> {
  const bin = requireVarnish();
  try {
    const { stderr } = await run(bin, ['-C', '-j', 'none', '-f', path.resolve(file)], { maxBuffer: 64 << 20 });
    return { ok: true, messages: vccMessages(stderr) };
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return { ok: false, messages: vccMessages(e.stderr ?? e.message) };
  }
}

// The messages come before the generated C, whose first line is a marker comment.
const vccMessages = (stderr: string): string => stderr.split('/* ---===###')[0]!.trim();

/**
 * A shipped VCL file with its deployment values replaced for a test: e.g. the socket path
 * `/run/lambda-sign.sock` by a temporary one. Every `from` must occur exactly once, so the
 * tests notice when the file they exercise changes shape.
 */
export function shippedVcl(name: string, replacements: [from: string, to: string][]): string {
  let text = fs.readFileSync(path.join(VCL_DIR, name), 'utf8');
  for (const [from, to] of replacements) {
    const count = text.split(from).length - 1;
    if (count !== 1) throw new Error(`vcl/${name}: expected ${JSON.stringify(from)} once, found it ${count} times`);
    text = text.replace(from, () => to);
  }
  return text;
}

export interface Varnish {
  /** http://127.0.0.1:PORT */
  url: string;
  port: number;
  /** varnishd's -n directory. */
  name: string;
  child: ChildProcess;
  /** Lines varnishd printed (manager and VCC). */
  output: string[];
  /** Runs varnishadm against this instance; rejects with its output on failure. */
  admin(...args: string[]): Promise<string>;
  /** Resolves once `backend.list` shows the backend healthy (its probe passed). */
  waitHealthy(backend: string, timeoutMs?: number): Promise<void>;
  /** Resolves once `backend.list` shows the backend sick. */
  waitSick(backend: string, timeoutMs?: number): Promise<void>;
  /** Loads VCL text and makes it the active VCL. */
  useVcl(text: string): Promise<void>;
  /** The shared memory log (varnishlog -d), for failure messages. */
  log(grouping?: 'request' | 'raw' | 'vxid'): string;
  stop(): Promise<void>;
}

// Every instance started and not yet stopped, so that an interrupted caller (the demo's
// Ctrl-C) can stop one still starting up.
const running = new Set<() => Promise<void>>();

/** Stops every varnishd this process started, including any still starting. */
export async function stopEveryVarnish(): Promise<void> {
  await Promise.all([...running].map((stop) => stop()));
}

export async function startVarnish(opts: { vcl: string; params?: string[]; timeoutMs?: number }): Promise<Varnish> {
  const varnishd = requireVarnish();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lambda-sign-varnish-'));
  const name = path.join(dir, 'n');
  const vclFile = path.join(dir, 'boot.vcl');
  fs.writeFileSync(vclFile, opts.vcl);
  const args = [
    '-F', '-n', name, '-j', 'none',
    '-a', '127.0.0.1:0', '-T', '127.0.0.1:0',
    '-f', vclFile,
    '-s', 'malloc,64m',
    '-p', 'vsl_space=4M',
    ...(opts.params ?? []).flatMap((p) => ['-p', p]),
  ];
  const argv = SETPRIV === undefined ? [varnishd, ...args] : [SETPRIV, '--pdeathsig', 'TERM', varnishd, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  let workerPid: number | undefined;
  let onLine: ((line: string) => void) | undefined;
  for (const stream of [child.stdout!, child.stderr!]) {
    let buf = '';
    stream.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        output.push(line);
        const m = /Child \((\d+)\) Started/.exec(line);
        if (m) workerPid = Number(m[1]);
        onLine?.(line);
      }
    });
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  async function stop(): Promise<void> {
    running.delete(stop);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const done = await Promise.race([
        exited.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 5000))),
      ]);
      clearTimeout(timer);
      if (!done) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    // The manager stops its worker on SIGTERM; after a SIGKILL the worker could be left.
    if (workerPid !== undefined) {
      try {
        process.kill(workerPid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }

  running.add(stop);

  const timeoutMs = opts.timeoutMs ?? 30_000;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`varnishd not ready within ${timeoutMs} ms:\n${output.join('\n')}`)), timeoutMs);
      onLine = (line) => {
        if (line.includes('Child launched OK')) (clearTimeout(timer), resolve());
      };
      if (output.some((l) => l.includes('Child launched OK'))) (clearTimeout(timer), resolve());
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`varnishd exited before it was ready:\n${output.join('\n')}`));
      });
    });
    onLine = undefined;
  } catch (err) {
    await stop();
    throw err;
  }

  const admin = async (...args: string[]): Promise<string> => {
    try {
      const { stdout } = await run(VARNISHADM!, ['-n', name, ...args], { timeout: 10_000 });
      return stdout;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`varnishadm ${args.join(' ')}: ${e.stdout ?? ''}${e.stderr ?? ''}${e.message}`);
    }
  };

  let port: number;
  try {
    // "a0 127.0.0.1 40123"
    const m = /\S+ 127\.0\.0\.1 (\d+)/.exec(await admin('debug.listen_address'));
    if (m === null) throw new Error('no listen address from varnishadm debug.listen_address');
    port = Number(m[1]);
  } catch (err) {
    await stop();
    throw err;
  }

  const health = async (backend: string): Promise<string | undefined> => {
    const out = await admin('backend.list');
    // "boot.lambda_sign   healthy   3/5   healthy   <date>": admin state, probe, health.
    const row = out.split('\n').find((l) => l.split(/\s+/)[0]?.endsWith(`.${backend}`));
    return row?.split(/\s+/)[3];
  };
  const waitHealth = async (backend: string, want: string, timeoutMs: number): Promise<void> => {
    const until = Date.now() + timeoutMs;
    let last: string | undefined;
    while (Date.now() < until) {
      last = await health(backend);
      if (last === want) return;
      await sleep(100);
    }
    throw new Error(`backend ${backend} not ${want} within ${timeoutMs} ms (last: ${last}):\n${await admin('backend.list', '-p')}`);
  };

  let vclCount = 0;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    name,
    child,
    output,
    admin,
    waitHealthy: (backend, ms = 10_000) => waitHealth(backend, 'healthy', ms),
    waitSick: (backend, ms = 10_000) => waitHealth(backend, 'sick', ms),
    async useVcl(text) {
      const file = path.join(dir, `v${++vclCount}.vcl`);
      fs.writeFileSync(file, text);
      await admin('vcl.load', `v${vclCount}`, file);
      await admin('vcl.use', `v${vclCount}`);
    },
    log(grouping = 'request') {
      try {
        return execFileSync(which('varnishlog', ['/usr/bin']) ?? 'varnishlog', ['-n', name, '-d', '-g', grouping], {
          timeout: 5000,
          maxBuffer: 64 << 20,
        }).toString();
      } catch (err) {
        return `(varnishlog failed: ${(err as Error).message})`;
      }
    },
    stop,
  };
}

export interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text(): string;
  json<T = any>(): T;
}

/** One request to Varnish over TCP, on a fresh connection unless an agent is given. */
export function request(
  url: string,
  opts: {
    method?: string;
    path: string;
    headers?: http.OutgoingHttpHeaders;
    body?: string | Buffer;
    /** Sent with Transfer-Encoding: chunked, one write per element. */
    chunks?: (string | Buffer)[];
    agent?: http.Agent;
    timeoutMs?: number;
  },
): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    // host/port/path rather than one URL string: WHATWG URL parsing would resolve `..`.
    const { hostname, port } = new URL(url);
    const req = http.request(
      {
        host: hostname, port, path: opts.path, method: opts.method ?? 'POST', headers: opts.headers,
        agent: opts.agent ?? false, timeout: opts.timeoutMs ?? 20_000,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('error', reject);
        res.on('end', () => {
          const body = Buffer.concat(parts);
          resolve({
            status: res.statusCode!,
            headers: res.headers,
            body,
            text: () => body.toString(),
            json: () => JSON.parse(body.toString()),
          });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url}${opts.path} within ${opts.timeoutMs ?? 20_000} ms`)));
    req.on('error', reject);
    if (opts.chunks !== undefined) {
      for (const c of opts.chunks) req.write(c);
      req.end();
    } else req.end(opts.body);
  });
}
