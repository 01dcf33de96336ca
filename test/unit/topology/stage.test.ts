import { describe, expect, test } from "bun:test";
import type { DiscoveryEvent } from "../../../pipelines/contracts/discovery.ts";
import { ageModel, applyDiscovery, emptyModel, fingerprint, identityPorts, modelFromGraph, type Changes, type TopologyModel } from "../../../pipelines/stages/topology/index.ts";
import { batch, changed, conn, edgesOf, gone, hostSeen, listen, proc } from "../../helpers/discovery.ts";

describe("service identity", () => {
  test("fingerprint: the binary, plus what an interpreter runs", () => {
    expect(fingerprint(proc(1, "nginx", { exe: "/usr/sbin/nginx" }))).toBe("nginx");
    expect(fingerprint(proc(1, "java", { exe: "/usr/lib/jvm/bin/java", cmdline: ["java", "-Xmx1g", "-cp", "lib/*", "-jar", "/srv/orders.jar"] }))).toBe("java:orders.jar");
    expect(fingerprint(proc(1, "java", { exe: "/usr/bin/java", cmdline: ["java", "-cp", "a.jar", "com.acme.Billing"] }))).toBe("java:com.acme.Billing");
    expect(fingerprint(proc(1, "python3", { exe: "/usr/bin/python3.11", cmdline: ["python3", "-m", "celery", "worker"] }))).toBe("python3.11:celery");
    expect(fingerprint(proc(1, "postgres", { exe: "/usr/lib/postgresql/16/bin/postgres (deleted)" }))).toBe("postgres");
    expect(fingerprint(proc(1, "kworker", { exe: null }))).toBe("kworker");
    expect(fingerprint(proc(1, "bun", { exe: "/opt/bun/bin/bun.exe", cmdline: ["bun", "run", "/srv/orrery/services/agent/main.ts"] }))).toBe("bun:agent/main.ts");
    expect(fingerprint(proc(1, "node", { exe: "/usr/bin/node", cmdline: ["node", "--enable-source-maps", "dist/server.mjs"] }))).toBe("node:dist/server.mjs");
  });

  test("identity ports: sorted listening ports, ephemeral ones only when they are all there is", () => {
    expect(identityPorts([{ proto: "tcp", port: 443 }, { proto: "tcp", port: 80 }, { proto: "udp", port: 53 }])).toBe("53/udp,80,443");
    expect(identityPorts([{ proto: "tcp", port: 8080 }, { proto: "tcp", port: 41234 }])).toBe("8080");
    expect(identityPorts([{ proto: "tcp", port: 41234 }])).toBe("41234");
    expect(identityPorts([])).toBe("client");
  });
});

