// CMDB annotations (entity.annotated) and resolver names (name.seen) in the pure topology stage.
import { describe, expect, test } from "bun:test";
import { ageModel, applyDiscovery, emptyModel, modelFromGraph, type Changes, type TopologyModel } from "../../../pipelines/stages/topology/index.ts";
import { annotate, batch, changed, conn, edgesOf, hostSeen, listen, nameSeen, proc } from "../../helpers/discovery.ts";

const INV = "job:inventory";
const CMDB = "job:cmdb";
/** A batch from a discovery job (its own source; `host` is where the job ran). */
const job = (source: string, events: Parameters<typeof batch>[0], o: Parameters<typeof batch>[1] = {}) => batch(events, { source, host: "worker-1", ...o });
const pg = proc(10, "postgres");
const upserted = (c: Changes) => c.nodesUpserted.map((n) => n.id).sort();
const props = (m: TopologyModel, id: string) => m.nodes.get(id)?.props;

function dbHost(m = emptyModel({ confirmScans: 1 })) {
  applyDiscovery(m, batch([hostSeen(["10.0.0.2"], "db"), listen(5432, pg)], { host: "db" }), 1);
  return m;
}

describe("entity.annotated", () => {
  test("a host annotation adds its props (and who set them) to the host, as a net change only", () => {
    const m = dbHost();
    const c = applyDiscovery(m, job(INV, [annotate("db", { owner: "dba-team", tier: "1" })]), 2);
    expect(upserted(c)).toEqual(["host:db"]);
    expect(props(m, "host:db")).toMatchObject({ hostname: "db", owner: "dba-team", tier: "1", annotatedBy: JSON.stringify({ owner: INV, tier: INV }) });
    expect(changed(applyDiscovery(m, job(INV, [annotate("db", { owner: "dba-team", tier: "1" })]), 3))).toBe(0);
    // discovery rewriting the host (a new kernel) keeps them
    const k = applyDiscovery(m, batch([{ type: "host.seen", hostname: "db", os: "Debian", kernel: "6.9", cpus: 2, memTotalBytes: 1, ips: ["10.0.0.2"] }], { host: "db" }), 4);
    expect(upserted(k)).toEqual(["host:db"]);
    expect(props(m, "host:db")).toMatchObject({ kernel: "6.9", owner: "dba-team", tier: "1" });
  });

  test("a host:port annotation lands on the service listening there (tcp by default), and follows it through restarts and port changes", () => {
    const m = dbHost();
    const c = applyDiscovery(m, job(INV, [annotate("db", { owner: "payments" }, 5432)]), 2);
    expect(upserted(c)).toEqual(["service:db:postgres:5432"]);
    expect(props(m, "service:db:postgres:5432")).toMatchObject({ pid: 10, owner: "payments" });
    // a udp annotation on the same port is another place: nothing serves it
    expect(changed(applyDiscovery(m, job(INV, [annotate("db", { team: "x" }, 5432, "udp")]), 3))).toBe(0);
    // restart: new pid, same service: the owner stays
    applyDiscovery(m, batch([listen(5432, proc(99, "postgres", { startTime: 5 }))], { host: "db" }), 4);
    expect(props(m, "service:db:postgres:5432")).toMatchObject({ pid: 99, owner: "payments" });
    // a second port makes it another service: the annotation moves with the listener
    applyDiscovery(m, batch([listen(6000, proc(99, "postgres", { startTime: 5 }))], { host: "db" }), 5);
    expect(m.nodes.has("service:db:postgres:5432")).toBe(false);
    expect(props(m, "service:db:postgres:5432,6000")).toMatchObject({ owner: "payments" });
  });

  test("an annotation that arrives before its entity is kept and applied when the entity appears", () => {
    const m = emptyModel();
    expect(changed(applyDiscovery(m, job(INV, [annotate("db", { owner: "dba" }), annotate("db", { owner: "payments" }, 5432)]), 1))).toBe(0);
    const c = applyDiscovery(m, batch([hostSeen(["10.0.0.2"], "db"), listen(5432, pg)], { host: "db" }), 2);
    expect(c.nodesUpserted.find((n) => n.id === "host:db")!.props.owner).toBe("dba");
    expect(c.nodesUpserted.find((n) => n.id === "service:db:postgres:5432")!.props.owner).toBe("payments");
  });

  test("the source owns its annotations: a full batch that does not re-list one drops it; aging drops the rest", () => {
    const m = dbHost();
    applyDiscovery(m, job(INV, [annotate("db", { owner: "dba", tier: "1" }), annotate("db", { owner: "payments" }, 5432)], { full: true, at: 10 }), 10);
    // the next full inventory lists the host's owner only
    const c = applyDiscovery(m, job(INV, [annotate("db", { owner: "dba" })], { full: true, at: 20 }), 20);
    expect(upserted(c)).toEqual(["host:db", "service:db:postgres:5432"]);
    expect(props(m, "host:db")).toMatchObject({ owner: "dba", annotatedBy: JSON.stringify({ owner: INV }) });
    expect(props(m, "host:db")!.tier).toBeUndefined();
    expect(props(m, "service:db:postgres:5432")!.owner).toBeUndefined();
    expect(props(m, "service:db:postgres:5432")!.annotatedBy).toBeUndefined();
    expect(props(m, "service:db:postgres:5432")!.pid).toBe(10);
    // the inventory goes silent; the host's agent keeps reporting
    const aging = { intervalMs: 10, staleAfter: 3, removeAfter: 6 };
    applyDiscovery(m, batch([hostSeen(["10.0.0.2"], "db")], { host: "db", at: 100 }), 100);
    const aged = ageModel(m, 100, aging);
    expect(upserted(aged)).toEqual(["host:db"]);
    expect(props(m, "host:db")!.owner).toBeUndefined();
    expect(m.nodes.has("host:db")).toBe(true);
  });

  test("two sources on one key: the one that last changed it wins; when it drops it, the other's value comes back", () => {
    const m = dbHost();
    applyDiscovery(m, job(INV, [annotate("db", { owner: "alice" })]), 2);
    applyDiscovery(m, job(CMDB, [annotate("db", { owner: "bob", team: "core" })]), 3);
    expect(props(m, "host:db")).toMatchObject({ owner: "bob", team: "core" });
    // the inventory re-reporting its unchanged value does not flip it back
    expect(changed(applyDiscovery(m, job(INV, [annotate("db", { owner: "alice" })]), 4))).toBe(0);
    // the CMDB's full state no longer has the host: alice again, team gone
    applyDiscovery(m, job(CMDB, [], { full: true }), 5);
    expect(props(m, "host:db")).toMatchObject({ owner: "alice", annotatedBy: JSON.stringify({ owner: INV }) });
    expect(props(m, "host:db")!.team).toBeUndefined();
  });

  test("discovery-owned props cannot be annotated: skipped with a reason, the rest applied, nothing overwritten", () => {
    const m = dbHost();
    const c = applyDiscovery(m, job(INV, [annotate("db", { pid: "1", ports: "x", owner: "payments" }, 5432)]), 2);
    expect(c.rejected).toHaveLength(2);
    expect(c.rejected![0]).toContain('"pid" is a discovery-owned property');
    expect(props(m, "service:db:postgres:5432")).toMatchObject({ pid: 10, ports: "5432", owner: "payments" });
  });

  test("stale marking keeps annotations; a restart recovers them from the store, with no change until their sources say otherwise", () => {
    const m1 = dbHost();
    applyDiscovery(m1, job(INV, [annotate("db", { owner: "dba" }), annotate("db", { owner: "payments" }, 5432)], { full: true }), 2);
    const m2 = modelFromGraph([...m1.nodes.values()], [...m1.edges.values()], { confirmScans: 1 });
    // the agent's first full scan after the restart rewrites the nodes from discovery: the owners stay
    expect(changed(applyDiscovery(m2, batch([hostSeen(["10.0.0.2"], "db"), listen(5432, pg)], { host: "db", full: true }), 3))).toBe(0);
    // the inventory's next full state says the same: no change either
    expect(changed(applyDiscovery(m2, job(INV, [annotate("db", { owner: "dba" }), annotate("db", { owner: "payments" }, 5432)], { full: true }), 4))).toBe(0);
    // and then drops the service's owner
    applyDiscovery(m2, job(INV, [annotate("db", { owner: "dba" })], { full: true }), 5);
    expect(props(m2, "service:db:postgres:5432")!.owner).toBeUndefined();
    expect(props(m2, "host:db")!.owner).toBe("dba");
    // stale: props kept under the health marker
    const aging = { intervalMs: 1, staleAfter: 3, removeAfter: 1_000_000 };
    ageModel(m2, 5, aging);
    ageModel(m2, 100, aging);
    expect(props(m2, "host:db")).toMatchObject({ health: "stale", owner: "dba" });
  });

  test("a recovered annotation whose source never reports again ages out with that source", () => {
    const m1 = dbHost();
    applyDiscovery(m1, job(INV, [annotate("db", { owner: "dba" })]), 2);
    const m2 = modelFromGraph([...m1.nodes.values()], [...m1.edges.values()]);
    const aging = { intervalMs: 10, staleAfter: 3, removeAfter: 6 };
    ageModel(m2, 1000, aging); // recovered sources start their clock here
    applyDiscovery(m2, batch([hostSeen(["10.0.0.2"], "db")], { host: "db", at: 1100 }), 1100);
    ageModel(m2, 1100, aging);
    expect(props(m2, "host:db")!.owner).toBeUndefined();
    expect(m2.sources.has(INV)).toBe(false);
  });
});

