// Capped exponential backoff: the one way every reconnect and retry in gremesh waits
// (the OVSDB and OpenFlow connections, the coordinator client, Docker's event stream,
// etcd's watch, the reconcile loop). A failure doubles the wait up to a cap; a success
// starts again from the minimum; optional jitter keeps many agents from retrying in step.

export interface BackoffOptions {
  minMs: number;
  maxMs: number;
  /** ± this fraction of the wait, at random (0: none, the default; 0.2: 0.8-1.2×) */
  jitter?: number;
}

/** Pure: the wait after `cur` (the previous wait; 0 before the first), doubled and capped, with jitter. */
export function nextBackoff(cur: number, min: number, max: number, rnd = Math.random, jitter = 0.2): number {
  const n = Math.min(max, Math.max(min, cur * 2));
  return Math.round(n * (1 - jitter + 2 * jitter * rnd()));
}

/** Pure: the wait before retry number `failures` (1: the first retry waits minMs). */
export function backoffDelay(failures: number, o: BackoffOptions, rnd = Math.random): number {
  const base = Math.min(o.maxMs, o.minMs * 2 ** Math.min(Math.max(failures - 1, 0), 30));
  const j = o.jitter ?? 0;
  return Math.round(base * (1 - j + 2 * j * rnd()));
}

/** The state of one backoff: next() for the wait after a failure, reset() after a success. */
export class Backoff {
  private failed = 0;
  constructor(
    private readonly o: BackoffOptions,
    private readonly rnd: () => number = Math.random,
  ) {}

  /** one more failure: how long to wait before the next try */
  next(): number {
    this.failed++;
    return backoffDelay(this.failed, this.o, this.rnd);
  }

  /** what next() would return, without counting a failure */
  peek(): number {
    return backoffDelay(this.failed + 1, this.o, this.rnd);
  }

  /** a success: the next failure waits minMs again */
  reset(): void {
    this.failed = 0;
  }

  /** failures since the last reset */
  get failures(): number {
    return this.failed;
  }
}
