#!/usr/bin/env node
// The benchmark: `npm run bench [-- options]` (builds, then runs this).
//
// Three ways to put Lambda behind Varnish, measured in one run against the same upstream,
// through the same varnishd (`return (pass)`), with wrk as the client:
//   lambda-sign  varnishd → Unix socket → lambda-sign → HTTP/2 + TLS → upstream
//   relay        varnishd → Unix socket → nginx proxy_pass → TLS keep-alive → upstream
//                (no signing: the floor, what relaying costs at all, in C)
//   naive        varnishd → Unix socket → node http + @aws-sdk/client-lambda InvokeCommand
// Rounds are interleaved (A B C A B C …) so that drift on a shared machine hits every path
// alike; each figure is the median over rounds. Then signing alone, and 2,000 invocations in
// flight against an upstream that answers after 1 s. Progress goes to stderr; the Markdown
// report goes to stdout and to bench/results/latest.md.
//
// Nothing is installed here. Every process started is stopped at the end, on error and on
// Ctrl-C (bench/lib/procs.mjs); everything listens on loopback or in a temp dir.
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeCA } from './lib/ca.mjs';
import { CLI, startLambdaSign, startNaiveProxy, startSlowUpstream } from './lib/daemons.mjs';
import { NGINX, UPSTREAM_BODY, startRelay, startUpstream } from './lib/nginx.mjs';
import { killAllNow, liveGroups, run, stopAll, which } from './lib/procs.mjs';
import { waitQuiet, watch, watchOthers } from './lib/procstat.mjs';
import { profileMarkdown, summarizeProfile } from './lib/cpu-profile.mjs';
import { buildReport, buildSoakReport, chainUs, machine, sizeLabel } from './lib/report.mjs';
import { VARNISHD, startVarnish } from './lib/varnish.mjs';
import { INVOKE_PATH, WRK, payload, runWrk, writeScript } from './lib/wrk.mjs';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const RESULTS = path.join(HERE, 'results');

const HELP = `usage: npm run bench [-- options]

  --duration S      seconds per measured wrk run (default 8; --quick: 2)
  --rounds N        interleaved rounds; each figure is the median (default 3; --quick: 1)
  --quick           one short round: a smoke check that everything works end to end
  --only REGEX      only the cases whose id matches: sign, 64B-c64, 64B-c512,
                    256KiB-c64, 256KiB-c512, inflight
  --wrk-threads N   wrk threads (default 1: the 2 cores are shared with everything else)
  --cpu-prof        run lambda-sign under node --cpu-prof and add a summary of where its
                    time goes (profiling slows it: use the shares, not the req/s)
  --soak S          soak the lambda-sign path for S seconds instead (64B-c64, or the first
                    case --only selects), reporting every --interval S (default 30)
  -h, --help

Needs (Debian): apt-get install -y wrk nginx varnish openssl. Installs nothing itself.`;

// ---------------------------------------------------------------------------------------
// Options

function options() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        duration: { type: 'string' },
        rounds: { type: 'string' },
        quick: { type: 'boolean', default: false },
        only: { type: 'string' },
        'wrk-threads': { type: 'string' },
        soak: { type: 'string' },
        'cpu-prof': { type: 'boolean', default: false },
        interval: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    fail(`${err.message}\n\n${HELP}`);
  }
  if (values.help) {
    console.log(HELP);
    process.exit(0);
  }
  // wrk takes whole seconds.
  const count = (name, fallback) => {
    const raw = values[name];
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) fail(`--${name}: expected a whole number ≥ 1, got ${JSON.stringify(raw)}`);
    return n;
  };
  const quick = values.quick;
  const duration = count('duration', quick ? 2 : 8);
  let only;
  if (values.only !== undefined) {
    try {
      only = new RegExp(values.only);
    } catch (err) {
      fail(`--only: ${err.message}`);
    }
  }
  return {
    quick,
    duration,
    rounds: count('rounds', quick ? 1 : 3),
    warmup: 1,
    wrkThreads: count('wrk-threads', 1),
    cpuProf: values['cpu-prof'],
    only,
    soak: values.soak === undefined ? undefined : count('soak', 0),
    interval: count('interval', 30),
    // Long enough for a steady window after the first second of answers.
    inflightDuration: quick ? 5 : Math.max(duration, 12),
  };
}

