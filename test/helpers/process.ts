// Runs the built CLI (dist/cli.js) as a child process, as systemd would.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** An environment with no ambient AWS configuration: no files, no instance metadata. */
export function isolatedEnv(dir: string, extra: Record<string, string> = {}): Record<string, string> {
  const keep = ['PATH', 'LANG', 'TZ', 'SYSTEMD_LOG_LEVEL'];
  const env: Record<string, string> = {};
  for (const k of keep) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  return {
    ...env,
    HOME: dir,
    AWS_CONFIG_FILE: path.join(dir, 'no-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'no-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
    ...extra,
  };
}

export interface DaemonProcess {
  child: ChildProcess;
  dir: string;
  socketPath: string;
  lines: string[];
  /** Resolves with the first log line matching, or rejects after timeoutMs. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
  cleanup(): Promise<void>;
}

export function spawnDaemon(args: string[], env: Record<string, string>, opts: { command?: string[]; dir?: string } = {}): DaemonProcess {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'lambda-sign-proc-'));
  const socketPath = path.join(dir, 'd.sock');
  const argv = [...(opts.command ?? [process.execPath, CLI]), ...args.map((a) => a.replace('{socket}', socketPath))];
  const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const onLine = (line: string): void => {
    lines.push(line);
    for (const w of [...waiters]) if (w.re.test(line)) (waiters.splice(waiters.indexOf(w), 1), w.resolve(line));
  };
  for (const s of [child.stdout!, child.stderr!]) {
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) !== -1) (onLine(buf.slice(0, i)), (buf = buf.slice(i + 1)));
    });
  }
  // 'close', not 'exit': by then stdout and stderr are read to the end.
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return {
    child,
    dir,
    socketPath,
    lines,
    exited,
    waitFor(re, timeoutMs = 10_000) {
      const found = lines.find((l) => re.test(l));
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { re, resolve };
        waiters.push(w);
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no log line matching ${re} within ${timeoutMs} ms; got:\n${lines.join('\n')}`));
        }, timeoutMs);
        exited.then(() => setTimeout(() => {
          clearTimeout(t);
          reject(new Error(`exited before a log line matching ${re}; got:\n${lines.join('\n')}`));
        }, 50));
      });
    },
    kill(signal = 'SIGTERM') {
      child.kill(signal);
    },
    async cleanup() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Stops `pid` (SIGSTOP), so it accepts nothing, and opens `n` connections to its socket:
 * each is queued in the listen backlog or refused (EAGAIN when the backlog is full).
 * Resumes it and closes them. Resolves with how many were refused.
 */
export async function refusedWhileStopped(pid: number, socketPath: string, n: number): Promise<number> {
  // The process and its children (cluster workers accept too).
  const pids = [pid, ...childrenOf(pid)];
  for (const p of pids) process.kill(p, 'SIGSTOP');
  const sockets: net.Socket[] = [];
  try {
    const results = await Promise.all(
      Array.from({ length: n }, () => new Promise<boolean>((resolve) => {
        const c = net.connect(socketPath);
        sockets.push(c);
        c.once('connect', () => resolve(true));
        c.once('error', () => resolve(false));
      })),
    );
    return results.filter((ok) => !ok).length;
  } finally {
    for (const p of pids) process.kill(p, 'SIGCONT');
    for (const c of sockets) c.destroy();
  }
}

function childrenOf(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
