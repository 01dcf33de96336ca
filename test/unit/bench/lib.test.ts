// The benches' shared helpers (bench/lib): statistics, open-loop pacing, the alerts bench's load.
import { expect, test } from "bun:test";
import { benchEvents, buildRequests } from "../../../bench/lib/alert-load.ts";
import { paceOpenLoop } from "../../../bench/lib/pace.ts";
import { median, pct, summary } from "../../../bench/lib/stats.ts";

test("nearest-rank percentiles; NaN without samples", () => {
  const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 … 1, unsorted on purpose
  expect(pct(xs, 50)).toBe(51);
  expect(pct(xs, 99)).toBe(100);
  expect(pct(xs, 100)).toBe(100);
  expect(median([3, 1, 2])).toBe(2);
  expect(pct([], 50)).toBeNaN();
  expect(summary([1, 2, 3, 4])).toEqual({ n: 4, p50: 3, p90: 4, p99: 4, max: 4 });
});

test("open-loop pacing sends item i at i / rate seconds, every item once", async () => {
  const sentAt: number[] = [];
  const t0 = performance.now();
  await paceOpenLoop({
    total: 40,
    rate: 200,
    onDue: (due) => {
      while (sentAt.length < due) sentAt.push(performance.now() - t0);
      return sentAt.length >= 40;
    },
  });
  expect(sentAt.length).toBe(40);
  // 40 items at 200/s: the last is due at 200 ms (a 5 ms timer, and a busy machine, add a little)
  expect(sentAt[39]!).toBeGreaterThanOrEqual(190);
  expect(sentAt[39]!).toBeLessThan(2000);
});

test("alert load: every fingerprint fires once and resolves at least `hold` later; webhooks carry `group` events", () => {
  const rate = 100;
  const { events, fingerprints, firedAt } = benchEvents({ total: 1000, rate, hold: 1 });
  const fired = new Map<number, number>();
  events.forEach((k, slot) => {
    const f = k >> 1;
    if (k & 1) {
      expect(fired.has(f)).toBe(true);
      expect(slot - fired.get(f)!).toBeGreaterThanOrEqual(rate * 1);
    } else {
      expect(fired.has(f)).toBe(false);
      fired.set(f, slot);
    }
  });
  expect(fired.size).toBe(fingerprints);
  expect(firedAt[0]).toBe(0);

  const { requests } = buildRequests({ total: 1000, hosts: 10, rate, group: 25, singles: 0.2, hold: 1, t0: 0, host: "127.0.0.1:1" });
  expect(requests.reduce((n, r) => n + r.events.length, 0)).toBe(1000);
  expect(requests.filter((r) => r.kind === "generic").every((r) => r.events.length === 1)).toBe(true);
  expect(Math.max(...requests.filter((r) => r.kind === "alertmanager").map((r) => r.events.length))).toBe(25);
  // in send order: a request goes out when its last event is due
  expect(requests.every((r, i) => i === 0 || r.last >= requests[i - 1]!.last)).toBe(true);
});