describe("name.seen", () => {
  const DNS = "job:dns:api.example.com";
  const ext = "external:93.184.216.34:443";
  const call = (m: TopologyModel, t: number) => applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), conn("10.0.0.1", 40000, "93.184.216.34", 443, proc(20, "app"))]), t);

  test("an external endpoint is named by its IP's DNS name (id unchanged), whether the name comes before or after the call", () => {
    const before = emptyModel({ confirmScans: 1 });
    expect(changed(applyDiscovery(before, job(DNS, [nameSeen("93.184.216.34", "api.example.com")]), 1))).toBe(0);
    call(before, 2);
    expect(before.nodes.get(ext)).toMatchObject({ name: "api.example.com:443", props: { ip: "93.184.216.34", port: 443, dnsName: "api.example.com" } });

    const after = emptyModel({ confirmScans: 1 });
    call(after, 1);
    expect(after.nodes.get(ext)!.name).toBe("93.184.216.34:443");
    const c = applyDiscovery(after, job(DNS, [nameSeen("93.184.216.34", "api.example.com")]), 2);
    expect(upserted(c)).toEqual([ext]);
    expect(after.nodes.get(ext)!.name).toBe("api.example.com:443");
    expect(changed(applyDiscovery(after, job(DNS, [nameSeen("93.184.216.34", "api.example.com")]), 3))).toBe(0);
  });

  test("per source its latest answer, across sources the last change; a full scan without it or aging takes the name away", () => {
    const m = emptyModel({ confirmScans: 1 });
    call(m, 1);
    applyDiscovery(m, job(DNS, [nameSeen("93.184.216.34", "api.example.com")], { full: true, at: 1 }), 1);
    applyDiscovery(m, job("job:inventory-csv:edge", [nameSeen("93.184.216.34", "edge-proxy")], { full: true, at: 1 }), 1);
    expect(m.nodes.get(ext)!.name).toBe("edge-proxy:443");
    applyDiscovery(m, job("job:inventory-csv:edge", [], { full: true, at: 2 }), 2);
    expect(m.nodes.get(ext)!.name).toBe("api.example.com:443");
    applyDiscovery(m, job(DNS, [nameSeen("93.184.216.34", "api-v2.example.com")], { at: 2 }), 2);
    expect(m.nodes.get(ext)!.props.dnsName).toBe("api-v2.example.com");
    // the DNS job goes silent; the agent keeps the call open
    const aging = { intervalMs: 1, staleAfter: 3, removeAfter: 6 };
    call(m, 50);
    const c = ageModel(m, 50, aging);
    expect(c.nodesUpserted.map((n) => [n.id, n.name])).toEqual([[ext, "93.184.216.34:443"]]);
    expect(m.nodes.get(ext)!.props.dnsName).toBeUndefined();
  });
});

