// The usual integration setup: a fresh CA, a signature-verifying fake Lambda, and the
// daemon in-process in front of it; created before the suite's tests, closed after.
import { test } from 'uvu';
import type { RawOptions } from '../../src/config.ts';
import { startDaemon, type TestDaemon } from './daemon.ts';
import { startFakeLambda, type FakeLambda, type FakeLambdaOptions } from './fake-lambda.ts';
import { makeTestCA, type TestCA } from './tls.ts';

export interface Stack {
  ca: TestCA;
  fake: FakeLambda;
  daemon: TestDaemon;
}

/** Registers uvu before/after hooks; the returned object is filled in before the first test. */
export function useStack(opts: { fake?: Omit<FakeLambdaOptions, 'tls'>; daemon?: RawOptions } = {}): Stack {
  const s = {} as Stack;
  test.before(async () => {
    s.ca = await makeTestCA();
    s.fake = await startFakeLambda({ tls: { cert: s.ca.cert, key: s.ca.key }, ...opts.fake });
    s.daemon = await startDaemon({ endpoint: s.fake.url, ca: s.ca.ca, options: opts.daemon });
  });
  test.after(async () => {
    await s.daemon?.close();
    await s.fake?.close();
    await s.ca?.cleanup();
  });
  return s;
}
