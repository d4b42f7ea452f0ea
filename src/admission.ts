// Overload protection: a bound on invocations in flight and on bytes held in request
// buffers. Past either, the answer is an immediate 503 Overloaded with Retry-After, so
// Varnish can retry elsewhere or serve stale instead of queueing without bound.
import { OverloadedError } from './errors.js';

export interface Admission {
  /** Takes a slot or throws OverloadedError. */
  enter(): void;
  leave(): void;
  /** A per-request account of buffered bytes; release() returns them all. */
  hold(): Hold;
  readonly inflight: number;
  readonly buffered: number;
}

export interface Hold {
  /** Counts more bytes as held, or throws OverloadedError (nothing is counted then). */
  take(bytes: number): void;
  release(): void;
}

export function createAdmission(maxInflight: number, maxBuffered: number): Admission {
  let inflight = 0;
  let buffered = 0;
  return {
    enter() {
      if (inflight >= maxInflight) throw new OverloadedError(`more than --max-inflight (${maxInflight}) invocations in flight`);
      inflight++;
    },
    leave() {
      inflight--;
    },
    hold() {
      let mine = 0;
      return {
        take(bytes) {
          if (buffered + bytes > maxBuffered) {
            throw new OverloadedError(`request buffers would pass --max-buffered (${maxBuffered} bytes)`);
          }
          buffered += bytes;
          mine += bytes;
        },
        release() {
          buffered -= mine;
          mine = 0;
        },
      };
    },
    get inflight() {
      return inflight;
    },
    get buffered() {
      return buffered;
    },
  };
}
