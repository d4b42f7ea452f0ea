// Starts lambda-sign in-process on a temporary Unix socket, wired to a fake Lambda.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { buildConfig, type RawOptions } from '../../src/config.ts';
import { staticCredentials, type CredentialSource } from '../../src/credentials.ts';
import { addAcceptors, DEFAULT_ACCEPTORS, listen } from '../../src/listen.ts';
import { createLogger } from '../../src/log.ts';
import type { Metrics } from '../../src/metrics.ts';
import { createServer, type LambdaSignServer } from '../../src/server.ts';
import { createFastSigner } from '../../src/fast-signer.ts';
import { createSigner } from '../../src/signer.ts';
import { createUpstream, type Upstream, type UpstreamOptions, type RetryReason } from '../../src/upstream.ts';

export const TEST_KEY = { accessKeyId: 'AKIDTEST', secretAccessKey: 'secret-test-key' };

export interface TestDaemon {
  socketPath: string;
  server: LambdaSignServer;
  upstream: Upstream;
  retries: RetryReason[];
  logs: string[];
  close(): Promise<void>;
}

export async function startDaemon(opts: {
  endpoint: string;
  ca?: string;
  options?: RawOptions;
  credentials?: CredentialSource;
  metrics?: Metrics;
  /** More upstream settings than the flags give (the HTTP/2 liveness periods). */
  upstream?: Pick<UpstreamOptions, 'pingAfterMs' | 'pingTimeoutMs' | 'stuckTimeoutMs'>;
}): Promise<TestDaemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lambda-sign-'));
  const socketPath = path.join(dir, 'd.sock');
  const config = buildConfig({ region: 'us-west-2', endpoint: opts.endpoint, socket: socketPath, ...opts.options });
  const logs: string[] = [];
  const log = createLogger(
    config.logLevel,
    new Writable({
      write(chunk, _enc, cb) {
        logs.push(...String(chunk).split('\n').filter(Boolean));
        cb();
      },
    }),
  );
  const credentials = opts.credentials ?? staticCredentials(TEST_KEY);
  const retries: RetryReason[] = [];
  const upstream = createUpstream({
    endpoint: config.endpoint,
    ca: opts.ca === undefined ? undefined : [opts.ca],
    onRetry: (r) => retries.push(r),
    ...opts.upstream,
  });
  const signer = (config.signer === 'smithy' ? createSigner : createFastSigner)({ region: config.region, credentials });
  const server = createServer({ config, signer, upstream, credentials, log, metrics: opts.metrics });
  const listening = await listen(server.listener, config);
  // As the daemon does: more listening descriptors on the same socket (listen.ts).
  await addAcceptors(server.listener, DEFAULT_ACCEPTORS - 1, (extra) => server.acceptFrom(extra));
  return {
    socketPath,
    server,
    upstream,
    retries,
    logs,
    async close() {
      await server.drain(1000);
      await upstream.close(500);
      listening.cleanup();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  json<T = any>(): T;
}

/** One HTTP/1.1 request over the daemon's Unix socket. */
export function send(
  socketPath: string,
  opts: { method?: string; path: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer; chunks?: (string | Buffer)[]; agent?: http.Agent },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath, method: opts.method ?? 'POST', path: opts.path, headers: opts.headers, agent: opts.agent ?? false },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('error', reject);
        res.on('end', () => {
          const body = Buffer.concat(parts);
          resolve({ status: res.statusCode!, headers: res.headers, body, json: () => JSON.parse(body.toString()) });
        });
      },
    );
    req.on('error', reject);
    if (opts.chunks !== undefined) {
      for (const c of opts.chunks) req.write(c);
      req.end();
    } else req.end(opts.body);
  });
}

export const invokePath = (fn: string, qualifier?: string): string =>
  `/2015-03-31/functions/${encodeURIComponent(fn)}/invocations${qualifier === undefined ? '' : `?Qualifier=${encodeURIComponent(qualifier)}`}`;
