import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { decode } from "../../../pipelines/codec.ts";
import { DiscoveryBatch, type EntityAnnotated } from "../../../pipelines/contracts/discovery.ts";
import { MetricBatch } from "../../../pipelines/contracts/metrics.ts";
import { ageModel, applyDiscovery, emptyModel, type Changes } from "../../../pipelines/stages/topology/index.ts";
import { loadSimConfig, parseChurn } from "../../../services/simulator/config.ts";
import { DEFAULT_CHURN, makeEstate, NO_CHURN, scanEstate } from "../../../services/simulator/estate.ts";
import { declaredInterval, nextTick, planTick, TokenBucket } from "../../../services/simulator/pace.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const changed = (c: Changes) => c.nodesUpserted.length + c.nodesRemoved.length + c.edgesUpserted.length + c.edgesRemoved.length;
const hostOf = (m: ReturnType<typeof emptyModel>, id: string) => String(m.nodes.get(id)!.props.host ?? m.nodes.get(id)!.name);

test("the simulated estate is valid discovery whose calls resolve to listeners of the right tiers, and settles to no changes", () => {
  const e = makeEstate(60, { churn: NO_CHURN });
  const m = emptyModel();
  const changes: number[] = [];
  for (let i = 0; i < 4; i++) {
    const { batches, samples } = scanEstate(e, 1_000 * (i + 1));
    for (const b of batches) expect(DiscoveryBatch.safeParse(b).success).toBe(true);
    expect(MetricBatch.safeParse({ schema: "metrics.v1", source: "sim", batchId: "x", samples: samples.slice(0, 1000) }).success).toBe(true);
    expect(batches.filter((b) => b.full).length).toBe(i === 0 ? e.hosts.length : 0); // full state first, then deltas
    changes.push(changed(applyDiscovery(m, batches, 1_000 * (i + 1))));
  }
  expect(changes[2]).toBe(0);
  expect(changes[3]).toBe(0);
  const kinds = new Map<string, number>();
  for (const n of m.nodes.values()) kinds.set(n.kind, (kinds.get(n.kind) ?? 0) + 1);
  expect(kinds.get("host")).toBe(e.hosts.length);
  expect(kinds.get("process")).toBe(5 * e.hosts.length); // main service, sshd, node_exporter, filebeat, chronyd
  expect(kinds.get("external")).toBeGreaterThan(0); // third-party APIs the apps call
  const connects = [...m.edges.values()].filter((x) => x.kind === "CONNECTS");
  expect(connects.length).toBeGreaterThan(5 * e.hosts.length);
  for (const c of connects) {
    const from = hostOf(m, c.src);
    const dst = m.nodes.get(c.dst)!;
    if (dst.kind === "external") {
      expect(from).toStartWith("sim-app");
      continue;
    }
    expect(dst.kind).toBe("listener");
    const to = String(dst.props.host);
    const svc = m.nodes.get(c.src)!.props.service;
    if (svc === "filebeat") expect(to).toStartWith("sim-queue");
    else if (from.startsWith("sim-lb")) expect(to).toStartWith("sim-web");
    else if (from.startsWith("sim-web")) expect(to).toStartWith("sim-app");
    else if (from.startsWith("sim-app")) expect(to).toMatch(/^sim-(cache|db|queue)/);
    else expect(from).toStartWith("sim-monitor");
  }
});

