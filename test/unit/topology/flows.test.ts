import { expect, test } from "bun:test";
import type { DiscoveryEvent } from "../../../pipelines/contracts/discovery.ts";
import { applyDiscovery, emptyModel } from "../../../pipelines/stages/topology/index.ts";
import { batch, changed, conn, edgesOf, gone, hostSeen, listen, proc } from "../../helpers/discovery.ts";

test("listener and a loopback connection to it: service → listener edges once the flow is seen in two scans; server side skipped", () => {
  const m = emptyModel();
  const events: DiscoveryEvent[] = [
    hostSeen(["10.0.0.1"]),
    listen(5432, proc(10, "postgres"), "127.0.0.1"),
    conn("127.0.0.1", 40000, "127.0.0.1", 5432, proc(20, "app")), // client half
    conn("127.0.0.1", 5432, "127.0.0.1", 40000, proc(10, "postgres")), // server half: local port is the listener → skipped
  ];
  const c = applyDiscovery(m, batch(events), 5);
  expect(c.nodesUpserted.map((n) => n.id).sort()).toEqual(["host:h1", "listener:h1:tcp:127.0.0.1:5432", "service:h1:postgres:5432"]);
  expect(c.edgesUpserted.some((e) => e.kind === "CONNECTS")).toBe(false);
  // next scan (a delta with nothing new): the flow is still open → it becomes an edge, and its client a service
  const c2 = applyDiscovery(m, batch([hostSeen(["10.0.0.1"])]), 6);
  expect(c2.nodesUpserted.map((n) => n.id)).toEqual(["service:h1:app:client"]);
  expect(edgesOf(m)).toEqual([
    "CONNECTS service:h1:app:client listener:h1:tcp:127.0.0.1:5432",
    "DEPENDS_ON service:h1:app:client service:h1:postgres:5432",
    "LISTENS service:h1:postgres:5432 listener:h1:tcp:127.0.0.1:5432",
    "RUNS host:h1 service:h1:app:client",
    "RUNS host:h1 service:h1:postgres:5432",
  ]);
  const pg = m.nodes.get("service:h1:postgres:5432")!;
  expect(pg.kind).toBe("process");
  expect(pg.props.pid).toBe(10);
  expect(m.nodes.has("external:127.0.0.1:40000")).toBe(false);
});

test("a short-lived process never reaches the graph; a client reconnecting on new ports keeps its edge", () => {
  const m = emptyModel();
  applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), listen(80, proc(1, "nginx"))]), 1);
  // a cron job's curl: seen in one scan, gone in the next
  const c1 = applyDiscovery(m, batch([conn("10.0.0.1", 41000, "10.0.0.1", 80, proc(900, "curl"))]), 2);
  const c2 = applyDiscovery(m, batch([gone("10.0.0.1", 41000, "10.0.0.1", 80)]), 3);
  const c3 = applyDiscovery(m, batch([]), 4);
  const c4 = applyDiscovery(m, batch([]), 5);
  expect([c1, c2, c3, c4].map(changed)).toEqual([0, 0, 0, 0]);
  expect(m.flows.size).toBe(0);
  expect(m.procs.has("h1|900|1900")).toBe(false);
  // a poller: new socket each scan, each gone by the next → one stable edge
  const poll = proc(50, "poller");
  applyDiscovery(m, batch([conn("10.0.0.1", 42000, "10.0.0.1", 80, poll)]), 6);
  const seen: number[] = [];
  for (let i = 1; i <= 6; i++) {
    const c = applyDiscovery(m, batch([gone("10.0.0.1", 42000 + i - 1, "10.0.0.1", 80), conn("10.0.0.1", 42000 + i, "10.0.0.1", 80, poll)]), 6 + i);
    seen.push(c.edgesUpserted.length + c.edgesRemoved.length);
  }
  expect(seen).toEqual([3, 0, 0, 0, 0, 0]); // RUNS + CONNECTS + DEPENDS_ON once, then quiet
  // it stops polling: the edge stays through the grace scans, then goes
  applyDiscovery(m, batch([gone("10.0.0.1", 42006, "10.0.0.1", 80)]), 20);
  expect(m.edges.has("CONNECTS:service:h1:poller:client->listener:h1:tcp:0.0.0.0:80")).toBe(true);
  const last = applyDiscovery(m, batch([]), 21);
  expect(last.edgesRemoved.map((e) => e.kind).sort()).toEqual(["CONNECTS", "DEPENDS_ON", "RUNS"]);
  expect(last.nodesRemoved).toEqual(["service:h1:poller:client"]);
});

test("a connection to an unknown endpoint becomes an external node; once an agent's host holds the address it waits (no external at one of our hosts), then reaches the listener when it appears", () => {
  const m = emptyModel({ confirmScans: 1 });
  applyDiscovery(m, batch([hostSeen(["10.0.0.1"])]), 1);
  const c1 = applyDiscovery(m, batch([conn("10.0.0.1", 50000, "10.0.0.2", 6379, proc(5, "app"))]), 2);
  expect(c1.nodesUpserted.some((n) => n.id === "external:10.0.0.2:6379")).toBe(true);
  // host h2 announces 10.0.0.2: the address is one of ours, so no third party there; its listener has not come yet
  const c2 = applyDiscovery(m, batch([hostSeen(["10.0.0.2"], "h2")], { host: "h2" }), 3);
  expect(c2.nodesRemoved).toContain("external:10.0.0.2:6379");
  expect(c2.removals).toEqual([{ cause: "resolved", source: "agent:h2", nodes: 1, edges: 1 }]);
  expect(edgesOf(m, "CONNECTS")).toEqual([]);
  // then its redis listener
  const c3 = applyDiscovery(m, batch([listen(6379, proc(7, "redis"))], { host: "h2" }), 4);
  expect(c3.edgesUpserted.some((e) => e.kind === "CONNECTS" && e.src === "service:h1:app:client" && e.dst === "listener:h2:tcp:0.0.0.0:6379")).toBe(true);
  expect([...m.nodes.keys()].filter((id) => id.startsWith("external:"))).toEqual([]);
});
