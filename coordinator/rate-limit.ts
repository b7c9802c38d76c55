// Per-key token buckets: how often one host may call (ReportStatus).

export const REPORT_RATE = { perSecond: 10, burst: 50 } as const;

export class RateLimiter {
  private buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly rate: { perSecond: number; burst: number },
    private readonly now: () => number = Date.now,
  ) {}

  /** true if key may make one more call now */
  take(key: string): boolean {
    const t = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.rate.burst, at: t };
    b.tokens = Math.min(this.rate.burst, b.tokens + ((t - b.at) / 1000) * this.rate.perSecond);
    b.at = t;
    const ok = b.tokens >= 1;
    if (ok) b.tokens -= 1;
    this.buckets.set(key, b);
    if (this.buckets.size > 100_000) this.buckets.clear();
    return ok;
  }
}
