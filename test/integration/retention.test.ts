// What a request keeps alive while it waits on Lambda. At thousands of invocations in
// flight, every object held across the wait is copied by each young-generation collection
// and then promoted; the request path therefore keeps no promise, async frame or closure
// per waiting request, only its state objects (server.ts Call, upstream.ts H2Attempt).
//
// The fake Lambda and the client run in a child process (helpers/waiting-peer.ts), so the
// objects counted here, after a full collection, are the daemon's alone.
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Session } from 'node:inspector/promises';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startDaemon, type TestDaemon } from '../helpers/daemon.ts';
import { makeTestCA, type TestCA } from '../helpers/tls.ts';

const WAITING = 200;
const PEER = fileURLToPath(new URL('../helpers/waiting-peer.ts', import.meta.url));

let ca: TestCA;
let peer: ChildProcess;
let daemon: TestDaemon;
const inspector = new Session();

type PeerMessage = { url?: string; waiting?: number; answered?: number[]; error?: string };

function next(kind: keyof PeerMessage, ms = 20_000): Promise<PeerMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the peer sent no ${kind} within ${ms} ms`)), ms);
    const on = (m: PeerMessage): void => {
      if (m.error !== undefined) reject(new Error(`peer: ${m.error}`));
      else if (m[kind] === undefined) return;
      else resolve(m);
      clearTimeout(timer);
      peer.off('message', on);
    };
    peer.on('message', on);
  });
}

/** Live objects whose prototype is `proto` (an expression), after a full collection. */
async function count(proto: string): Promise<number> {
  await inspector.post('HeapProfiler.collectGarbage');
  const { result } = await inspector.post('Runtime.evaluate', { expression: proto, objectGroup: 'count' });
  const { objects } = await inspector.post('Runtime.queryObjects', { prototypeObjectId: result.objectId!, objectGroup: 'count' });
  const { result: n } = await inspector.post('Runtime.callFunctionOn', {
    objectId: objects.objectId!,
    functionDeclaration: 'function () { return this.length; }',
    returnByValue: true,
  });
  await inspector.post('Runtime.releaseObjectGroup', { objectGroup: 'count' });
  return n.value as number;
}

/** WAITING requests on the same WAITING connections: held by the fake until `during` is done. */
async function round(during: () => Promise<void>): Promise<void> {
  const answered = next('answered');
  peer.send({ send: WAITING, socketPath: daemon.socketPath });
  await next('waiting');
  await during();
  peer.send({ release: true });
  const { answered: statuses } = await answered;
  assert.equal(new Set(statuses), new Set([200]), 'every held invocation was answered');
}

test.before(async () => {
  ca = await makeTestCA();
  peer = fork(PEER, { execArgv: ['--import', 'tsx'], env: { ...process.env, PEER_CERT: ca.cert, PEER_KEY: ca.key }, stdio: 'inherit' });
  const { url } = await next('url');
  daemon = await startDaemon({ endpoint: url!, ca: ca.ca });
  inspector.connect();
});

test.after(async () => {
  inspector.disconnect();
  await daemon?.close();
  if (peer !== undefined && peer.exitCode === null) {
    peer.send({ exit: true });
    await Promise.race([once(peer, 'exit'), new Promise((r) => setTimeout(r, 5000))]);
    peer.kill('SIGKILL');
  }
  await ca?.cleanup();
});

test(`${WAITING} requests waiting on Lambda keep no promise and no closure each`, async () => {
  // The first round opens the connections and the HTTP/2 session and warms every path; the
  // counts are taken after it, so what differs during the second is per request.
  await round(async () => {});
  const before = { promises: await count('Promise.prototype'), functions: await count('Function.prototype') };
  let during = { promises: 0, functions: 0 };
  await round(async () => {
    assert.is(daemon.server.inflight, WAITING, 'all are in flight in the daemon');
    during = { promises: await count('Promise.prototype'), functions: await count('Function.prototype') };
  });
  // The previous request path kept about 5 promises and 13 closures per waiting request.
  // A few objects may come and go for other reasons; one per request may not.
  const slack = WAITING / 10;
  assert.ok(
    during.promises - before.promises < slack,
    `promises: ${before.promises} before, ${during.promises} with ${WAITING} waiting`,
  );
  assert.ok(
    during.functions - before.functions < slack,
    `functions: ${before.functions} before, ${during.functions} with ${WAITING} waiting`,
  );
});

test.run();
