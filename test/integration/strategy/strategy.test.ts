/** Placement strategy: the shipped JSON Schema + cross-checks (errors with JSON paths), and pure placement per pick and redundancy. */
import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { place, poolOf, type Placement, type WorkerInfo } from "../../../pipelines/strategy/place.ts";
import { checkStrategy, checkStrategyText, standbyCount, type Strategy } from "../../../pipelines/strategy/schema.ts";
import { runStrategyCheck } from "../../../cli/commands/strategy.ts";
import { tempDir } from "../../helpers/tmp.ts";

const ROOT = join(import.meta.dir, "../../..");
const pool = (name: string, site: string, cost: number, capacity = 10, labels?: Record<string, string>) => ({ name, site, provider: "p", cost, capacity, ...(labels ? { labels } : {}) });
const worker = (id: string, pool: string, types = ["net"]): WorkerInfo => ({ id, types, pool, labels: {} });
const req = (job: string, workerType = "net") => ({ job, workerType });

function strategy(over: Partial<Strategy> = {}): Strategy {
  return { version: 1, pools: [pool("a", "s1", 3), pool("b", "s2", 1), pool("c", "s3", 2)], ...over };
}
const byId = (ps: Placement[], job: string) => ps.find((p) => p.job === job)!;
const poolOfId = (s: Strategy, ws: WorkerInfo[], id: string) => poolOf(s, ws.find((w) => w.id === id)!)!.name;