test("with churn: restarts keep services, cron jobs never show, deploys reuse IPs without phantom edges, and aging removes the retired", () => {
  const e = makeEstate(80, { seed: 7, churn: { ...DEFAULT_CHURN, restart: 0.05, cron: 0.2, deploy: 0.02, failure: 0.01, crash: 0.01 } });
  const m = emptyModel();
  const aging = { intervalMs: 1000, staleAfter: 3, removeAfter: 6 };
  const pidOf = new Map<string, unknown>();
  let restarts = 0;
  const retiredAt = new Map<string, number>();
  const createdAt = new Map<string, number>();
  const listenerHost = (id: string) => String(m.nodes.get(id)?.props.host ?? id.split(":")[1]);
  let checksWhileRetiredPresent = 0;
  let edgesToReplacements = 0;
  // After churn stops, long enough for the last retired hosts to age out: removeAfter × their source's learned
  // interval, which agent failures (silent gaps) stretch to a few seconds.
  for (let i = 0; i < 64; i++) {
    if (i === 40) e.opts.churn = { ...NO_CHURN };
    const now = 1_000 * (i + 1);
    const retiredBefore = e.retired.length;
    const { batches } = scanEstate(e, now);
    for (const name of e.retired.slice(retiredBefore)) retiredAt.set(name, i);
    const changes = [applyDiscovery(m, batches, now), ageModel(m, now, aging)];
    for (const c of changes)
      for (const edge of c.edgesUpserted) {
        if (edge.kind !== "CONNECTS" || createdAt.has(edge.id)) continue;
        createdAt.set(edge.id, i);
        if (/-r\d+$/.test(listenerHost(edge.dst))) edgesToReplacements++;
      }
    for (const c of changes) for (const r of c.edgesRemoved) createdAt.delete(r.id);
    // A restart: the same service node (same id) now has another pid.
    for (const n of m.nodes.values()) {
      if (n.kind !== "process") continue;
      const before = pidOf.get(n.id);
      if (before !== undefined && before !== n.props.pid) restarts++;
      pidOf.set(n.id, n.props.pid);
    }
    // Right after each deploy, while the retired host's listeners are still in the graph (before removeAfter, so a
    // connection to its old IP could still resolve to them), no CONNECTS edge made since its retirement leads there.
    for (const n of m.nodes.values()) if (n.kind === "listener" && retiredAt.has(String(n.props.host))) checksWhileRetiredPresent++;
    for (const edge of m.edges.values()) {
      if (edge.kind !== "CONNECTS") continue;
      const host = listenerHost(edge.dst);
      const retired = retiredAt.get(host);
      if (retired === undefined) continue;
      const made = createdAt.get(edge.id);
      if (made !== undefined && made >= retired) throw new Error(`phantom edge ${edge.id}: made at tick ${made}, ${host} retired at tick ${retired}`);
    }
  }
  expect(e.retired.length).toBeGreaterThan(0);
  // the check ran while retired hosts' listeners were still in the graph, and their replacements did get the callers
  expect(checksWhileRetiredPresent).toBeGreaterThan(0);
  expect(edgesToReplacements).toBeGreaterThan(0);
  // cron curls live one scan: never a node
  expect([...m.nodes.values()].some((n) => n.props.service === "curl")).toBe(false);
  // every service node is one per (host, service): restarts did not multiply them
  const live = e.hosts.filter((h) => h.silent === 0);
  for (const h of live) {
    const svcs = [...m.nodes.values()].filter((n) => n.kind === "process" && n.props.host === h.name);
    expect(svcs.length).toBeLessThanOrEqual(5);
    expect(new Set(svcs.map((n) => n.props.service)).size).toBe(svcs.length);
  }
  // once aged out, the retired hosts are gone with every edge to them
  const retired = new Set(e.retired);
  for (const edge of m.edges.values()) if (edge.kind === "CONNECTS") expect(retired.has(listenerHost(edge.dst))).toBe(false);
  const hosts = [...m.nodes.values()].filter((n) => n.kind === "host").map((n) => n.name);
  for (const r of e.retired) expect(hosts).not.toContain(r);
  console.log(`churn: ${e.retired.length} deploys, ${restarts} restarts seen, ${edgesToReplacements} edges to replacement hosts, ${checksWhileRetiredPresent} retired-listener checks`);
  expect(restarts).toBeGreaterThan(0);
});

test("ownership: host and service owner/team in each full state, a stable ~10% of services unowned; containers carry their image", () => {
  const e = makeEstate(200, { seed: 3, churn: NO_CHURN, fullEvery: 3 });
  const annotationsOf = (bs: DiscoveryBatch[]) => bs.flatMap((b) => b.events.filter((x): x is EntityAnnotated => x.type === "entity.annotated"));
  const first = scanEstate(e, 1000).batches;
  for (const b of first) expect(DiscoveryBatch.safeParse(b).success).toBe(true);
  const ann = annotationsOf(first);
  const hostAnn = ann.filter((a) => a.match.port === undefined);
  expect(hostAnn.length).toBe(e.hosts.length);
  // listening services: the main one, sshd, node_exporter, chronyd (udp) on every host
  const services = ann.length - hostAnn.length;
  const listening = 4 * e.hosts.length;
  expect(services / listening).toBeGreaterThan(0.82);
  expect(services / listening).toBeLessThan(0.97);
  expect(ann.every((a) => a.props.owner && a.props.team)).toBe(true);
  expect(ann.find((a) => a.match.host.startsWith("sim-db") && a.match.port === 5432)?.props.team).toBe("data-platform");
  expect(ann.some((a) => a.match.port === 123 && a.match.proto === "udp")).toBe(true);
  // deltas carry none; the next full state carries the same ones
  expect(annotationsOf(scanEstate(e, 2000).batches)).toEqual([]);
  scanEstate(e, 3000);
  expect(annotationsOf(scanEstate(e, 4000).batches)).toEqual(ann);
  // app services and even-slot caches run in containers
  const procs = first.flatMap((b) => b.events.flatMap((x) => (x.type === "listener.seen" && x.process ? [{ host: b.host, port: x.port, p: x.process }] : [])));
  const app = procs.find((x) => x.host.startsWith("sim-app") && x.port === 8080)!;
  expect(app.p.containerImage).toBe("registry.example/orders:1.4.0");
  expect(app.p.containerId).toMatch(/^[0-9a-f]{64}$/);
  expect(procs.filter((x) => x.host.startsWith("sim-db")).every((x) => !x.p.containerImage && x.p.containerId === null)).toBe(true);
  expect(procs.some((x) => x.host.startsWith("sim-cache") && x.p.containerImage === "docker.io/library/redis:7.2.0")).toBe(true);
  // the stage takes them as valid discovery
  expect(() => applyDiscovery(emptyModel(), first, 1000)).not.toThrow();
});

