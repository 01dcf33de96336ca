/**
 * The GraphStore contract: every adapter runs this one suite (Kuzu always; Neo4j when NEO4J_URL is set).
 * `make` returns a fresh, empty store for each test.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { TopologySnapshot, type TopoEdge, type TopoNode } from "../../pipelines/contracts/topology.ts";
import { impact as indexImpact, ImpactIndex } from "../../pipelines/stages/impact.ts";
import { changeCount, GraphStoreError, splitChanges, type GraphStore, type ImpactedEntity, type RegistryComponentRow, type RegistryGraphRows, type StoredGraph } from "./port.ts";

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

const DAY = 86_400_000;
const NOW = 1_750_000_000_000;

/**
 * A small estate as the topology stage builds it: lb → web → app → db, each a service on its own host serving one
 * listener and calling the next tier's listener (CONNECTS), the derived service → service DEPENDS_ON edges, a cron
 * job that also uses the database, and an external DNS server. Owners come from props.owner; one edge was last seen
 * two days ago.
 */
export function nocEstate() {
  const n = (id: string, kind: TopoNode["kind"], name: string, props: TopoNode["props"] = {}): TopoNode => ({ id, kind, name, source: "agent:estate", props, firstSeen: NOW - 10 * DAY, lastSeen: NOW });
  const e = (kind: TopoEdge["kind"], src: string, dst: string, lastSeen = NOW): TopoEdge => ({ id: `${kind}:${src}->${dst}`, kind, src, dst, source: "agent:estate", props: {}, firstSeen: NOW - 10 * DAY, lastSeen });
  const nodes: TopoNode[] = [];
  const edges: TopoEdge[] = [];
  const tiers = [
    { host: "lb1", svc: "haproxy", port: 443, owner: "netops" },
    { host: "web1", svc: "nginx", port: 80, owner: "web" },
    { host: "app1", svc: "java:orders.jar", port: 8080, owner: "" },
    { host: "db1", svc: "postgres", port: 5432, owner: "dba" },
  ];
  const svc = (t: (typeof tiers)[number]) => `service:${t.host}:${t.svc}:${t.port}`;
  const lis = (t: (typeof tiers)[number]) => `listener:${t.host}:tcp:0.0.0.0:${t.port}`;
  for (const t of tiers) {
    nodes.push(
      n(`host:${t.host}`, "host", t.host, { host: t.host }),
      n(svc(t), "process", t.svc, { host: t.host, exe: `/usr/sbin/${t.svc}`, ...(t.owner ? { owner: t.owner } : {}) }),
      n(lis(t), "listener", `${t.host}:${t.port}`, { host: t.host, port: t.port, proto: "tcp" }),
    );
    edges.push(e("RUNS", `host:${t.host}`, svc(t)), e("LISTENS", svc(t), lis(t)));
  }
  for (let i = 0; i + 1 < tiers.length; i++) edges.push(e("CONNECTS", svc(tiers[i]!), lis(tiers[i + 1]!)), e("DEPENDS_ON", svc(tiers[i]!), svc(tiers[i + 1]!)));
  const cron = "service:app1:cron:client";
  nodes.push(n(cron, "process", "cron", { host: "app1", exe: "/usr/sbin/cron", owner: "" }), n("external:8.8.8.8:53", "external", "8.8.8.8:53", { port: 53 }));
  edges.push(
    e("RUNS", "host:app1", cron),
    e("CONNECTS", cron, lis(tiers[3]!), NOW - 2 * DAY),
    e("DEPENDS_ON", cron, svc(tiers[3]!), NOW - 2 * DAY),
    e("CONNECTS", svc(tiers[2]!), "external:8.8.8.8:53"),
  );
  return { nodes, edges, lb: svc(tiers[0]!), web: svc(tiers[1]!), app: svc(tiers[2]!), db: svc(tiers[3]!), dbListener: lis(tiers[3]!), cron, now: NOW, day: DAY };
}