describe("IP ownership: agents are the authority", () => {
  /** db (agent) holds 10.0.0.5 and listens on 5432; h1's app calls 10.0.0.5:5432. */
  function estate() {
    const m = emptyModel({ confirmScans: 1 });
    applyDiscovery(m, batch([hostSeen(["10.0.0.5"], "db"), listen(5432, pg)], { host: "db", at: 100 }), 100);
    applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), conn("10.0.0.1", 40000, "10.0.0.5", 5432, proc(20, "app"))], { at: 100 }), 100);
    return m;
  }
  const toDb = "CONNECTS service:h1:app:client listener:db:tcp:0.0.0.0:5432";

  test("a job's newer host.seen with the agent's IP neither steals nor flips the IP, nor rewrites the agent's host", () => {
    const m = estate();
    expect(edgesOf(m, "CONNECTS")).toEqual([toDb]);
    // a scan job reports the address as a host of its own, later than the agent's claim
    applyDiscovery(m, batch([hostSeen(["10.0.0.5"], "10.0.0.5"), listen(5432, null)], { source: "job:tcp-scan:10.0.0.5", host: "10.0.0.5", at: 500 }), 500);
    expect(m.ipOwner.get("10.0.0.5")).toMatchObject({ host: "db", agent: true });
    // an inventory reports the agent's own host, with no IPs and empty facts
    const c = applyDiscovery(m, batch([{ type: "host.seen", hostname: "db", os: "", kernel: "", cpus: 0, memTotalBytes: 0, ips: [] }], { source: "job:inventory-csv:db", host: "db", at: 600 }), 600);
    expect(c.nodesUpserted.map((n) => n.id)).not.toContain("host:db");
    expect(m.nodes.get("host:db")).toMatchObject({ source: "agent:db", props: { os: "Debian", ips: "10.0.0.5" } });
    expect(m.ipOwner.get("10.0.0.5")).toMatchObject({ host: "db", agent: true });
    expect(edgesOf(m, "CONNECTS")).toEqual([toDb]);
    // both jobs age out: the agent's claim and the edge stay
    const aging = { intervalMs: 10, staleAfter: 3, removeAfter: 6 };
    applyDiscovery(m, batch([hostSeen(["10.0.0.5"], "db")], { host: "db", at: 700 }), 700);
    applyDiscovery(m, batch([hostSeen(["10.0.0.1"])], { at: 700 }), 700);
    ageModel(m, 700, aging);
    expect(m.sources.has("job:inventory-csv:db")).toBe(false);
    expect(m.ipOwner.get("10.0.0.5")).toMatchObject({ host: "db", agent: true });
    expect(edgesOf(m, "CONNECTS")).toEqual([toDb]);
  });

  test("a job may claim an address no agent holds; an agent claiming it later (even with an older clock) takes it", () => {
    const m = emptyModel({ confirmScans: 1 });
    applyDiscovery(m, batch([hostSeen(["10.0.0.9"], "10.0.0.9"), listen(6379, null)], { source: "job:tcp-scan:10.0.0.9", host: "10.0.0.9", at: 500 }), 500);
    applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), conn("10.0.0.1", 40000, "10.0.0.9", 6379, proc(20, "app"))], { at: 500 }), 500);
    expect(edgesOf(m, "CONNECTS")).toEqual(["CONNECTS service:h1:app:client listener:10.0.0.9:tcp:0.0.0.0:6379"]);
    applyDiscovery(m, batch([hostSeen(["10.0.0.9"], "cache"), listen(6379, proc(7, "redis"))], { host: "cache", at: 400 }), 510);
    expect(m.ipOwner.get("10.0.0.9")).toMatchObject({ host: "cache", agent: true });
    expect(edgesOf(m, "CONNECTS")).toEqual(["CONNECTS service:h1:app:client listener:cache:tcp:0.0.0.0:6379"]);
  });
});