test("a seed makes the estate reproducible; another seed gives another one", () => {
  const run = (seed: number) => {
    const e = makeEstate(50, { seed, churn: { ...DEFAULT_CHURN, deploy: 0.05, restart: 0.05 } });
    return JSON.stringify(Array.from({ length: 5 }, (_, i) => scanEstate(e, 1000 * (i + 1)).batches));
  };
  expect(run(11)).toBe(run(11));
  expect(run(11)).not.toBe(run(12));
});

describe("pacing", () => {
  test("the token bucket gives at most rate × time + burst; a big reservation waits for its debt", () => {
    const b = new TokenBucket(100, 10, 0);
    expect(b.reserve(10, 0)).toBe(0); // the burst
    expect(b.reserve(5, 0)).toBe(50); // 5 tokens at 100/s
    expect(b.reserve(100, 50)).toBe(1050); // into debt: 1 s more
    expect(b.reserve(1, 2000)).toBe(2000); // refilled meanwhile (capped at the burst)
    expect(() => new TokenBucket(0, 1, 0)).toThrow(RangeError);
  });

  test("a tick's host scans are spread over the interval, and slowed to the rate when it is lower", () => {
    expect(planTick([5, 5, 5, 5], 1000, 2000, null)).toEqual([1000, 1500, 2000, 2500]);
    // 10 hosts × 100 events at 500 events/s: 2 s of work, not 1; times never go back
    const times = planTick(Array(10).fill(100), 0, 1000, new TokenBucket(500, 50, 0));
    for (let i = 1; i < times.length; i++) expect(times[i]!).toBeGreaterThanOrEqual(times[i - 1]!);
    const total = 1000;
    // events sent by the time of the last one ≤ burst + rate × elapsed
    expect(total).toBeLessThanOrEqual(50 + 500 * (times.at(-1)! / 1000) + 100);
    expect(times.at(-1)!).toBeGreaterThan(1700);
  });

  test("ticks run on deadlines: the next one is start + k × interval; after an overrun, the one whose interval it is (late), skipping only intervals wholly missed", () => {
    expect(nextTick(0, 1000, 0, 400)).toEqual({ k: 1, skipped: 0 });
    expect(nextTick(0, 1000, 3, 3999)).toEqual({ k: 4, skipped: 0 });
    expect(nextTick(0, 1000, 3, 4200)).toEqual({ k: 4, skipped: 0 });
    expect(nextTick(0, 1000, 3, 6500)).toEqual({ k: 6, skipped: 2 });
  });

  test("the declared interval: none while on time; behind, 1.5 × the slowest recent period as a power-of-two multiple of the interval; back on time, the interval", () => {
    expect(declaredInterval([5000, 5000], 5000, undefined)).toBeUndefined();
    expect(declaredInterval([5000, 8000], 5000, undefined)).toBe(20_000); // 12 s → 4 × 5 s
    expect(declaredInterval([5000, 6500], 5000, undefined)).toBe(10_000);
    expect(declaredInterval([5000], 5000, 20_000)).toBe(5000);
    // the contract's bounds: at least 1 s
    expect(declaredInterval([100, 130], 100, undefined)).toBe(1000);
    expect(declaredInterval([100], 100, 1000)).toBe(1000);
  });
});

