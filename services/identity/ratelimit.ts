/**
 * Wrong passwords, limited per login and per client address: after `max` failures within `windowMs` the key is
 * refused until the oldest failure leaves the window. In memory: each gateway counts its own (behind a load balancer
 * an attacker gets at most `max` tries per gateway and window).
 */
export interface LimitRule {
  max: number;
  windowMs: number;
}

export class FailureLimiter {
  private failures = new Map<string, number[]>();
  constructor(
    private readonly rule: LimitRule,
    private readonly now: () => number = Date.now,
  ) {}

  private recent(key: string): number[] {
    const t = this.now();
    const list = (this.failures.get(key) ?? []).filter((at) => t - at < this.rule.windowMs);
    if (list.length) this.failures.set(key, list);
    else this.failures.delete(key);
    return list;
  }

  /** ms until `key` may try again; 0 when it may now */
  retryAfterMs(key: string): number {
    const list = this.recent(key);
    if (list.length < this.rule.max) return 0;
    return Math.max(1, list[list.length - this.rule.max]! + this.rule.windowMs - this.now());
  }

  fail(key: string): void {
    const list = this.recent(key);
    list.push(this.now());
    this.failures.set(key, list.slice(-this.rule.max));
  }

  clear(key: string): void {
    this.failures.delete(key);
  }
}
