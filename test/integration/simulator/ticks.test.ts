/**
 * The simulator process (services/simulator/main.ts, loop in run.ts) on a real nats-server, at a few hundred hosts:
 * every tick's metrics and discovery are published (no message over the limit, though a cut by count alone would have
 * been), and the hosts' discovery, fed here to the topology stage with aging at the simulator's interval, never
 * leaves a host stale — also when the interval is too short for the machine, where the simulator says which rate it
 * holds and declares the interval it holds on its batches.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { decode, MAX_MESSAGE_BYTES } from "../../../pipelines/codec.ts";
import { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { MAX_SAMPLES_PER_BATCH } from "../../../pipelines/contracts/metrics.ts";
import { ageModel, applyDiscovery, emptyModel } from "../../../pipelines/stages/topology/index.ts";
import { makeEstate, NO_CHURN, scanEstate } from "../../../services/simulator/estate.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix, waitFor } from "../../helpers/tmp.ts";

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.stop();
});

interface Run {
  /** the simulator's warnings (JSON log lines on stderr) */
  warnings: { msg: string; [k: string]: unknown }[];
  /** bytes, tick (from the batch id) and samples of every metrics.v1 message */
  metrics: { bytes: number; tick: number; samples: number }[];
  /** intervals declared on discovery batches */
  declared: Set<number | undefined>;
  /** hosts marked stale at any time by aging at the simulator's interval */
  staleEver: Set<string>;
  discoveryMessages: number;
}

/**
 * Runs the simulator process until `ticks` ticks' metrics have arrived, with its own subject prefix, and watches
 * what it publishes; the topology model and its aging run here, in another process than the simulator, as in the demo.
 */
async function runSimulator(hosts: number, intervalMs: number, ticks: number): Promise<Run> {
  const prefix = uniquePrefix("simtick");
  const nc = await connect({ servers: nats.url });
  const run: Run = { warnings: [], metrics: [], declared: new Set(), staleEver: new Set(), discoveryMessages: 0 };
  const model = emptyModel();
  const aging = { intervalMs, staleAfter: 3, removeAfter: 12 };
  nc.subscribe(`${prefix}.metrics.v1.>`, {
    callback: (_e, m) => {
      // sim:<boot>:<tick>:<offset>; counted without the schema (it is checked in the unit tests), to keep this process light
      const b = m.json<{ batchId: string; samples: unknown[] }>();
      run.metrics.push({ bytes: m.data.byteLength, tick: Number(b.batchId.split(":")[2]), samples: b.samples.length });
    },
  });
  nc.subscribe(`${prefix}.discovery.v1.>`, {
    callback: (_e, m) => {
      run.discoveryMessages++;
      const batch = decode(DiscoveryBatch, "discovery.v1", m.data);
      run.declared.add(batch.intervalMs);
      applyDiscovery(model, batch, Date.now());
    },
  });
  await nc.flush();
  const ager = setInterval(() => {
    ageModel(model, Date.now(), aging);
    for (const s of model.sources.values()) if (s.stale) run.staleEver.add(s.host);
  }, Math.max(50, intervalMs / 4));
  const proc = Bun.spawn([process.execPath, "run", join(import.meta.dir, "../../../services/simulator/main.ts")], {
    env: { ...process.env, NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_LOG_QUIET: "1", ORRERY_SIM_HOSTS: String(hosts), ORRERY_SIM_INTERVAL_MS: String(intervalMs), ORRERY_SIM_SEED: "3", ORRERY_SIM_CHURN: "none" },
    stdout: "ignore",
    stderr: "pipe",
  });
  const stderr = (async () => {
    let text = "";
    for await (const chunk of proc.stderr) {
      text += new TextDecoder().decode(chunk);
      const lines = text.split("\n");
      text = lines.pop()!;
      for (const l of lines) {
        const j = JSON.parse(l) as { level: string; msg: string };
        if (j.level !== "info") run.warnings.push(j);
      }
    }
  })();
  try {
    // tick n's metrics have all arrived once tick n+1's have begun
    await waitFor(() => run.metrics.some((m) => m.tick > ticks), `${ticks} simulator ticks`, 120_000, 50);
    await Bun.sleep(Math.max(300, intervalMs));
  } finally {
    proc.kill("SIGTERM");
    await proc.exited;
    await stderr;
    clearInterval(ager);
    await nc.close();
  }
  return run;
}

/** Samples per tick of the same estate (seed, hosts, no churn), computed here. */
function expectedSamples(hosts: number, ticks: number): number[] {
  const e = makeEstate(hosts, { seed: 3, churn: { ...NO_CHURN } });
  return Array.from({ length: ticks }, (_, i) => scanEstate(e, 1000 * (i + 1)).samples.length);
}

test("300 hosts: every tick publishes, every message under the limit (a cut by count alone would not be), no host goes stale", async () => {
  const run = await runSimulator(300, 2000, 3);
  const expected = expectedSamples(300, 3);
  const perTick = [1, 2, 3].map((t) => run.metrics.filter((m) => m.tick === t).reduce((n, m) => n + m.samples, 0));
  expect(perTick).toEqual(expected);
  // the samples of one tick are more than one message's count, and 10,000 of them are more than its bytes
  expect(expected[0]!).toBeGreaterThan(MAX_SAMPLES_PER_BATCH);
  const perSample = run.metrics[0]!.bytes / run.metrics[0]!.samples;
  expect(perSample * MAX_SAMPLES_PER_BATCH).toBeGreaterThan(MAX_MESSAGE_BYTES);
  for (const m of run.metrics) expect(m.bytes).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
  expect(run.warnings.filter((w) => /too large|not fully published|failed/.test(w.msg))).toEqual([]);
  expect(run.discoveryMessages).toBeGreaterThanOrEqual(3 * 300);
  expect([...run.staleEver]).toEqual([]);
  console.log(`300 hosts, 2 s: samples per tick ${perTick.join(", ")} in ${run.metrics.length} messages; warnings: ${run.warnings.map((w) => w.msg).join("; ") || "none"}`);
}, 180_000);

test("an interval too short for the machine: each overrun says which rate it holds, the interval held is declared, and no host goes stale", async () => {
  // 300 hosts' scan and sends take longer than 100 ms here, so ticks overrun
  const run = await runSimulator(300, 100, 6);
  const overruns = run.warnings.filter((w) => w.msg.startsWith("tick overran its interval"));
  expect(overruns.length).toBeGreaterThan(0);
  expect(overruns[0]!.msg).toMatch(/^tick overran its interval: 300 hosts are scanned every \d+ ms, not every 100 ms$/);
  const holds = overruns[0]!.holds as Record<string, number>;
  expect(holds.hostScansPerSec).toBeGreaterThan(0);
  expect(holds.samplesPerSec).toBeGreaterThan(0);
  expect(overruns.every((w) => typeof w.declaredIntervalMs === "number" && w.declaredIntervalMs >= 1000)).toBe(true);
  // the batches carry the interval held (at least the contract's 1 s), not the 100 ms asked for
  expect([...run.declared].some((d) => d !== undefined && d >= 1000)).toBe(true);
  expect(run.warnings.filter((w) => /too large|not fully published|failed/.test(w.msg))).toEqual([]);
  for (const m of run.metrics) expect(m.bytes).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
  expect([...run.staleEver]).toEqual([]);
  console.log(`300 hosts, 100 ms: ${overruns.length} overruns, e.g. "${overruns.at(-1)!.msg}" holding ${JSON.stringify(overruns.at(-1)!.holds)}; declared ${[...run.declared].join(", ")}`);
}, 180_000);
