// Turns the runs into Markdown: medians over rounds, ratios to the relay, the targets from
// the issue with pass/fail, and the machine and command, so that the result can be pasted
// into the README as it is.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { CLI, shebangFlags } from './daemons.mjs';

export const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

const int = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const fix = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');
const ratio = (x) => (Number.isFinite(x) ? `${x.toFixed(2)} ×` : '–');
const ms = (x) => (Number.isFinite(x) ? (x < 10 ? x.toFixed(2) : x.toFixed(1)) : '–');

function firstLine(cmd, args) {
  // nginx -v and varnishd -V print on stderr, wrk -v exits 1: take whatever came out.
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0].trim() || '?';
}

/** nproc, CPU model, kernel, memory and the versions of every program in the chain. */
export function machine({ varnishd, nginx, wrk }) {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? '?';
  return {
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    model,
    kernel: `${os.type()} ${os.release()}`,
    memGiB: os.totalmem() / 2 ** 30,
    node: process.version,
    varnishd: firstLine(varnishd, ['-V']).replace(/^varnishd \((.*?) revision.*$/, '$1'),
    nginx: firstLine(nginx, ['-v']).replace(/^nginx version: /, ''),
    wrk: firstLine(wrk, ['-v']).replace(/ Copyright.*$/, ''),
  };
}

function header({ title, command, m, started }) {
  return [
    `## ${title}`,
    '',
    `- command: \`${command}\` (${started.toISOString().replace(/\.\d+Z$/, 'Z')})`,
    `- machine: ${m.nproc} × ${m.model}, ${fix(m.memGiB, 0)} GiB, ${m.kernel}`,
    `- software: Node ${m.node}, ${m.varnishd}, ${m.nginx}, ${m.wrk}`,
  ];
}

/** CPU µs per request of the whole chain (wrk, varnishd, the path, the upstream) in one run. */
export const chainUs = (r) => (r.requests > 0 && Number.isFinite(r.chainCpuS) ? (r.chainCpuS * 1e6) / r.requests : NaN);

/**
 * The highest req/s ÷ relay that any signing proxy could reach in this case on this machine,
 * round by round (median). Such a proxy does at least what the relay's chain does per request
 * (read the body, encrypt it, send it, relay the answer: the relay chain's measured CPU) and
 * also the SHA-256 of the body that SigV4 signs (measured alone by the signing
 * micro-benchmark). With every core busy on nothing else it serves at most
 * cores ÷ (relay chain + hash) requests a second. The bound is generous to the proxy: it
 * counts no signing, no HTTP/2 framing, no JavaScript, and the cores as if nothing else ran.
 */
function ceiling(caseRuns, bodyBytes, sign, cores) {
  const sha = sign?.find((s) => s.bytes === bodyBytes)?.sha256Us;
  if (!Number.isFinite(sha)) return NaN;
  return median(
    caseRuns
      .filter((r) => r.path === 'relay')
      .map((r) => (cores * 1e6) / (chainUs(r) + sha) / r.rps),
  );
}

// The rows of one (case, path) across rounds, reduced to medians.
function summarize(runs) {
  return {
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50Ms)),
    p99: median(runs.map((r) => r.p99Ms)),
    cpu: median(runs.map((r) => r.cpuPct)),
    chain: median(runs.map(chainUs)),
    rss: median(runs.map((r) => r.rssMaxMB)),
    errors: runs.reduce((n, r) => n + r.errors, 0),
    other: Math.max(...runs.map((r) => r.otherPct)),
    stalls: runs.reduce((n, r) => n + r.tcpTimeouts + r.listenDrops, 0),
    n: runs.length,
  };
}

/**
 * Ratio of two paths for one case: the median of the per-round ratios. Each round runs the
 * paths back to back, so a ratio within a round cancels drift between rounds.
 */
function pairedRatio(runs, a, b, key) {
  const rounds = [...new Set(runs.map((r) => r.round))];
  return median(
    rounds.map((round) => {
      const x = runs.find((r) => r.round === round && r.path === a);
      const y = runs.find((r) => r.round === round && r.path === b);
      return x && y ? x[key] / y[key] : NaN;
    }),
  );
}

