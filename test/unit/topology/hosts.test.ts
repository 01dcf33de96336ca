import { describe, expect, test } from "bun:test";
import { ageModel, applyDiscovery, emptyModel } from "../../../pipelines/stages/topology/index.ts";
import { batch, conn, edgesOf, hostSeen, listen, proc } from "../../helpers/discovery.ts";

const pg = proc(10, "postgres");

test("IP reuse: the old host's listeners stay until aged out, but the IP's flows move to the new host at once — no phantom edges", () => {
  const m = emptyModel({ confirmScans: 1 });
  // db-old owns 10.0.0.5 and listens on 5432; app on h1 calls it
  applyDiscovery(m, batch([hostSeen(["10.0.0.5"], "db-old"), listen(5432, proc(1, "postgres"))], { host: "db-old", at: 100 }), 100);
  applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), conn("10.0.0.1", 40000, "10.0.0.5", 5432, proc(2, "app"))], { at: 100 }), 100);
  expect(edgesOf(m, "CONNECTS")).toEqual(["CONNECTS service:h1:app:client listener:db-old:tcp:0.0.0.0:5432"]);
  // redeploy: db-old goes silent, cache-new gets 10.0.0.5 and runs redis, not postgres
  applyDiscovery(m, batch([hostSeen(["10.0.0.5"], "cache-new"), listen(6379, proc(3, "redis"))], { host: "cache-new", at: 200 }), 200);
  applyDiscovery(m, batch([conn("10.0.0.1", 40001, "10.0.0.5", 6379, proc(2, "app"))], { at: 200 }), 200);
  // the old socket now leads to a port nobody listens on at one of our hosts: no edge (and no external node there)
  expect(edgesOf(m, "CONNECTS")).toEqual(["CONNECTS service:h1:app:client listener:cache-new:tcp:0.0.0.0:6379"]);
  expect(m.nodes.has("external:10.0.0.5:5432")).toBe(false);
  expect(m.nodes.has("listener:db-old:tcp:0.0.0.0:5432")).toBe(true);
  // a late (replayed) batch of the old host does not take the IP back
  applyDiscovery(m, batch([hostSeen(["10.0.0.5"], "db-old")], { host: "db-old", at: 150 }), 210);
  expect(m.ipOwner.get("10.0.0.5")!.host).toBe("cache-new");
  expect(edgesOf(m, "CONNECTS")).not.toContain("CONNECTS service:h1:app:client listener:db-old:tcp:0.0.0.0:5432");
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
