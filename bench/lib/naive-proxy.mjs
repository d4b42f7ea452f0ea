#!/usr/bin/env node
// The naive SDK proxy: what a Node user writes without lambda-sign. An http server on a Unix
// socket that calls @aws-sdk/client-lambda's InvokeCommand per request and writes the Payload
// back. The client keeps every default of its own (NodeHttpHandler over HTTP/1.1, keep-alive,
// maxSockets 50, standard retries); only the endpoint, region and static credentials are
// set, and trust for the bench CA comes from NODE_EXTRA_CA_CERTS like lambda-sign's.
//
// One thing is not a default: the listen backlog. Varnish connects to a Unix socket without
// blocking, and once Node's default 511 connections wait to be accepted, further connects
// fail at once (EAGAIN) and Varnish answers 503. The 2,000-in-flight run would then time a
// storm of 503s instead of the SDK. The relay and lambda-sign get 4096 too (somaxconn here).
//
// Run as a child process by bench/run.mjs:
//   NODE_EXTRA_CA_CERTS=ca.pem AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… \
//     node bench/lib/naive-proxy.mjs --socket /tmp/x.sock --endpoint https://127.0.0.1:8443
import fs from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';

const { values: opts } = parseArgs({
  options: {
    socket: { type: 'string' },
    endpoint: { type: 'string' },
    region: { type: 'string', default: 'us-east-1' },
  },
});
if (!opts.socket || !opts.endpoint) {
  process.stderr.write('usage: naive-proxy.mjs --socket PATH --endpoint https://HOST:PORT [--region R]\n');
  process.exit(2);
}

const client = new LambdaClient({
  region: opts.region,
  endpoint: opts.endpoint,
  credentials: {
    accessKeyId: process.env.AWS_ACCESS_KEY_ID,
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
  },
});

const INVOKE = /^\/2015-03-31\/functions\/([^/?]+)\/invocations(?:\?|$)/;

const server = http.createServer(async (req, res) => {
  const m = INVOKE.exec(req.url ?? '');
  if (m === null || req.method !== 'POST') {
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"NotFound"}');
    return;
  }
  try {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const out = await client.send(
      new InvokeCommand({ FunctionName: decodeURIComponent(m[1]), Payload: Buffer.concat(chunks) }),
    );
    const headers = { 'content-type': 'application/json' };
    if (out.FunctionError) headers['x-amz-function-error'] = out.FunctionError;
    res.writeHead(out.StatusCode ?? 200, headers);
    res.end(out.Payload);
  } catch (err) {
    const status = err?.$metadata?.httpStatusCode ?? 502;
    if (!res.headersSent) res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: err?.name ?? 'Error' }));
  }
});

if (fs.existsSync(opts.socket)) fs.unlinkSync(opts.socket);
server.listen({ path: opts.socket, backlog: 4096 }, () => console.log(`naive proxy listening on ${opts.socket}`));
process.on('SIGTERM', () => process.exit(0));
