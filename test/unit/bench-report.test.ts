// The benchmark's report: the chain column and the ceiling it prints next to the
// throughput targets (bench/lib/report.mjs), from rows shaped like the driver's.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
// @ts-expect-error: the benchmark is plain JavaScript, without types.
import { buildReport } from '../../bench/lib/report.mjs';

const m = { nproc: 2, model: 'test CPU', kernel: 'Linux test', memGiB: 1, node: 'v20', varnishd: 'varnish', nginx: 'nginx', wrk: 'wrk' };
const opts = { rounds: 2, duration: 8, warmup: 1, wrkThreads: 1, inflightDuration: 12 };
const paths = [
  { id: 'lambda-sign', label: 'lambda-sign' },
  { id: 'relay', label: 'relay (nginx)' },
];
const cases = [{ id: '256KiB-c64', label: '256 KiB, 64 conns', bodyBytes: 262144, connections: 64 }];

function row(round: number, path: string, rps: number, chainUs: number) {
  const requests = rps * 8;
  return {
    round, case: '256KiB-c64', path, rps, requests, p50Ms: 40, p99Ms: 80, errors: 0, cpuPct: 60, rssMaxMB: 100,
    otherPct: 0, tcpTimeouts: 0, listenDrops: 0, chainCpuS: (chainUs * requests) / 1e6,
  };
}

function report(runs: object[], sign?: object[]) {
  return buildReport({ command: 'test', started: new Date(0), m, opts, paths, cases, runs, sign, inflight: [], inflightPaths: paths }) as string;
}

test('the ceiling is the cores over the relay chain plus the hash, over the relay rate', () => {
  // Round 1: 2e6 / (1,000 + 250) / 1,600 = 1.00; round 2: 2e6 / (1,250 + 250) / 1,000 = 1.33.
  const runs = [row(1, 'lambda-sign', 1200, 1500), row(1, 'relay', 1600, 1000), row(2, 'lambda-sign', 800, 1800), row(2, 'relay', 1000, 1250)];
  const text = report(runs, [{ bytes: 262144, signUs: 260, smithyUs: 300, sha256Us: 250 }]);
  // The median of the two rounds' ceilings: (1.00 + 1.33) / 2.
  assert.match(text, /256KiB-c64: lambda-sign req\/s ≥ 0\.9 × relay \| 0\.78 × \(any signer's ceiling in this run: 1\.17 × ⁶\) \| \*\*FAIL\*\*/);
  // The chain column: medians of each path's µs per request.
  assert.match(text, /\| lambda-sign \| 256 KiB, 64 conns \| 1,000 \|[^\n]*\| 1,650 \| 0 \|/);
  assert.match(text, /\| relay \(nginx\) \| 256 KiB, 64 conns \| 1,300 \|[^\n]*\| 1,125 \| 0 \|/);
});

test('without signing measured in the same run, no ceiling is claimed', () => {
  const runs = [row(1, 'lambda-sign', 1200, 1500), row(1, 'relay', 1600, 1000)];
  const text = report(runs, undefined);
  assert.match(text, /256KiB-c64: lambda-sign req\/s ≥ 0\.9 × relay \| 0\.75 × \| \*\*FAIL\*\*/);
  assert.not.match(text, /ceiling in this run/);
});

test('the targets are checked for each lambda-sign path, by its label', () => {
  const both = [{ id: 'lambda-sign', label: 'lambda-sign' }, { id: 'lambda-sign-w2', label: 'lambda-sign --workers 2' }, ...paths.slice(1)];
  const runs = [row(1, 'lambda-sign', 1200, 1500), row(1, 'lambda-sign-w2', 1500, 1400), row(1, 'relay', 1600, 1000)];
  const text = buildReport({ command: 'test', started: new Date(0), m, opts, paths: both, cases, runs, inflight: [], inflightPaths: both }) as string;
  assert.match(text, /256KiB-c64: lambda-sign req\/s ≥ 0\.9 × relay \| 0\.75 × \| \*\*FAIL\*\*/);
  assert.match(text, /256KiB-c64: lambda-sign --workers 2 req\/s ≥ 0\.9 × relay \| 0\.94 × \| pass/);
  assert.match(text, /\| lambda-sign --workers 2 \| 256 KiB, 64 conns \| 1,500 \|/);
});

test.run();