describe("topology stage", () => {
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

  test("seeing the same thing again is not a change (only lastSeen moves)", () => {
    const m = emptyModel();
    const ev: DiscoveryEvent[] = [hostSeen([]), listen(80, proc(1, "nginx"))];
    applyDiscovery(m, batch(ev), 1);
    const again = applyDiscovery(m, batch(ev), 2);
    expect(again).toEqual({ nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [], created: new Set() });
    expect(m.nodes.get("listener:h1:tcp:0.0.0.0:80")!.lastSeen).toBe(2);
  });

  test("a restarted process (new pid, same binary and ports) is the same service: no node or edge changes but its pid", () => {
    const m = emptyModel();
    applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), listen(6379, proc(7, "redis-server")), conn("10.0.0.1", 50000, "10.0.0.9", 443, proc(7, "redis-server"))]), 1);
    applyDiscovery(m, batch([]), 2);
    const before = edgesOf(m);
    expect(before).toContain("CONNECTS service:h1:redis-server:6379 external:10.0.0.9:443");
    // restart: the listener's owner changes, the old connection goes, the new process reconnects
    const next = proc(70, "redis-server", { startTime: 99_999 });
    const all: Changes[] = [applyDiscovery(m, batch([listen(6379, next), gone("10.0.0.1", 50000, "10.0.0.9", 443), conn("10.0.0.1", 50100, "10.0.0.9", 443, next)]), 3)];
    for (let i = 0; i < 3; i++) all.push(applyDiscovery(m, batch([]), 4 + i));
    expect(all.flatMap((c) => [...c.nodesRemoved, ...c.edgesRemoved.map((e) => e.id), ...c.edgesUpserted.map((e) => e.id)])).toEqual([]);
    // only the service's props moved (two processes during the old one's grace, then the new pid alone)
    expect(new Set(all.flatMap((c) => c.nodesUpserted.map((n) => n.id)))).toEqual(new Set(["service:h1:redis-server:6379"]));
    expect(m.nodes.get("service:h1:redis-server:6379")!.props).toMatchObject({ pid: 70, processes: 1 });
    expect(edgesOf(m)).toEqual(before);
    expect(changed(applyDiscovery(m, batch([]), 9))).toBe(0);
  });

  test("several processes of one service fold into one node; a new port makes it a different service", () => {
    const m = emptyModel();
    const master = proc(100, "nginx", { exe: "/usr/sbin/nginx" });
    const other = proc(200, "nginx", { exe: "/usr/sbin/nginx" });
    applyDiscovery(m, batch([hostSeen([]), listen(80, master), listen(80, other, "10.0.0.1")]), 1);
    const svc = m.nodes.get("service:h1:nginx:80")!;
    expect(svc.props.processes).toBe(2);
    expect(svc.props.pid).toBe(100);
    expect([...m.nodes.values()].filter((n) => n.kind === "process").length).toBe(1);
    // the second process also opens 443: it is now another service (nginx:80,443), the first keeps nginx:80
    const c = applyDiscovery(m, batch([listen(443, other)]), 2);
    expect(c.nodesUpserted.map((n) => n.id).sort()).toEqual(["listener:h1:tcp:0.0.0.0:443", "service:h1:nginx:80", "service:h1:nginx:80,443"]);
    expect(edgesOf(m, "LISTENS")).toEqual([
      "LISTENS service:h1:nginx:80 listener:h1:tcp:0.0.0.0:80",
      "LISTENS service:h1:nginx:80,443 listener:h1:tcp:0.0.0.0:443",
      "LISTENS service:h1:nginx:80,443 listener:h1:tcp:10.0.0.1:80",
    ]);
  });

  test("a connection to an unknown endpoint becomes an external node, then moves onto the listener when it appears", () => {
    const m = emptyModel({ confirmScans: 1 });
    applyDiscovery(m, batch([hostSeen(["10.0.0.1"])]), 1);
    const c1 = applyDiscovery(m, batch([conn("10.0.0.1", 50000, "10.0.0.2", 6379, proc(5, "app"))]), 2);
    expect(c1.nodesUpserted.some((n) => n.id === "external:10.0.0.2:6379")).toBe(true);
    // host h2 announces 10.0.0.2 and a redis listener
    applyDiscovery(m, batch([hostSeen(["10.0.0.2"], "h2")], { host: "h2" }), 3);
    const c2 = applyDiscovery(m, batch([listen(6379, proc(7, "redis"))], { host: "h2" }), 4);
    expect(c2.nodesRemoved).toContain("external:10.0.0.2:6379");
    expect(c2.edgesUpserted.some((e) => e.kind === "CONNECTS" && e.src === "service:h1:app:client" && e.dst === "listener:h2:tcp:0.0.0.0:6379")).toBe(true);
  });

  test("IP reuse: the old host's listeners stay until aged out, but the IP's flows move to the new host at once — no phantom edges", () => {
    const m = emptyModel({ confirmScans: 1 });
    // db-old owns 10.0.0.5 and listens on 5432; app on h1 calls it
    applyDiscovery(m, batch([hostSeen(["10.0.0.5"], "db-old"), listen(5432, proc(1, "postgres"))], { host: "db-old", at: 100 }), 100);
    applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), conn("10.0.0.1", 40000, "10.0.0.5", 5432, proc(2, "app"))], { at: 100 }), 100);
    expect(edgesOf(m, "CONNECTS")).toEqual(["CONNECTS service:h1:app:client listener:db-old:tcp:0.0.0.0:5432"]);
    // redeploy: db-old goes silent, cache-new gets 10.0.0.5 and runs redis, not postgres
    applyDiscovery(m, batch([hostSeen(["10.0.0.5"], "cache-new"), listen(6379, proc(3, "redis"))], { host: "cache-new", at: 200 }), 200);
    applyDiscovery(m, batch([conn("10.0.0.1", 40001, "10.0.0.5", 6379, proc(2, "app"))], { at: 200 }), 200);
    expect(edgesOf(m, "CONNECTS")).toEqual([
      "CONNECTS service:h1:app:client external:10.0.0.5:5432", // the old socket now leads to nobody we know
      "CONNECTS service:h1:app:client listener:cache-new:tcp:0.0.0.0:6379",
    ]);
    expect(m.nodes.has("listener:db-old:tcp:0.0.0.0:5432")).toBe(true);
    // a late (replayed) batch of the old host does not take the IP back
    applyDiscovery(m, batch([hostSeen(["10.0.0.5"], "db-old")], { host: "db-old", at: 150 }), 210);
    expect(m.ipOwner.get("10.0.0.5")!.host).toBe("cache-new");
    expect(edgesOf(m, "CONNECTS")).not.toContain("CONNECTS service:h1:app:client listener:db-old:tcp:0.0.0.0:5432");
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

  test("listener.gone removes the listener and the service it alone kept", () => {
    const m = emptyModel({ confirmScans: 1, graceScans: 1 });
    applyDiscovery(m, batch([hostSeen([]), listen(9000, proc(1, "srv"), "127.0.0.1"), conn("127.0.0.1", 40001, "127.0.0.1", 9000, proc(2, "cli"))]), 1);
    expect(edgesOf(m, "CONNECTS")).toEqual(["CONNECTS service:h1:cli:client listener:h1:tcp:127.0.0.1:9000"]);
    const lg = applyDiscovery(m, batch([{ type: "listener.gone", proto: "tcp", ip: "127.0.0.1", port: 9000 }]), 3);
    expect(lg.nodesRemoved.sort()).toEqual(["listener:h1:tcp:127.0.0.1:9000", "service:h1:srv:9000"]);
    // the client's still-open flow now points at an external endpoint
    expect(edgesOf(m, "CONNECTS")).toEqual(["CONNECTS service:h1:cli:client external:127.0.0.1:9000"]);
  });

  test("a full scan removes what its source no longer lists, and nothing of another source", () => {
    const m = emptyModel();
    applyDiscovery(m, batch([hostSeen([]), listen(22, proc(1, "sshd")), listen(80, proc(2, "nginx"))]), 1);
    applyDiscovery(m, batch([hostSeen([], "h9"), listen(80, proc(3, "x"))], { host: "h9" }), 1);
    // two-part full scan: the removal happens only when both parts are in
    const p0 = applyDiscovery(m, batch([hostSeen([])], { full: true, scanId: 7, part: 0, parts: 2 }), 2);
    expect(p0.nodesRemoved).toEqual([]);
    const p1 = applyDiscovery(m, batch([listen(22, proc(1, "sshd"))], { full: true, scanId: 7, part: 1, parts: 2 }), 2);
    expect(p1.nodesRemoved.sort()).toEqual(["listener:h1:tcp:0.0.0.0:80", "service:h1:nginx:80"]);
    expect(m.nodes.has("listener:h9:tcp:0.0.0.0:80")).toBe(true);
  });

  test("several batches applied together net out: added then removed is no change at all", () => {
    const m = emptyModel();
    applyDiscovery(m, batch([hostSeen([])]), 1);
    const c = applyDiscovery(m, [batch([listen(8080, null, "::")]), batch([{ type: "listener.gone", proto: "tcp", ip: "::", port: 8080 }])], 2);
    expect(changed(c)).toBe(0);
    const d = applyDiscovery(m, batch([listen(8080, null, "::")]), 3);
    expect([...d.created!].sort()).toEqual(["LISTENS:host:h1->listener:h1:tcp:[::]:8080", "listener:h1:tcp:[::]:8080"]);
  });

  test("after a restart, the first full scan confirms what exists (edges included, no flicker) and sweeps the rest of that source", () => {
    const m1 = emptyModel();
    const ev = [hostSeen(["10.0.0.1"]), listen(22, proc(1, "sshd")), listen(81, proc(2, "old")), conn("10.0.0.1", 40000, "10.0.0.7", 443, proc(1, "sshd"))];
    applyDiscovery(m1, batch(ev), 1);
    applyDiscovery(m1, batch([]), 2);
    expect(edgesOf(m1, "CONNECTS")).toEqual(["CONNECTS service:h1:sshd:22 external:10.0.0.7:443"]);
    const m2 = modelFromGraph([...m1.nodes.values()], [...m1.edges.values()]);
    const c = applyDiscovery(m2, batch([ev[0]!, ev[1]!, ev[3]!], { full: true }), 3);
    expect(c.nodesRemoved.sort()).toEqual(["listener:h1:tcp:0.0.0.0:81", "service:h1:old:81"]);
    expect(c.nodesUpserted).toEqual([]);
    expect(c.edgesUpserted).toEqual([]);
    expect(edgesOf(m2, "CONNECTS")).toEqual(["CONNECTS service:h1:sshd:22 external:10.0.0.7:443"]);
  });

  test("aging: a silent source goes stale (a change), comes back fresh, and is removed after removeAfter — only its own entities", () => {
    const m = emptyModel({ confirmScans: 1 });
    const aging = { intervalMs: 1000, staleAfter: 3, removeAfter: 6 };
    applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), listen(80, proc(1, "nginx"))], { at: 0 }), 0);
    applyDiscovery(m, batch([hostSeen(["10.0.0.2"], "h2"), listen(5432, proc(1, "postgres")), conn("10.0.0.2", 40000, "10.0.0.1", 80, proc(9, "cli"))], { host: "h2", at: 0 }), 0);
    expect(edgesOf(m, "CONNECTS")).toEqual(["CONNECTS service:h2:cli:client listener:h1:tcp:0.0.0.0:80"]);
    // h2 keeps scanning, h1 goes silent
    const keepH2 = (t: number) => applyDiscovery(m, batch([hostSeen(["10.0.0.2"], "h2")], { host: "h2", at: t }), t);
    keepH2(1000);
    expect(changed(ageModel(m, 2000, aging))).toBe(0);
    keepH2(2000);
    const stale = ageModel(m, 3000, aging);
    expect(stale.nodesUpserted.map((n) => [n.id, n.props.health]).sort()).toEqual([
      ["host:h1", "stale"],
      ["listener:h1:tcp:0.0.0.0:80", "stale"],
      ["service:h1:nginx:80", "stale"],
    ]);
    expect(changed(ageModel(m, 3500, aging))).toBe(0); // stale once
    // h1 speaks again: fresh
    const back = applyDiscovery(m, batch([hostSeen(["10.0.0.1"])], { at: 3600 }), 3600);
    expect(back.nodesUpserted.every((n) => n.props.health === undefined)).toBe(true);
    expect(back.nodesUpserted.length).toBe(3);
    // then silent for good: removed with everything it reported; h2's flow now leads to an external endpoint
    keepH2(8000);
    ageModel(m, 8000, aging);
    keepH2(9600);
    const removed = ageModel(m, 9600, aging);
    expect(removed.nodesRemoved.sort()).toEqual(["host:h1", "listener:h1:tcp:0.0.0.0:80", "service:h1:nginx:80"]);
    expect(edgesOf(m, "CONNECTS")).toEqual(["CONNECTS service:h2:cli:client external:10.0.0.1:80"]);
    expect(m.nodes.has("host:h2")).toBe(true);
    expect(m.sources.has("agent:h1")).toBe(false);
  });

  test("a source recovered from the store ages from the first ageModel after the restart, not from its old lastSeen", () => {
    const m1 = emptyModel();
    applyDiscovery(m1, batch([hostSeen([]), listen(22, proc(1, "sshd"))]), 1);
    const m2 = modelFromGraph([...m1.nodes.values()], [...m1.edges.values()]);
    const aging = { intervalMs: 1000, staleAfter: 3, removeAfter: 6 };
    expect(changed(ageModel(m2, 1_000_000, aging))).toBe(0);
    expect(changed(ageModel(m2, 1_002_000, aging))).toBe(0);
    expect(ageModel(m2, 1_003_000, aging).nodesUpserted.length).toBe(3);
    expect(ageModel(m2, 1_006_000, aging).nodesRemoved.length).toBe(3);
    expect(m2.nodes.size).toBe(0);
  });
});

