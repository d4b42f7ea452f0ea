#!/usr/bin/env node
// A/B: two builds of lambda-sign behind one varnishd and one nginx upstream, measured in
// interleaved wrk runs (A B, B A, A B, …), reporting each build's CPU per request (its
// utime+stime from /proc over the run ÷ requests) and req/s, medians over the rounds.
//
// For changes too small for `npm run bench` to see: on a shared 2-core machine req/s moves
// by ±10 % from run to run, CPU per request much less, and interleaving cancels drift.
// An A/A run (the same build twice) showed medians 3 µs apart: smaller effects need more
// rounds.
//
//   npm run build && cp -r dist /tmp/base-dist        # the build to compare against
//   … change, npm run build …
//   node bench/ab.mjs --base /tmp/base-dist [--rounds 6] [--duration 5] [--body 64] [--connections 64]
//   node bench/ab.mjs --base /tmp/base-dist --inflight [--rounds 4]
//
// --inflight runs the benchmark's 2,000-in-flight case instead: an upstream that answers
// after 1 s, 2,000 connections, 12 s runs, and each build's sustained req/s (answers the
// upstream gave from 2.5 s to the run's end) and highest RSS.
//
// B is ./dist. Needs what `npm run bench` needs (wrk, nginx, varnishd, openssl). Every
// process is stopped at the end, on error and on Ctrl-C; files live in a temp dir.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { makeCA } from './lib/ca.mjs';
import { CLI, startLambdaSign, startSlowUpstream } from './lib/daemons.mjs';
import { startUpstream } from './lib/nginx.mjs';
import { killAllNow, stopAll } from './lib/procs.mjs';
import { watch } from './lib/procstat.mjs';
import { median } from './lib/report.mjs';
import { startVarnish } from './lib/varnish.mjs';
import { runWrk, writeScript } from './lib/wrk.mjs';

const USAGE = 'usage: node bench/ab.mjs --base DIR [--inflight] [--rounds N] [--duration S] [--body BYTES] [--connections N]';
let values;
try {
  ({ values } = parseArgs({
    options: {
      base: { type: 'string' },
      inflight: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      body: { type: 'string', default: '64' },
      connections: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (err) {
  console.error(`${err.message}\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const inflight = values.inflight;
const num = (name, min, otherwise, inflightDefault) => {
  const n = Number(values[name] ?? (inflight ? inflightDefault : otherwise));
  if (!Number.isInteger(n) || n < min) {
    console.error(`--${name} must be an integer ≥ ${min}\n${USAGE}`);
    process.exit(2);
  }
  return n;
};
const rounds = num('rounds', 1, 6, 4);
// An in-flight run needs its first seconds to fill up: 2.5 s of them are not counted.
const duration = num('duration', inflight ? 4 : 1, 5, 12);
const body = num('body', 0);
const connections = num('connections', 1, 64, 2000);
if (values.base === undefined) {
  console.error(`--base is required: a directory holding another build's cli.js\n${USAGE}`);
  process.exit(2);
}
const baseCli = path.resolve(values.base, 'cli.js');
for (const f of [baseCli, CLI]) {
  if (!fs.existsSync(f)) {
    console.error(`${f} not found (npm run build makes ./dist)`);
    process.exit(2);
  }
}
// A copied dist must resolve this checkout's node_modules and package.json: run it from a
// directory inside the checkout.
const root = path.dirname(path.dirname(CLI));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lambda-sign-ab-'));
const baseCopy = path.join(root, '.ab-base');
fs.rmSync(baseCopy, { recursive: true, force: true });
fs.cpSync(path.dirname(baseCli), path.join(baseCopy, 'dist'), { recursive: true });
fs.copyFileSync(path.join(root, 'package.json'), path.join(baseCopy, 'package.json'));
const cleanup = () => {
  killAllNow();
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.rmSync(baseCopy, { recursive: true, force: true });
};
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

const builds = { A: path.join(baseCopy, 'dist', 'cli.js'), B: CLI };
try {
  const ca = makeCA(path.join(tmp, 'ca'));
  const up = inflight
    ? await startSlowUpstream({ dir: path.join(tmp, 'upstream'), ...ca, body: '{"ok":1}' })
    : await startUpstream({ dir: path.join(tmp, 'upstream'), ...ca });
  const procs = {};
  const backends = {};
  for (const [id, cli] of Object.entries(builds)) {
    const ls = await startLambdaSign({
      name: `lambda-sign ${id}`, dir: path.join(tmp, id), socket: path.join(tmp, `${id}.sock`), endpoint: up.url, caFile: ca.caFile, cli,
    });
    procs[id] = ls.proc;
    backends[id] = ls.socket;
  }
  const varnish = await startVarnish({ dir: path.join(tmp, 'varnish'), backends });
  const scripts = Object.fromEntries(Object.keys(builds).map((id) => [id, writeScript(tmp, { backend: id, bodyBytes: body })]));
  const wrk = (id, durationS) =>
    runWrk({ url: varnish.url, script: scripts[id], connections, durationS, ...(inflight ? { timeoutS: 30 } : {}) });
  await sleep(500);
  for (const id of Object.keys(builds)) await wrk(id, 3); // warm-up, not recorded
  const rows = { A: [], B: [] };
  for (let r = 1; r <= rounds; r++) {
    for (const id of r % 2 === 1 ? ['A', 'B'] : ['B', 'A']) {
      const w = watch(procs[id].pid);
      const t0 = performance.now();
      const run = wrk(id, duration);
      const steady = inflight ? await up.sustained(t0, duration) : undefined;
      const x = await run;
      const s = w.stop();
      const us = (s.cpuPct * 1e4) / x.rps;
      rows[id].push({ us, rps: x.rps, p50: x.p50Ms, p99: x.p99Ms, errors: x.errors, rss: s.rssMaxMB, steady });
      const rate = inflight ? `sustained ${Math.round(steady)} req/s  (wrk ${Math.round(x.rps)})` : `${Math.round(x.rps)} req/s`;
      console.error(`[${r}/${rounds}] ${id}  ${rate}  p50 ${x.p50Ms.toFixed(0)} p99 ${x.p99Ms.toFixed(0)} ms  ${us.toFixed(1)} µs/req  rss ${s.rssMaxMB.toFixed(0)} MB  errors ${x.errors}`);
      // Let the last answers of an in-flight run drain before the other build's run.
      if (inflight) await sleep(2000);
    }
  }
  const what = inflight ? `${connections} in flight against a 1 s upstream` : `${body} B bodies, ${connections} connections`;
  console.log(`A = ${values.base}, B = ./dist; ${what}, ${rounds} rounds × ${duration} s, medians:`);
  for (const id of ['A', 'B']) {
    const xs = rows[id];
    const errors = xs.reduce((n, x) => n + x.errors, 0);
    const rate = inflight
      ? `sustained ${Math.round(median(xs.map((x) => x.steady)))} req/s (rounds ${xs.map((x) => Math.round(x.steady)).join(', ')}), RSS max ${Math.max(...xs.map((x) => x.rss)).toFixed(0)} MB`
      : `${Math.round(median(xs.map((x) => x.rps)))} req/s, p50 ${median(xs.map((x) => x.p50)).toFixed(0)} ms, p99 ${median(xs.map((x) => x.p99)).toFixed(0)} ms`;
    console.log(`${id}: ${median(xs.map((x) => x.us)).toFixed(1)} µs of CPU per request, ${rate}, errors ${errors}`);
  }
} finally {
  await stopAll();
}
