// CPU and memory of one process, from /proc (Linux only):
// - CPU: utime + stime (fields 14 and 15 of /proc/PID/stat, in clock ticks) before and after
//   a run; the delta over the wall time is the share of one core (100 % = one core busy).
// - Memory: VmRSS now, sampled during the run to catch the peak; VmHWM is the kernel's own
//   high-water mark since the process started.
// - Other load: the machine's busy time (/proc/stat, steal included) minus everything the
//   benchmark runs. This host is shared (other builds and tests may run on it): a run with
//   a lot of other load is a run to distrust, and the report says how much there was.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

let clkTck;
function ticksPerSecond() {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    } catch {
      clkTck = 100; // USER_HZ on every mainstream Linux architecture
    }
  }
  return clkTck;
}

/**
 * The fields of /proc/PID/stat from field 3 (state) on: f[0] is field 3, so the parent
 * (field 4) is f[1], the process group (5) f[2], utime (14) f[11] and stime (15) f[12].
 */
function statFields(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may contain spaces: split after it.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** [pid, statFields] of every process on the machine (those that exit meanwhile are skipped). */
function* processes() {
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let f;
    try {
      f = statFields(name);
    } catch {
      continue; // exited meanwhile
    }
    yield [Number(name), f];
  }
}

/** CPU seconds used so far by `pid` (all its threads). */
export function cpuSeconds(pid) {
  const f = statFields(pid);
  return (Number(f[11]) + Number(f[12])) / ticksPerSecond();
}

/** CPU seconds of the processes in these process groups, plus this process and its reaped children. */
function ownSeconds(pgids) {
  const groups = new Set(pgids);
  let total = 0;
  for (const [, f] of processes()) if (groups.has(Number(f[2]))) total += Number(f[11]) + Number(f[12]);
  // This driver, and the children it has waited for (every finished wrk): utime, stime,
  // cutime, cstime (fields 14-17).
  const f = statFields('self');
  total += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  return total / ticksPerSecond();
}

/** Busy CPU seconds of the whole machine, all cores: user, nice, system, irq, softirq, steal. */
function machineBusySeconds() {
  const [user, nice, system, , , irq, softirq, steal] = fs
    .readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return (user + nice + system + irq + softirq + (steal || 0)) / ticksPerSecond();
}

/**
 * Machine-wide TCP counters from /proc/net/netstat: retransmission timeouts (TcpExt
 * TCPTimeouts, every expiry, SYN retries and backed-off retries included) and connections
 * dropped from a full listen queue (TcpExt ListenDrops). They count events, not requests (a
 * listen drop is usually followed by a SYN timeout too), and each made something wait 200 ms
 * or more: they, not the proxy, are behind p99s of several seconds.
 */
function tcpCounters() {
  const read = (file, prefix, name) => {
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith(`${prefix}:`));
    const keys = lines[0]?.split(/\s+/) ?? [];
    const values = lines[1]?.split(/\s+/) ?? [];
    return Number(values[keys.indexOf(name)] ?? NaN);
  };
  return {
    // Retransmission timeouts. Not RetransSegs: on loopback nearly every retransmitted
    // segment is a tail-loss probe whose original had arrived (the receiver answers it with
    // a DSACK), sent because a busy receiver delayed its ACK; it delays nothing.
    timeouts: read('/proc/net/netstat', 'TcpExt', 'TCPTimeouts'),
    listenDrops: read('/proc/net/netstat', 'TcpExt', 'ListenDrops'),
  };
}

/**
 * The machine around a run, from now until stop(): CPU used by everything that is not the
 * benchmark, as a share of one core (`groups()` returns the benchmark's process groups, read
 * at both ends); the CPU seconds of the benchmark itself (every process of the chain: wrk,
 * varnishd, the paths, the upstream, this driver); and the TCP retransmission timeouts and
 * listen drops meanwhile.
 */
