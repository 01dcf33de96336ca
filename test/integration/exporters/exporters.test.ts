/** ITSM exporters against local receivers: vendor shapes, faults held in place, refusals dead-lettered, a kill mid-stream. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { encode } from "../../../pipelines/codec.ts";
import { ExporterConfig, type ExporterConfigInput } from "../../../pipelines/contracts/exporters.ts";
import { HealthDelta, type HealthState } from "../../../pipelines/contracts/health.ts";
import { RegistryEvent } from "../../../pipelines/contracts/registry.ts";
import { TopologyDelta, TopologySnapshot, type TopoNode } from "../../../pipelines/contracts/topology.ts";
import { buildAdapter } from "../../../services/exporters/build.ts";
import { Exporter } from "../../../services/exporters/exporter.ts";
import { kvState, openBucket } from "../../../services/exporters/state.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { spawnUntilReady } from "../../helpers/process.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";
import { startReceiver, type Receiver } from "./receivers.ts";

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats.stop();
});

const t0 = Date.now();
const host = (i: number): TopoNode => ({ id: `host:h${i}`, kind: "host", name: `h${i}`, source: "agent", props: { os: "linux" }, firstSeen: t0, lastSeen: t0 });
const proc = (i: number): TopoNode => ({ id: `proc:h${i}:app`, kind: "process", name: `app-h${i}`, source: "agent", props: {}, firstSeen: t0, lastSeen: t0 });
const runs = (i: number) => ({ id: `RUNS:h${i}`, kind: "RUNS" as const, src: `host:h${i}`, dst: `proc:h${i}:app`, source: "agent", props: {}, firstSeen: t0, lastSeen: t0 });
const snapshotOf = (n: number): TopologySnapshot => ({ schema: "topology.snapshot.v1", rev: 1, at: t0, nodes: Array.from({ length: n }, (_, i) => host(i)), edges: [] });
const delta = (rev: number, nodes: TopoNode[], edges: ReturnType<typeof runs>[] = []) => ({ schema: "topology.delta.v1" as const, rev, at: t0, nodesUpserted: nodes, nodesRemoved: [], edgesUpserted: edges, edgesRemoved: [] });

const mapping = {
  classes: {
    host: { class: "cmdb_ci_linux_server", attributes: { name: "name", os: "props.os" }, keys: ["name"] },
    process: { class: "cmdb_ci_appl", attributes: { name: "name" } },
  },
  relations: { RUNS: "Runs on::Runs" },
  timeoutMs: 1000,
  ratePerSecond: 500,
} satisfies Partial<ExporterConfigInput>;

async function inProcess(prefix: string, input: ExporterConfigInput, snap: TopologySnapshot, env: Record<string, string> = {}, healthState?: () => Promise<HealthState | null>) {
  const bus = await connectBus({ url: nats.url, prefix, name: "exporter-test" });
  const cfg = ExporterConfig.parse(input);
  const counters = { requests: 0, retries: 0, errors: 0 };
  const kv = await openBucket(bus.nc, `${prefix.toUpperCase()}_EXPORTERS`);
  const ex = new Exporter({ bus, cfg, adapter: buildAdapter(cfg, env, counters, prefix), state: kvState(kv, cfg.name), counters, log: makeLogger("test", true), snapshot: async () => snap, healthState });
  await ex.start();
  return { bus, ex, stop: async () => (await ex.stop(), await bus.close()) };
}

const pub = (bus: Bus, d: ReturnType<typeof delta>) => publishEvent(bus, bus.topo.subjects.topologyDelta, TopologyDelta, "topology.delta.v1", d, `rev-${d.rev}`);

describe("ServiceNow", () => {
  let rx: Receiver;
  beforeAll(() => (rx = startReceiver("servicenow")));
  afterAll(() => rx.stop());

  test("backfill, deltas through 429/503/timeouts in order, a refusal dead-lettered with the vendor's answer, incidents opened and resolved", async () => {
    const prefix = uniquePrefix("exsn");
    const { bus, ex, stop } = await inProcess(prefix, { name: "snow", vendor: "servicenow", url: rx.url, auth: { type: "basic", user: "orrery", passwordEnv: "SNOW_PW" }, options: { dataSource: "ServiceNow" }, ...mapping }, snapshotOf(3), { SNOW_PW: "pw" });
    try {
      await waitFor(() => ex.status().phase === "following", "backfill");
      expect(rx.creates.size).toBe(3);
      rx.faults.push("429", "503", "timeout");
      rx.refuse.add("app-h4");
      for (let i = 3; i < 6; i++) await pub(bus, delta(i - 1, [proc(i)], [runs(i)].filter(() => i !== 4)));
      await pub(bus, delta(5, [host(3), host(4), host(5)], [runs(3), runs(5)]));
      await waitFor(() => ex.status().rev === 5 && ex.status().lag.topology === 0, "deltas exported", 30_000);
      // every CI created once, whatever was retried
      expect([...rx.creates.values()].every((n) => n === 1)).toBe(true);
      expect(rx.creates.size).toBe(3 + 2 + 3);
      expect(ex.status().retries).toBeGreaterThanOrEqual(3);
      // rev 3 (app-h4) was refused: dead-lettered with the vendor's answer, the rest went on
      const dlq = await bus.jsm.streams.getMessage(bus.topo.streams.dlq.name, { last_by_subj: bus.topo.subjects.dlq("exporter-snow-topology") });
      expect(dlq?.header.get("Orrery-Reason")).toContain("Invalid class attribute");
      await waitFor(() => ex.status().deadLettered === 1, "dead-letter counted");
      expect(rx.violations).toEqual([]);
      // incidents from health
      const h = (seq: number, health: "critical" | "ok") => publishEvent(bus, bus.topo.subjects.health, HealthDelta, "health.delta.v1", { schema: "health.delta.v1", seq, at: t0, entities: [{ id: "host:h0", health, alerts: health === "ok" ? [] : ["am:1"] }] }, `seq-${seq}`);
      await h(1, "critical");
      await h(2, "critical");
      await waitFor(() => rx.incidents.get("orrery:host:h0")?.opened === 1, "incident opened");
      await h(3, "ok");
      await waitFor(() => rx.incidents.get("orrery:host:h0")?.resolved === 1, "incident resolved");
      expect(rx.incidents.get("orrery:host:h0")).toEqual({ opened: 1, resolved: 1 });
    } finally {
      await stop();
    }
  }, 60_000);
});

describe.each(["webhook", "itop", "jsm"] as const)("%s", (vendor) => {
  test("backfill and a delta in the vendor's documented shape, created once", async () => {
    const rx = startReceiver(vendor, { secret: "whsec-test" });
    const prefix = uniquePrefix(`ex${vendor}`);
    const byVendor: Record<typeof vendor, Partial<ExporterConfigInput>> = {
      webhook: { url: `${rx.url}/in`, options: { secretEnv: "HOOK_SECRET" } },
      itop: { url: rx.url, auth: { type: "basic", user: "orrery", passwordEnv: "ITOP_PW" }, classes: { host: { class: "Server", attributes: { name: "name" } }, process: { class: "ApplicationSolution", attributes: { name: "name" } } }, relations: { RUNS: "lnkApplicationSolutionToFunctionalCI:functionalci_id:applicationsolution_id" } },
      jsm: { url: rx.url, options: { workspaceId: "ws1" }, classes: { host: { class: "12", attributes: { "120": "name" } }, process: { class: "13", attributes: { "130": "name" } } }, relations: { RUNS: "121" } },
    };
    const { bus, ex, stop } = await inProcess(prefix, { name: vendor, vendor, ...mapping, ...byVendor[vendor] } as ExporterConfigInput, snapshotOf(2), { HOOK_SECRET: "whsec-test", ITOP_PW: "pw" });
    try {
      rx.faults.push("503");
      await pub(bus, delta(2, [proc(0)], [runs(0)]));
      await waitFor(() => ex.status().rev === 2 && ex.status().lag.topology === 0, "delta exported", 20_000);
      expect(rx.violations).toEqual([]);
      expect(rx.creates.size).toBe(vendor === "itop" ? 4 : 3);
      expect([...rx.creates.values()].every((n) => n === 1)).toBe(true);
    } finally {
      await stop();
      rx.stop();
    }
  }, 60_000);
});

describe.each(["servicenow", "webhook"] as const)("the exporter service killed mid-stream (%s)", (vendor) => {
  test("after a restart nothing is lost and nothing created or applied twice", async () => {
    const rx = startReceiver(vendor, { delayMs: 3, secret: "kill" });
    const prefix = uniquePrefix("exkill");
    const { dir, cleanup } = tempDir();
    const bus = await connectBus({ url: nats.url, prefix, name: "exporter-kill-test" });
    // the topology service's part: answer the snapshot request
    const snap = snapshotOf(20);
    const sub = bus.nc.subscribe(bus.topo.subjects.snapshotRpc, { callback: (_e, m) => void m.respond(encode(TopologySnapshot.extend({ part: z.number(), parts: z.number() }), "topology.snapshot.v1", { ...snap, part: 0, parts: 1 })) });
    const file = join(dir, "exporters.json");
    const target = vendor === "servicenow" ? { url: rx.url, auth: { type: "basic", user: "orrery", passwordEnv: "SNOW_PW" } } : { url: `${rx.url}/in`, options: { secretEnv: "HOOK_SECRET" } };
    writeFileSync(file, JSON.stringify({ exporters: [{ name: "snow", vendor, ...target, ...mapping, ratePerSecond: 400 }] }));
    const env = { ...process.env, NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_EXPORTERS_CONFIG: file, ORRERY_EXPORTERS_PORT: "0", SNOW_PW: "pw", HOOK_SECRET: "kill", ORRERY_LOG_QUIET: "1" };
    const start = () => spawnUntilReady(["node_modules/.bin/bun", "run", "services/exporters/main.ts"], { ready: /"service":"exporters","url":"([^"]+)"/, timeoutMs: 30_000, env, name: "exporters" });
    try {
      const N = 300;
      for (let i = 0; i < N; i++) await pub(bus, delta(2 + i, [host(1000 + i)]));
      let p = await start();
      await waitFor(() => rx.creates.size >= 120, "some exported", 30_000, 5);
      p.proc.kill("SIGKILL");
      await p.proc.exited;
      const before = rx.creates.size;
      p = await start();
      await waitFor(() => rx.creates.size === 20 + N, `all ${20 + N} exported (had ${rx.creates.size})`, 60_000);
      const url = p.match[1]!;
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toContain(`orrery_exporter_rev{exporter="snow",vendor="${vendor}"}`);
      p.proc.kill("SIGTERM");
      await p.proc.exited;
      expect(before).toBeLessThan(20 + N);
      // count per external id: nothing lost, nothing created twice. Requests in flight at the kill (at most
      // `concurrency`, 8) reached the vendor without their answer being recorded: the successor repeats them, and the
      // IRE identifies them as the same CI (an update, never a second CI) — no HTTP exporter can know otherwise.
      expect([...rx.creates.values()].filter((n) => n !== 1)).toEqual([]);
      // The webhook's receiver takes a repeated event id once (replay-safe), so there nothing is applied twice at all.
      const repeated = [...rx.writes.values()].filter((n) => n !== 1);
      if (vendor === "webhook") expect(repeated).toEqual([]);
      expect(repeated.every((n) => n === 2)).toBe(true);
      expect(repeated.length).toBeLessThanOrEqual(8);
      expect(rx.violations).toEqual([]);
    } finally {
      sub.unsubscribe();
      await bus.close();
      rx.stop();
      cleanup();
    }
  }, 120_000);
});

test("registry components become CIs (component.put upserts, component.deleted retires)", async () => {
  const rx = startReceiver("webhook", { secret: "reg" });
  const prefix = uniquePrefix("exreg");
  const { bus, ex, stop } = await inProcess(prefix, { name: "reg", vendor: "webhook", url: `${rx.url}/in`, options: { secretEnv: "S" }, classes: {}, components: { class: "business_app", attributes: { name: "name", lifecycle: "props.lifecycle", owners: "props.owners" } } }, snapshotOf(0), { S: "reg" });
  try {
    const by = { login: "admin", role: "admin" as const };
    const put = (lifecycle: string, n: number) =>
      publishEvent(bus, bus.topo.subjects.registry("component.put"), RegistryEvent, "registry.v1", { schema: "registry.v1", at: t0 + n, by, type: "component.put", component: { id: "orders-api", after: { name: "Orders API", lifecycle, owners: ["group:payments"], createdAt: t0 }, changes: [] } }, `reg-${n}`);
    await put("new", 1);
    await put("new", 2); // the same state again: not sent
    await put("mature", 3);
    await publishEvent(bus, bus.topo.subjects.registry("component.deleted"), RegistryEvent, "registry.v1", { schema: "registry.v1", at: t0 + 4, by, type: "component.deleted", component: { id: "orders-api", after: null, changes: [] } }, "reg-4");
    await waitFor(() => rx.writes.get("component:orders-api") === 3, "put, changed put, retired", 20_000);
    await waitFor(() => ex.status().lag.registry === 0, "registry lag 0");
    expect(rx.creates.get("component:orders-api")).toBe(1);
    expect(rx.violations).toEqual([]);
  } finally {
    await stop();
    rx.stop();
  }
}, 60_000);

test("a first run opens incidents for what is unhealthy now and skips the health history before it", async () => {
  const rx = startReceiver("servicenow");
  const prefix = uniquePrefix("exhs");
  const bus0 = await connectBus({ url: nats.url, prefix, name: "history" });
  const h = (seq: number, id: string, health: "critical" | "ok") => publishEvent(bus0, bus0.topo.subjects.health, HealthDelta, "health.delta.v1", { schema: "health.delta.v1", seq, at: t0, entities: [{ id, health, alerts: health === "ok" ? [] : ["a"] }] }, `hs-${seq}`);
  // history: h1 was critical and recovered, h0 went critical and still is
  await h(1, "host:h1", "critical");
  await h(2, "host:h1", "ok");
  await h(3, "host:h0", "critical");
  const now: HealthState = { schema: "health.state.v1", seq: 3, at: t0, entities: [{ id: "host:h0", health: "critical", alerts: ["a"] }], edges: [], impact: [] };
  const { ex, stop } = await inProcess(prefix, { name: "snow", vendor: "servicenow", url: rx.url, auth: { type: "basic", user: "orrery", passwordEnv: "PW" }, ...mapping }, snapshotOf(2), { PW: "pw" }, async () => now);
  try {
    await waitFor(() => ex.status().lag.health === 0 && ex.status().phase === "following", "health caught up");
    await h(4, "host:h0", "ok");
    await waitFor(() => rx.incidents.get("orrery:host:h0")?.resolved === 1, "h0 resolved");
    expect(rx.incidents.get("orrery:host:h0")).toEqual({ opened: 1, resolved: 1 });
    expect(rx.incidents.has("orrery:host:h1")).toBe(false);
  } finally {
    await stop();
    await bus0.close();
    rx.stop();
  }
}, 60_000);
