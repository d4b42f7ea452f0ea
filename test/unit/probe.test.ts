// probe.ts: /healthz with --probe-function. The DryRun result is cached (ok for okTtl,
// failure for failTtl) and concurrent checks share one DryRun, so a Varnish probe every
// second from every child costs one invocation per few seconds.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createProbe } from '../../src/probe.ts';
import { errorResponse, ProbeFailedError, UpstreamUnavailableError } from '../../src/errors.ts';

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void } {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

/** A DryRun that answers from a script, counting calls, on a clock the test moves. */
function setup(script: (call: number) => Promise<void> | void, ttl: { okTtlMs?: number; failTtlMs?: number } = {}) {
  const clock = { t: 1_000_000 };
  const state = { calls: 0 };
  const probe = createProbe({
    dryRun: async () => script(++state.calls),
    now: () => clock.t,
    ...ttl,
  });
  return { probe, clock, state };
}

const settle = (p: Promise<void>): Promise<unknown> => p.then(() => 'ok', (e: unknown) => e);

test('a success is cached for okTtl, then checked again', async () => {
  const { probe, clock, state } = setup(() => {}, { okTtlMs: 3000 });
  await probe.check();
  assert.is(state.calls, 1);
  for (const dt of [0, 1000, 2999]) {
    clock.t = 1_000_000 + dt;
    await probe.check();
  }
  assert.is(state.calls, 1, 'no DryRun within okTtl');
  clock.t = 1_000_000 + 3000;
  await probe.check();
  assert.is(state.calls, 2, 'a DryRun once okTtl has passed');
});

test('defaults: ok cached 5 s, failure cached 2 s', async () => {
  let fail = false;
  const { probe, clock, state } = setup(() => {
    if (fail) throw new Error('denied');
  });
  await probe.check();
  clock.t += 4999;
  await probe.check();
  assert.is(state.calls, 1, 'cached for 5 s');
  clock.t += 1;
  fail = true;
  assert.instance(await settle(probe.check()), ProbeFailedError);
  assert.is(state.calls, 2);
  clock.t += 1999;
  assert.instance(await settle(probe.check()), ProbeFailedError);
  assert.is(state.calls, 2, 'failure cached for 2 s');
  clock.t += 1;
  fail = false;
  assert.is(await settle(probe.check()), 'ok');
  assert.is(state.calls, 3);
});

test('a failure is cached for failTtl with the same error, then checked again', async () => {
  let fail = true;
  const { probe, clock, state } = setup(() => {
    if (fail) throw new UpstreamUnavailableError('no route');
  }, { okTtlMs: 60_000, failTtlMs: 500 });
  const first = await settle(probe.check());
  assert.instance(first, ProbeFailedError);
  assert.is(state.calls, 1);
  clock.t += 499;
  const second = await settle(probe.check());
  assert.is(second, first, 'the cached failure is the same error');
  assert.is(state.calls, 1, 'no DryRun within failTtl');
  fail = false;
  clock.t += 1;
  assert.is(await settle(probe.check()), 'ok', 'recovers once failTtl has passed');
  assert.is(state.calls, 2);
});

test('the failure is ProbeFailed 503 with Retry-After, carrying the cause but never showing it', async () => {
  const cause = new Error('The Canonical String for this request should have been AKIDLEAK');
  const { probe } = setup(() => {
    throw cause;
  });
  const err = await settle(probe.check());
  assert.instance(err, ProbeFailedError);
  const e = err as ProbeFailedError;
  assert.is(e.code, 'ProbeFailed');
  assert.is(e.status, 503);
  assert.is(e.cause, cause);
  const out = errorResponse(e);
  assert.is(out.status, 503);
  assert.is(out.headers['x-lambda-sign-error'], 'ProbeFailed');
  assert.ok(out.headers['retry-after'] !== undefined, 'Retry-After present');
  assert.not.match(String(out.body), /Canonical|AKIDLEAK/);
});

test('a ProbeFailedError from the DryRun is passed on as it is', async () => {
  const own = new ProbeFailedError('DryRun of f answered 403 AccessDeniedException');
  const { probe } = setup(() => {
    throw own;
  });
  assert.is(await settle(probe.check()), own);
});

test('a DryRun that throws synchronously still rejects, and is tried again later', async () => {
  const clock = { t: 0 };
  let calls = 0;
  const probe = createProbe({
    dryRun: () => {
      calls++;
      if (calls === 1) throw new Error('sync');
      return Promise.resolve();
    },
    now: () => clock.t,
    failTtlMs: 10,
  });
  assert.instance(await settle(probe.check()), ProbeFailedError);
  clock.t = 10;
  assert.is(await settle(probe.check()), 'ok');
  assert.is(calls, 2);
});

test('concurrent checks share one DryRun, whether it succeeds or fails', async () => {
  for (const outcome of ['ok', 'fail'] as const) {
    const gate = deferred();
    const { probe, state } = setup(() => gate.promise, { failTtlMs: 0, okTtlMs: 0 });
    const checks = Array.from({ length: 20 }, () => settle(probe.check()));
    await new Promise((r) => setImmediate(r));
    assert.is(state.calls, 1, `${outcome}: one DryRun for 20 checks`);
    if (outcome === 'ok') gate.resolve();
    else gate.reject(new Error('denied'));
    const results = await Promise.all(checks);
    if (outcome === 'ok') assert.equal(new Set(results), new Set(['ok']));
    else {
      assert.instance(results[0], ProbeFailedError);
      assert.ok(results.every((r) => r === results[0]), 'every waiter gets the same error');
    }
    // With zero TTLs the next check is a new DryRun: the shared one is not kept forever.
    await settle(probe.check());
    assert.is(state.calls, 2, `${outcome}: the settled DryRun is not reused`);
  }
});

test.run();
