#!/usr/bin/env node
// Runs every test/**/*.test.ts in its own process (uvu + tsx), one after another so
// the 2-core CI machine is not oversubscribed, and ends with the totals line CI reads:
//   N passed, N failed
// Usage: node test/run.mjs [substring…]   (only files whose path contains one of them)
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const FILE_TIMEOUT_MS = 300_000;

function find(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = join(dir, d.name);
    if (d.isDirectory()) return d.name === 'fixtures' || d.name === 'helpers' ? [] : find(p);
    return d.name.endsWith('.test.ts') ? [p] : [];
  });
}

// Unit tests first, then integration, then end-to-end: fast feedback, slow last.
const rank = (f) => (f.includes('/e2e/') ? 2 : f.includes('/integration/') ? 1 : 0);
const filters = process.argv.slice(2);
const files = find(join(root, 'test'))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));

function runFile(file) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', file], {
      cwd: root,
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      process.stdout.write(d);
    });
    child.stderr.on('data', (d) => process.stderr.write(d));
    const timer = setTimeout(() => {
      process.stderr.write(`\n${relative(root, file)}: killed after ${FILE_TIMEOUT_MS / 1000} s\n`);
      child.kill('SIGKILL');
    }, FILE_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      const num = (label) => {
        const m = new RegExp(`^\\s*${label}:\\s+(\\d+)`, 'm').exec(out.replace(/\x1b\[[0-9;]*m/g, ''));
        return m === null ? undefined : Number(m[1]);
      };
      const total = num('Total');
      const passed = num('Passed');
      const skipped = num('Skipped') ?? 0;
      if (total === undefined || passed === undefined) {
        // A file that died before uvu's summary counts as one failure.
        return resolve({ passed: 0, failed: 1, skipped: 0 });
      }
      const failed = total - passed - skipped;
      // A non-zero exit with every test passing (a crash after the summary) still fails.
      resolve({ passed, failed: failed === 0 && code !== 0 ? 1 : failed, skipped });
    });
  });
}

let passed = 0;
let failed = 0;
let skipped = 0;
const bad = [];
for (const file of files) {
  process.stdout.write(`\n# ${relative(root, file)}\n`);
  const r = await runFile(file);
  passed += r.passed;
  failed += r.failed;
  skipped += r.skipped;
  if (r.failed > 0) bad.push(relative(root, file));
}
if (bad.length > 0) process.stdout.write(`\nfailing files: ${bad.join(', ')}\n`);
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}\n`);
process.exit(failed > 0 || files.length === 0 ? 1 : 0);
