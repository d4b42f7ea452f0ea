#!/usr/bin/env node
// Micro-benchmark of signing alone: what lambda-sign's signers (dist/fast-signer.js, the
// daemon's default, and dist/signer.js, smithy) cost per request, without sockets, Varnish or TLS. For scale it also times
// the one part no implementation can skip: SHA-256 of the payload (SigV4 signs its hash).
//
// Each measurement awaits sign() in a loop, as the daemon does once per request, after a
// warm-up long enough for V8 to optimise; the reported figure is the median of several
// batches. Run by bench/run.mjs in its own process (nothing else running), or by hand:
//   npm run build && node bench/lib/sign-micro.mjs           (prints a JSON line)
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const DIST = new URL('../../dist/', import.meta.url);
const { createSigner } = await import(new URL('signer.js', DIST).href);
const { createFastSigner } = await import(new URL('fast-signer.js', DIST).href);
const { staticCredentials } = await import(new URL('credentials.js', DIST).href);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function timeIt(fn, { warmup, iterations, batches }) {
  for (let i = 0; i < warmup; i++) await fn();
  const perOpUs = [];
  for (let b = 0; b < batches; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) await fn();
    perOpUs.push(Number(process.hrtime.bigint() - t0) / 1000 / iterations);
  }
  return median(perOpUs);
}

/**
 * Returns [{bytes, signUs, smithyUs, sha256Us}] for each body size: the daemon's default
 * (fast) signer, @smithy/signature-v4 (--signer smithy), and the body hash alone.
 * `scale` shortens it (--quick).
 */
export async function signMicro({ sizes = [64, 256 * 1024], scale = 1 } = {}) {
  const opts = {
    region: 'us-east-1',
    credentials: staticCredentials({ accessKeyId: 'AKIDBENCHEXAMPLE', secretAccessKey: 'bench/secret/key/EXAMPLEKEY' }),
  };
  const signer = createFastSigner(opts);
  const smithy = createSigner(opts);
  const out = [];
  for (const bytes of sizes) {
    const body = Buffer.alloc(bytes, 'x');
    // The headers lambda-sign builds for an Invoke: the allowlisted ones plus host.
    const input = {
      method: 'POST',
      path: '/2015-03-31/functions/bench/invocations',
      headers: {
        host: 'lambda.us-east-1.amazonaws.com',
        'content-type': 'application/json',
        'content-length': String(bytes),
      },
      body,
    };
    // Fewer iterations for big bodies: each one hashes 256 KiB.
    const small = bytes <= 4096;
    const plan = {
      warmup: Math.ceil((small ? 20_000 : 1_000) * scale),
      iterations: Math.ceil((small ? 20_000 : 1_000) * scale),
      batches: 5,
    };
    const signUs = await timeIt(() => signer.sign(input), plan);
    const smithyUs = await timeIt(() => smithy.sign(input), plan);
    const sha256Us = await timeIt(() => createHash('sha256').update(body).digest('hex'), plan);
    out.push({ bytes, signUs, smithyUs, sha256Us });
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
  const results = await signMicro({ scale: values.quick ? 0.1 : 1 });
  console.log(`SIGN_JSON ${JSON.stringify(results)}`);
}
