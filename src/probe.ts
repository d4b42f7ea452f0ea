// /healthz with --probe-function: a DryRun invocation proves credentials, permission
// (lambda:InvokeFunction) and reachability without running the function or paying for
// it. Varnish probes every few seconds from every child; answers are cached so that
// costs one DryRun per `okTtlMs` at most, and concurrent probes share one.
import { ProbeFailedError } from './errors.js';

export interface Probe {
  check(): Promise<void>;
}

export function createProbe(opts: {
  /** Resolves when the DryRun succeeded; rejects with the reason otherwise. */
  dryRun: () => Promise<void>;
  okTtlMs?: number;
  failTtlMs?: number;
  now?: () => number;
}): Probe {
  const okTtl = opts.okTtlMs ?? 5000;
  const failTtl = opts.failTtlMs ?? 2000;
  const now = opts.now ?? Date.now;
  let last: { error?: ProbeFailedError; until: number } | undefined;
  let pending: Promise<void> | undefined;

  const run = async (): Promise<void> => {
    await undefined;
    try {
      await opts.dryRun();
      last = { until: now() + okTtl };
    } catch (cause) {
      const error =
        cause instanceof ProbeFailedError ? cause : new ProbeFailedError('the probe function\'s DryRun invocation failed', { cause });
      last = { error, until: now() + failTtl };
      throw error;
    } finally {
      pending = undefined;
    }
  };

  return {
    check() {
      if (last !== undefined && now() < last.until) return last.error === undefined ? Promise.resolve() : Promise.reject(last.error);
      return (pending ??= run());
    },
  };
}
