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

/** Something that counts buffered bytes, or refuses them by throwing (OverloadedError). */
export interface Account {
  take(bytes: number): void;
}

/**
 * One request's share of --max-buffered. A class, not a pair of closures: a hold lives as
 * long as its invocation, and at thousands in flight every object kept across the wait is
 * copied by each young-generation collection.
 */
export class Hold implements Account {
  private mine = 0;
  constructor(private readonly pool: Pool) {}

  /** Counts more bytes as held, or throws OverloadedError (nothing is counted then). */
  take(bytes: number): void {
    const pool = this.pool;
    if (pool.buffered + bytes > pool.maxBuffered) {
      throw new OverloadedError(`request buffers would pass --max-buffered (${pool.maxBuffered} bytes)`);
    }
    pool.buffered += bytes;
    this.mine += bytes;
  }

  release(): void {
    this.pool.buffered -= this.mine;
    this.mine = 0;
  }
}

class Pool implements Admission {
  inflight = 0;
  buffered = 0;
  constructor(
    readonly maxInflight: number,
    readonly maxBuffered: number,
  ) {}

  enter(): void {
    if (this.inflight >= this.maxInflight) {
      throw new OverloadedError(`more than --max-inflight (${this.maxInflight}) invocations in flight`);
    }
    this.inflight++;
  }

  leave(): void {
    this.inflight--;
  }

  hold(): Hold {
    return new Hold(this);
  }
}

export function createAdmission(maxInflight: number, maxBuffered: number): Admission {
  return new Pool(maxInflight, maxBuffered);
}