function fail(message) {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

const log = (line) => process.stderr.write(`${line}\n`);

// ---------------------------------------------------------------------------------------
// What is measured

// lambda-sign twice: as it starts by default (--workers auto: one process on 2 cores) and
// with --workers 2, one process per core.
const PATHS = [
  { id: 'lambda-sign', label: 'lambda-sign', backend: 'lambda_sign', daemon: true },
  { id: 'lambda-sign-w2', label: 'lambda-sign --workers 2', backend: 'lambda_sign_w2', daemon: true, args: ['--workers', '2'] },
  { id: 'relay', label: 'relay (nginx)', backend: 'relay' },
  { id: 'naive', label: 'naive SDK proxy', backend: 'naive' },
];
const SLOW_PATHS = PATHS.map((p) => ({ ...p, backend: `${p.backend}_slow` }));

const CASES = [
  { id: '64B-c64', label: '64 B, 64 conns', bodyBytes: 64, connections: 64 },
  { id: '64B-c512', label: '64 B, 512 conns', bodyBytes: 64, connections: 512 },
  { id: '256KiB-c64', label: '256 KiB, 64 conns', bodyBytes: 256 * 1024, connections: 64 },
  { id: '256KiB-c512', label: '256 KiB, 512 conns', bodyBytes: 256 * 1024, connections: 512 },
];
const INFLIGHT = { id: 'inflight', connections: 2000, bodyBytes: 64 };

// ---------------------------------------------------------------------------------------
// Preconditions: say what is missing and stop, before starting anything.

function checkPrerequisites({ needNaive }) {
  const tools = [
    ['wrk', WRK, 'wrk'],
    ['nginx', NGINX, 'nginx'],
    ['varnishd', VARNISHD, 'varnish'],
    ['openssl', which('openssl'), 'openssl'],
  ];
  const missing = tools.filter(([, found]) => found === undefined);
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map(([, , pkg]) => pkg))].join(' ');
    fail(
      `missing program${missing.length > 1 ? 's' : ''}: ${missing.map(([n]) => n).join(', ')}.\n` +
        `The benchmark installs nothing itself. On Debian/Ubuntu: apt-get install -y ${pkgs}`,
    );
  }
  if (process.platform !== 'linux') fail('Linux only: CPU and memory are read from /proc');
  for (const f of [CLI, path.join(path.dirname(CLI), 'signer.js')]) {
    if (!fs.existsSync(f)) fail(`${path.relative(process.cwd(), f)} not found: run \`npm run build\` (npm run bench does)`);
  }
  if (needNaive) {
    try {
      createRequire(import.meta.url).resolve('@aws-sdk/client-lambda');
    } catch {
      fail('@aws-sdk/client-lambda not installed (a devDependency, for the naive SDK proxy): run `npm install`');
    }
  }
}

// ---------------------------------------------------------------------------------------
// Lifecycle: a temp dir for every file and socket; everything stopped on every way out.

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lambda-sign-bench-'));
let cleaning;
function cleanup() {
  cleaning ??= (async () => {
    await stopAll(3000);
    fs.rmSync(tmp, { recursive: true, force: true });
  })();
  return cleaning;
}
process.on('exit', () => {
  killAllNow();
  try {
    fs.rmSync(tmp, { recursive: true, force: true });
  } catch {
    // best effort on the way out
  }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    log(`\n${sig}: stopping every process started…`);
    void cleanup().finally(() => process.exit(130));
  });
}

/** A bound on the whole run, from its plan: nothing may hang forever. */
function watchdog(seconds) {
  setTimeout(() => {
    log(`bench: still running after ${Math.round(seconds)} s, more than planned allows; stopping`);
    void cleanup().finally(() => process.exit(1));
  }, seconds * 1000).unref();
}

// ---------------------------------------------------------------------------------------
// Helpers