export function buildReport({ command, started, m, opts, paths, cases, runs, sign, inflight, inflightPaths }) {
  const out = header({ title: 'lambda-sign benchmark', command, m, started });
  out.push(
    `- each figure: the median of ${opts.rounds} round${opts.rounds > 1 ? 's' : ''}; a round runs every case on every path back to back (A B C A B C …); ` +
      `wrk ${opts.duration} s per run after a ${opts.warmup} s warm-up, ${opts.wrkThreads} wrk thread${opts.wrkThreads > 1 ? 's' : ''}`,
    '- chain: wrk → varnishd (`return (pass)`) → Unix socket → *path* → nginx upstream on loopback (HTTP/2 over TLS; ' +
      'the relay and the SDK negotiate HTTP/1.1), which reads the body and answers a fixed 56-byte JSON',
    `- wrk, varnishd, the path and the upstream share these ${m.nproc} cores: **the ratios, not the absolute numbers, are the point**`,
    ...(opts.cpuProf ? ['- **lambda-sign ran under `node --cpu-prof`: its figures here are slowed by profiling**'] : []),
    '',
  );

  if (runs.length > 0) {
    out.push(
      '| path | case | req/s | p50 ms | p99 ms | req/s ÷ relay | p99 ÷ relay | CPU % ¹ | RSS MB ¹ | chain µs/req ⁵ | errors ² | other load % ³ | TCP stalls ⁴ |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const c of cases) {
      const caseRuns = runs.filter((r) => r.case === c.id);
      for (const p of paths) {
        const s = summarize(caseRuns.filter((r) => r.path === p.id));
        if (s.n === 0) continue;
        const isRelay = p.id === 'relay';
        out.push(
          `| ${p.label} | ${c.label} | ${int(s.rps)} | ${ms(s.p50)} | ${ms(s.p99)} | ` +
            `${isRelay ? '1 (floor)' : ratio(pairedRatio(caseRuns, p.id, 'relay', 'rps'))} | ` +
            `${isRelay ? '1' : ratio(pairedRatio(caseRuns, p.id, 'relay', 'p99Ms'))} | ` +
            `${fix(s.cpu, 0)} | ${fix(s.rss, 0)} | ${int(s.chain)} | ${s.errors} | ${fix(s.other, 0)} | ${s.stalls} |`,
        );
      }
    }
    out.push(
      '',
      '¹ of the path\'s own process (lambda-sign; the relay nginx; the naive proxy) and its children (with --workers, the primary and its workers: ' +
        'their RSS is summed, so the Node binary\'s pages they share are counted once per process): CPU as a share of one core ' +
        '(utime+stime from /proc over the run), RSS the highest VmRSS sampled during the run.  ',
      '² answers that were not 2xx plus socket errors and timeouts (wrk\'s `--timeout` is half the run, so a request stuck that long is counted, not lost), summed over the rounds.  ',
      '³ CPU used during the run by processes that are not part of the benchmark (other jobs on this host, hypervisor steal), ' +
        'as a share of one core; the highest over the rounds. Much of it means a disturbed measurement.  ',
      '⁴ TCP retransmission timeouts plus connections dropped from full listen queues, machine-wide, summed over the rounds (events, not requests: a listen drop is usually followed by a SYN timeout): each made something wait 200 ms or more ' +
        '(a p99 of seconds next to a non-zero count is that, not the proxy). Retransmitted segments are not counted: on loopback they are tail-loss probes whose originals had arrived, and delay nothing.  ',
      '⁵ CPU of every process in the chain (wrk, varnishd, the path, the upstream, the driver) over the run, divided by the requests wrk completed.',
      '',
    );
  }

  if (sign !== undefined) {
    out.push(
      '### Signing alone (one request at a time)',
      '',
      '| body | fast signer µs/request (default) | smithy µs/request (`--signer smithy`) | SHA-256 of the body alone µs | fast signatures/s on one core |',
      '| --- | ---: | ---: | ---: | ---: |',
      ...sign.map((s) => `| ${sizeLabel(s.bytes)} | ${fix(s.signUs, 1)} | ${fix(s.smithyUs, 1)} | ${fix(s.sha256Us, 1)} | ${int(1e6 / s.signUs)} |`),
      '',
    );
  }

  if (inflight.length > 0) {
    out.push(
      '### 2,000 invocations in flight, upstream answers after 1 s (64 B bodies)',
      '',
      `wrk -c2000 for ${opts.inflightDuration} s (timeout 30 s) through the same varnishd to a Node HTTP/2 upstream that waits 1 s (so 2,000 req/s is the ceiling). ` +
        'Sustained req/s: answers the upstream gave in the steady part of the run (from 2.5 s to the end; nothing can finish in the first second); ' +
        'wrk\'s own count over the whole run is shown too. The naive proxy is restarted before each of its runs, since its queue outlives the run.',
      '',
      '| path | sustained req/s | wrk req/s | p50 ms | p99 ms | ÷ naive | CPU % | RSS MB (max) | errors | other load % | TCP stalls |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const p of inflightPaths) {
      const rs = inflight.filter((r) => r.path === p.id);
      if (rs.length === 0) continue;
      const s = summarizeInflight(rs);
      const vsNaive = p.id === 'naive' ? '1' : ratio(pairedRatio(inflight, p.id, 'naive', 'sustained'));
      out.push(
        `| ${p.label} | ${int(s.sustained)} | ${int(s.rps)} | ${ms(s.p50)} | ${ms(s.p99)} | ${vsNaive} | ${fix(s.cpu, 0)} | ${fix(s.rss, 0)} | ${s.errors} | ${fix(s.other, 0)} | ${s.stalls} |`,
      );
    }
    out.push('');
  }

  const targets = targetRows({ runs, inflight, cases, sign, cores: m.nproc, paths });
  if (targets.length > 0) {
    out.push(
      '### Targets (from the issue)',
      '',
      '| target | measured | |',
      '| --- | --- | --- |',
      ...targets.map((t) => `| ${t.what} | ${t.measured} | ${t.ok === undefined ? '–' : t.ok ? 'pass' : '**FAIL**'} |`),
      '',
      'For scale, 64 B / 64 connections: aws-sigv4-proxy (Go) reaches ≈ 0.75 × the relay, a first straightforward Node implementation ≈ 0.4 ×.',
      '',
      '⁶ The most that any signing proxy could reach here (shown when signing alone was measured in the same run): ' +
        'the cores ÷ (the relay chain\'s CPU per request + the SHA-256 of the body alone), ÷ the relay\'s req/s, median over rounds. ' +
        'It charges such a proxy nothing for signing, HTTP/2, JavaScript or its extra cost in varnishd, and nothing else for the machine\'s other load.',
      '',
    );
  }
  out.push(
    'Notes:',
    '',
    '- wrk keeps a fixed number of connections busy (a closed loop), so at equal connections a path with more req/s also has a lower p50 (Little\'s law); ' +
      'the p99 ratio compares tails at the same concurrency.',
    '- The upstream reads every request body before answering, as Lambda does (`mirror_request_body`; a bare `return 200` would make nginx reset ' +
      'HTTP/2 uploads after 64 KiB while HTTP/1.1 paths still send all of it).',
    '- The naive proxy keeps every SDK default (HTTP/1.1, keep-alive, maxSockets 50); its only change is a listen backlog of 4096 like the relay\'s ' +
      'and lambda-sign\'s, without which Varnish\'s connects fail with EAGAIN at 2,000 connections and the run would time 503s.',
    `- lambda-sign runs as the installed \`lambda-sign\` script starts it: \`node ${shebangFlags(CLI).join(' ')} dist/cli.js --log-level warn --allow-function bench\` (the node flags come from the script's first line), with static credentials from the environment; "lambda-sign --workers 2" adds that flag (a primary and two workers, each listening on the socket).`,
    '',
  );
  return out.join('\n');
}

