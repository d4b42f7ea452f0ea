// `npm run demo` is the README's first command: it must keep working, with and without
// varnishd in front, and leave nothing behind.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ours = (): string[] => fs.readdirSync(os.tmpdir()).filter((f) => /^lambda-sign-(e2e|varnish)-/.test(f));

async function demo(env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'test/demo.ts'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
  return stdout;
}

test('through varnishd: a greeting, a forbidden function, a fallback, all signatures verified', async () => {
  const before = ours();
  const out = await demo();
  assert.match(out, /varnishd\s+http:\/\/127\.0\.0\.1:\d+/);
  assert.match(out, /→ 200 \{"greeting":"Hello, Varnish!"\}/);
  assert.match(out, /→ 403 .*FunctionNotAllowed/);
  assert.match(out, /→ 200 origin: GET \/lambda\/flaky .*x-lambda-fallback: function error: Unhandled/);
  assert.match(out, /Lambda received (\d+) invocations: \1 signatures verified .*, 0 rejected\./);
  assert.equal(ours().filter((f) => !before.includes(f)), [], 'temporary files removed');
});

test('straight to the socket when varnishd is not used', async () => {
  const out = await demo({ DEMO_WITHOUT_VARNISH: '1' });
  assert.match(out, /varnishd\s+skipped/);
  assert.match(out, /→ 200 \{"greeting":"Hello, socket!"\}/);
  assert.match(out, /x-amz-function-error: Unhandled/);
  assert.match(out, /Lambda received (\d+) invocations: \1 signatures verified .*, 0 rejected\./);
});

test.run();
