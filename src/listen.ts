// Puts the server on its Unix socket: a path we own, or a descriptor systemd passed.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import type { Server } from 'node:net';

export interface ListenOptions {
  socketPath: string;
  socketMode: number;
  /** Socket activation: serve this descriptor, never create or remove a path. */
  listenFd?: number;
  /** Varnish connects without blocking; a full backlog fails its connects (EAGAIN). */
  backlog?: number;
  /** A cluster worker: the primary owns the socket file (stale check, mode, removal). */
  shared?: boolean;
}

export interface Listening {
  /** Removes the socket file if it is still the one we created. */
  cleanup(): void;
}

export const DEFAULT_BACKLOG = 16384; // the kernel caps it at net.core.somaxconn
/** Listening descriptors on the socket: up to this many connections accepted per event-loop turn. */
export const DEFAULT_ACCEPTORS = 16;

export async function listen(server: Server, opts: ListenOptions): Promise<Listening> {
  const backlog = opts.backlog ?? DEFAULT_BACKLOG;
  if (opts.shared === true) {
    await listening(server, (opts.listenFd !== undefined ? { fd: opts.listenFd, backlog } : { path: opts.socketPath, backlog }) as net.ListenOptions);
    return { cleanup() {} };
  }
  if (opts.listenFd !== undefined) {
    // Node accepts a bare descriptor as a handle: { fd }.
    await listening(server, { fd: opts.listenFd, backlog } as net.ListenOptions);
    return { cleanup() {} };
  }
  await removeStale(opts.socketPath);
  const umask = narrowUmask(opts.socketMode);
  try {
    await listening(server, { path: opts.socketPath, backlog });
  } finally {
    process.umask(umask);
  }
  return { cleanup: ownSocket(opts.socketPath, opts.socketMode) };
}

/**
 * Narrows the process umask so that a socket file created now gets no permission outside
 * `mode` (nor outside what the umask already allowed), and returns the old umask. The kernel
 * gives a new socket file 0777 minus the umask and accepts connections from the moment it
 * listens, before ownSocket's chmod: under a umask of 000 any local user could connect in
 * between. The chmod then widens the mode to `mode` where the old umask had narrowed it.
 */
export function narrowUmask(mode: number): number {
  const old = process.umask(0o777);
  process.umask(old | (0o777 & ~mode));
  return old;
}

/**
 * Applies the mode to a socket file we just created and returns its removal: only of our
 * own inode, since a newer instance may already have replaced the path.
 */
export function ownSocket(path: string, mode: number): () => void {
  fs.chmodSync(path, mode);
  const ino = fs.statSync(path).ino;
  return () => {
    try {
      if (fs.statSync(path).ino === ino) fs.unlinkSync(path);
    } catch {
      // already gone
    }
  };
}

function listening(server: Server, opts: net.ListenOptions & { fd?: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    // Node reads the backlog of a { fd } listen only from the argument after it, never from
    // the options: without it, listening on a descriptor sets the socket's backlog to 511.
    if (opts.fd !== undefined) server.listen({ fd: opts.fd }, opts.backlog, done);
    else server.listen(opts, done);
  });
}

/** A socket file nobody accepts on is left from a crash: remove it. A live one is an error. */
export async function removeStale(path: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
  const alive = await new Promise<boolean>((resolve) => {
    const c = net.connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another process is listening on ${path}`);
  fs.unlinkSync(path);
}

// ---------------------------------------------------------------------------------------
// More than one accept per event-loop turn.
//
// libuv (since 1.45, in Node 20) accepts one connection per turn per listening descriptor,
// and under load a turn takes tens of milliseconds: when Varnish opened hundreds of
// connections at once to a busy daemon, the last waited seconds in the backlog. Each
// duplicate of the listening descriptor is polled on its own, so N of them accept up to N
// connections a turn. Node has no dup(); a short-lived helper process receives the bare
// handle over IPC and sends it straight back, and the kernel duplicates the descriptor
// both ways (SCM_RIGHTS). The helper never listens on it (a bare handle is not polled), so
// it cannot take a connection, even under socket activation with Varnish already
// connecting; each copy is adopted by a listener here and listened on with our backlog.

const HELPER = `process.on('message', (m, h) => {
  if (m === 'dup' && h) process.send('dup', h, () => h.close());
});
process.on('disconnect', () => process.exit(0));`;

/**
 * `count` more servers listening on duplicates of `server`'s descriptor, with `backlog`,
 * each handed to `accept` (which must attach its 'connection' listener at once). Rejects,
 * closing what it made, if the helper fails or does not answer within timeoutMs.
 */
export function addAcceptors(
  server: Server,
  count: number,
  accept: (extra: Server) => void,
  backlog = DEFAULT_BACKLOG,
  timeoutMs = 10_000,
): Promise<Server[]> {
  const handle = (server as Server & { _handle?: { fd?: number } })._handle;
  if (count <= 0) return Promise.resolve([]);
  if (handle === undefined || handle === null || typeof handle.fd !== 'number' || handle.fd < 0) {
    return Promise.reject(new Error('the server is not listening on a descriptor'));
  }
  return new Promise((resolve, reject) => {
    const made: Server[] = [];
    const child = spawn(process.execPath, ['-e', HELPER], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
    let done = false;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (child.connected) child.disconnect();
      if (err === undefined) return resolve(made);
      child.kill();
      for (const s of made) s.close();
      reject(err);
    };
    const timer = setTimeout(() => finish(new Error(`no duplicate of the listening descriptor within ${timeoutMs} ms`)), timeoutMs);
    child.once('error', finish);
    child.once('exit', (code, signal) => finish(new Error(`the helper exited (${signal ?? code}) before it answered`)));
    child.on('message', (m: unknown, bare: unknown) => {
      const fd = (bare as { fd?: unknown } | undefined)?.fd;
      if (m !== 'dup' || typeof fd !== 'number' || fd < 0) return finish(new Error('the helper answered without a descriptor'));
      // The listener adopts the bare handle itself, as Node's cluster workers adopt the
      // handles their primary sends (net.Server#_listen2 with _handle set): one owner per
      // descriptor. listen({ fd }) would wrap the same number in a second handle, and
      // whichever closed second would close a descriptor that may by then be another's.
      const extra = net.createServer() as Server & { _handle: unknown; _listen2?: (...args: unknown[]) => void };
      if (typeof extra._listen2 !== 'function') {
        (bare as { close(): void }).close();
        return finish(new Error('this Node has no net.Server#_listen2'));
      }
      accept(extra);
      // On a failed listen Node closes the handle itself.
      extra.once('error', finish);
      extra.once('listening', () => {
        extra.off('error', finish);
        made.push(extra);
        if (made.length === count) finish();
        else child.send('dup', handle as never);
      });
      extra._handle = bare;
      extra._listen2(null, -1, -1, backlog);
    });
    child.send('dup', handle as never);
  });
}