describe("jobs beside agents", () => {
  test("an inventory's or scanner's listener on an agent's host neither takes over the agent's socket nor catches its callers", () => {
    const m = emptyModel({ confirmScans: 1 });
    applyDiscovery(m, batch([hostSeen(["10.0.0.2"], "db"), listen(5432, pg)], { host: "db" }), 1);
    // the inventory knows db by name and lists its port on its address; a scan job reports the wildcard socket
    const inv = "job:inventory-csv:db";
    applyDiscovery(m, batch([hostSeen(["10.0.0.2"], "db"), listen(5432, null, "10.0.0.2"), annotate("db", { owner: "payments" }, 5432)], { source: inv, host: "db", full: true }), 2);
    const c = applyDiscovery(m, batch([listen(5432, null)], { source: "job:tcp-scan:db", host: "db", full: true }), 3);
    expect(changed(c)).toBe(0);
    expect(m.nodes.get("listener:db:tcp:0.0.0.0:5432")!.source).toBe("agent:db");
    expect(edgesOf(m, "LISTENS")).toContain("LISTENS service:db:postgres:5432 listener:db:tcp:0.0.0.0:5432");
    // a call to the address reaches the agent's listener, so the service dependency is there
    applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), conn("10.0.0.1", 40000, "10.0.0.2", 5432, proc(20, "app"))]), 4);
    expect(edgesOf(m, "CONNECTS")).toEqual(["CONNECTS service:h1:app:client listener:db:tcp:0.0.0.0:5432"]);
    expect(edgesOf(m, "DEPENDS_ON")).toEqual(["DEPENDS_ON service:h1:app:client service:db:postgres:5432"]);
    expect(props(m, "service:db:postgres:5432")!.owner).toBe("payments");
  });
});
