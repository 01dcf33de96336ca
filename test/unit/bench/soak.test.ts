// The soak's summary (bench/soak.ts): the RSS slope after the warm-up and the verdict against the stated threshold.
import { expect, test } from "bun:test";
import { judge, linearSlope, summarizeSoak, type SoakSample } from "../../../bench/soak.ts";

test("least-squares slope and its standard error; null without enough points or spread", () => {
  const exact = linearSlope([0, 1, 2, 3].map((x) => ({ x, y: 5 + 2 * x })));
  expect(exact!.slope).toBeCloseTo(2, 10);
  expect(exact!.se).toBeCloseTo(0, 10);
  const noisy = linearSlope([0, 1, 2, 3, 4, 5].map((x) => ({ x, y: x + (x % 2 ? 1 : -1) })));
  expect(noisy!.slope).toBeGreaterThan(0.5);
  expect(noisy!.se).toBeGreaterThan(0);
  expect(linearSlope([{ x: 0, y: 1 }, { x: 1, y: 2 }])).toBeNull();
  expect(linearSlope([1, 2, 3].map((y) => ({ x: 0, y })))).toBeNull();
});

test("flat, growing or inconclusive: two standard errors either side of the threshold", () => {
  expect(judge({ slope: 2, se: 1 }, 10)).toBe("flat");
  expect(judge({ slope: -30, se: 5 }, 10)).toBe("flat"); // shrinking is flat enough
  expect(judge({ slope: 40, se: 5 }, 10)).toBe("growing");
  expect(judge({ slope: 12, se: 5 }, 10)).toBe("inconclusive");
  expect(judge({ slope: 2, se: 50 }, 10)).toBe("inconclusive"); // a short run: the sawtooth swamps the slope
  expect(judge(null, 10)).toBe("inconclusive");
});

test("per service: first, after warm-up, last and peak RSS; the slope only after the warm-up; CPU over the run", () => {
  const samples: SoakSample[] = [];
  for (let t = 0; t <= 3600; t += 60) {
    // gateway climbs while warming up (10 min), then holds; topology leaks 60 MiB/h throughout
    samples.push({ t, service: "gateway", procs: 1, rssMiB: t < 600 ? 100 + t / 6 : 200, cpuS: t / 10 });
    samples.push({ t, service: "topology", procs: 1, rssMiB: 300 + (60 * t) / 3600, cpuS: t / 2 });
  }
  const [gw, topo] = summarizeSoak(samples, { warmupS: 600, flatMiBPerH: 10 });
  expect(gw).toMatchObject({ service: "gateway", rssMiB: { first: 100, afterWarmup: 200, last: 200, peak: 200 }, slopeMiBPerH: 0, verdict: "flat", cpuSeconds: 360, meanCores: 0.1 });
  expect(topo).toMatchObject({ service: "topology", slopeMiBPerH: 60, verdict: "growing", meanCores: 0.5 });
  expect(topo!.samples).toBe(61);
});
