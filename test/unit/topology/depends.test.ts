// DEPENDS_ON service → service, derived by the pure topology stage from CONNECTS + LISTENS pairs.
import { describe, expect, test } from "bun:test";
import { ageModel, applyDiscovery, emptyModel, modelFromGraph, type Changes } from "../../../pipelines/stages/topology/index.ts";
import { batch, changed, conn, edgesOf, gone, hostSeen, listen, proc } from "../../helpers/discovery.ts";

const APP = "service:h1:app:client";
const DEP = (dst: string) => `DEPENDS_ON:${APP}->${dst}`;
const depIds = (c: Changes) => ({
  up: c.edgesUpserted.filter((e) => e.kind === "DEPENDS_ON").map((e) => e.id),
  down: c.edgesRemoved.filter((e) => e.kind === "DEPENDS_ON").map((e) => e.id),
});
const app = proc(20, "app");
const pg = proc(10, "postgres");

/** h1 (10.0.0.1) runs the app; db (10.0.0.2) runs postgres on the given ports. */
function estate(ports: number[], opts = {}) {
  const m = emptyModel(opts);
  applyDiscovery(m, batch([hostSeen(["10.0.0.2"], "db"), ...ports.map((p) => listen(p, pg))], { host: "db" }), 1);
  applyDiscovery(m, batch([hostSeen(["10.0.0.1"])]), 1);
  return m;
}