/** One POST through Varnish to `backend`; resolves with {status, text}. */
function post(varnishUrl, backend, bodyBytes) {
  return new Promise((resolve, reject) => {
    const { hostname, port } = new URL(varnishUrl);
    const body = payload(bodyBytes);
    const req = http.request(
      {
        host: hostname, port, path: INVOKE_PATH, method: 'POST', agent: false, timeout: 15_000,
        headers: { 'content-type': 'application/json', 'x-bench-backend': backend, 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode, text }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${backend}: no answer within 15 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Every path must answer the upstream's bytes before anything is timed: a benchmark of error
 * pages would be fast and meaningless.
 */
async function preflight(varnishUrl, backend, bodyBytes) {
  const { status, text } = await post(varnishUrl, backend, bodyBytes);
  if (status !== 200 || text !== UPSTREAM_BODY) {
    throw new Error(`preflight ${backend} (${sizeLabel(bodyBytes)}): ${status} ${text.slice(0, 300)}`);
  }
}

/** After a run with errors: what does one request get now? For the log, never throws. */
async function sampleAnswer(varnishUrl, backend, bodyBytes) {
  try {
    const { status, text } = await post(varnishUrl, backend, bodyBytes);
    return `${status} ${text.replace(/\s+/g, ' ').slice(0, 200)}`;
  } catch (err) {
    return err.message;
  }
}

function alive(proc) {
  if (proc.exitCode !== undefined) throw new Error(`${proc.name} exited (${proc.exitCode}):\n${proc.output()}`);
}

const fmt = (r) =>
  `${Math.round(r.rps).toString().padStart(6)} req/s  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms` +
  `  cpu ${r.cpuPct.toFixed(0)}% (${r.rps > 0 ? Math.round((r.cpuPct * 1e4) / r.rps) : '-'} µs/req; chain ${Number.isFinite(chainUs(r)) ? Math.round(chainUs(r)) : '-'} µs/req)  rss ${r.rssMaxMB.toFixed(0)} MB  other load ${r.otherPct.toFixed(0)}%` +
  `${r.tcpTimeouts || r.listenDrops ? `  tcp timeouts ${r.tcpTimeouts} listen drops ${r.listenDrops}` : ''}${r.errors ? `  ERRORS ${r.errors} ${JSON.stringify(r.errorDetail)}` : ''}`;

async function signMicroChild(quick) {
  const script = path.join(HERE, 'lib', 'sign-micro.mjs');
  const { code, output, lines } = await run('sign-micro', process.execPath, [script, ...(quick ? ['--quick'] : [])], { timeoutMs: 120_000 });
  const line = lines.find((l) => l.startsWith('SIGN_JSON '));
  if (code !== 0 || line === undefined) throw new Error(`sign micro-benchmark failed (${code}):\n${output}`);
  return JSON.parse(line.slice('SIGN_JSON '.length));
}

// ---------------------------------------------------------------------------------------
// The comparison run

async function compare(opts, m, command, started) {
  const cases = CASES.filter((c) => opts.only === undefined || opts.only.test(c.id));
  const wantSign = opts.only === undefined || opts.only.test('sign');
  const wantInflight = opts.only === undefined || opts.only.test(INFLIGHT.id);
  if (cases.length === 0 && !wantSign && !wantInflight) fail(`--only ${opts.only}: matches no case`);

  const perRun = opts.duration + opts.warmup + 1; // + wrk start-up, pauses
  const perInflight = opts.inflightDuration + 3; // + the drain pause, the naive restart
  const plan = 30 + (wantSign ? 10 : 0) + (cases.length > 0 ? 9 : 0) +
    opts.rounds * (cases.length * PATHS.length * perRun + (wantInflight ? PATHS.length * perInflight : 0));
  log(`bench: about ${Math.ceil(plan / 60)} min (${opts.rounds} round(s), ${cases.length} case(s) × ${PATHS.length} paths${wantInflight ? ', the 2,000-in-flight run' : ''}${wantSign ? ', signing alone' : ''})`);
  watchdog(plan * 2 + 300);

  // Signing alone first, while nothing else runs on the machine.
  let sign;
  if (wantSign) {
    log('bench: signing alone (dist/signer.js)…');
    sign = await signMicroChild(opts.quick);
    for (const s of sign) log(`  ${sizeLabel(s.bytes).padEnd(8)} sign ${s.signUs.toFixed(1)} µs, smithy ${s.smithyUs.toFixed(1)} µs  (sha256 alone ${s.sha256Us.toFixed(1)} µs)`);
  }

  const runs = [];
  const inflight = [];
  const profDirs = {};
  const profDir = (id) => (opts.cpuProf ? (profDirs[id] = path.join(tmp, `prof-${id}`)) : undefined);
  let profiles = '';
  if (cases.length > 0 || wantInflight) {
    const ca = makeCA(path.join(tmp, 'ca'));
    const backends = {};
    const procs = {};
    if (cases.length > 0) {
      log('bench: starting the nginx upstream, lambda-sign (twice), the nginx relay and the naive SDK proxy…');
      const up = await startUpstream({ dir: path.join(tmp, 'upstream'), ...ca });
      for (const p of PATHS.filter((x) => x.daemon)) {
        const ls = await startLambdaSign({
          name: p.label, dir: path.join(tmp, p.id), socket: path.join(tmp, `${p.id}.sock`), endpoint: up.url, caFile: ca.caFile, cpuProfDir: p.args === undefined ? profDir(p.id) : undefined, args: p.args,
        });
        procs[p.id] = ls.proc;
        backends[p.backend] = ls.socket;
      }
      const relay = await startRelay({ dir: path.join(tmp, 'relay'), socket: path.join(tmp, 'relay.sock'), upstreamPort: up.port, caFile: ca.caFile });
      const naive = await startNaiveProxy({ dir: path.join(tmp, 'naive'), socket: path.join(tmp, 'naive.sock'), endpoint: up.url, caFile: ca.caFile });
      Object.assign(procs, { relay: relay.proc, naive: naive.proc, upstream: up.proc });
      Object.assign(backends, { relay: relay.socket, naive: naive.socket });
    }
    let slowNaive;
    let slowUpstream;
    if (wantInflight) {
      log('bench: starting the 1 s upstream and its lambda-sign, relay and naive proxy…');
      const slow = await startSlowUpstream({ dir: path.join(tmp, 'slow'), ...ca, body: UPSTREAM_BODY });
      slowUpstream = slow;
      for (const p of PATHS.filter((x) => x.daemon)) {
        const ls = await startLambdaSign({
          name: `${p.label} (1 s upstream)`, dir: path.join(tmp, `${p.id}-slow`), socket: path.join(tmp, `${p.id}-slow.sock`),
          endpoint: slow.url, caFile: ca.caFile, cpuProfDir: p.args === undefined ? profDir(`${p.id}_slow`) : undefined, args: p.args,
        });
        procs[`${p.id}_slow`] = ls.proc;
        backends[`${p.backend}_slow`] = ls.socket;
      }
      const relay = await startRelay({ name: 'relay-slow', dir: path.join(tmp, 'relay-slow'), socket: path.join(tmp, 'relay-slow.sock'), upstreamPort: slow.port, caFile: ca.caFile });
      // The naive proxy for this run is started afresh before each of its runs (see below).
      slowNaive = { dir: path.join(tmp, 'naive-slow'), socket: path.join(tmp, 'naive-slow.sock'), endpoint: slow.url, caFile: ca.caFile, name: 'naive (1 s upstream)' };
      const naive = await startNaiveProxy(slowNaive);
      Object.assign(procs, { relay_slow: relay.proc, naive_slow: naive.proc, slow: slow.proc });
      Object.assign(backends, { relay_slow: relay.socket, naive_slow: naive.socket });
    }
    log('bench: starting varnishd…');
    const varnish = await startVarnish({ dir: path.join(tmp, 'varnish'), backends });

    log('bench: preflight (one request per path and body size)…');
    for (const c of [...new Set(cases.map((x) => x.bodyBytes))]) {
      for (const p of PATHS) await preflight(varnish.url, p.backend, c);
    }
    if (wantInflight) await Promise.all(SLOW_PATHS.map((p) => preflight(varnish.url, p.backend, INFLIGHT.bodyBytes)));

    const scripts = new Map();
    const script = (backend, bodyBytes) => {
      const key = `${backend}/${bodyBytes}`;
      if (!scripts.has(key)) scripts.set(key, writeScript(tmp, { backend, bodyBytes }));
      return scripts.get(key);
    };
    const wrk = (backend, c, durationS, timeoutS) =>
      runWrk({ url: varnish.url, script: script(backend, c.bodyBytes), connections: c.connections, threads: opts.wrkThreads, durationS, timeoutS });

    if (cases.length > 0) {
      // JIT, connection pools and TLS sessions warm before round 1 (not recorded).
      log('bench: warming up every path…');
      for (const p of PATHS) await wrk(p.backend, CASES[0], opts.warmup * 3);
    }

    for (let round = 1; round <= opts.rounds; round++) {
      for (const c of cases) {
        for (const p of PATHS) {
          const proc = procs[p.id];
          await sleep(300);
          await wrk(p.backend, c, opts.warmup);
          const w = watch(proc.pid);
          const others = watchOthers(liveGroups);
          // A timeout under the run's length: a request stuck longer is counted as an error.
          // With wrk's timeout above it, a request waiting for the whole run was never counted
          // at all, and the path's p99 looked better for it (the relay's did).
          const r = await wrk(p.backend, c, opts.duration, Math.max(2, Math.ceil(opts.duration / 2)));
          const s = { ...w.stop(), ...others.stop() };
          alive(proc);
          const row = { round, case: c.id, path: p.id, ...r, ...s };
          runs.push(row);
          log(`[${round}/${opts.rounds}] ${c.id.padEnd(11)} ${p.id.padEnd(14)} ${fmt(row)}`);
          if (r.errors > 0) log(`  one request now: ${await sampleAnswer(varnish.url, p.backend, c.bodyBytes)}`);
        }
      }
      if (wantInflight) {
        for (const p of PATHS) {
          let proc = procs[`${p.id}_slow`];
          if (p.id === 'naive') {
            // Its SDK queue (maxSockets 50) would still hold the last run's requests for
            // minutes: a fresh process keeps the rounds independent.
            await procs.naive_slow.stop(3000);
            procs.naive_slow = (await startNaiveProxy(slowNaive)).proc;
            proc = procs.naive_slow;
          }
          // No warm-up run here (it would leave 2,000 requests in flight): wait instead for
          // what the run before left behind to finish, so that no path starts on a busy machine.
          const { waitedMs, quiet } = await waitQuiet();
          if (!quiet) log(`  the machine was still busy after ${waitedMs} ms; measuring anyway`);
          const w = watch(proc.pid);
          const others = watchOthers(liveGroups);
          const t0 = performance.now();
          const pending = wrk(`${p.backend}_slow`, INFLIGHT, opts.inflightDuration, 30);
          const sustained = await slowUpstream.sustained(t0, opts.inflightDuration);
          const r = await pending;
          const s = { ...w.stop(), ...others.stop() };
          alive(proc);
          const row = { round, case: INFLIGHT.id, path: p.id, ...r, ...s, sustained };
          inflight.push(row);
          log(`[${round}/${opts.rounds}] inflight    ${p.id.padEnd(14)} sustained ${Math.round(sustained)} req/s  (wrk) ${fmt(row)}`);
          if (r.errors > 0) log(`  one request now: ${await sampleAnswer(varnish.url, `${p.backend}_slow`, INFLIGHT.bodyBytes)}`);
          // Let the invocations wrk abandoned finish before the next path.
          await sleep(2000);
        }
      }
    }
    for (const proc of Object.values(procs)) alive(proc);

    // node writes the profile when the process exits: stop lambda-sign the way systemd
    // does (SIGTERM, drain, exit 0), then read it.
    for (const [id, dir] of Object.entries(profDirs)) {
      await procs[id].stop(40_000);
      const file = fs.existsSync(dir) ? fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile')) : undefined;
      if (file === undefined) {
        log(`bench: no CPU profile from ${id}`);
        continue;
      }
      const label = id === 'lambda-sign' ? 'the fast upstream, the cases above' : 'the 2,000-in-flight run';
      profiles += `${profileMarkdown(summarizeProfile(path.join(dir, file)), label)}\n`;
      // Kept for speedscope / Chrome DevTools; not committed (bench/.gitignore).
      fs.mkdirSync(path.join(RESULTS, 'profiles'), { recursive: true });
      const keep = path.join(RESULTS, 'profiles', `${id}.cpuprofile`);
      fs.copyFileSync(path.join(dir, file), keep);
      log(`bench: CPU profile of ${id} in ${path.relative(process.cwd(), keep)}`);
    }
  }

  const report = buildReport({
    command, started, m, opts, paths: PATHS, cases, runs, sign, inflight, inflightPaths: PATHS,
  });
  return profiles === '' ? report : `${report}\n${profiles}`;
}

// ---------------------------------------------------------------------------------------
// The soak: the lambda-sign path only, for a long time, interval by interval.

async function soak(opts, m, command, started) {
  const c = CASES.find((x) => opts.only === undefined || opts.only.test(x.id));
  if (c === undefined) fail(`--only ${opts.only}: matches no case for --soak`);
  const intervals = Math.ceil(opts.soak / opts.interval);
  watchdog(opts.soak + intervals * 45 + 120);
  log(`bench: soak of lambda-sign, ${c.id}, ${opts.soak} s in ${intervals} interval(s)`);

  const ca = makeCA(path.join(tmp, 'ca'));
  const up = await startUpstream({ dir: path.join(tmp, 'upstream'), ...ca });
  const ls = await startLambdaSign({ dir: path.join(tmp, 'ls'), socket: path.join(tmp, 'ls.sock'), endpoint: up.url, caFile: ca.caFile });
  const varnish = await startVarnish({ dir: path.join(tmp, 'varnish'), backends: { lambda_sign: ls.socket } });
  await preflight(varnish.url, 'lambda_sign', c.bodyBytes);
  const script = writeScript(tmp, { backend: 'lambda_sign', bodyBytes: c.bodyBytes });
  const wrk = (durationS) => runWrk({ url: varnish.url, script, connections: c.connections, threads: opts.wrkThreads, durationS });
  await wrk(3);

  const rows = [];
  let elapsed = 0;
  while (elapsed < opts.soak) {
    const d = Math.min(opts.interval, opts.soak - elapsed);
    const w = watch(ls.proc.pid);
    const others = watchOthers(liveGroups);
    const r = await wrk(d);
    const s = { ...w.stop(), ...others.stop() };
    alive(ls.proc);
    elapsed += d;
    const row = { ...r, ...s, endS: elapsed };
    rows.push(row);
    log(`soak ${String(elapsed).padStart(5)} s  ${fmt(row)}  hwm ${s.hwmMB.toFixed(0)} MB`);
  }
  return buildSoakReport({ command, started, m, caseLabel: c.label, intervals: rows });
}

// ---------------------------------------------------------------------------------------

async function main() {
  const opts = options();
  const started = new Date();
  const args = process.argv.slice(2);
  const command = `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`;
  checkPrerequisites({ needNaive: opts.soak === undefined });
  const m = machine({ varnishd: VARNISHD, nginx: NGINX, wrk: WRK });
  log(`bench: ${m.nproc} × ${m.model}, Node ${m.node}, ${m.varnishd}, ${m.nginx}; temp dir ${tmp}`);

  const report = opts.soak === undefined ? await compare(opts, m, command, started) : await soak(opts, m, command, started);
  fs.mkdirSync(RESULTS, { recursive: true });
  const file = path.join(RESULTS, opts.soak === undefined ? 'latest.md' : 'soak-latest.md');
  fs.writeFileSync(file, `${report}\n`);
  process.stdout.write(`\n${report}\n`);
  log(`bench: written to ${path.relative(process.cwd(), file)}`);
}

try {
  await main();
} catch (err) {
  // After Ctrl-C, the runs fail because their processes were stopped: not worth a stack.
  if (cleaning === undefined) log(`bench: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await cleanup();
}