describe("simulator configuration", () => {
  test("seed, rate and churn are validated with the key's name and the path in the JSON", () => {
    const c = loadSimConfig({ ORRERY_SIM_SEED: "42", ORRERY_SIM_RATE: "2500", ORRERY_SIM_CHURN: '{"deploy":0.01,"restart":0.05}' });
    expect(c).toMatchObject({ seed: 42, rate: 2500, hosts: 40, intervalMs: 5000 });
    expect(c.churn).toEqual({ ...DEFAULT_CHURN, deploy: 0.01, restart: 0.05 });
    expect(loadSimConfig({ ORRERY_SIM_CHURN: "none" }).churn).toEqual(NO_CHURN);
    expect(() => parseChurn('{"deploy":2,"colour":1}')).toThrow(/ORRERY_SIM_CHURN\.deploy: Too big.*ORRERY_SIM_CHURN: Unrecognized key: "colour"/);
    expect(() => parseChurn("{deploy")).toThrow("ORRERY_SIM_CHURN: not JSON");
    expect(() => loadSimConfig({ ORRERY_SIM_RATE: "-1" })).toThrow('ORRERY_SIM_RATE: Too small: expected number to be >=0 (got "-1")');
    expect(() => loadSimConfig({ ORRERY_SIM_SEED: "x" })).toThrow("ORRERY_SIM_SEED:");
  });
});

describe("the simulator process on a real nats-server", () => {
  let nats: NatsServer;
  beforeAll(async () => {
    nats = await startNats();
  });
  afterAll(async () => {
    await nats.stop();
  });

  /** Runs the simulator for `ms` and returns when (relative to the first) each discovery message came, with its size. */
  async function observe(env: Record<string, string>, ms: number): Promise<{ at: number; events: number; host: string }[]> {
    const prefix = uniquePrefix("sim");
    const nc = await connect({ servers: nats.url });
    const seen: { at: number; events: number; host: string }[] = [];
    nc.subscribe(`${prefix}.discovery.v1.>`, { callback: (_e, m) => void seen.push({ at: performance.now(), events: decode(DiscoveryBatch, "discovery.v1", m.data).events.length, host: m.subject.split(".").at(-1)! }) });
    await nc.flush();
    const proc = Bun.spawn([process.execPath, "run", join(import.meta.dir, "../../../services/simulator/main.ts")], {
      env: { ...process.env, NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_LOG_QUIET: "1", ...env },
      stdout: "ignore",
      stderr: "pipe",
    });
    try {
      await waitFor(() => seen.length > 0, "first simulated batch", 15_000, 20);
      await Bun.sleep(ms);
    } finally {
      proc.kill("SIGTERM");
      await proc.exited;
      await nc.close();
    }
    const t0 = seen[0]!.at;
    return seen.map((s) => ({ ...s, at: s.at - t0 }));
  }

  test("ORRERY_SIM_RATE caps discovery events/s; without it one tick's scans are spread across the interval", async () => {
    // 100 hosts' first full state is ~3-4k events: at 1000 events/s that is over 3 s of sending
    const RATE = 1000;
    const capped = await observe({ ORRERY_SIM_HOSTS: "100", ORRERY_SIM_INTERVAL_MS: "1000", ORRERY_SIM_RATE: String(RATE), ORRERY_SIM_SEED: "5" }, 3000);
    const within = (a: number, b: number) => capped.filter((s) => s.at >= a && s.at < b).reduce((n, s) => n + s.events, 0);
    const sent = within(0, 3000);
    const maxScan = Math.max(...capped.map((s) => s.events));
    console.log(`rate ${RATE}/s: ${sent} events in 3 s (largest host scan ${maxScan} events)`);
    // the bucket allows burst (rate/10) + rate × t; arrival times are taken here, so allow 100 ms of delivery jitter
    const allowed = (ms: number) => RATE / 10 + (RATE * (ms + 100)) / 1000 + maxScan;
    expect(sent).toBeLessThanOrEqual(allowed(3000));
    expect(sent).toBeGreaterThan(RATE * 3 * 0.7);
    for (const [a, b] of [[0, 1000], [1000, 2000], [2000, 3000]] as const) expect(within(a, b)).toBeLessThanOrEqual(allowed(1000));

    const spread = await observe({ ORRERY_SIM_HOSTS: "20", ORRERY_SIM_INTERVAL_MS: "2000", ORRERY_SIM_CHURN: "none" }, 1500);
    const firstTick = spread.filter((s) => s.at < 2000);
    const hosts = new Set(firstTick.map((s) => s.host));
    expect(hosts.size).toBeGreaterThan(10);
    // not all at once: the scans of the first tick arrive over most of the interval
    expect(firstTick.at(-1)!.at - firstTick[0]!.at).toBeGreaterThan(1200);
  }, 60_000);
});
