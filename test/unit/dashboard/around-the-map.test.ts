/**
 * The pure parts of the dashboard's side panel: names from ids (short name and host), props written for people,
 * 24-hour times, and the Cypher console's reading of answers (nodes and relationships anywhere in the rows; the error
 * position Kuzu or Neo4j gives).
 */
import { expect, test } from "bun:test";
import { errorPosition, graphOf } from "../../../dashboard/src/lib/cypher.ts";
import { clockTime, compactCount, duration, isoTime, nameOfId, propValue } from "../../../dashboard/src/lib/format.ts";

test("names from ids: a service by its short name on its host, a listener by port, a host by name", () => {
  expect(nameOfId("service:sim-app-3:image:registry.example/orders:8080,8081")).toEqual({ label: "orders", sublabel: "on sim-app-3", kind: "service" });
  expect(nameOfId("service:db-1:postgres:5432")).toEqual({ label: "postgres", sublabel: "on db-1", kind: "service" });
  expect(nameOfId("listener:sim-db-1:tcp:0.0.0.0:5432")).toEqual({ label: "tcp/5432", sublabel: "on sim-db-1", kind: "listener" });
  expect(nameOfId("listener:h:tcp:::1:22").label).toBe("tcp/22");
  expect(nameOfId("host:sim-web-1")).toEqual({ label: "sim-web-1", kind: "host" });
  expect(nameOfId("external:203.0.113.10:443")).toEqual({ label: "203.0.113.10:443", kind: "external" });
});

test("props for people: annotatedBy by source, times ISO-like and 24-hour, bytes in binary units", () => {
  expect(propValue("annotatedBy", JSON.stringify({ owner: "agent:web-1", team: "agent:web-1", tier: "cmdb" }))).toBe("owner, team ← agent:web-1; tier ← cmdb");
  const t = new Date(2026, 11, 7, 14, 3, 9).getTime();
  expect(isoTime(t)).toBe("2026-12-07 14:03:09");
  expect(clockTime(t)).toBe("14:03:09");
  expect(propValue("lastSeen", t)).toBe("2026-12-07 14:03:09");
  expect(propValue("memTotalBytes", 16e9)).toBe("14.9 GiB");
  expect(propValue("port", 5432)).toBe("5432");
  expect(duration(45_000)).toBe("45 s");
  expect(duration(3 * 3600_000 + 4 * 60_000)).toBe("3 h 4 min");
  expect(compactCount(9999)).toBe("9,999");
  expect(compactCount(12_345)).toBe("12.3k");
  expect(compactCount(312_000)).toBe("312k");
});

test("Cypher answers: nodes and relationships from columns and paths, once each, both stores' shapes", () => {
  const a = { id: "host:a", name: "a", kind: "host", _label: "Entity", _id: { offset: 0, table: 0 } };
  const b = { id: "service:a:x:1", name: "x", kind: "process", _label: "Entity", _id: { offset: 1, table: 0 } };
  const r = { id: "RUNS:a->x", _label: "RUNS", _src: { offset: 0, table: 0 }, _dst: { offset: 1, table: 0 }, _id: { offset: 0, table: 1 } };
  const g = graphOf([{ n: a, r, m: b }, { p: { _nodes: [a, b], _rels: [r] } }, { count: 3 }]);
  expect(g.nodes.map((n) => [n.id, n.kind])).toEqual([["host:a", "host"], ["service:a:x:1", "process"]]);
  expect(g.rels).toEqual([{ key: "1:0", src: "0:0", dst: "0:1", type: "RUNS" }]);
  // Neo4j: element ids are strings; a relationship whose ends were not returned still gets two ends
  const lone = graphOf([{ r: { _label: "CONNECTS", _src: "4:x:1", _dst: "4:x:2", _id: "5:x:9" } }]);
  expect(lone.nodes.length).toBe(2);
  expect(lone.rels.length).toBe(1);
  expect(graphOf([{ n: 1 }]).nodes).toEqual([]);
});

test("error positions: Kuzu's line and 0-based offset, Neo4j's line and column, none when not given", () => {
  expect(errorPosition('Parser exception: Invalid input <MATCH (n)\nRETRN>: expected rule oC_SingleQuery (line: 2, offset: 0)\n"RETRN n"')).toEqual({ line: 2, column: 1 });
  expect(errorPosition("Invalid input 'RETRN': expected 'RETURN' (line 1, column 11 (offset: 10))")).toEqual({ line: 1, column: 11 });
  expect(errorPosition("Binder exception: Cannot find property nope for n.")).toBeNull();
});
