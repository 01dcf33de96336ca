// CMDB annotations (entity.annotated) in the pure topology stage.
import { describe, expect, test } from "bun:test";
import { ageModel, applyDiscovery, emptyModel, modelFromGraph, type Changes, type TopologyModel } from "../../../pipelines/stages/topology/index.ts";
import { annotate, batch, changed, hostSeen, listen, proc } from "../../helpers/discovery.ts";

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
