/**
 * Pacing for the simulator (pure, clock passed in): a token bucket caps discovery events per second, and each tick's
 * host scans are spread evenly across the interval instead of all landing at its start, so the topology service sees
 * a steady stream like a real fleet of agents whose clocks are not aligned.
 */

/** Tokens refill continuously at `ratePerSec` up to `burst`; a reservation larger than what is left runs into debt. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(
    readonly ratePerSec: number,
    readonly burst: number,
    now: number,
  ) {
    if (!(ratePerSec > 0)) throw new RangeError("ratePerSec must be > 0");
    this.tokens = burst;
    this.last = now;
  }

  /** Takes `n` tokens at time `at` (ms); returns when they are really available (≥ at): wait until then. */
  reserve(n: number, at: number): number {
    const t = Math.max(at, this.last);
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) * this.ratePerSec) / 1000);
    this.last = t;
    this.tokens -= n;
    return this.tokens >= 0 ? t : t + (-this.tokens * 1000) / this.ratePerSec;
  }
}

/**
 * When to send each host's scan in a tick starting at `start`: host i of n at start + i/n × interval, later if the
 * bucket says so. Times never decrease. `events[i]` is the size of host i's scan.
 */
export function planTick(events: number[], start: number, intervalMs: number, bucket: TokenBucket | null): number[] {
  const out: number[] = [];
  let prev = start;
  events.forEach((n, i) => {
    const due = Math.max(prev, start + Math.floor((i * intervalMs) / events.length));
    prev = bucket ? bucket.reserve(n, due) : due;
    out.push(prev);
  });
  return out;
}

/** The next tick's deadline after one that started at deadline k: k+1, or later when the tick overran (ticks skipped). */
export function nextTick(startedAt: number, intervalMs: number, k: number, now: number): { k: number; skipped: number } {
  const due = Math.max(k + 1, Math.ceil((now - startedAt) / intervalMs));
  return { k: due, skipped: due - (k + 1) };
}
