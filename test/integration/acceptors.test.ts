// listen.ts addAcceptors: duplicates of the listening descriptor, so that a burst of new
// connections is not accepted one per event-loop turn. Every duplicate serves, the backlog
// stays ours, the helper never takes a connection, and failures close what was made.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { addAcceptors } from '../../src/listen.ts';

/** Connects `n` clients at once; resolves with how many received a byte, rejects on a connect error. */
function burst(socketPath: string, n: number): Promise<number> {
  return Promise.all(
    Array.from({ length: n }, () => new Promise<number>((resolve, reject) => {
      const c = net.connect(socketPath);
      c.once('data', () => {
        c.destroy();
        resolve(1);
      });
      c.once('error', reject);
    })),
  ).then((xs) => xs.length);
}

/** Blocks the event loop: connections queue in the backlog meanwhile. */
function block(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until);
}

async function withSocket(fn: (socketPath: string, main: net.Server, served: Map<net.Server, number>) => Promise<void>): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ls-acceptors-'));
  const socketPath = path.join(dir, 's.sock');
  const served = new Map<net.Server, number>();
  const main = net.createServer();
  serve(main, served);
  await new Promise<void>((r) => main.listen({ path: socketPath, backlog: 4096 }, r));
  try {
    await fn(socketPath, main, served);
  } finally {
    for (const l of served.keys()) if (l.listening) l.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function serve(l: net.Server, served: Map<net.Server, number>): void {
  served.set(l, 0);
  l.on('connection', (c) => {
    served.set(l, served.get(l)! + 1);
    c.end('x');
  });
}

test('three duplicates listen; a queued burst is accepted by more than one descriptor, each connection once', async () => {
  await withSocket(async (socketPath, main, served) => {
    const extras = await addAcceptors(main, 3, (extra) => serve(extra, served));
    assert.is(extras.length, 3);
    assert.ok(extras.every((e) => e.listening));
    const clients = burst(socketPath, 64);
    block(200); // every descriptor is ready at once; each takes one per turn
    assert.is(await clients, 64);
    const counts = [...served.values()];
    assert.is(counts.reduce((a, b) => a + b, 0), 64, 'every connection served exactly once');
    assert.ok(counts.filter((n) => n > 0).length > 1, `more than one descriptor accepted: ${counts.join(', ')}`);
  });
});

test('the backlog stays ours: 900 connections queued at once all get in (the default would be 511)', async () => {
  await withSocket(async (socketPath, main, served) => {
    await addAcceptors(main, 3, (extra) => serve(extra, served), 4096);
    const clients = burst(socketPath, 900);
    block(300);
    assert.is(await clients, 900);
  });
});

test('connections arriving while the duplicates are made are all served here (the helper takes none)', async () => {
  await withSocket(async (socketPath, main, served) => {
    let stop = false;
    let sent = 0;
    const flow = (async () => {
      while (!stop) {
        await burst(socketPath, 4);
        sent += 4;
      }
    })();
    await addAcceptors(main, 8, (extra) => serve(extra, served));
    stop = true;
    await flow;
    assert.ok(sent > 0);
    assert.is([...served.values()].reduce((a, b) => a + b, 0), sent);
  });
});

test('a server with no descriptor is refused; a helper that does not answer in time closes what was made', async () => {
  let error: unknown;
  try {
    await addAcceptors(net.createServer(), 2, () => {});
  } catch (err) {
    error = err;
  }
  assert.match(String(error), /not listening on a descriptor/);
  await withSocket(async (_socketPath, main, served) => {
    const made: net.Server[] = [];
    let error2: unknown;
    try {
      await addAcceptors(main, 50, (extra) => made.push(extra), 4096, 1);
    } catch (err) {
      error2 = err;
    }
    assert.match(String(error2), /within 1 ms/);
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(made.every((s) => !s.listening), 'nothing left listening');
    assert.is(served.size, 1);
  });
});

test.run();