describe("container image identity", () => {
  test("the image repository (no tag, no digest) is the fingerprint, so an image upgrade is the same service", () => {
    expect(fingerprint(proc(1, "java", { containerImage: "registry.acme.io/orders:1.4" }))).toBe("image:registry.acme.io/orders");
    expect(fingerprint(proc(1, "java", { containerImage: "registry:5000/team/orders:1.5@sha256:abc" }))).toBe("image:registry_5000/team/orders");
    expect(fingerprint(proc(1, "nginx", { containerImage: "nginx" }))).toBe("image:nginx");
    expect(fingerprint(proc(1, "nginx", { containerImage: null }))).toBe("nginx");

    const m = emptyModel();
    const v1 = proc(10, "java", { containerImage: "registry/orders:1.4", containerId: "c1", cmdline: ["java", "-jar", "/app/orders-1.4.jar"] });
    applyDiscovery(m, batch([hostSeen([]), listen(8080, v1)]), 1);
    const id = "service:h1:image:registry/orders:8080";
    expect(m.nodes.get(id)!.props).toMatchObject({ containerImage: "registry/orders:1.4", containerId: "c1", pid: 10 });
    // upgrade: a new container with the next image (and a renamed jar) takes over the port
    const v2 = proc(20, "java", { containerImage: "registry/orders:1.5", containerId: "c2", cmdline: ["java", "-jar", "/app/orders-1.5.jar"], startTime: 9999 });
    const c = applyDiscovery(m, batch([listen(8080, v2)]), 2);
    expect(c.nodesUpserted.map((n) => n.id)).toEqual([id]);
    expect(c.nodesRemoved).toEqual([]);
    expect(m.nodes.get(id)!.props).toMatchObject({ containerImage: "registry/orders:1.5", containerId: "c2", pid: 20 });
  });
});
