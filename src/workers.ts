// --workers N: N processes (node:cluster) serve the one socket, each with its own event
// loop, HTTP/2 pool and credentials source. The primary owns what is shared: the socket
// file (stale check, mode, removal), restarts of crashed workers, the aggregated
// metrics, and the drain on SIGTERM, which it hands to every worker.
import cluster, { type Worker } from 'node:cluster';
import fs from 'node:fs';
import client from 'prom-client';
import type { Config } from './config.js';
import { narrowUmask, ownSocket, removeStale } from './listen.js';
import type { Logger } from './log.js';
import { serveMetrics, type MetricsListener } from './metrics.js';

/** Tells a worker which descriptor systemd passed (the LISTEN_* variables are the primary's). */
export const WORKER_FD_ENV = 'LAMBDA_SIGN_WORKER_FD';

/** The signals that drain and stop the daemon (SIGHUP: the terminal closed), in every process. */
export const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

const live = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
const killAll = (): void => live().forEach((w) => w.process.kill('SIGKILL'));

export async function runPrimary(config: Config, log: Logger, exit: (code: number) => never): Promise<void> {
  if (config.listenFd === undefined) await removeStale(config.socketPath);
  const env = config.listenFd === undefined ? {} : { [WORKER_FD_ENV]: String(config.listenFd) };
  let stopping = false;
  let removeSocket: (() => void) | undefined;

  // Every worker listens on the socket itself (SCHED_NONE) and accepts its own connections;
  // the kernel hands each to whichever worker is polling. Under round-robin the primary
  // accepts every connection and passes it over IPC: at 256 KiB / 512 connections two
  // workers made 879 req/s against one process's 971 that way, and 1,198 against 966 this
  // way (bench/ab.mjs). Round-robin would also have the primary listen with backlog 511
  // (on systemd's descriptor Node drops the backlog given with { fd }); the workers pass
  // theirs (listen.ts).
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  // A restart still pending when SIGTERM came must not start a worker the drain does not wait for.
  const fork = (): void => {
    if (!stopping) cluster.fork(env);
  };
  // The primary binds the file when a worker asks, at any time: its umask stays narrowed for
  // good (it creates no other files), so the file never starts out wider than the mode.
  if (config.listenFd === undefined) narrowUmask(config.socketMode);
  // The primary creates the socket file for the first worker that listens. When no worker is
  // left (all died at once, or the last before the others' restarts), the primary's handle is
  // closed and the file goes with it; the next worker to listen makes a new one, narrowed by
  // the umask as well (660 under umask 022 gives 640: Varnish's group could no longer
  // connect). So the mode is set again whenever the file is new or not in the mode asked for.
  let ownedIno: number | undefined;
  let served = false;
  cluster.on('listening', () => {
    served = true;
    if (config.listenFd !== undefined || stopping) return;
    try {
      const st = fs.statSync(config.socketPath);
      if (st.ino === ownedIno && (st.mode & 0o777) === config.socketMode) return;
      const first = ownedIno === undefined;
      ownedIno = st.ino;
      removeSocket = ownSocket(config.socketPath, config.socketMode);
      if (first) log.info({ workers: config.workers, socket: config.socketPath }, 'listening');
      else log.warn({ socket: config.socketPath }, 'every worker had exited; the socket was created again');
    } catch (err) {
      // Removed between the stat and the chmod: nothing to own, and no reason to stop serving.
      log.warn({ err, socket: config.socketPath }, 'could not set the socket mode');
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    if (!served) {
      // No worker has ever listened: this one failed at start (an unreadable --ca-file, a
      // socket directory that does not exist), and its restarts would fail the same way,
      // every second, for good. Stop, with its status (2 for a bad flag), as one process would.
      log.fatal({ worker: worker.process.pid, code, signal }, 'a worker failed before serving; stopping');
      stopping = true;
      killAll();
      log.flush();
      return exit(code !== null && code !== 0 ? code : 1);
    }
    if (config.listenFd !== undefined && live().length === 0) {
      // The last worker's exit closed the primary's handle on systemd's descriptor, and with
      // it the descriptor: a new worker would have nothing to listen on. Exit instead, so
      // that systemd starts the service again on the socket it still holds (Restart=on-failure).
      log.fatal({ worker: worker.process.pid, code, signal }, 'every worker has exited; exiting for systemd to restart the service');
      return exit(1);
    }
    log.error({ worker: worker.process.pid, code, signal }, 'worker exited; starting another');
    setTimeout(fork, 1000);
  });
  for (let i = 0; i < config.workers; i++) fork();

  let metricsListener: MetricsListener | undefined;
  if (config.metrics !== undefined) {
    const aggregate = new client.AggregatorRegistry();
    metricsListener = await serveMetrics(
      { metrics: () => aggregate.clusterMetrics(), contentType: aggregate.contentType },
      config.metrics,
    ).catch((err: unknown) => {
      log.fatal({ err }, 'cannot listen for --metrics');
      return exit(1);
    });
  }

  const stop = async (signal: string): Promise<void> => {
    if (stopping) {
      killAll();
      return exit(1);
    }
    stopping = true;
    const workers = live();
    log.info({ signal, workers: workers.length }, 'draining');
    const exited = Promise.all(workers.map((w) => (w.isDead() ? undefined : new Promise((r) => w.once('exit', r)))));
    for (const w of workers) w.process.kill('SIGTERM');
    // Workers drain for --drain-timeout; past that plus a margin, they are killed.
    const deadline = setTimeout(() => workers.forEach((w) => w.process.kill('SIGKILL')), config.drainTimeoutMs + 5000);
    await exited;
    clearTimeout(deadline);
    await metricsListener?.close();
    removeSocket?.();
    log.info('stopped');
    log.flush();
    exit(0);
  };
  for (const signal of STOP_SIGNALS) process.on(signal, () => void stop(signal));
}
