#!/usr/bin/env -S node --max-semi-space-size=8 --no-memory-reducer --initial-heap-size=96
// The V8 flags, for every way the installed daemon starts (systemd, a shell, npx); the
// benchmark reads them from this line.
// --max-semi-space-size=8: young-generation semi-spaces of at most 8 MB instead of 16. With
//   2,000 invocations in flight each request's objects outlive a scavenge anyway; the larger
//   space only held ~15 MB more, at the same CPU per request at 64 and 512 connections.
//   4 MB cost 15 us more per request at 512 connections.
// --no-memory-reducer: after a quiet minute V8 shrinks the heap, and the traffic that comes
//   back pays for it with three times the major GCs until it has grown again: 105 -> 123-135
//   us of CPU per request in the runs after 45 s idle, against 98-112 -> 102-122 with the
//   flag. A server's heap may stay at the size its load needs (~20 MB more when idle).
// --initial-heap-size=96: no full GC while the old generation is below ~70 MB. V8 counts
//   ArrayBuffer bytes allocated since the last full GC against that limit, so with large
//   bodies (256 KiB at 1,100 req/s) it ran a full GC every ~80 ms to free bodies a young
//   collection would have freed: 690 -> 595 us of CPU per request, 64 B requests unchanged,
//   RSS at 2,000 in flight 183 MB (bench/ab.mjs, npm run bench -- --only inflight).
//
// The only module that touches process.*: flags and environment in, signals, exit.
import cluster from 'node:cluster';
import fs from 'node:fs';
import os from 'node:os';
import tls from 'node:tls';
import client from 'prom-client';
import { Command, CommanderError, Option } from 'commander';
import { buildConfig, ConfigError, DEFAULTS, LOG_LEVELS, type Config, type RawOptions } from './config.js';
import { createCredentials, defaultChain } from './credentials.js';
import { addAcceptors, DEFAULT_ACCEPTORS, listen } from './listen.js';
import { createLogger, endLog, errorSummary } from './log.js';
import { createMetrics, serveMetrics, type MetricsListener } from './metrics.js';
import { createServer } from './server.js';
import { createFastSigner } from './fast-signer.js';
import { createSigner } from './signer.js';
import { createUpstream } from './upstream.js';
import { runPrimary, STOP_SIGNALS, WORKER_FD_ENV } from './workers.js';

const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

function program(): Command {
  return new Command('lambda-sign')
    .description('Signs Varnish\'s Lambda Invoke requests with AWS SigV4 and streams them to Lambda over HTTP/2.')
    .version(pkg.version)
    .option('--region <region>', 'AWS region, required (env AWS_REGION, AWS_DEFAULT_REGION)')
    .option('--socket <path>', 'Unix socket to listen on; ignored under systemd socket activation', DEFAULTS.socket)
    .option('--socket-mode <octal>', 'permissions of the socket file', DEFAULTS.socketMode)
    .option(
      '--endpoint <url>',
      'Lambda endpoint (env AWS_ENDPOINT_URL_LAMBDA, AWS_ENDPOINT_URL; default https://lambda.<region>.amazonaws.com)',
    )
    .option(
      '--allow-function <glob>',
      'allow only functions whose bare name matches; repeatable (default: every function)',
      (value: string, prev: string[] = []) => [...prev, value],
    )
    .option('--max-body <bytes>', 'largest request body accepted (413 above it)', DEFAULTS.maxBody)
    .option('--timeout <seconds>', 'time limit for a complete answer from Lambda (504 after it)', DEFAULTS.timeout)
    .option('--drain-timeout <seconds>', 'on SIGTERM, how long in-flight invocations may take to finish', DEFAULTS.drainTimeout)
    .option('--max-inflight <n>', 'invocations in flight before new ones get 503 Overloaded', DEFAULTS.maxInflight)
    .option('--max-buffered <bytes>', 'bytes held in request and answer buffers before 503 Overloaded', DEFAULTS.maxBuffered)
    .option('--probe-function <name>', 'make /healthz also check this function with a DryRun invocation, cached 5 s (default: off, /healthz stays local)')
    .option('--metrics <host:port|path>', 'serve Prometheus metrics at GET /metrics on this TCP address or Unix socket (default: off)')
    .addOption(
      new Option('--signer <kind>', 'SigV4 implementation: fast (proven identical to smithy) or smithy for every request')
        .choices(['fast', 'smithy'])
        .default(DEFAULTS.signer),
    )
    .option('--workers <n|auto>', 'processes serving the socket; auto: half the CPUs (1 on 2 CPUs), at most 16', DEFAULTS.workers)
    .option('--profile <name>', 'AWS shared-config profile for credentials (env AWS_PROFILE)')
    .option('--ca-file <path>', 'extra PEM certificates to trust for the endpoint (also: NODE_EXTRA_CA_CERTS)')
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default(DEFAULTS.logLevel))
    .addHelpText(
      'after',
      '\nCredentials come from the AWS default chain: environment, SSO, web identity, shared files,\n' +
        'ECS container credentials, EC2 instance metadata. Error codes and VCL: see README.md.',
    );
}

