/**
 * The GraphStore contract: every adapter runs this one suite (Kuzu always; Neo4j when NEO4J_URL is set).
 * `make` returns a fresh, empty store for each test.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { TopoEdge, TopoNode } from "../../pipelines/contracts/topology.ts";
import { GraphStoreError, type GraphStore } from "./port.ts";

const node = (id: string, kind: TopoNode["kind"], props: TopoNode["props"] = {}): TopoNode => ({ id, kind, name: id.split(":")[1] ?? id, source: "agent:h1", props, firstSeen: 1, lastSeen: 2 });
const edge = (kind: TopoEdge["kind"], src: string, dst: string): TopoEdge => ({ id: `${kind}:${src}->${dst}`, kind, src, dst, source: "agent:h1", props: { port: 5432 }, firstSeen: 1, lastSeen: 2 });
const none = { nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [] };

const byId = (a: { id: string }, b: { id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/**
 * Writes smuggled past a checker that strips strings and comments in separate passes, or past a keyword list that
 * knows only data clauses. Every one must be refused before it reaches the engine.
 */
export const BYPASSES = [
  `MATCH (n:Entity) WHERE n.name = "it's" DETACH DELETE n RETURN 'x'`,
  "MATCH (n) // it's\nDETACH DELETE n // '\nRETURN 1",
  "MATCH (n) /* ' */ DETACH DELETE n /* ' */ RETURN 1",
  "MATCH (n) WHERE n.name = '/*' DETACH DELETE n RETURN '*/'",
  "MATCH (n) WHERE n.name = '\\\\' DETACH DELETE n RETURN 1",
  `MATCH (n) WHERE n.name = "\\"" DETACH DELETE n RETURN "'"`,
  "MATCH (`a``'`) DETACH DELETE `a``'` RETURN '`'",
  "MATCH (n) WHERE n.name = `x\\` DETACH DELETE n RETURN '`'",
  "MATCH (n) // comment\u2028DETACH DELETE n",
  "MATCH (n) //\rDETACH DELETE n",
  "MATCH (n) RETURN n.id; MATCH (n) RETURN n",
  "MATCH (n) WHERE 1=1 DETACH\tDELETE n",
  "MATCH (n) WHERE n.port = 1DELETE n",
  "MATCH (n) WITH n CALL { WITH n DETACH DELETE n } IN TRANSACTIONS RETURN 1",
  "MATCH (n) CALL { WITH n RETURN n.id AS i } IN TRANSACTIONS RETURN i",
  "CALL apoc.cypher.runWrite('MATCH (n) DETACH DELETE n', {})",
  "CALL dbms.killQuery('query-1')",
  "CALL `db.labels`()",
  "CALL threads = 1",
  "CALL project_graph('g', ['Entity'], ['RUNS'])",
  "LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l",
  "LOAD FROM '/etc/passwd' RETURN *",
  "USE system SHOW USERS",
  "SHOW TRANSACTIONS",
  "TERMINATE TRANSACTIONS 'neo4j-transaction-1'",
  "GRANT ROLE admin TO bob",
  "DENY READ {*} ON GRAPH * TO bob",
  "REVOKE ROLE admin FROM bob",
  "START DATABASE neo4j",
  "STOP DATABASE neo4j",
  "BEGIN TRANSACTION",
  "COMMIT",
  "CHECKPOINT",
  "INSTALL httpfs",
  "ATTACH '/tmp/other' AS o (dbtype kuzu)",
  "EXPORT DATABASE '/tmp/dump'",
  "MATCH (n) FOREACH (x IN [1] | SET n.name = 'x')",
  "MATCH (n:Entity) REMOVE n.name",
  "DROP TABLE Entity",
  "ALTER TABLE Entity DROP name",
  "COPY Entity FROM '/tmp/x.csv'",
];

