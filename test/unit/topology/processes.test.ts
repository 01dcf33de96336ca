import { expect, test } from "bun:test";
import { applyDiscovery, emptyModel, type Changes } from "../../../pipelines/stages/topology/index.ts";
import { batch, changed, conn, edgesOf, gone, hostSeen, listen, proc } from "../../helpers/discovery.ts";

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

test("a restarted process with two ports stays one service: the old process, its ports taken one by one, is never a service of the port left", () => {
  const m = emptyModel();
  const old = proc(7, "java", { cmdline: ["java", "-jar", "/srv/orders.jar"] });
  applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), listen(8080, old), listen(8081, old), conn("10.0.0.1", 50000, "10.0.0.9", 5432, old)]), 1);
  applyDiscovery(m, batch([]), 2);
  const before = edgesOf(m);
  expect(before).toContain("CONNECTS service:h1:java:orders.jar:8080,8081 external:10.0.0.9:5432");
  // the new pid takes both listeners in one scan; the old one's connection is still open (its grace)
  const next = proc(70, "java", { cmdline: ["java", "-jar", "/srv/orders.jar"], startTime: 99_999 });
  const all: Changes[] = [applyDiscovery(m, batch([listen(8080, next), listen(8081, next)]), 3)];
  const services = () => [...m.nodes.values()].filter((n) => n.kind === "process").map((n) => n.id);
  expect(services()).toEqual(["service:h1:java:orders.jar:8080,8081"]);
  all.push(applyDiscovery(m, batch([gone("10.0.0.1", 50000, "10.0.0.9", 5432), conn("10.0.0.1", 50100, "10.0.0.9", 5432, next)]), 4));
  for (let i = 0; i < 3; i++) all.push(applyDiscovery(m, batch([]), 5 + i));
  expect(services()).toEqual(["service:h1:java:orders.jar:8080,8081"]);
  expect(new Set(all.flatMap((c) => c.nodesUpserted.map((n) => n.id)))).toEqual(new Set(["service:h1:java:orders.jar:8080,8081"]));
  expect(all.flatMap((c) => c.nodesRemoved)).toEqual([]);
  expect(edgesOf(m)).toEqual(before);
});

test("a process that closes one of its two ports becomes the service of the port it keeps", () => {
  const m = emptyModel();
  const p = proc(7, "java", { cmdline: ["java", "-jar", "/srv/orders.jar"] });
  applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), listen(8080, p), listen(8081, p)]), 1);
  applyDiscovery(m, batch([{ type: "listener.gone", proto: "tcp", ip: "0.0.0.0", port: 8080 }]), 2);
  expect([...m.nodes.values()].filter((n) => n.kind === "process").map((n) => n.id)).toEqual(["service:h1:java:orders.jar:8081"]);
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