/** systemd socket activation (sd_listen_fds(3)): our PID and exactly one descriptor, fd 3. */
function activatedFd(): number | undefined {
  if (process.env.LISTEN_PID !== String(process.pid) || process.env.LISTEN_FDS === undefined) return undefined;
  const count = Number(process.env.LISTEN_FDS);
  delete process.env.LISTEN_PID;
  delete process.env.LISTEN_FDS;
  delete process.env.LISTEN_FDNAMES;
  if (count !== 1) throw new ConfigError('LISTEN_FDS', `expected exactly one socket from systemd, got ${count}`);
  return 3;
}

async function main(): Promise<void> {
  const cmd = program();
  // Commander exits 1 for a flag it refuses (an unknown option, a choice not offered);
  // buildConfig's refusals exit 2. One status for every bad command line: 2.
  cmd.exitOverride();
  try {
    cmd.parse(process.argv);
  } catch (err) {
    if (!(err instanceof CommanderError)) throw err;
    process.exit(err.exitCode === 0 ? 0 : 2);
  }
  let config: Config;
  try {
    // A cluster worker learns systemd's descriptor from the primary, not from LISTEN_*.
    const fd = cluster.isWorker ? (process.env[WORKER_FD_ENV] ? Number(process.env[WORKER_FD_ENV]) : undefined) : activatedFd();
    config = buildConfig(cmd.opts<RawOptions>(), process.env, fd, os.availableParallelism());
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`lambda-sign: ${err.message}\n`);
    process.exit(2);
  }

  const log = createLogger(config.logLevel);
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception');
    log.flush();
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    log.fatal({ err }, 'unhandled rejection');
    log.flush();
    process.exit(1);
  });

  if (config.workers > 1 && cluster.isPrimary) {
    return runPrimary(config, log, (code) => process.exit(code));
  }
  const worker = cluster.isWorker;

  let ca: string[] | undefined;
  if (config.caFile !== undefined) {
    try {
      ca = [...tls.rootCertificates, fs.readFileSync(config.caFile, 'utf8')];
    } catch (err) {
      process.stderr.write(`lambda-sign: --ca-file: ${errorSummary(err).message}\n`);
      process.exit(2);
    }
  }

  let sessions = (): number => 0;
  let waiting = (): number => 0;
  // Without --metrics nobody reads them: no counting on the hot path (about 1 % of the CPU).
  const metrics = config.metrics === undefined ? undefined : createMetrics({ sessions: () => sessions(), waiting: () => waiting() });
  let resolvedOnce = false;
  const chain = () => defaultChain({ profile: config.profile, region: config.region });
  const credentials = createCredentials(chain(), {
    renew: chain,
    onRefresh(ok, err) {
      metrics?.credentialRefresh(ok);
      if (!ok && resolvedOnce) log.warn({ err }, 'credential refresh failed; the current credentials serve until they expire');
      else if (ok && resolvedOnce) log.debug('credentials refreshed');
      if (ok) resolvedOnce = true;
    },
  });
  const signer = (config.signer === 'smithy' ? createSigner : createFastSigner)({ region: config.region, credentials });
  const upstream = createUpstream({
    endpoint: config.endpoint,
    ca,
    onRetry: (reason) => {
      metrics?.retry(reason);
      log.debug({ reason }, 'retrying unprocessed request');
    },
  });
  sessions = () => upstream.sessions;
  const server = createServer({ config, signer, upstream, credentials, log, metrics });
  waiting = () => server.waiting;
  let metricsListener: MetricsListener | undefined;
  // In a cluster the primary serves the aggregate of every worker's registry.
  if (metrics !== undefined && worker) {
    client.AggregatorRegistry.setRegistries([metrics.registry]);
    // prom-client installs its worker-side IPC handler when an AggregatorRegistry is made.
    new client.AggregatorRegistry();
  } else if (metrics !== undefined && config.metrics !== undefined) {
    try {
      metricsListener = await serveMetrics(metrics.registry, config.metrics);
    } catch (err) {
      log.fatal({ err }, 'cannot listen for --metrics');
      log.flush();
      process.exit(1);
    }
  }

  // Handlers go in before listening, so a SIGTERM right after start-up still drains and
  // removes the socket instead of killing node outright.
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) {
      // A worker hears SIGTERM from the primary and, under systemd, from systemd too: the
      // primary owns escalation (SIGKILL after the drain deadline), so keep draining.
      if (worker) return;
      log.warn({ signal }, 'second signal: exiting now');
      log.flush();
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, inflight: server.inflight }, 'draining');
    await server.drain(config.drainTimeoutMs);
    await upstream.close(2000);
    await metricsListener?.close();
    listening?.cleanup();
    log.info('stopped');
    endLog(log, () => process.exit(0));
  };
  // SIGHUP too (the terminal closed): a drain, never the default's death mid-request.
  for (const signal of STOP_SIGNALS) process.on(signal, () => void stop(signal));

  let listening: Awaited<ReturnType<typeof listen>> | undefined;
  try {
    listening = await listen(server.listener, { ...config, shared: worker });
  } catch (err) {
    log.fatal({ err }, 'cannot listen');
    log.flush();
    process.exit(1);
  }
  // Each process that listens (the only one, or each cluster worker) polls several
  // duplicates of the listening descriptor, to accept more than one connection a turn.
  await addAcceptors(server.listener, DEFAULT_ACCEPTORS - 1, (extra) => server.acceptFrom(extra)).catch((err: unknown) =>
    log.warn({ err }, 'could not duplicate the listening socket; accepting one connection per event-loop turn'),
  );
  log.info(
    {
      version: pkg.version,
      socket: config.listenFd === undefined ? config.socketPath : `fd:${config.listenFd} (systemd)`,
      endpoint: config.endpoint.origin,
      region: config.region,
      allow: config.allowFunctions.length === 0 ? '*' : config.allowFunctions,
      maxInflight: config.maxInflight,
      metrics: metricsListener?.address,
      probe: config.probeFunction,
    },
    'listening',
  );
  if (config.allowFunctions.length === 0) {
    log.warn('no --allow-function given: every function these credentials can invoke is reachable through the socket');
  }
  // Checked once so that a misconfiguration shows at start; the daemon runs either way
  // (an instance role may appear later) and /healthz reports the state.
  credentials.get().then(
    () => log.info('credentials resolved'),
    (err) => log.warn({ err }, 'credentials unavailable; invocations answer 503 until they resolve'),
  );

}

main().catch((err) => {
  process.stderr.write(`lambda-sign: ${errorSummary(err).message}\n`);
  process.exit(1);
});
