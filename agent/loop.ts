// The one loop primitive every reconciler runs on: inputs only mark it dirty; one pass
// at a time; a caller can wait for a pass that started after its change (so it saw it);
// a failed pass is retried with exponential backoff, and nothing else starts a pass
// before the backoff is over, whatever keeps marking it dirty. Like controller-runtime's
// workqueue for a single key.
import { backoffDelay } from '../common/backoff.js';
import type { Logger } from '../common/log.js';

export interface LoopOptions {
  name: string;
  log: Logger;
  /** one pass over the whole desired state */
  pass: () => Promise<void>;
  /** after a failed pass (e.g. forget what is cached as applied) */
  onError?: (e: Error) => void;
  backoffMinMs?: number;
  backoffMaxMs?: number;
}

export class Loop {
  private dirty = false;
  private running = false;
  private stopped = false;
  /** passes started so far; a waiter is served by the first pass that starts after it asked */
  private started = 0;
  private waiters: { after: number; resolve: () => void }[] = [];
  private failures = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  /** the error of the last pass, undefined if it succeeded */
  lastError: Error | undefined;

  constructor(private readonly o: LoopOptions) {}

  markDirty(_reason: string): void {
    this.dirty = true;
    if (!this.running && !this.stopped && !this.retryTimer) void this.run();
  }

  /** resolves once a pass that started after this call has finished (check lastError for how it went) */
  markDirtyAndWait(reason: string): Promise<void> {
    const p = new Promise<void>((resolve) => this.waiters.push({ after: this.started, resolve }));
    this.markDirty(reason);
    return p;
  }

  /** resolves after the pass running now (it saw every change made before it started) or, when idle, the next one */
  nextPass(): Promise<void> {
    return new Promise((resolve) =>
      this.waiters.push({ after: this.running ? this.started - 1 : this.started, resolve }),
    );
  }

  /** consecutive failed passes */
  get failing(): number {
    return this.failures;
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const w of this.waiters.splice(0)) w.resolve();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      while (this.dirty && !this.stopped) {
        this.dirty = false;
        const n = ++this.started;
        try {
          await this.o.pass();
          this.failures = 0;
          this.lastError = undefined;
        } catch (e) {
          this.failures++;
          this.lastError = e as Error;
          this.o.onError?.(e as Error);
          const wait = backoffDelay(this.failures, {
            minMs: this.o.backoffMinMs ?? 100,
            maxMs: this.o.backoffMaxMs ?? 5000,
          });
          this.o.log.warn(
            { err: (e as Error).message, retryMs: wait, failures: this.failures },
            `${this.o.name} pass failed`,
          );
          this.dirty = true;
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            this.markDirty('retry');
          }, wait);
        }
        const done = this.waiters.filter((w) => w.after < n);
        this.waiters = this.waiters.filter((w) => w.after >= n);
        for (const w of done) w.resolve();
        if (this.retryTimer) break;
      }
    } finally {
      this.running = false;
    }
  }
}