function summarizeInflight(rs) {
  return {
    sustained: median(rs.map((r) => r.sustained)),
    rps: median(rs.map((r) => r.rps)),
    p50: median(rs.map((r) => r.p50Ms)),
    p99: median(rs.map((r) => r.p99Ms)),
    cpu: median(rs.map((r) => r.cpuPct)),
    rss: Math.max(...rs.map((r) => r.rssMaxMB)),
    errors: rs.reduce((n, r) => n + r.errors, 0),
    other: Math.max(...rs.map((r) => r.otherPct)),
    stalls: rs.reduce((n, r) => n + r.tcpTimeouts + r.listenDrops, 0),
  };
}

export const sizeLabel = (bytes) => (bytes >= 1024 ? `${bytes / 1024} KiB` : `${bytes} B`);

/** The targets, for each lambda-sign path of the run (the default and --workers 2). */
function targetRows({ runs, inflight, cases, sign, cores, paths }) {
  const rows = [];
  const caseRuns = (id) => runs.filter((r) => r.case === id);
  for (const { id: ls, label } of paths.filter((p) => p.id.startsWith('lambda-sign'))) {
    const has = (id) => caseRuns(id).some((r) => r.path === ls) && caseRuns(id).some((r) => r.path === 'relay');
    for (const id of ['64B-c64', '256KiB-c64', '256KiB-c512']) {
      if (!has(id)) continue;
      const x = pairedRatio(caseRuns(id), ls, 'relay', 'rps');
      const c = cases.find((k) => k.id === id);
      const most = c === undefined ? NaN : ceiling(caseRuns(id), c.bodyBytes, sign, cores);
      const bound = Number.isFinite(most) ? ` (any signer's ceiling in this run: ${ratio(most)} ⁶)` : '';
      rows.push({ what: `${id}: ${label} req/s ≥ 0.9 × relay`, measured: `${ratio(x)}${bound}`, ok: x >= 0.9 });
    }
    for (const id of ['64B-c64', '64B-c512', '256KiB-c64', '256KiB-c512']) {
      if (!has(id)) continue;
      const x = pairedRatio(caseRuns(id), ls, 'relay', 'p99Ms');
      rows.push({ what: `${id}: ${label} p99 ≤ 1.5 × relay p99`, measured: ratio(x), ok: x <= 1.5 });
    }
    const rs = inflight.filter((r) => r.path === ls);
    if (rs.length > 0) {
      const s = summarizeInflight(rs);
      rows.push({ what: `2,000 in flight at 1 s: ${label} ≥ 1,800 req/s`, measured: `${int(s.sustained)} req/s`, ok: s.sustained >= 1800 });
      rows.push({ what: `2,000 in flight at 1 s: ${label} RSS < 200 MB`, measured: `${fix(s.rss, 0)} MB`, ok: s.rss < 200 });
      if (inflight.some((r) => r.path === 'naive')) {
        const x = pairedRatio(inflight, ls, 'naive', 'sustained');
        rows.push({ what: `2,000 in flight at 1 s: ${label} ≥ 3 × naive SDK proxy`, measured: ratio(x), ok: x >= 3 });
      }
    }
  }
  return rows;
}