export function graphStoreContract(name: string, make: () => Promise<{ store: GraphStore; cleanup: () => Promise<void> }>) {
  describe(`GraphStore contract: ${name}`, () => {
    let cleanups: (() => Promise<void>)[] = [];
    const fresh = async () => {
      const { store, cleanup } = await make();
      cleanups.push(cleanup);
      await store.init();
      await store.init(); // idempotent
      return store;
    };
    afterEach(async () => {
      for (const c of cleanups) await c();
      cleanups = [];
    });

    const h = node("host:h1", "host", { os: "Debian" });
    const p = node("process:h1:10:1", "process", { pid: 10, exe: "/usr/bin/app", host: "h1" });
    const db = node("process:h1:11:1", "process", { pid: 11, exe: "/usr/bin/postgres", host: "h1" });
    const l = node("listener:h1:tcp:0.0.0.0:5432", "listener", { port: 5432, proto: "tcp", host: "h1" });
    const graph = {
      nodesUpserted: [h, p, db, l],
      nodesRemoved: [],
      edgesUpserted: [edge("RUNS", h.id, p.id), edge("RUNS", h.id, db.id), edge("LISTENS", db.id, l.id), edge("CONNECTS", p.id, l.id)],
      edgesRemoved: [],
    };

    test("apply then load round-trips nodes, edges, props and rev", async () => {
      const s = await fresh();
      await s.apply(graph, 1);
      const g = await s.load();
      expect(g.rev).toBe(1);
      expect(g.nodes.map((n) => n.id).sort()).toEqual([h.id, l.id, p.id, db.id].sort());
      expect(g.nodes.find((n) => n.id === p.id)).toEqual(p);
      expect(g.edges.map((e) => e.id).sort()).toEqual(graph.edgesUpserted.map((e) => e.id).sort());
      expect(g.edges.find((e) => e.kind === "CONNECTS")!.props).toEqual({ port: 5432 });
    });

    test("entities marked as created are bulk-inserted and read back the same", async () => {
      const s = await fresh();
      const created = new Set([...graph.nodesUpserted.map((n) => n.id), ...graph.edgesUpserted.map((e) => e.id)]);
      await s.apply({ ...graph, created }, 1);
      await s.apply({ ...none, nodesUpserted: [{ ...l, name: "pg" }], created: new Set() }, 2);
      const g = await s.load();
      expect(g.nodes.length).toBe(4);
      expect(g.nodes.find((n) => n.id === l.id)!.name).toBe("pg");
      expect(g.nodes.find((n) => n.id === db.id)).toEqual(db);
      expect(g.edges.length).toBe(4);
      const rows = await s.query("MATCH (a:Entity)-[:CONNECTS]->(b:Entity) RETURN a.id AS a, b.port AS port");
      expect(rows).toEqual([{ a: p.id, port: 5432 }]);
    });

    test("upsert changes props in place; removals delete nodes with their edges", async () => {
      const s = await fresh();
      await s.apply(graph, 1);
      await s.apply({ ...none, nodesUpserted: [{ ...p, name: "renamed" }] }, 2);
      await s.apply({ ...none, edgesRemoved: [{ id: `CONNECTS:${p.id}->${l.id}`, kind: "CONNECTS", src: p.id, dst: l.id }] }, 3);
      let g = await s.load();
      expect(g.nodes.find((n) => n.id === p.id)!.name).toBe("renamed");
      expect(g.edges.some((e) => e.kind === "CONNECTS")).toBe(false);
      await s.apply({ ...none, nodesRemoved: [db.id] }, 4);
      g = await s.load();
      expect(g.rev).toBe(4);
      expect(g.nodes.some((n) => n.id === db.id)).toBe(false);
      expect(g.edges.map((e) => e.id).sort()).toEqual([`RUNS:${h.id}->${p.id}`]);
    });

    test("the outbox is written with the changes and cleared up to what was sent, in the same transaction", async () => {
      const s = await fresh();
      expect(await s.outbox()).toEqual([]);
      await s.apply(graph, 1, { entries: [{ rev: 1, body: '{"rev":1}' }], sentUpTo: 0 });
      await s.apply({ ...none, nodesUpserted: [{ ...p, name: "x" }] }, 3, { entries: [{ rev: 2, body: "b2" }, { rev: 3, body: "b3" }], sentUpTo: 1 });
      expect(await s.outbox()).toEqual([
        { rev: 2, body: "b2" },
        { rev: 3, body: "b3" },
      ]);
      await s.apply({ ...none, nodesUpserted: [{ ...p, name: "y" }] }, 4, { entries: [], sentUpTo: 3 });
      expect(await s.outbox()).toEqual([]);
      expect((await s.load()).rev).toBe(4);
    });

    test("read-only Cypher with bound parameters answers dependency questions", async () => {
      const s = await fresh();
      await s.apply(graph, 1);
      const rows = await s.query(
        "MATCH (c:Entity)-[:CONNECTS]->(l:Entity)<-[:LISTENS]-(d:Entity) WHERE d.exe = $exe RETURN c.id AS client ORDER BY client",
        { exe: "/usr/bin/postgres" },
      );
      expect(rows).toEqual([{ client: p.id }]);
    });

    test("an injection string in a parameter is only a value", async () => {
      const s = await fresh();
      await s.apply(graph, 1);
      const evil = "x' OR 1=1 WITH n MATCH (n) DETACH DELETE n //";
      const rows = await s.query("MATCH (n:Entity) WHERE n.id = $id RETURN n.id AS id", { id: evil });
      expect(rows).toEqual([]);
      expect((await s.load()).nodes.length).toBe(4);
    });

    test("write clauses are refused with a clear error and change nothing", async () => {
      const s = await fresh();
      await s.apply(graph, 1);
      for (const q of ["MATCH (n) DETACH DELETE n", "CREATE (n:Entity {id: 'x'})", "MATCH (n:Entity) SET n.name = 'x'", "MERGE (n:Entity {id:'y'})"]) {
        const err = await s.query(q).catch((e) => e);
        expect(err).toBeInstanceOf(GraphStoreError);
        expect((err as GraphStoreError).code).toBe("read_only");
      }
      // a write keyword inside a string literal is just text
      expect(await s.query("MATCH (n:Entity) WHERE n.name = 'CREATE' RETURN n.id AS id")).toEqual([]);
      expect((await s.load()).nodes.length).toBe(4);
    });

    test("write and admin statements hidden behind quotes, comments and escapes are refused and change nothing", async () => {
      const s = await fresh();
      await s.apply(graph, 1);
      const before = await s.load();
      for (const q of BYPASSES) {
        const err = await s.query(q).catch((e) => e);
        expect(err, q).toBeInstanceOf(GraphStoreError);
        expect([q, (err as GraphStoreError).code]).toEqual([q, "read_only"]);
      }
      const after = await s.load();
      expect(after.rev).toBe(before.rev);
      expect(after.nodes.sort(byId)).toEqual(before.nodes.sort(byId));
      expect(after.edges.sort(byId)).toEqual(before.edges.sort(byId));
    });

    test("keywords inside strings, names and comments, and read-only procedures, are allowed", async () => {
      const s = await fresh();
      await s.apply(graph, 1);
      expect(await s.query(`MATCH (n:Entity) WHERE n.name = "it's" OR n.name = 'DETACH DELETE' RETURN n.id AS id`)).toEqual([]);
      expect(await s.query("MATCH (n:Entity) // delete it's\nWHERE n.id = $id /* SET ' */ RETURN n.id AS `create`", { id: h.id })).toEqual([{ create: h.id }]);
      expect(await s.query("MATCH (n:Entity) WHERE n.name = 'a\\'' OR n.id = $id RETURN n.id AS id;", { id: h.id })).toEqual([{ id: h.id }]);
      const unterminated = await s.query("MATCH (n:Entity) WHERE n.name = 'x RETURN n").catch((e) => e);
      expect((unterminated as GraphStoreError).code).toBe("query_failed");
    });

    test("a fresh store loads empty at rev 0", async () => {
      const s = await fresh();
      expect(await s.load()).toEqual({ rev: 0, nodes: [], edges: [] });
    });

    test("node and relationship values come back as plain JSON with their label and properties", async () => {
      const s = await fresh();
      await s.apply(graph, 1);
      const rows = await s.query("MATCH (a:Entity {id: $h})-[e:RUNS]->(b:Entity {id: $p}) RETURN a, e, b.port AS port", { h: h.id, p: p.id });
      expect(rows.length).toBe(1);
      const { a, e, port } = rows[0] as { a: Record<string, unknown>; e: Record<string, unknown>; port: unknown };
      expect(JSON.parse(JSON.stringify(rows))).toEqual(rows); // nothing engine-specific survives: plain data only
      expect(a).toMatchObject({ _label: "Entity", id: h.id, kind: "host", name: h.name, host: "h1", port: 0, exe: "", firstSeen: 1, lastSeen: 2 });
      expect(JSON.parse(String(a.props))).toEqual(h.props);
      expect(e).toMatchObject({ _label: "RUNS", id: `RUNS:${h.id}->${p.id}`, source: "agent:h1", firstSeen: 1, lastSeen: 2 });
      expect(e._src).toEqual(a._id);
      expect(port).toBe(0);
    });

    test("row limit and bad Cypher are typed errors", async () => {
      const s = await fresh();
      await s.apply(graph, 1);
      const tooMany = await s.query("MATCH (n:Entity) RETURN n.id AS id", {}, { maxRows: 2 }).catch((e) => e);
      expect((tooMany as GraphStoreError).code).toBe("too_many_rows");
      const bad = await s.query("MATCH (n RETURN n").catch((e) => e);
      expect((bad as GraphStoreError).code).toBe("query_failed");
    });
  });
}
