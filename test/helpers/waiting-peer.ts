// The far ends of an in-process daemon, in a child process of their own so that their
// objects are not counted with the daemon's (test/integration/retention.test.ts): a fake
// Lambda that holds every answer until told, and a client that keeps N requests open on
// N keep-alive connections to the daemon's socket.
//
// Messages in (IPC): { send: n, socketPath } then { release: true }; { exit: true }.
// Messages out: { url } once listening, { waiting: n } once n invocations are held,
// { answered: statuses } once the n answers are back.
import http from 'node:http';
import { startFakeLambda } from './fake-lambda.ts';

const tls = { cert: process.env.PEER_CERT!, key: process.env.PEER_KEY! };
const fake = await startFakeLambda({ tls });
let release: () => void = () => {};
let held = new Promise<void>((resolve) => (release = resolve));
let target = Infinity;

fake.setDefault(async () => {
  if (fake.inflight >= target) process.send!({ waiting: fake.inflight });
  await held;
  return { status: 200, headers: { 'content-type': 'application/json' }, body: '{"ok":true}' };
});

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 4096, scheduling: 'lifo' });

function post(socketPath: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, method: 'POST', path: '/2015-03-31/functions/held/invocations', agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end('{"n":1}');
  });
}

process.on('message', (m: { send?: number; socketPath?: string; release?: boolean; exit?: boolean }) => {
  if (m.send !== undefined) {
    target = m.send;
    void Promise.all(Array.from({ length: m.send }, () => post(m.socketPath!))).then(
      (statuses) => process.send!({ answered: statuses }),
      (err: Error) => process.send!({ error: err.message }),
    );
  } else if (m.release) {
    release();
    held = new Promise<void>((resolve) => (release = resolve));
  } else if (m.exit) {
    agent.destroy();
    void fake.close().then(() => process.exit(0));
  }
});

process.send!({ url: fake.url });