/** The soak report: one row per interval and the drift between the first and the last. */
export function buildSoakReport({ command, started, m, caseLabel, intervals }) {
  const out = header({ title: `lambda-sign soak (${caseLabel})`, command, m, started });
  out.push(
    '- chain: wrk → varnishd (`return (pass)`) → lambda-sign → nginx upstream (HTTP/2 + TLS); one lambda-sign process for the whole soak',
    '',
    '| interval | ends at s | req/s | p50 ms | p99 ms | CPU % | RSS MB | VmHWM MB | errors | other load % |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...intervals.map(
      (r, i) =>
        `| ${i + 1} | ${int(r.endS)} | ${int(r.rps)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${fix(r.cpuPct, 0)} | ${fix(r.rssEndMB, 0)} | ${fix(r.hwmMB, 0)} | ${r.errors} | ${fix(r.otherPct, 0)} |`,
    ),
    '',
  );
  if (intervals.length >= 2) {
    const a = intervals[0];
    const b = intervals[intervals.length - 1];
    const pct = (x, y) => `${((100 * (y - x)) / x).toFixed(1)} %`;
    out.push(
      `Drift, first → last interval: req/s ${int(a.rps)} → ${int(b.rps)} (${pct(a.rps, b.rps)}), ` +
        `RSS ${fix(a.rssEndMB, 0)} → ${fix(b.rssEndMB, 0)} MB (${pct(a.rssEndMB, b.rssEndMB)}), ` +
        `p99 ${ms(a.p99Ms)} → ${ms(b.p99Ms)} ms.`,
      '',
    );
  }
  return out.join('\n');
}