export { NOC_QUERIES } from "./noc-queries.ts";
import { NOC_QUERIES } from "./noc-queries.ts";

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

    test("a node whose props change keeps every edge both ways as stored; a lastSeen refresh moves lastSeen alone; a changed edge too", async () => {
      const s = await fresh();
      const self = { ...edge("CONNECTS", db.id, db.id), props: { port: 5433 } };
      await s.apply({ ...graph, edgesUpserted: [...graph.edgesUpserted, self] }, 1);
      const before = await s.load();
      const edgeOf = (g: StoredGraph, id: string) => g.edges.find((e) => e.id === id);
      // db: RUNS in from the host, LISTENS out to its listener, a CONNECTS to itself; its props change (a restart)
      await s.apply({ ...none, nodesUpserted: [{ ...db, props: { ...db.props, pid: 12 }, lastSeen: 5 }] }, 2);
      let g = await s.load();
      expect(g.nodes.find((n) => n.id === db.id)).toEqual({ ...db, props: { ...db.props, pid: 12 }, lastSeen: 5 });
      expect(g.edges.map((e) => e.id).sort()).toEqual(before.edges.map((e) => e.id).sort());
      for (const e of before.edges) expect(edgeOf(g, e.id)).toEqual(e);
      const tags = async () => Object.fromEntries((await s.query("MATCH (a:Entity)-[e]->(b:Entity) RETURN e.id AS id, e.updateTag AS tag")).map((r) => [r.id, r.tag]));
      expect(new Set(Object.values(await tags()))).toEqual(new Set([1]));
      // a lastSeen refresh of a node and an edge, then a changed edge, with a changed node in the same write
      await s.apply({ ...none, nodesUpserted: [{ ...p, lastSeen: 9 }], edgesUpserted: [{ ...self, lastSeen: 9 }] }, 3);
      await s.apply({ ...none, nodesUpserted: [{ ...db, props: { ...db.props, pid: 13 } }], edgesUpserted: [{ ...self, props: { port: 6000 } }] }, 4);
      g = await s.load();
      expect(g.nodes.find((n) => n.id === p.id)).toEqual({ ...p, lastSeen: 9 });
      expect(edgeOf(g, self.id)).toEqual({ ...self, props: { port: 6000 } });
      expect(g.edges.length).toBe(before.edges.length);
      expect((await tags())[self.id]).toBe(4);
      expect(g.rev).toBe(4);
    });

    test("hundreds of edges removed in one write go, and only those (adapters may delete many at once)", async () => {
      const s = await fresh();
      const servers = Array.from({ length: 30 }, (_, i) => node(`listener:h1:tcp:0.0.0.0:${9000 + i}`, "listener", { port: 9000 + i, proto: "tcp", host: "h1" }));
      const clients = Array.from({ length: 20 }, (_, i) => node(`process:h1:${100 + i}:1`, "process", { pid: 100 + i, exe: "/usr/bin/c", host: "h1" }));
      const conns = clients.flatMap((c) => servers.map((l) => edge("CONNECTS", c.id, l.id)));
      const all = [...clients, ...servers];
      await s.apply({ ...none, nodesUpserted: all, edgesUpserted: conns, created: new Set([...all, ...conns].map((x) => x.id)) }, 1);
      // 450 of the 600 go (every server but the first ten, for each client), with their endpoints still there
      const gone = conns.filter((e) => !servers.slice(0, 10).some((l) => l.id === e.dst));
      await s.apply({ ...none, edgesRemoved: gone.map((e) => ({ id: e.id, kind: e.kind, src: e.src, dst: e.dst })) }, 2);
      const g = await s.load();
      expect(g.edges.map((e) => e.id).sort()).toEqual(conns.filter((e) => !gone.includes(e)).map((e) => e.id).sort());
      expect(g.nodes.length).toBe(all.length);
      // and a few, the other way (one by one in the Kuzu adapter)
      await s.apply({ ...none, edgesRemoved: [conns[0]!].map((e) => ({ id: e.id, kind: e.kind, src: e.src, dst: e.dst })) }, 3);
      expect((await s.load()).edges.length).toBe(conns.length - gone.length - 1);
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

    test("a checkpoint between writes keeps every write, and writes go on after it", async () => {
      const s = await fresh();
      await s.apply(graph, 1);
      await s.checkpoint();
      await s.apply({ ...none, nodesUpserted: [{ ...p, name: "after" }], edgesRemoved: [{ id: `CONNECTS:${p.id}->${l.id}`, kind: "CONNECTS", src: p.id, dst: l.id }] }, 2);
      await s.checkpoint();
      await s.checkpoint(); // nothing new: still fine
      const g = await s.load();
      expect(g.rev).toBe(2);
      expect(g.nodes.find((n) => n.id === p.id)!.name).toBe("after");
      expect(g.edges.map((e) => e.id).sort()).toEqual(graph.edgesUpserted.filter((e) => e.kind !== "CONNECTS").map((e) => e.id).sort());
    });

    test("a write abandoned through its signal stores nothing (graph, rev, outbox), before it begins or part-way", async () => {
      const s = await fresh();
      await s.apply(graph, 1, { entries: [{ rev: 1, body: "b1" }], sentUpTo: 0 });
      const before = await s.load();
      const gone = new AbortController();
      gone.abort();
      const early = await s.apply({ ...none, nodesUpserted: [{ ...p, name: "never" }] }, 2, { entries: [{ rev: 2, body: "b2" }], sentUpTo: 1 }, { signal: gone.signal }).catch((e) => e);
      expect(early).toBeInstanceOf(GraphStoreError);
      expect((early as GraphStoreError).code).toBe("aborted");
      expect((early as GraphStoreError).kind).toBe("transient");
      // Part-way: thousands of entities written row by row (not marked created), aborted soon after it starts. It is
      // either rolled back whole or, on a fast engine, already committed whole; never in part.
      const many = Array.from({ length: 3000 }, (_, i) => node(`host:m${i}`, "host"));
      const ctl = new AbortController();
      const t = setTimeout(() => ctl.abort(), 30);
      const late = await s.apply({ ...none, nodesUpserted: many }, 3, { entries: [{ rev: 3, body: "b3" }], sentUpTo: 1 }, { signal: ctl.signal }).then(
        () => "committed",
        (e) => e,
      );
      clearTimeout(t);
      const after = await s.load();
      if (late === "committed") {
        expect(after.rev).toBe(3);
        expect(after.nodes.length).toBe(before.nodes.length + many.length);
      } else {
        expect((late as GraphStoreError).code).toBe("aborted");
        expect(after).toEqual(before);
        expect(await s.outbox()).toEqual([{ rev: 1, body: "b1" }]);
      }
      // and the store goes on writing
      await s.apply({ ...none, nodesUpserted: [{ ...p, name: "next" }] }, 4);
      expect((await s.load()).nodes.find((n) => n.id === p.id)!.name).toBe("next");
    });

    test("a change set written in parts (splitChanges), each with its revs and outbox entries, ends as one write would", async () => {
      const s = await fresh();
      await s.apply(graph, 1);
      const extra = Array.from({ length: 7 }, (_, i) => node(`listener:h1:tcp:0.0.0.0:${7000 + i}`, "listener", { port: 7000 + i, proto: "tcp", host: "h1" }));
      const calls = extra.map((x) => edge("CONNECTS", p.id, x.id));
      const change = {
        nodesUpserted: [{ ...p, name: "split" }, ...extra],
        edgesUpserted: calls,
        edgesRemoved: [{ id: `CONNECTS:${p.id}->${l.id}`, kind: "CONNECTS" as const, src: p.id, dst: l.id }],
        nodesRemoved: [db.id],
        created: new Set([...extra, ...calls].map((x) => x.id)),
        sourceIntervals: { "job:scan": 60_000 },
      };
      const parts = splitChanges(change, 4);
      expect(parts.length).toBe(Math.ceil(changeCount(change) / 4));
      expect(parts.map(changeCount).reduce((a, b) => a + b)).toBe(changeCount(change));
      let rev = 1;
      for (const part of parts) {
        rev++;
        await s.apply(part, rev, { entries: [{ rev, body: `b${rev}` }], sentUpTo: rev - 2 });
      }
      const g = await s.load();
      expect(g.rev).toBe(1 + parts.length);
      expect(g.nodes.map((n) => n.id).sort()).toEqual([h.id, p.id, l.id, ...extra.map((x) => x.id)].sort());
      expect(g.nodes.find((n) => n.id === p.id)!.name).toBe("split");
      expect(g.edges.map((e) => e.id).sort()).toEqual([`RUNS:${h.id}->${p.id}`, ...calls.map((e) => e.id)].sort());
      expect(g.sourceIntervals).toEqual({ "job:scan": 60_000 });
      expect(await s.outbox()).toEqual([{ rev: g.rev - 1, body: `b${g.rev - 1}` }, { rev: g.rev, body: `b${g.rev}` }]);
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
      // read-only procedures of each engine
      const procs = s.name === "kuzu" ? "CALL show_tables() RETURN name" : "CALL db.labels() YIELD label RETURN label AS name";
      expect((await s.query(procs)).map((r) => r.name)).toContain("Entity");
      const unterminated = await s.query("MATCH (n:Entity) WHERE n.name = 'x RETURN n").catch((e) => e);
      expect((unterminated as GraphStoreError).code).toBe("query_failed");
    });

    const estate = nocEstate();
    const withEstate = async () => {
      const s = await fresh();
      await s.apply({ nodesUpserted: estate.nodes, nodesRemoved: [], edgesUpserted: estate.edges, edgesRemoved: [], created: new Set([...estate.nodes, ...estate.edges].map((x) => x.id)) }, 3);
      return s;
    };

    test("NOC: what depends, transitively, on one host's database (5432), and who calls it", async () => {
      const s = await withEstate();
      expect(await s.query(NOC_QUERIES.dependsOnDatabase, { host: "db1", port: 5432 })).toEqual([
        { dependant: "cron", host: "app1", hops: 1 },
        { dependant: "java:orders.jar", host: "app1", hops: 1 },
        { dependant: "nginx", host: "web1", hops: 2 },
        { dependant: "haproxy", host: "lb1", hops: 3 },
      ]);
      // another host's database: nothing depends on it
      expect(await s.query(NOC_QUERIES.dependsOnDatabase, { host: "app1", port: 5432 })).toEqual([]);
      expect(await s.query(NOC_QUERIES.callersOfDatabase, { host: "db1", port: 5432 })).toEqual([
        { host: "app1", caller: "cron", database: "postgres" },
        { host: "app1", caller: "java:orders.jar", database: "postgres" },
      ]);
    });

    test("NOC: paths from one host's load balancer to one host's database, as nodes, names and whole paths", async () => {
      const s = await withEstate();
      const rows = await s.query(NOC_QUERIES.lbToDatabase, { lb: "lb1", db: "db1", from: 443, to: 5432 });
      expect(rows.length).toBe(1);
      expect(rows[0]!.hops).toBe(3);
      expect((rows[0]!.path as { id: string; _label: string }[]).map((x) => [x.id, x._label])).toEqual([estate.lb, estate.web, estate.app, estate.db].map((id) => [id, "Entity"]));
      const names = NOC_QUERIES.lbToDatabaseNames[s.name];
      expect(names, `no names query for ${s.name}`).toBeDefined();
      expect(await s.query(names!, { lb: "lb1", db: "db1", from: 443, to: 5432 })).toEqual([{ names: ["haproxy", "nginx", "java:orders.jar", "postgres"], hops: 3 }]);
      // a whole path value: {_nodes, _rels} of plain nodes and relationships, linked by _id
      const [whole] = await s.query("MATCH p = (a:Entity {id: $lb})-[:DEPENDS_ON*1..6]->(b:Entity {id: $db}) RETURN p", { lb: estate.lb, db: estate.db });
      const path = whole!.p as { _nodes: Record<string, unknown>[]; _rels: Record<string, unknown>[] };
      expect(path._nodes.map((x) => x.id)).toEqual([estate.lb, estate.web, estate.app, estate.db]);
      expect(path._rels.map((r) => [r._label, r.id])).toEqual([
        ["DEPENDS_ON", `DEPENDS_ON:${estate.lb}->${estate.web}`],
        ["DEPENDS_ON", `DEPENDS_ON:${estate.web}->${estate.app}`],
        ["DEPENDS_ON", `DEPENDS_ON:${estate.app}->${estate.db}`],
      ]);
      expect(path._rels[0]!._src).toEqual(path._nodes[0]!._id);
      expect(path._rels[2]!._dst).toEqual(path._nodes[3]!._id);
      expect(JSON.parse(JSON.stringify(path))).toEqual(path);
    });

    test("NOC: services with no owner, and edges not seen for a day", async () => {
      const s = await withEstate();
      expect(await s.query(NOC_QUERIES.servicesWithoutOwner)).toEqual([
        { host: "app1", service: "cron" },
        { host: "app1", service: "java:orders.jar" },
      ]);
      expect(await s.query(NOC_QUERIES.edgesNotSeenSince, { since: estate.now - estate.day })).toEqual([
        { edge: `CONNECTS:${estate.cron}->${estate.dbListener}`, src: "cron", dst: "db1:5432", lastSeen: estate.now - 2 * estate.day },
        { edge: `DEPENDS_ON:${estate.cron}->${estate.db}`, src: "cron", dst: "postgres", lastSeen: estate.now - 2 * estate.day },
      ]);
      // owner follows props.owner when it changes
      const app = estate.nodes.find((x) => x.id === estate.app)!;
      await s.apply({ ...none, nodesUpserted: [{ ...app, props: { ...app.props, owner: "orders-team" } }] }, 4);
      expect(await s.query("MATCH (s:Entity {id: $id}) RETURN s.owner AS owner", { id: estate.app })).toEqual([{ owner: "orders-team" }]);
    });

    test("impact over the stored graph matches ImpactIndex, with path lengths and kind filters", async () => {
      const s = await withEstate();
      // The same graph in ImpactIndex; both walk the raw edges and leave the derived DEPENDS_ON aside.
      const ix = ImpactIndex.fromMirror({ rev: 3, nodes: new Map(estate.nodes.map((x) => [x.id, x])), edges: new Map(estate.edges.map((x) => [x.id, x])) });
      const key = (a: { id: string; hops: number; kind: string }[]) => a.map((x) => `${x.id}@${x.hops}:${x.kind}`).sort();
      const cases: { id: string; hops: number; kinds?: TopoNode["kind"][] }[] = [
        { id: estate.db, hops: 10 },
        { id: estate.db, hops: 2 },
        { id: "host:db1", hops: 10 },
        { id: estate.lb, hops: 10 },
        { id: estate.app, hops: 4 },
        { id: estate.dbListener, hops: 10, kinds: ["process"] },
        { id: "host:app1", hops: 10, kinds: ["host", "external"] },
      ];
      for (const c of cases) {
        const want = indexImpact(ix, { ids: [c.id], direction: "both", hops: c.hops, kinds: c.kinds });
        const got = await s.impact(c.id, { direction: "both", maxHops: c.hops, kinds: c.kinds });
        expect([c, key(got.upstream)]).toEqual([c, key(want.upstream)]);
        expect([c, key(got.downstream)]).toEqual([c, key(want.downstream)]);
        const up = await s.impact(c.id, { direction: "upstream", maxHops: c.hops, kinds: c.kinds });
        expect(up.downstream).toEqual([]);
        expect(key(up.upstream)).toEqual(key(want.upstream));
      }
      // spelled out once: the blast radius of the database
      const db = await s.impact(estate.db, { direction: "upstream", maxHops: 10, kinds: ["process"] });
      const byHops = (a: ImpactedEntity[]) => a.map((x) => [x.name, x.hops]).sort((p, q) => Number(p[1]) - Number(q[1]) || String(p[0]).localeCompare(String(q[0])));
      expect(byHops(db.upstream)).toEqual([
        ["cron", 2],
        ["java:orders.jar", 2],
        ["nginx", 4],
        ["haproxy", 6],
      ]);
      expect(await s.impact("process:nope", { direction: "both", maxHops: 3 })).toEqual({ upstream: [], downstream: [] });
      for (const bad of [0, 11, 2.5, Number.NaN, "3" as unknown as number]) {
        const err = await s.impact(estate.db, { direction: "both", maxHops: bad }).catch((e) => e);
        expect((err as GraphStoreError).code).toBe("bad_request");
      }
    });

    test("neighbourhood: the entity, what is within N edges either way (optionally of some kinds), and the edges among them", async () => {
      const s = await withEstate();
      const one = await s.neighbourhood(estate.app, { hops: 1 });
      expect(one.nodes.map((x) => x.id).sort()).toEqual([estate.app, "host:app1", "listener:app1:tcp:0.0.0.0:8080", "listener:db1:tcp:0.0.0.0:5432", "external:8.8.8.8:53", estate.web, estate.db].sort());
      expect(one.nodes.find((x) => x.id === estate.app)).toEqual(estate.nodes.find((x) => x.id === estate.app));
      const ids = new Set(one.nodes.map((x) => x.id));
      const induced = estate.edges.filter((x) => ids.has(x.src) && ids.has(x.dst));
      expect(one.edges.map((x) => x.id).sort()).toEqual(induced.map((x) => x.id).sort());
      const deps = await s.neighbourhood(estate.db, { hops: 3, kinds: ["DEPENDS_ON"] });
      expect(deps.nodes.map((x) => x.name).sort()).toEqual(["cron", "haproxy", "java:orders.jar", "nginx", "postgres"]);
      expect(deps.edges.every((x) => x.kind === "DEPENDS_ON")).toBe(true);
      expect(deps.edges.length).toBe(4);
      const two = await s.neighbourhood("host:db1", { hops: 2, kinds: ["RUNS", "LISTENS"] });
      expect(two.nodes.map((x) => x.id).sort()).toEqual(["host:db1", estate.db, estate.dbListener].sort());
      expect(await s.neighbourhood("host:nope", { hops: 2 })).toEqual({ nodes: [], edges: [] });
      const err = await s.neighbourhood(estate.db, { hops: 99 }).catch((e) => e);
      expect((err as GraphStoreError).code).toBe("bad_request");
    });

    test("exportSnapshot is a valid topology.snapshot.v1 of everything stored, at the stored rev", async () => {
      const s = await withEstate();
      const snap = await s.exportSnapshot();
      expect(TopologySnapshot.parse(snap)).toEqual(snap);
      expect(snap.rev).toBe(3);
      expect(snap.nodes.sort(byId)).toEqual([...estate.nodes].sort(byId));
      expect(snap.edges.sort(byId)).toEqual([...estate.edges].sort(byId));
      const empty = await (await fresh()).exportSnapshot();
      expect([empty.rev, empty.nodes, empty.edges]).toEqual([0, [], []]);
    });

    test("a fresh store loads empty at rev 0", async () => {
      const s = await fresh();
      expect(await s.load()).toEqual({ rev: 0, nodes: [], edges: [], sourceIntervals: {}, unreadable: [] });
    });

    test("every written node and relationship carries the rev of its write as updateTag", async () => {
      const s = await fresh();
      const h = node("host:h1", "host");
      const p = node("service:h1:psql:client", "process");
      const l = node("listener:h1:tcp:0.0.0.0:5432", "listener", { port: 5432 });
      await s.apply({ ...none, nodesUpserted: [h, p, l], edgesUpserted: [edge("RUNS", h.id, p.id), edge("CONNECTS", p.id, l.id)], created: new Set([h.id, p.id, l.id]) }, 4);
      await s.apply({ ...none, nodesUpserted: [{ ...p, props: { pid: 9 } }], edgesUpserted: [{ ...edge("CONNECTS", p.id, l.id), lastSeen: 9 }] }, 7);
      const nodes = await s.query("MATCH (n:Entity) RETURN n.id AS id, n.updateTag AS tag ORDER BY id");
      expect(nodes).toEqual([
        { id: h.id, tag: 4 },
        { id: l.id, tag: 4 },
        { id: p.id, tag: 7 },
      ]);
      const since = await s.query("MATCH (a:Entity)-[e]->(b:Entity) WHERE e.updateTag > $rev RETURN e.id AS id", { rev: 4 });
      expect(since).toEqual([{ id: `CONNECTS:${p.id}->${l.id}` }]);
    });

    test("declared source intervals are stored with the changes, updated, and dropped when the source goes", async () => {
      const s = await fresh();
      const none = { nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [] };
      await s.apply({ ...none, sourceIntervals: { "job:tcp-scan:10.0.0.0/24": 300_000, "job:inventory-csv:db1": 86_400_000 } }, 1);
      expect((await s.load()).sourceIntervals).toEqual({ "job:tcp-scan:10.0.0.0/24": 300_000, "job:inventory-csv:db1": 86_400_000 });
      await s.apply({ ...none, sourceIntervals: { "job:tcp-scan:10.0.0.0/24": 600_000, "job:inventory-csv:db1": 0 } }, 2);
      const g = await s.load();
      expect(g.sourceIntervals).toEqual({ "job:tcp-scan:10.0.0.0/24": 600_000 });
      expect(g.rev).toBe(2);
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

    describe("registry part", () => {
      const comp = (id: string, o: Partial<RegistryComponentRow> = {}): RegistryComponentRow => ({
        id,
        name: id,
        category: "service",
        lifecycle: "mature",
        privacy: "",
        location: "",
        language: "",
        framework: "",
        team: "",
        owners: [],
        maintainers: [],
        tags: [],
        rev: 1,
        ...o,
      });
      const app = comp("app", { owners: ["group:payments", "user:ann"], team: "payments", tags: ["pci"], category: "service" });
      const pg = comp("pg", { category: "database", lifecycle: "legacy" });
      const reg: RegistryGraphRows = {
        components: [app, pg],
        matches: [
          { component: "app", entity: p.id },
          { component: "pg", entity: db.id },
        ],
        declares: [{ src: "app", dst: "pg" }],
      };

      test("putRegistry stores components, MATCHES and DECLARES_DEPENDENCY that Cypher joins with discovery", async () => {
        const s = await fresh();
        await s.apply({ ...graph, edgesUpserted: [...graph.edgesUpserted, edge("DEPENDS_ON", p.id, db.id)] }, 1);
        const w = await s.putRegistry(reg);
        expect(w).toMatchObject({ componentsUpserted: 2, matchesAdded: 2, declaresAdded: 1 });
        expect(await s.loadRegistry()).toEqual(reg);
        const rows = await s.query("MATCH (c:Component)-[:MATCHES]->(s:Entity) RETURN c.id AS component, c.team AS team, s.id AS service ORDER BY component");
        expect(rows).toEqual([
          { component: "app", team: "payments", service: p.id },
          { component: "pg", team: "", service: db.id },
        ]);
        // lists are lists: filterable with IN on both engines
        expect(await s.query("MATCH (c:Component) WHERE $o IN c.owners AND 'pci' IN c.tags RETURN c.id AS id", { o: "group:payments" })).toEqual([{ id: "app" }]);
        // declared and discovered: the declaration confirmed by a DEPENDS_ON between instances
        const joined = await s.query(
          "MATCH (a:Component)-[:DECLARES_DEPENDENCY]->(b:Component), (a)-[:MATCHES]->(x:Entity)-[:DEPENDS_ON]->(y:Entity)<-[:MATCHES]-(b) RETURN a.id AS a, b.id AS b, count(*) AS seen",
        );
        expect(joined).toEqual([{ a: "app", b: "pg", seen: 1 }]);
        // discovery's reads do not see the registry
        const g = await s.load();
        expect(g.nodes.length).toBe(4);
        expect((await s.exportSnapshot()).nodes.length).toBe(4);
        // a second put of the same state writes nothing
        expect(Object.values(await s.putRegistry(reg)).every((n) => n === 0)).toBe(true);
      });

      test("an entity whose props change keeps its MATCHES", async () => {
        const s = await fresh();
        await s.apply(graph, 1);
        await s.putRegistry(reg);
        await s.apply({ ...none, nodesUpserted: [{ ...p, props: { ...p.props, pid: 99 } }, { ...db, name: "pg-renamed" }] }, 2);
        expect(await s.query("MATCH (c:Component)-[:MATCHES]->(x:Entity) RETURN c.id AS component, x.id AS entity ORDER BY component")).toEqual([
          { component: "app", entity: p.id },
          { component: "pg", entity: db.id },
        ]);
        expect(await s.loadRegistry()).toEqual(reg);
      });

      test("putRegistry writes the difference; a removed component takes its edges; removed entities take their MATCHES", async () => {
        const s = await fresh();
        await s.apply(graph, 1);
        await s.putRegistry(reg);
        const next: RegistryGraphRows = { components: [{ ...app, lifecycle: "legacy", owners: [], rev: 2 }], matches: [{ component: "app", entity: db.id }], declares: [] };
        const w = await s.putRegistry(next);
        expect(w).toEqual({ componentsUpserted: 1, componentsRemoved: 1, matchesAdded: 1, matchesRemoved: 1, declaresAdded: 0, declaresRemoved: 0 });
        expect(await s.loadRegistry()).toEqual(next);
        expect(await s.query("MATCH (c:Component) RETURN count(c) AS n")).toEqual([{ n: 1 }]);
        // discovery removes the matched entity: the edge goes with it, the component stays
        await s.apply({ ...none, nodesRemoved: [db.id] }, 2);
        expect(await s.loadRegistry()).toEqual({ ...next, matches: [] });
        // a match whose entity is not stored is not written (a later put writes it once the entity is there)
        const w2 = await s.putRegistry(next);
        expect(w2.matchesAdded).toBe(1);
        expect((await s.loadRegistry()).matches).toEqual([]);
        await s.apply({ ...none, nodesUpserted: [db] }, 3);
        await s.putRegistry(next);
        expect((await s.loadRegistry()).matches).toEqual(next.matches);
        await s.putRegistry({ components: [], matches: [], declares: [] });
        expect(await s.loadRegistry()).toEqual({ components: [], matches: [], declares: [] });
        expect((await s.load()).nodes.length).toBe(4);
      });

      test("registry text is stored as plain text (Cypher in a field is data)", async () => {
        const s = await fresh();
        await s.apply(graph, 1);
        const evil = comp("x", { name: "x'}) DETACH DELETE n //", tags: ["') MATCH (n) DETACH DELETE n //"], owners: ["user:a\\'b"] });
        await s.putRegistry({ components: [evil], matches: [{ component: "x", entity: p.id }], declares: [] });
        expect((await s.loadRegistry()).components).toEqual([evil]);
        expect((await s.load()).nodes.length).toBe(4);
      });
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