describe("strategy file validation", () => {
  test("the shipped example is valid", () => {
    const r = checkStrategyText(readFileSync(join(ROOT, "deploy/strategy.example.json"), "utf8"));
    expect(r.ok).toBe(true);
  });

  test("every error is reported with its JSON path", () => {
    const r = checkStrategy({
      version: 2,
      pick: "fastest",
      redundancy: "3:1",
      pools: [{ name: "a", site: "x", cost: -1, capacity: 1.5, color: "red" }, pool("a", "y", 1)],
      jobs: { "bad name": {}, scan: { pools: ["nope"], count: 0 } },
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const lines = r.errors.map((e) => `${e.path} ${e.message}`);
    expect(lines).toContain("/version must be 1");
    expect(lines.find((l) => l.startsWith("/pick must be one of"))).toBeDefined();
    expect(lines.find((l) => l.startsWith("/redundancy must be \"1:1\", \"2:1\" or \"+N\""))).toBeDefined();
    expect(lines).toContain("/pools/0/provider is required");
    expect(lines).toContain("/pools/0/color is not a known property");
    expect(lines).toContain("/pools/0/cost must be >= 0");
    expect(lines).toContain("/pools/0/capacity must be integer");
    expect(lines).toContain("/pools/1/name duplicate pool name \"a\" (first at /pools/0)");
    expect(lines.find((l) => l.startsWith("/jobs/bad name is not a valid job name"))).toBeDefined();
    expect(lines).toContain("/jobs/scan/pools/0 unknown pool \"nope\" (pools: a)");
    expect(lines).toContain("/jobs/scan/count must be >= 1");
  });

  test("not JSON, missing pools, 1:1 with one pool (a warning, not an error)", () => {
    const r1 = checkStrategyText("{ version: 1");
    expect(r1.ok).toBe(false);
    if (!r1.ok) expect(r1.errors[0]!.message).toStartWith("not JSON");
    const r2 = checkStrategy({ version: 1 });
    expect(!r2.ok && r2.errors.map((e) => e.path)).toEqual(["/pools"]);
    const r3 = checkStrategy({ version: 1, redundancy: "1:1", pools: [pool("only", "s", 1)] });
    expect(r3.ok).toBe(true);
    if (r3.ok) expect(r3.warnings[0]!.path).toBe("/redundancy");
  });

  test("orrery strategy check: exit 1 and every error with its path; exit 0 and a summary when valid", () => {
    const t = tempDir();
    try {
      const bad = join(t.dir, "bad.json");
      writeFileSync(bad, JSON.stringify({ version: 1, pools: [{ name: "a", site: "s", provider: "p", cost: 1, capacity: 0 }], jobs: { x: { pick: "fast", pools: ["b"] } } }));
      const out: string[] = [];
      const err: string[] = [];
      const io = { out: (s: string) => out.push(s), err: (s: string) => err.push(s) };
      expect(runStrategyCheck(bad, io)).toBe(1);
      expect(err).toEqual([
        `${bad}: /pools/0/capacity: must be >= 1`,
        `${bad}: /jobs/x/pick: must be one of "first", "random", "cheapest", "priciest", "least-loaded"`,
        `${bad}: /jobs/x/pools/0: unknown pool "b" (pools: a)`,
        `${bad}: 3 error(s)`,
      ]);
      out.length = 0;
      expect(runStrategyCheck(join(ROOT, "deploy/strategy.example.json"), io)).toBe(0);
      expect(out[0]).toContain("valid");
      expect(out[0]).toContain("pool aws-eu: site eu-west-1");
    } finally {
      t.cleanup();
    }
  });

  test("the CLI command exits 1 on a bad file (real process)", async () => {
    const t = tempDir();
    try {
      const bad = join(t.dir, "bad.json");
      writeFileSync(bad, JSON.stringify({ version: 1, pools: [] }));
      const p = Bun.spawn([process.execPath, join(ROOT, "cli/commands/strategy.ts"), "check", bad], { stdout: "pipe", stderr: "pipe" });
      expect(await p.exited).toBe(1);
      expect(await new Response(p.stderr).text()).toContain("/pools: must NOT have fewer than 1 items");
      const ok = Bun.spawn([process.execPath, join(ROOT, "cli/commands/strategy.ts"), "check", join(ROOT, "deploy/strategy.example.json")], { stdout: "pipe", stderr: "pipe" });
      expect(await ok.exited).toBe(0);
      expect(await new Response(ok.stdout).text()).toContain("3 pool(s)");
    } finally {
      t.cleanup();
    }
  });
});

describe("placement: pick modes", () => {
  const ws = [worker("a1", "a"), worker("a2", "a"), worker("b1", "b"), worker("b2", "b"), worker("c1", "c")];

  test("first: pools in file order, then worker id", () => {
    const ps = place({ strategy: strategy({ pick: "first" }), workers: ws, requests: [req("j1"), req("j2")] });
    expect(byId(ps, "j1").active).toEqual(["a1"]);
    expect(byId(ps, "j2").active).toEqual(["a1"]); // capacity 10: first stays first
  });

  test("cheapest and priciest by pool cost, ties by load then id", () => {
    const cheap = place({ strategy: strategy({ pick: "cheapest" }), workers: ws, requests: [req("j1"), req("j2"), req("j3")] });
    expect(cheap.map((p) => p.active[0])).toEqual(["b1", "b2", "b1"]);
    const pricey = place({ strategy: strategy({ pick: "priciest" }), workers: ws, requests: [req("j1"), req("j2")] });
    expect(pricey.map((p) => p.active[0])).toEqual(["a1", "a2"]);
  });

  test("least-loaded spreads over all workers", () => {
    const ps = place({ strategy: strategy({ pick: "least-loaded" }), workers: ws, requests: ["j1", "j2", "j3", "j4", "j5", "j6"].map((j) => req(j)) });
    const counts = new Map<string, number>();
    for (const p of ps) counts.set(p.active[0]!, (counts.get(p.active[0]!) ?? 0) + 1);
    expect([...counts.keys()].sort()).toEqual(["a1", "a2", "b1", "b2", "c1"]);
    expect(Math.max(...counts.values()) - Math.min(...counts.values())).toBeLessThanOrEqual(1);
  });

  test("random uses the injected source over the eligible workers (sorted by id)", () => {
    const seq = [0.99, 0.0, 0.5];
    let i = 0;
    const ps = place({ strategy: strategy({ pick: "random" }), workers: ws, requests: [req("j1"), req("j2"), req("j3")], random: () => seq[i++]! });
    expect(ps.map((p) => p.active[0])).toEqual(["c1", "a1", "b1"]);
  });

  test("only live workers of the job's type, in allowed pools, below capacity", () => {
    const s = strategy({ pick: "first", pools: [pool("a", "s1", 1, 1), pool("b", "s2", 1, 1)], jobs: { j3: { pools: ["b"] } } });
    const ps = place({ strategy: s, workers: [worker("a1", "a"), worker("b1", "b"), worker("x1", "a", ["import"])], requests: [req("j1"), req("j2"), req("j3")] });
    expect(byId(ps, "j1").active).toEqual(["a1"]);
    expect(byId(ps, "j2").active).toEqual(["b1"]);
    expect(byId(ps, "j3").active).toEqual([]);
    expect(byId(ps, "j3").degraded).toContain("no live worker with room (worker type net, pools b)");
  });

  test("a schedule is placed under its own name; the job's rule applies when none is named like the schedule", () => {
    const s = strategy({ pick: "first", jobs: { "tcp-scan": { pools: ["c"], count: 1 }, "office-scan": { pools: ["b"] } } });
    const ps = place({
      strategy: s,
      workers: ws,
      requests: [
        { job: "dmz-scan", workerType: "net", rule: "tcp-scan" },
        { job: "office-scan", workerType: "net", rule: "tcp-scan" },
        { job: "tcp-scan", workerType: "net" },
        { job: "other", workerType: "net", rule: "nosuch" },
      ],
    });
    expect(byId(ps, "dmz-scan").active).toEqual(["c1"]); // the tcp-scan rule
    expect(byId(ps, "office-scan").active).toEqual(["b1"]); // its own rule wins
    expect(byId(ps, "tcp-scan").active).toEqual(["c1"]);
    expect(byId(ps, "other").active).toEqual(["a1"]); // no rule: the defaults
    expect(ps.every((p) => !("rule" in p))).toBe(true);
  });

  test("pool membership by name or by labels", () => {
    const s = strategy({ pools: [pool("aws", "eu", 1, 5, { cloud: "aws" }), pool("dc", "fra", 1, 5)] });
    expect(poolOf(s, { pool: "", labels: { cloud: "aws", x: "y" } })?.name).toBe("aws");
    expect(poolOf(s, { pool: "dc", labels: {} })?.name).toBe("dc");
    expect(poolOf(s, { pool: "", labels: { cloud: "gcp" } })).toBeUndefined();
  });
});

describe("placement: redundancy", () => {
  const ws = [worker("a1", "a"), worker("a2", "a"), worker("b1", "b"), worker("b2", "b"), worker("c1", "c")];

  test("standby counts: 1:1 one per active, 2:1 one per two, +N N", () => {
    expect([standbyCount("1:1", 3), standbyCount("2:1", 3), standbyCount("2:1", 4), standbyCount("+2", 3), standbyCount("+0", 3)]).toEqual([3, 2, 2, 2, 0]);
  });

  test("1:1: every active has a standby in a different pool (and site)", () => {
    const s = strategy({ pick: "first", redundancy: "1:1", jobs: { j: { count: 2 } } });
    const p = byId(place({ strategy: s, workers: ws, requests: [req("j")] }), "j");
    expect(p.active).toEqual(["a1", "a2"]);
    expect(p.standby.length).toBe(2);
    for (const [i, sb] of p.standby.entries()) expect(poolOfId(s, ws, sb)).not.toBe(poolOfId(s, ws, p.active[i]!));
    expect(p.degraded).toBeNull();
  });

  test("2:1: one standby per two actives, outside both actives' pools", () => {
    const s = strategy({ pick: "first", redundancy: "2:1", jobs: { j: { count: 3 } } });
    const p = byId(place({ strategy: s, workers: ws, requests: [req("j")] }), "j");
    expect(p.active).toEqual(["a1", "a2", "b1"]);
    expect(p.standby.length).toBe(2);
    expect(poolOfId(s, ws, p.standby[0]!)).not.toBe("a"); // covers a1, a2
    expect(poolOfId(s, ws, p.standby[1]!)).not.toBe("b"); // covers b1
    expect(new Set([...p.active, ...p.standby]).size).toBe(5);
  });

  test("+N: N spares beyond the actives, other pools preferred", () => {
    const s = strategy({ pick: "first", redundancy: "+2" });
    const p = byId(place({ strategy: s, workers: ws, requests: [req("j")] }), "j");
    expect(p.active).toEqual(["a1"]);
    expect(p.standby).toEqual(["b1", "b2"]);
  });

  test("1:1 with a single pool is degraded with the reason", () => {
    const s = strategy({ redundancy: "1:1", pools: [pool("a", "s1", 1)] });
    const p = byId(place({ strategy: s, workers: [worker("a1", "a"), worker("a2", "a")], requests: [req("j")] }), "j");
    expect(p.active.length).toBe(1);
    expect(p.standby).toEqual([]);
    expect(p.degraded).toContain("standby 1 of 1 (1:1): no live worker with room outside pool(s) a");
  });

  test("a dead active is replaced by its own standby; a new standby is chosen; the rest does not move", () => {
    const s = strategy({ pick: "least-loaded", redundancy: "1:1" });
    const jobs = ["j1", "j2", "j3", "j4"].map((j) => req(j));
    const before = place({ strategy: s, workers: ws, requests: jobs });
    const victim = before[0]!.active[0]!;
    const survivors = ws.filter((w) => w.id !== victim);
    const after = place({ strategy: s, workers: survivors, requests: jobs, previous: before });
    for (const [i, b] of before.entries()) {
      const a = after[i]!;
      expect(a.degraded).toBeNull();
      expect([...a.active, ...a.standby]).not.toContain(victim);
      if (b.active[0] === victim) expect(a.active[0]).toBe(b.standby[0]!); // promoted
      else expect(a.active).toEqual(b.active); // untouched
      expect(poolOfId(s, survivors, a.standby[0]!)).not.toBe(poolOfId(s, survivors, a.active[0]!));
    }
    // the same input again changes nothing
    expect(place({ strategy: s, workers: survivors, requests: jobs, previous: after })).toEqual(after);
  });
});