describe("DEPENDS_ON", () => {
  test("a confirmed call from one service to another's listener makes one DEPENDS_ON edge, as a net change, owned by the caller's source", () => {
    const m = estate([5432]);
    const c1 = applyDiscovery(m, batch([conn("10.0.0.1", 40000, "10.0.0.2", 5432, app)]), 2);
    expect(depIds(c1).up).toEqual([]); // not confirmed yet
    const c2 = applyDiscovery(m, batch([]), 3);
    expect(depIds(c2).up).toEqual([DEP("service:db:postgres:5432")]);
    expect(c2.created!.has(DEP("service:db:postgres:5432"))).toBe(true);
    const e = m.edges.get(DEP("service:db:postgres:5432"))!;
    expect(e).toMatchObject({ kind: "DEPENDS_ON", src: APP, dst: "service:db:postgres:5432", source: "agent:h1", props: { ports: "5432/tcp" } });
    // steady state: no change at all
    expect(changed(applyDiscovery(m, batch([]), 4))).toBe(0);
    expect(changed(applyDiscovery(m, batch([hostSeen(["10.0.0.2"], "db"), listen(5432, pg)], { host: "db" }), 5))).toBe(0);
  });

  test("two connections to two listeners of one service → one edge; closing one keeps it, closing both removes it", () => {
    const m = estate([5432, 5433], { confirmScans: 1, graceScans: 1 });
    const svc = "service:db:postgres:5432,5433";
    const c = applyDiscovery(m, batch([conn("10.0.0.1", 40000, "10.0.0.2", 5432, app), conn("10.0.0.1", 40001, "10.0.0.2", 5433, app)]), 2);
    expect(depIds(c).up).toEqual([DEP(svc)]);
    expect(edgesOf(m, "DEPENDS_ON")).toEqual([`DEPENDS_ON ${APP} ${svc}`]);
    expect(m.edges.get(DEP(svc))!.props).toEqual({ ports: "5432/tcp,5433/tcp" });
    // a second socket on a port already counted changes nothing
    expect(changed(applyDiscovery(m, batch([conn("10.0.0.1", 40002, "10.0.0.2", 5432, app)]), 3))).toBe(0);
    // close every socket to 5432: after the grace scan the edge stays, its ports summary shrinks (a props change)
    const closeOne = applyDiscovery(m, batch([gone("10.0.0.1", 40000, "10.0.0.2", 5432), gone("10.0.0.1", 40002, "10.0.0.2", 5432)]), 4);
    expect(depIds(closeOne)).toEqual({ up: [DEP(svc)], down: [] });
    expect(m.edges.get(DEP(svc))!.props).toEqual({ ports: "5433/tcp" });
    const closeBoth = applyDiscovery(m, batch([gone("10.0.0.1", 40001, "10.0.0.2", 5433)]), 5);
    expect(depIds(closeBoth)).toEqual({ up: [], down: [DEP(svc)] });
    expect(edgesOf(m, "DEPENDS_ON")).toEqual([]);
  });

  test("a restarted server process (new pid, same service) keeps the edge with no change at all", () => {
    const m = estate([5432], { confirmScans: 1 });
    applyDiscovery(m, batch([conn("10.0.0.1", 40000, "10.0.0.2", 5432, app)]), 2);
    const firstSeen = m.edges.get(DEP("service:db:postgres:5432"))!.firstSeen;
    const restarted = proc(99, "postgres", { startTime: 77_777 });
    const c = applyDiscovery(m, batch([listen(5432, restarted)], { host: "db" }), 3);
    expect(depIds(c)).toEqual({ up: [], down: [] });
    expect(c.edgesUpserted.filter((e) => e.kind !== "LISTENS" || e.src !== "service:db:postgres:5432")).toEqual([]);
    expect(m.nodes.get("service:db:postgres:5432")!.props.pid).toBe(99);
    expect(edgesOf(m, "DEPENDS_ON")).toEqual([`DEPENDS_ON ${APP} service:db:postgres:5432`]);
    expect(m.edges.get(DEP("service:db:postgres:5432"))!.firstSeen).toBe(firstSeen);
  });

  test("external endpoints, the server side of a connection, a host-owned listener and a call to itself make no DEPENDS_ON", () => {
    const m = estate([5432], { confirmScans: 1 });
    applyDiscovery(m, batch([listen(8080, proc(30, "api")), listen(9100, null)]), 2);
    applyDiscovery(
      m,
      batch([
        conn("10.0.0.1", 40000, "93.184.216.34", 443, app), // nobody here listens there: external
        conn("10.0.0.1", 8080, "10.0.0.9", 51000, proc(30, "api")), // server half of an inbound call: skipped
        conn("127.0.0.1", 40100, "127.0.0.1", 8080, proc(30, "api")), // the api calling itself
        conn("10.0.0.1", 40200, "10.0.0.1", 9100, app), // a listener whose owner the agent could not see
      ]),
      3,
    );
    expect(edgesOf(m, "CONNECTS")).toEqual([
      "CONNECTS service:h1:api:8080 listener:h1:tcp:0.0.0.0:8080",
      `CONNECTS ${APP} external:93.184.216.34:443`,
      `CONNECTS ${APP} listener:h1:tcp:0.0.0.0:9100`,
    ]);
    expect(edgesOf(m, "DEPENDS_ON")).toEqual([]);
  });

  test("when the listener's LISTENS moves to another service, the edge moves with it; a removed listener takes it away", () => {
    const m = estate([5432], { confirmScans: 1 });
    applyDiscovery(m, batch([conn("10.0.0.1", 40000, "10.0.0.2", 5432, app)]), 2);
    // postgres opens a second port: it is now service postgres:5432,6000
    const c = applyDiscovery(m, batch([listen(6000, pg)], { host: "db" }), 3);
    expect(depIds(c)).toEqual({ up: [DEP("service:db:postgres:5432,6000")], down: [DEP("service:db:postgres:5432")] });
    const l = applyDiscovery(m, batch([{ type: "listener.gone", proto: "tcp", ip: "0.0.0.0", port: 5432 }], { host: "db" }), 4);
    expect(depIds(l).down).toEqual([DEP("service:db:postgres:5432,6000")]);
    expect(edgesOf(m, "DEPENDS_ON")).toEqual([]);
  });

  test("aging: the caller's source going away removes its DEPENDS_ON; the server's going away does too", () => {
    const aging = { intervalMs: 1000, staleAfter: 3, removeAfter: 6 };
    for (const silent of ["agent:h1", "agent:db"]) {
      const m = estate([5432], { confirmScans: 1 });
      applyDiscovery(m, batch([conn("10.0.0.1", 40000, "10.0.0.2", 5432, app)], { at: 0 }), 0);
      const other = silent === "agent:h1" ? "db" : "h1";
      applyDiscovery(m, batch([hostSeen([other === "db" ? "10.0.0.2" : "10.0.0.1"], other)], { host: other, at: 7000 }), 7000);
      const c = ageModel(m, 7000, aging);
      expect(depIds(c).down).toEqual([DEP("service:db:postgres:5432")]);
      expect(edgesOf(m, "DEPENDS_ON")).toEqual([]);
    }
  });

  test("after a restart the model rebuilt from the store keeps DEPENDS_ON with no flicker; a store without them gets them at the first full scan", () => {
    const m1 = estate([5432]);
    const ev = [hostSeen(["10.0.0.1"]), conn("10.0.0.1", 40000, "10.0.0.2", 5432, app)];
    applyDiscovery(m1, batch(ev), 2);
    applyDiscovery(m1, batch([]), 3);
    expect(edgesOf(m1, "DEPENDS_ON")).toEqual([`DEPENDS_ON ${APP} service:db:postgres:5432`]);
    const dbScan = batch([hostSeen(["10.0.0.2"], "db"), listen(5432, pg)], { host: "db", full: true });
    const m2 = modelFromGraph([...m1.nodes.values()], [...m1.edges.values()]);
    expect(changed(applyDiscovery(m2, dbScan, 4))).toBe(0);
    expect(changed(applyDiscovery(m2, batch(ev, { full: true }), 4))).toBe(0);
    // connection closed after the restart: the edge goes with its CONNECTS
    applyDiscovery(m2, batch([gone("10.0.0.1", 40000, "10.0.0.2", 5432)]), 5);
    applyDiscovery(m2, batch([]), 6);
    expect(edgesOf(m2, "DEPENDS_ON")).toEqual([]);
    // a graph stored before DEPENDS_ON existed
    const m3 = modelFromGraph([...m1.nodes.values()], [...m1.edges.values()].filter((e) => e.kind !== "DEPENDS_ON"));
    applyDiscovery(m3, { ...dbScan, scanId: dbScan.scanId + 1000 }, 4);
    const c3 = applyDiscovery(m3, batch(ev, { full: true }), 4);
    expect(depIds(c3).up).toEqual([DEP("service:db:postgres:5432")]);
  });

  test("the bookkeeping is per change: a new call to a busy listener touches only its own edges", () => {
    const m = estate([5432], { confirmScans: 1 });
    for (let h = 0; h < 300; h++) {
      const ip = `10.1.${h >> 8}.${h & 255}`;
      applyDiscovery(m, batch([hostSeen([ip], `c${h}`), conn(ip, 40000, "10.0.0.2", 5432, app)], { host: `c${h}` }), 2);
    }
    expect(edgesOf(m, "DEPENDS_ON").length).toBe(300);
    const c = applyDiscovery(m, batch([conn("10.0.0.1", 40000, "10.0.0.2", 5432, app)]), 3);
    expect(c.edgesUpserted.map((e) => e.kind).sort()).toEqual(["CONNECTS", "DEPENDS_ON", "RUNS"]);
    expect(c.nodesUpserted.map((n) => n.id)).toEqual([APP]);
  });
});

