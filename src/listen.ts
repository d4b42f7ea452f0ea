// Puts the server on its Unix socket: a path we own, or a descriptor systemd passed.
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
  await listening(server, { path: opts.socketPath, backlog });
  return { cleanup: ownSocket(opts.socketPath, opts.socketMode) };
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
