/** Latency statistics the benches report: nearest-rank percentiles over the samples of a run. */

/** The p-th percentile (0–100) by nearest rank; NaN for no samples. */
export const pct = (xs: number[], p: number): number => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

export const median = (xs: number[]): number => pct(xs, 50);

/** n, p50, p90, p99 and max, in the samples' unit to two decimals. */
export const summary = (xs: number[]) => ({ n: xs.length, p50: +pct(xs, 50).toFixed(2), p90: +pct(xs, 90).toFixed(2), p99: +pct(xs, 99).toFixed(2), max: +pct(xs, 100).toFixed(2) });