test("after a restart, a caller whose full scan comes before its server's keeps its cross-host edges: no change at all", () => {
  const m1 = estate([5432]);
  const ev = [hostSeen(["10.0.0.1"]), conn("10.0.0.1", 40000, "10.0.0.2", 5432, app)];
  applyDiscovery(m1, batch(ev), 2);
  applyDiscovery(m1, batch([]), 3);
  const m2 = modelFromGraph([...m1.nodes.values()], [...m1.edges.values()]);
  expect(changed(applyDiscovery(m2, batch(ev, { full: true }), 4))).toBe(0);
  expect(changed(applyDiscovery(m2, batch([hostSeen(["10.0.0.2"], "db"), listen(5432, pg)], { host: "db", full: true }), 5))).toBe(0);
  expect(changed(applyDiscovery(m2, batch([]), 6))).toBe(0);
  expect(edgesOf(m2)).toEqual(edgesOf(m1));
  // the server's next full scan no longer lists the port: listener, service and the dependency go
  const gone = applyDiscovery(m2, batch([hostSeen(["10.0.0.2"], "db")], { host: "db", full: true }), 7);
  expect(gone.nodesRemoved.sort()).toEqual(["listener:db:tcp:0.0.0.0:5432", "service:db:postgres:5432"]);
  expect(edgesOf(m2, "DEPENDS_ON")).toEqual([]);
});
