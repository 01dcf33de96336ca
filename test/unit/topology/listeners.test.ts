import { describe, expect, test } from "bun:test";
import { applyDiscovery, emptyModel, type TopologyModel } from "../../../pipelines/stages/topology/index.ts";
import { annotate, batch, changed, conn, edgesOf, hostSeen, listen, proc } from "../../helpers/discovery.ts";

const pg = proc(10, "postgres");
const props = (m: TopologyModel, id: string) => m.nodes.get(id)?.props;

test("listener.gone removes the listener and the service it alone kept", () => {
  const m = emptyModel({ confirmScans: 1, graceScans: 1 });
  applyDiscovery(m, batch([hostSeen([]), listen(9000, proc(1, "srv"), "127.0.0.1"), conn("127.0.0.1", 40001, "127.0.0.1", 9000, proc(2, "cli"))]), 1);
  expect(edgesOf(m, "CONNECTS")).toEqual(["CONNECTS service:h1:cli:client listener:h1:tcp:127.0.0.1:9000"]);
  const lg = applyDiscovery(m, batch([{ type: "listener.gone", proto: "tcp", ip: "127.0.0.1", port: 9000 }]), 3);
  expect(lg.nodesRemoved.sort()).toEqual(["listener:h1:tcp:127.0.0.1:9000", "service:h1:srv:9000"]);
  // the client's still-open flow now points at an external endpoint
  expect(edgesOf(m, "CONNECTS")).toEqual(["CONNECTS service:h1:cli:client external:127.0.0.1:9000"]);
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
