/**
 * The registry in the graph: components as `Component` nodes, `MATCHES` to the discovered services they match and
 * `DECLARES_DEPENDENCY` between them, written by the topology service from the registry's registry.graph.v1 events.
 * (1) The whole platform as `npm run demo` runs it: two components registered through the gateway over a discovered
 * DEPENDS_ON, answered through /api/cypher (matches, and declared joined with discovered), gone once deleted.
 * (2) A real nats-server and Kuzu: a graph store rebuilt from scratch gets the registry back from the stream, and
 * discovery (writes and aging) leaves it alone. (3) A registry over a message's limit, in parts.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { encode } from "../../../pipelines/codec.ts";
import { DiscoveryBatch as DiscoveryBatchSchema, type DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { RegistryGraph } from "../../../pipelines/contracts/registry.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import type { Logger } from "../../../services/shared/log.ts";
import { registryGraphParts } from "../../../services/registry/client.ts";
import { publishParts } from "../../../services/registry/graph.ts";
import { startTopologyService } from "../../../services/topology/service.ts";
import { proc } from "../../helpers/discovery.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { startStack } from "../../helpers/stack.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

test("components, their matches and declared dependencies answer Cypher through the gateway, and go when deleted", async () => {
  const stack = await startStack({ ORRERY_SIM_HOSTS: "6", ORRERY_REGISTRY_DRIFT_EVERY_S: "0.3" });
  try {
    const cypher = async (query: string, params: Record<string, unknown> = {}) => {
      const r = await fetch(`${stack.dashboard}/api/cypher`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query, params }) });
      const b = (await r.json()) as { ok: boolean; rows?: Record<string, unknown>[]; error?: string };
      if (!b.ok) console.warn("cypher refused:", b.error);
      return b.ok ? b.rows! : null;
    };
    const api = async (method: string, path: string, body?: unknown) => {
      const r = await fetch(`${stack.dashboard}${path}`, { method, headers: body ? { "content-type": "application/json" } : {}, body: body ? JSON.stringify(body) : undefined });
      return { status: r.status, body: (await r.json()) as any };
    };
    const rule = (props: unknown, name: unknown) => {
      const p = JSON.parse(String(props)) as { service?: string; host: string };
      return { fingerprint: p.service ?? String(name), host: p.host };
    };
    // a discovered dependency between two services that no one rule matches both of, as the simulated estate has them
    const pair = await waitFor(async () => {
      const rows = await cypher(
        "MATCH (a:Entity)-[:DEPENDS_ON]->(b:Entity) WHERE a.kind = 'process' AND b.kind = 'process' AND a.host <> '' AND b.host <> '' RETURN a.id AS a, a.props AS ap, a.name AS an, b.id AS b, b.props AS bp, b.name AS bn LIMIT 200",
      );
      return rows?.find((r) => JSON.stringify(rule(r.ap, r.an)) !== JSON.stringify(rule(r.bp, r.bn))) ?? null;
    }, "a discovered DEPENDS_ON", 90_000, 500);
    const b = await api("POST", "/api/registry/components", { name: "gdemo-db", category: "database", match: [rule(pair.bp, pair.bn)] });
    expect(b.status).toBe(201);
    const a = await api("POST", "/api/registry/components", { name: "gdemo-api", owners: ["group:payments"], tags: ["pci"], dependsOn: ["gdemo-db"], match: [rule(pair.ap, pair.an)] });
    expect(a.status).toBe(201);

    // MATCHES: each component to the service it matches (and perhaps more instances of it)
    const matched = await waitFor(async () => {
      const rows = await cypher("MATCH (c:Component)-[:MATCHES]->(s:Entity) WHERE c.id STARTS WITH 'gdemo-' RETURN c.id AS component, s.id AS service, c.team AS team");
      return rows?.some((r) => r.component === "gdemo-api" && r.service === pair.a) && rows.some((r) => r.component === "gdemo-db" && r.service === pair.b) ? rows : null;
    }, "the components' MATCHES in the graph", 60_000, 300);
    expect(matched.find((r) => r.component === "gdemo-api")!.team).toBe("payments");
    expect(await cypher("MATCH (c:Component) WHERE 'pci' IN c.tags AND $o IN c.owners RETURN c.id AS id", { o: "group:payments" })).toEqual([{ id: "gdemo-api" }]);

    // declared vs discovered in one query: the declaration, confirmed by a DEPENDS_ON between instances
    const joined = await cypher(
      "MATCH (a:Component)-[:DECLARES_DEPENDENCY]->(b:Component), (a)-[:MATCHES]->(x:Entity)-[:DEPENDS_ON]->(y:Entity)<-[:MATCHES]-(b) WHERE a.id = 'gdemo-api' RETURN a.id AS declared, b.id AS dependency, count(*) AS seen",
    );
    expect(joined).toHaveLength(1);
    expect(joined![0]).toMatchObject({ declared: "gdemo-api", dependency: "gdemo-db" });
    expect(Number(joined![0]!.seen)).toBeGreaterThanOrEqual(1);
    // and the services show their component by the reverse direction
    expect(await cypher("MATCH (s:Entity {id: $id})<-[:MATCHES]-(c:Component) RETURN c.name AS name", { id: pair.b })).toEqual([{ name: "gdemo-db" }]);

    // deleted (the dependent first): the nodes and their edges go
    expect((await api("DELETE", `/api/registry/components/gdemo-api?rev=${a.body.rev}`)).status).toBe(200);
    expect((await api("DELETE", `/api/registry/components/gdemo-db?rev=${b.body.rev}`)).status).toBe(200);
    await waitFor(async () => (await cypher("MATCH (c:Component) WHERE c.id STARTS WITH 'gdemo-' RETURN count(c) AS n"))?.[0]?.n === 0, "the components gone from the graph", 30_000, 300);
    expect(await cypher("MATCH (:Component)-[m:MATCHES]->(s:Entity) WHERE s.id = $a OR s.id = $b RETURN count(m) AS n", { a: pair.a, b: pair.b })).toEqual([{ n: 0 }]);
    // discovery is untouched
    expect((await cypher("MATCH (s:Entity {id: $id}) RETURN s.id AS id", { id: pair.a }))!.length).toBe(1);
  } finally {
    await stack.stop();
    stack.cleanup();
  }
}, 240_000);

let nats: NatsServer;
let bus: Bus;
let tmp: { dir: string; cleanup: () => void };
beforeAll(async () => {
  nats = await startNats();
  tmp = tempDir("orrery-registry-graph-");
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("reggraph"), name: "test" });
});
afterAll(async () => {
  await bus?.close();
  await nats?.stop();
  tmp?.cleanup();
});

const quiet: Logger = { info: () => {}, warn: () => {}, error: () => {} };

test("a graph store rebuilt from scratch gets the registry back; discovery's writes and aging leave it alone", async () => {
  const scan: DiscoveryBatch = {
    schema: "discovery.v1",
    source: "agent:r1",
    host: "r1",
    scanId: 1,
    part: 0,
    parts: 1,
    full: true,
    at: Date.now(),
    events: [{ type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 5432, process: proc(100, "postgres") }],
  };
  await publishEvent(bus, bus.topo.subjects.discovery("r1"), DiscoveryBatchSchema, "discovery.v1", scan, "scan:r1:1");
  const first = new KuzuGraphStore(join(tmp.dir, "first"));
  let svc = await startTopologyService({ bus, store: first, log: quiet, aging: { intervalMs: 3_600_000 } });
  const service = await waitFor(() => [...svc.model().nodes.values()].find((n) => n.kind === "process") ?? null, "the discovered service");
  const event: RegistryGraph = {
    schema: "registry.graph.v1",
    at: Date.now(),
    seq: 3,
    topologyRev: svc.rev(),
    components: ["pg", "app"].map((id) => ({ id, name: id, category: "", lifecycle: "", privacy: "", location: "", language: "", framework: "", team: "", owners: [], maintainers: [], tags: [], rev: 1 })),
    matches: [{ component: "pg", entity: service.id }],
    declares: [{ src: "app", dst: "pg" }],
  };
  await bus.js.publish(bus.topo.subjects.registryGraph, encode(RegistryGraph, "registry.graph.v1", event));
  const want = { components: [...event.components].sort((x, y) => x.id.localeCompare(y.id)), matches: event.matches, declares: event.declares };
  await waitFor(async () => JSON.stringify(await first.loadRegistry()) === JSON.stringify(want), "the registry in the first store");
  // discovery goes on (a rescan) and the model is rebuilt from the store: the registry part stays
  await publishEvent(bus, bus.topo.subjects.discovery("r1"), DiscoveryBatchSchema, "discovery.v1", { ...scan, scanId: 2, at: Date.now() }, "scan:r1:2");
  await waitFor(async () => svc.rev() > event.topologyRev || null, "the rescan folded", 10_000).catch(() => undefined);
  expect(await first.loadRegistry()).toEqual(want);
  expect((await first.load()).nodes.some((n) => n.id === "pg")).toBe(false);
  await svc.stop();
  await first.close();

  // a new, empty store behind a new service on the same bus: the durable has acked the event, the replay brings it
  const second = new KuzuGraphStore(join(tmp.dir, "second"));
  svc = await startTopologyService({ bus, store: second, log: quiet, aging: { intervalMs: 3_600_000 } });
  try {
    await waitFor(async () => (await second.loadRegistry()).components.length === 2 || null, "the registry replayed into the new store");
    // its MATCHES follow once discovery has written the entity there (the discovery stream replays from its ack
    // floor only, so the service is rescanned)
    await publishEvent(bus, bus.topo.subjects.discovery("r1"), DiscoveryBatchSchema, "discovery.v1", { ...scan, scanId: 3, at: Date.now() }, "scan:r1:3");
    await waitFor(async () => JSON.stringify(await second.loadRegistry()) === JSON.stringify(want), "the MATCHES written once the entity arrived", 15_000);
    // aging the service out takes its MATCHES, never the components
    await publishEvent(bus, bus.topo.subjects.discovery("r1"), DiscoveryBatchSchema, "discovery.v1", { ...scan, scanId: 4, at: Date.now(), events: [] }, "scan:r1:4");
    await waitFor(async () => ((await second.loadRegistry()).matches.length === 0 ? true : null), "the MATCHES gone with the service");
    expect((await second.loadRegistry()).components.map((c) => c.id)).toEqual(["app", "pg"]);
  } finally {
    await svc.stop();
    await second.close();
  }
}, 120_000);

test("a registry over a message's limit goes out in parts and is written whole; a state cut short is never half-written", async () => {
  // a bus of its own: the stream's last state is what this test is about
  const own = await connectBus({ url: nats.url, prefix: uniquePrefix("regparts"), name: "test" });
  const stores: KuzuGraphStore[] = [];
  const component = (id: string) => ({ id, name: id, category: "service", lifecycle: "production", privacy: "", location: "dc1", language: "go", framework: "", team: "t", owners: ["group:t"], maintainers: [], tags: ["x"], rev: 1 });
  const state = (n: number, seq: number): RegistryGraph => {
    const ids = Array.from({ length: n }, (_, i) => `c${String(i).padStart(5, "0")}`);
    return { schema: "registry.graph.v1", at: Date.now(), seq, topologyRev: 0, components: ids.map(component), matches: [], declares: ids.slice(1).map((id, i) => ({ src: id, dst: ids[i]! })) };
  };
  try {
    const first = new KuzuGraphStore(join(tmp.dir, "parts-first"));
    stores.push(first);
    let svc = await startTopologyService({ bus: own, store: first, log: quiet, aging: { intervalMs: 3_600_000 } });
    const whole = state(3000, 1);
    const maxBytes = 100 * 1024;
    expect(encode(RegistryGraph, "registry.graph.v1", whole, 10 * 1024 ** 2).byteLength).toBeGreaterThan(5 * maxBytes);
    expect(await publishParts(own, whole, maxBytes)).toBeGreaterThan(5);
    await waitFor(async () => (await first.loadRegistry()).components.length === 3000 || null, "3,000 components written", 60_000);
    expect((await first.loadRegistry()).declares).toHaveLength(2999);

    // a newer state whose publisher died after two of its parts: nothing of it is written
    const cut = registryGraphParts(state(2000, 2), maxBytes, "cut-short");
    for (const p of cut.slice(0, 2)) await own.js.publish(own.topo.subjects.registryGraph, encode(RegistryGraph, "registry.graph.v1", p, maxBytes));
    await Bun.sleep(1500);
    expect((await first.loadRegistry()).components).toHaveLength(3000);
    await svc.stop();

    // a new, empty store: the replay walks back past the cut state to the last whole one
    const second = new KuzuGraphStore(join(tmp.dir, "parts-second"));
    stores.push(second);
    svc = await startTopologyService({ bus: own, store: second, log: quiet, aging: { intervalMs: 3_600_000 } });
    try {
      await waitFor(async () => (await second.loadRegistry()).components.length === 3000 || null, "the last whole state replayed", 60_000);
      // and the next whole state replaces it
      await publishParts(own, state(1000, 3), maxBytes);
      await waitFor(async () => (await second.loadRegistry()).components.length === 1000 || null, "the next whole state written", 60_000);
    } finally {
      await svc.stop();
    }
  } finally {
    for (const s of stores) await s.close();
    await own.close();
  }
}, 180_000);
