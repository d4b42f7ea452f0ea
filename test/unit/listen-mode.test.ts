// listen.ts: the socket file's permissions from the moment it exists. The kernel creates it
// with 0777 minus the umask and accepts connections at once, so a chmod afterwards leaves a
// window; the umask is narrowed to --socket-mode around the bind.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { listen, narrowUmask } from '../../src/listen.ts';

/** Listens under `umask` with `socketMode`; resolves with the file's mode when 'listening' fired and after listen(). */
async function modes(umask: number, socketMode: number): Promise<{ atListen: number; after: number; umaskAfter: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ls-mode-'));
  const socketPath = path.join(dir, 's.sock');
  const server = net.createServer((c) => c.end());
  let atListen = -1;
  // Registered before listen(): it runs before listen() resolves and before its chmod.
  server.once('listening', () => {
    atListen = fs.statSync(socketPath).mode & 0o777;
  });
  const saved = process.umask(umask);
  try {
    const l = await listen(server, { socketPath, socketMode });
    const after = fs.statSync(socketPath).mode & 0o777;
    const umaskAfter = process.umask(saved);
    l.cleanup();
    return { atListen, after, umaskAfter };
  } finally {
    process.umask(saved);
    await new Promise<void>((r) => server.close(() => r()));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('under umask 000 the file never allows more than --socket-mode, not even before the chmod', async () => {
  const m = await modes(0o000, 0o600);
  assert.is(m.atListen.toString(8), '600', 'mode when the socket started listening');
  assert.is(m.after.toString(8), '600');
  assert.is(m.umaskAfter.toString(8), '0', 'the umask is given back');
});

test('a mode wider than the umask: created within both, then widened to the mode asked for', async () => {
  const m = await modes(0o022, 0o666);
  assert.is(m.atListen.toString(8), '644');
  assert.is(m.after.toString(8), '666');
  assert.is(m.umaskAfter.toString(8), '22');
});

test('narrowUmask adds what the mode leaves out to the umask and returns the old one', () => {
  const saved = process.umask(0o022);
  try {
    assert.is(narrowUmask(0o660).toString(8), '22');
    assert.is(process.umask(0o022).toString(8), '137');
    assert.is(narrowUmask(0o777).toString(8), '22');
    assert.is(process.umask(0o022).toString(8), '22');
  } finally {
    process.umask(saved);
  }
});

test.run();
