// The benchmark's process accounting (bench/lib/procstat.mjs): a daemon run with --workers is
// a primary and its children, and its CPU and RSS are the sum over them.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
// @ts-expect-error: the benchmark is plain JavaScript, without types.
import { family, memory, watch } from '../../bench/lib/procstat.mjs';

test('watch() sums a process and its children', async () => {
  // A child that holds 64 MB of touched memory and burns CPU until it is killed.
  const child = spawn(process.execPath, ['-e', 'const b = Buffer.alloc(64 << 20, 1); process.send("ready"); for (;;) b[0]++;'], {
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
  });
  try {
    await once(child, 'message');
    assert.ok(family(process.pid).includes(child.pid), 'the child is found by its parent');
    const own = memory(process.pid).rssMB as number;
    const w = watch(process.pid);
    await new Promise((r) => setTimeout(r, 500));
    const s = w.stop();
    assert.ok(s.processes >= 2);
    assert.ok(s.rssEndMB > own + 60, `RSS ${s.rssEndMB} MB: not own ${own} + the child's 64`);
    // This process mostly waits; the child spins: together well over half a core.
    assert.ok(s.cpuPct > 50, `CPU ${s.cpuPct} %`);
  } finally {
    child.kill('SIGKILL');
  }
});

test('watch() refuses a run during which a child came or went', async () => {
  const w = watch(process.pid);
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 10000)'], { stdio: 'ignore' });
  try {
    await once(child, 'spawn');
    assert.throws(() => w.stop(), /changed during the run/);
  } finally {
    child.kill('SIGKILL');
  }
});

test.run();
