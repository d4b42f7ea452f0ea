#!/usr/bin/env node
// The slow upstream for the concurrency run: a function that takes 1 s (headless rendering,
// image work). nginx cannot delay an answer without a module Debian does not install by
// default, so this is a node:http2 secure server on loopback: it reads the whole body, waits
// --delay-ms, and answers the same fixed JSON as the nginx upstream.
//
// - allowHTTP1: the nginx relay and the AWS SDK speak HTTP/1.1 (ALPN picks it).
// - maxConcurrentStreams 128, as the nginx upstream: lambda-sign's pool must open ~16
//   sessions for 2,000 streams, as it would against Lambda.
// - It runs in its own process so that its CPU is not charged to anything measured.
// - Every 250 ms it prints "served N T" (answers so far, wall-clock ms): the driver takes
//   the sustained rate from two of these lines. Varnish's own counters lag by thousands of
//   requests with this many worker threads (wthread_stats_rate), and wrk's count includes
//   the first second, in which nothing can finish.
//
//   node bench/lib/slow-upstream.mjs --cert server.pem --key server.key --delay-ms 1000
//   → prints "slow upstream listening on PORT"
import fs from 'node:fs';
import http2 from 'node:http2';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    cert: { type: 'string' },
    key: { type: 'string' },
    'delay-ms': { type: 'string', default: '1000' },
    body: { type: 'string', default: '{"statusCode":200,"body":"hello from the bench upstream"}' },
  },
});
const delayMs = Number(opts['delay-ms']);
const body = Buffer.from(opts.body);
let served = 0;
let reported = -1;
setInterval(() => {
  if (served === reported) return;
  reported = served;
  console.log(`served ${served} ${Date.now()}`);
}, 250);

const server = http2.createSecureServer({
  cert: fs.readFileSync(opts.cert),
  key: fs.readFileSync(opts.key),
  allowHTTP1: true,
  settings: { maxConcurrentStreams: 128 },
});

server.on('request', (req, res) => {
  if (req.method !== 'POST' || !/^\/2015-03-31\/functions\/[^/]+\/invocations/.test(req.url)) {
    res.writeHead(404).end();
    return;
  }
  let timer;
  // A client that gives up (wrk stopping, lambda-sign cancelling) frees its timer.
  res.on('close', () => clearTimeout(timer));
  req.on('error', () => {});
  req.resume();
  req.on('end', () => {
    timer = setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length, 'x-amz-executed-version': '1' });
      res.end(body);
      served++;
    }, delayMs);
  });
});
server.on('sessionError', () => {});
server.on('tlsClientError', () => {});

// The relay opens up to 2,000 connections at once: Node's default backlog (511) would drop
// SYNs, and each retry waits 1 s, then 2 s.
server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => console.log(`slow upstream listening on ${server.address().port}`));
process.on('SIGTERM', () => process.exit(0));
