// Every process the benchmark starts goes through here, so that every one of them is stopped
// on every way out: normal end, an error, Ctrl-C, SIGTERM, even this driver being SIGKILLed.
//
// - `detached: true` makes each child the leader of its own process group, so stopping it
//   is `kill(-pgid)`: varnishd's worker, nginx, wrk's threads all go with their leader.
// - `setpriv --pdeathsig TERM` (util-linux): if this driver dies without running any handler
//   (SIGKILL, OOM), the kernel sends the child SIGTERM. Nothing outlives the benchmark.
// - Output is kept (last lines only) for error messages, and always drained so a chatty
//   child never blocks on a full pipe.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const live = new Set();
const KEEP_LINES = 200;

/** The first executable `cmd` on PATH, then in `fallbacks` (Debian puts daemons in /usr/sbin). */
export function which(cmd, fallbacks = ['/usr/sbin', '/usr/bin', '/sbin']) {
  for (const d of [...(process.env.PATH ?? '').split(':'), ...fallbacks]) {
    if (d === '') continue;
    const p = path.join(d, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // next directory
    }
  }
  return undefined;
}

const SETPRIV = which('setpriv');

/**
 * Starts `cmd args` in its own process group. Returns a handle with `pid`, `lines` (recent
 * output), `exited` (resolves with the exit code or signal), `waitFor(re, ms)` and `stop()`.
 */
export function start(name, cmd, args, { env = process.env, cwd, onLine } = {}) {
  const argv = SETPRIV === undefined ? [cmd, ...args] : [SETPRIV, '--pdeathsig', 'TERM', cmd, ...args];
  const child = spawn(argv[0], argv.slice(1), { env, cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  const waiters = [];
  const handle = {
    name,
    child,
    // setpriv execs the command, so this is the command's own PID.
    pid: child.pid,
    lines,
    exitCode: undefined,
    exited: undefined,
    waitFor,
    stop,
    output: () => lines.join('\n'),
  };
  const push = (line) => {
    lines.push(line);
    if (lines.length > KEEP_LINES) lines.shift();
    onLine?.(line);
    for (const w of [...waiters]) {
      if (w.re.test(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  for (const s of [child.stdout, child.stderr]) {
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) !== -1) {
        push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    s.on('end', () => buf && push(buf));
  }
  handle.exited = new Promise((resolve) => {
    child.on('error', (err) => {
      push(`${name}: ${err.message}`);
      handle.exitCode = -1;
      live.delete(handle);
      resolve(-1);
    });
    child.on('exit', (code, signal) => {
      handle.exitCode = code ?? signal;
      live.delete(handle);
      resolve(code ?? signal);
    });
  });
  live.add(handle);

  function waitFor(re, timeoutMs = 15_000) {
    const found = lines.find((l) => re.test(l));
    if (found !== undefined) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { re, resolve };
      waiters.push(w);
      const t = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`${name}: no output matching ${re} within ${timeoutMs} ms:\n${handle.output()}`));
      }, timeoutMs);
      handle.exited.then((code) => {
        clearTimeout(t);
        // Let the last lines arrive before judging.
        setTimeout(() => reject(new Error(`${name} exited (${code}) before printing ${re}:\n${handle.output()}`)), 50);
      });
    });
  }

  /** SIGTERM to the group, SIGKILL after graceMs. Resolves once the leader has exited. */
  async function stop(graceMs = 5000) {
    if (handle.exitCode !== undefined) return;
    killGroup(child.pid, 'SIGTERM');
    const done = await Promise.race([handle.exited.then(() => true), sleep(graceMs).then(() => false)]);
    // The leader may be gone while group members linger (a varnishd worker): kill the rest.
    killGroup(child.pid, 'SIGKILL');
    if (!done) await handle.exited;
  }
  return handle;
}

function killGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** The process groups of every live child (each child leads its own). */
export function liveGroups() {
  return [...live].map((h) => h.pid);
}

/** Stops every live child, in parallel. */
export async function stopAll(graceMs = 5000) {
  await Promise.all([...live].map((h) => h.stop(graceMs)));
}

/** Synchronous last resort, for process.on('exit'): SIGKILL every group still alive. */
export function killAllNow() {
  for (const h of live) killGroup(h.pid, 'SIGKILL');
}

/** Runs a command to completion (bounded by timeoutMs) and returns its output. */
export async function run(name, cmd, args, { env, timeoutMs = 60_000 } = {}) {
  const h = start(name, cmd, args, { env });
  const timer = setTimeout(() => void h.stop(1000), timeoutMs);
  const code = await h.exited;
  clearTimeout(timer);
  return { code, output: h.output(), lines: h.lines };
}

/** Resolves when something accepts connections at `target` ({path} or {port}). */
export async function waitForListen(target, proc, timeoutMs = 15_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (proc !== undefined && proc.exitCode !== undefined) {
      throw new Error(`${proc.name} exited (${proc.exitCode}) before listening:\n${proc.output()}`);
    }
    const ok = await new Promise((resolve) => {
      const s = net.connect(target.path !== undefined ? { path: target.path } : { host: '127.0.0.1', port: target.port });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) {
      throw new Error(`${proc?.name ?? 'server'} not listening on ${JSON.stringify(target)} within ${timeoutMs} ms:\n${proc?.output() ?? ''}`);
    }
    await sleep(50);
  }
}

/**
 * A free loopback TCP port. nginx cannot listen on port 0 and report the port, so we ask the
 * kernel for one and hand it over; the window between close and nginx's bind is tiny on an
 * otherwise idle loopback, and a clash fails loudly at start-up.
 */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}
