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

/**
 * The next tick after one that started at deadline k: k+1, or, when the tick overran, the interval `now` is in (that
 * tick starts late, at once, and spreads its scans over what is left of it): only intervals wholly missed are skipped.
 */
export function nextTick(startedAt: number, intervalMs: number, k: number, now: number): { k: number; skipped: number } {
  const due = Math.max(k + 1, Math.floor((now - startedAt) / intervalMs));
  return { k: due, skipped: due - (k + 1) };
}

/** DiscoveryBatch.intervalMs allows 1 s to 31 days. */
const clampInterval = (ms: number) => Math.min(31 * 86_400_000, Math.max(1000, ms));

/**
 * The interval the simulator declares on its discovery batches, given the periods its recent ticks held (each a
 * multiple of the interval, the current tick's expected one included) and what it declared last. None while every
 * tick keeps the interval. Behind: 1.5 × the longest recent period, rounded up to a power-of-two multiple of the
 * interval, so aging allows for a tick somewhat slower than any recent one, and the declaration (stored per source by
 * the topology service) changes seldom. Back on time after that: the interval itself, since a declaration holds until
 * another replaces it.
 */
export function declaredInterval(periods: number[], intervalMs: number, previous: number | undefined): number | undefined {
  const worst = Math.max(intervalMs, ...periods);
  if (worst <= intervalMs) return previous === undefined ? undefined : clampInterval(intervalMs);
  let m = 1;
  while (m * intervalMs < 1.5 * worst) m *= 2;
  return clampInterval(m * intervalMs);
}