export function watchOthers(groups) {
  const t0 = process.hrtime.bigint();
  const busy0 = machineBusySeconds();
  const own0 = ownSeconds(groups());
  const tcp0 = tcpCounters();
  return {
    stop() {
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const chain = ownSeconds(groups()) - own0;
      const other = machineBusySeconds() - busy0 - chain;
      const tcp = tcpCounters();
      return {
        otherPct: Math.max(0, (100 * other) / wall),
        chainCpuS: chain,
        tcpTimeouts: tcp.timeouts - tcp0.timeouts,
        listenDrops: tcp.listenDrops - tcp0.listenDrops,
      };
    },
  };
}

/**
 * Waits until the machine is quiet: under `busyBelow` of its cores busy over a window of
 * `windowMs`, or `maxMs` at most. Returns {waitedMs, quiet}. The work a run starts
 * (queues in Varnish and in the path it measured) outlives wrk by up to a second; the next
 * run should not inherit it.
 */
export async function waitQuiet({ busyBelow = 0.15, windowMs = 250, maxMs = 5000 } = {}) {
  // /proc/stat's first line adds up every core of the host, whatever this process may use.
  const cores = fs.readFileSync('/proc/stat', 'utf8').split('\n').filter((l) => /^cpu\d/.test(l)).length || os.availableParallelism();
  const start = Date.now();
  for (;;) {
    const busy0 = machineBusySeconds();
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, windowMs));
    const share = (machineBusySeconds() - busy0) / (((Date.now() - t0) / 1000) * cores);
    const waitedMs = Date.now() - start;
    if (share < busyBelow) return { waitedMs, quiet: true };
    if (waitedMs >= maxMs) return { waitedMs, quiet: false };
  }
}

/** {rssMB, hwmMB} from /proc/PID/status. */
export function memory(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMB: kb('VmRSS') / 1024, hwmMB: kb('VmHWM') / 1024 };
}

/**
 * `pid` and its children: a daemon run with --workers is a primary and its cluster workers,
 * and what it costs is the sum. Found by each process's parent field, which needs no kernel
 * option (/proc/PID/task/TID/children needs CONFIG_PROC_CHILDREN).
 */
export function family(pid) {
  const pids = [pid];
  for (const [p, f] of processes()) if (Number(f[1]) === pid) pids.push(p);
  return pids;
}

const sum = (pids, f) => pids.reduce((total, p) => {
  try {
    return total + f(p);
  } catch {
    return total; // a worker that exited meanwhile
  }
}, 0);

/**
 * Watches `pid` and its children (see family) from now until stop(): returns {cpuPct,
 * rssMaxMB, rssEndMB, hwmMB}, each summed over the processes. The children are looked up
 * at the start (cluster workers are forked before the daemon is ready); stop() throws if
 * they are not the same at the end. Sampling every
 * 250 ms costs a few small /proc reads: nothing next to the processes measured.
 */
export function watch(pid, intervalMs = 250) {
  const pids = family(pid);
  const t0 = process.hrtime.bigint();
  const cpu0 = sum(pids, cpuSeconds);
  const rss = () => sum(pids, (p) => memory(p).rssMB);
  let rssMax = rss();
  const timer = setInterval(() => {
    rssMax = Math.max(rssMax, rss());
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      // A worker that died and was replaced would leave its CPU and memory out of the sums.
      const now = family(pid);
      if (now.length !== pids.length || now.some((p) => !pids.includes(p))) {
        throw new Error(`the processes of ${pid} changed during the run (a worker restarted?): ${pids.join(' ')} → ${now.join(' ')}`);
      }
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu = sum(pids, cpuSeconds) - cpu0;
      const rssEnd = rss();
      return {
        cpuPct: (100 * cpu) / wall,
        rssMaxMB: Math.max(rssMax, rssEnd),
        rssEndMB: rssEnd,
        hwmMB: sum(pids, (p) => memory(p).hwmMB),
        processes: pids.length,
      };
    },
  };
}
