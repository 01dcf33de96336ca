/**
 * Neo4j adapter. Without a server: value conversion, parameter typing, error-code mapping and an unreachable server.
 * With NEO4J_URL (+ NEO4J_USER / NEO4J_PASSWORD, NEO4J_DATABASE optional, default neo4j): the GraphStore contract and
 * Neo4j-specific checks against the real server (4.4 or 5.x).
 *
 * The server tests need a DISPOSABLE database: every test deletes the whole graph first (Neo4j Community has one
 * user database, so tests cannot get a database each). Example:
 *   docker run --rm -p 7687:7687 -e NEO4J_AUTH=neo4j/orrery-test neo4j:5   (or neo4j:4.4)
 *   NEO4J_URL=bolt://127.0.0.1:7687 NEO4J_USER=neo4j NEO4J_PASSWORD=orrery-test bun test test/integration/graph/neo4j.test.ts
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import neo4j, { Duration, Neo4jError, Node, Path, PathSegment, Point, Relationship, UnboundRelationship, type Driver } from "neo4j-driver";
import { graphStoreContract } from "../../../services/graph/contract.ts";
import { Neo4jGraphStore, runReadQuery, toGraphStoreError, toNeo4jParams, toPlain, writeChanges } from "../../../services/graph/neo4j.ts";
import { GraphStoreError } from "../../../services/graph/port.ts";
import type { TopoEdge, TopoNode } from "../../../pipelines/contracts/topology.ts";

const url = process.env.NEO4J_URL;
const user = process.env.NEO4J_USER;
const password = process.env.NEO4J_PASSWORD;
const database = process.env.NEO4J_DATABASE || "neo4j";
if (!url)
  console.log(
    "graph-neo4j: SKIPPING the Neo4j contract and server tests: NEO4J_URL is not set " +
      "(set NEO4J_URL, NEO4J_USER, NEO4J_PASSWORD, NEO4J_DATABASE to a disposable Neo4j 4.4 or 5.x database to run them)",
  );

describe("neo4j values → plain JSON", () => {
  const a = new Node(neo4j.int(1), ["Entity"], { id: "host:h1", port: neo4j.int(0), firstSeen: neo4j.int(1_700_000_000_000) }, "4:db:1");
  const b = new Node(neo4j.int(2), ["Entity"], { id: "process:h1:10:1", port: neo4j.int(0) }, "4:db:2");
  const rel = new Relationship(neo4j.int(7), neo4j.int(1), neo4j.int(2), "RUNS", { id: "RUNS:a->b", firstSeen: neo4j.int(5) }, "5:db:7", "4:db:1", "4:db:2");

  test("integers become numbers, and strings when they would lose digits", () => {
    expect(toPlain(neo4j.int(5432))).toBe(5432);
    expect(toPlain(neo4j.int(-3))).toBe(-3);
    expect(toPlain(neo4j.int("9007199254740993"))).toBe("9007199254740993");
    expect(toPlain(12n)).toBe(12);
    expect(toPlain(2n ** 64n)).toBe("18446744073709551616");
    expect(toPlain([neo4j.int(1), { n: neo4j.int(2), s: "x", f: 1.5, b: true, z: null }])).toEqual([1, { n: 2, s: "x", f: 1.5, b: true, z: null }]);
  });

  test("nodes, relationships and paths take the Kuzu adapter's shapes", () => {
    expect(toPlain(a)).toEqual({ id: "host:h1", port: 0, firstSeen: 1_700_000_000_000, _label: "Entity", _id: "4:db:1" });
    expect(toPlain(rel)).toEqual({ id: "RUNS:a->b", firstSeen: 5, _src: "4:db:1", _dst: "4:db:2", _label: "RUNS", _id: "5:db:7" });
    expect(toPlain(new UnboundRelationship(neo4j.int(8), "LISTENS", { id: "l" }, "5:db:8"))).toEqual({ id: "l", _label: "LISTENS", _id: "5:db:8" });
    const path = toPlain(new Path(a, b, [new PathSegment(a, rel, b)])) as { _nodes: { id: string }[]; _rels: { _id: string }[] };
    expect(path._nodes.map((n) => n.id)).toEqual(["host:h1", "process:h1:10:1"]);
    expect(path._rels.map((r) => r._id)).toEqual(["5:db:7"]);
    expect(toPlain(new Path(a, a, []))).toEqual({ _nodes: [toPlain(a)], _rels: [] });
    const row = toPlain({ a, rel }) as Record<string, unknown>;
    expect(JSON.parse(JSON.stringify(row))).toEqual(row);
  });

  test("temporals become ISO-8601 strings; points and vectors plain data", () => {
    expect(toPlain(new neo4j.types.Date(2024, 5, 1))).toBe("2024-05-01");
    expect(toPlain(new neo4j.types.DateTime(2024, 5, 1, 12, 30, 0, 0, 0))).toBe("2024-05-01T12:30:00Z");
    expect(toPlain(new neo4j.types.LocalTime(7, 5, 3, 0))).toBe("07:05:03");
    expect(toPlain(new Duration(1, 2, 30, 0))).toBe("P1M2DT30S");
    expect(toPlain(new Point(neo4j.int(7203), 1.5, 2.5))).toEqual({ srid: 7203, x: 1.5, y: 2.5 });
    expect(toPlain(new Point(4979, 1, 2, 3))).toEqual({ srid: 4979, x: 1, y: 2, z: 3 });
    expect(toPlain(neo4j.vector(new Float32Array([0.5, 1.5])))).toEqual([0.5, 1.5]);
    expect(toPlain(new Uint8Array([1, 2]))).toEqual([1, 2]);
  });
});

describe("JSON parameters → Bolt values", () => {
  test("integral numbers bind as Integer (so `LIMIT $n` and INTEGER comparisons work); the rest as they are", () => {
    const p = toNeo4jParams({ n: 10, f: 1.5, s: "10", ids: [1, "a"], m: { port: 5432, deep: [{ x: 2 }] }, z: null, big: 2 ** 60 });
    expect(neo4j.isInt(p.n)).toBe(true);
    expect((p.n as ReturnType<typeof neo4j.int>).toNumber()).toBe(10);
    expect(p.f).toBe(1.5);
    expect(p.s).toBe("10");
    expect(neo4j.isInt((p.ids as unknown[])[0])).toBe(true);
    expect((p.ids as unknown[])[1]).toBe("a");
    const m = p.m as { port: unknown; deep: { x: unknown }[] };
    expect(neo4j.isInt(m.port)).toBe(true);
    expect(neo4j.isInt(m.deep[0]!.x)).toBe(true);
    expect(p.z).toBeNull();
    expect(p.big).toBe(2 ** 60); // beyond 2^53 a JS number is not exactly an integer any more: left as FLOAT
    expect(toPlain(toNeo4jParams({ a: [1, { b: 2 }] }))).toEqual({ a: [1, { b: 2 }] });
  });
});

describe("driver errors → GraphStoreError codes", () => {
  const err = (code: string, message: string) => new Neo4jError(message, code, "50N42", "error: general processing exception");
  const code = (e: unknown, op: "read" | "write" = "read") => toGraphStoreError(e, op, "neo4j query", 500).code;

  test("writes in a read transaction are read_only (5.x, 4.4 and cluster wordings)", () => {
    expect(code(err("Neo.ClientError.Statement.AccessMode", "Writing in read access mode not allowed. Attempted write to internal graph 0 (neo4j)"))).toBe("read_only");
    expect(code(err("Neo.ClientError.Security.Forbidden", "Write operations are not allowed for user 'neo4j' with roles [admin] restricted to READ."))).toBe("read_only");
    expect(code(err("Neo.ClientError.Cluster.NotALeader", "No write operations are allowed on this database."))).toBe("read_only");
    expect(code(err("Neo.ClientError.Request.Invalid", "Writing in read access mode not allowed."))).toBe("read_only");
    expect(code(err("Neo.ClientError.Security.Forbidden", "Access denied"))).toBe("query_failed");
  });

  test("transaction timeouts are timeout (4.4 and 5.x codes)", () => {
    const t = toGraphStoreError(err("Neo.ClientError.Transaction.TransactionTimedOut", "The transaction has not completed within the specified timeout"), "read", "q", 500);
    expect(t.code).toBe("timeout");
    expect(t.message).toContain("500 ms");
    expect(code(err("Neo.ClientError.Transaction.TransactionTimedOutClientConfiguration", "The transaction has been terminated."))).toBe("timeout");
    expect(code(err("Neo.TransientError.Transaction.Terminated", "terminated: the transaction timed out"))).toBe("timeout");
    // the driver reclassifies Terminated as a ClientError before it reaches us
    expect(code(err("Neo.ClientError.Transaction.Terminated", "The transaction has been terminated. Reason: Transaction timeout."))).toBe("timeout");
    expect(code(err("Neo.ClientError.Transaction.Terminated", "terminated by an administrator"))).toBe("query_failed");
  });

  test("syntax and semantic errors are query_failed with the server's message and code", () => {
    const e = toGraphStoreError(err("Neo.ClientError.Statement.SyntaxError", "Invalid input 'RETURN': expected ')'"), "read", "neo4j query");
    expect(e.code).toBe("query_failed");
    expect(e.message).toContain("Invalid input 'RETURN'");
    expect(e.message).toContain("Neo.ClientError.Statement.SyntaxError");
    expect(e.cause).toBeInstanceOf(Neo4jError);
    expect(code(err("Neo.ClientError.Statement.ParameterMissing", "Expected parameter(s): x"))).toBe("query_failed");
    expect(code(new TypeError("boom"))).toBe("query_failed");
  });

  test("an unreachable server, a lost session and the server's transient errors are unavailable, reads and writes alike", () => {
    for (const op of ["read", "write"] as const) {
      expect(code(err("ServiceUnavailable", "Could not perform discovery"), op)).toBe("unavailable");
      expect(code(err("SessionExpired", "the session is no longer available"), op)).toBe("unavailable");
    }
    // out of memory: a read waits it out; a write may be too large for the server's transaction memory, so the
    // topology service writes it again in smaller parts
    expect(code(err("Neo.TransientError.General.OutOfMemoryError", "no memory"), "read")).toBe("unavailable");
    expect(code(err("Neo.TransientError.General.OutOfMemoryError", "no memory"), "write")).toBe("too_large");
    // a write the server timed out may be too large to ever pass: not unavailable
    expect(code(err("Neo.TransientError.Transaction.Terminated", "terminated: the transaction timed out"), "write")).toBe("write_failed");
    expect(toGraphStoreError(err("ServiceUnavailable", "down"), "write", "q").kind).toBe("transient");
  });

  test("any failure of a write is write_failed; GraphStoreErrors pass through", () => {
    expect(code(err("Neo.ClientError.Schema.ConstraintValidationFailed", "already exists with label"), "write")).toBe("write_failed");
    expect(code(err("Neo.ClientError.Statement.AccessMode", "Writing in read access mode not allowed"), "write")).toBe("write_failed");
    const own = new GraphStoreError("too_many_rows", "too many");
    expect(toGraphStoreError(own, "read", "q")).toBe(own);
  });
});

/** A stand-in for the driver's ManagedTransaction that records statements; the stored rev is what the test says. */
function recordingTx(storedRev: number | null) {
  const runs: { q: string; rows?: number }[] = [];
  const tx = {
    run: async (q: string, p?: Record<string, unknown>) => {
      const rows = (p?.rows ?? p?.ids) as unknown[] | undefined;
      runs.push({ q, rows: rows?.length });
      const isRevRead = q.startsWith("MATCH (m:OrreryMeta {key: 'rev'}) RETURN");
      const records = isRevRead && storedRev !== null ? [{ get: () => neo4j.int(storedRev) }] : [];
      return { records };
    },
  };
  return { tx: tx as unknown as Parameters<typeof writeChanges>[0], runs };
}

describe("the write transaction function", () => {
  const n = (i: number): TopoNode => ({ id: `host:h${i}`, kind: "host", name: `h${i}`, source: "agent:x", props: { owner: i % 2 ? "ops" : "" }, firstSeen: 1, lastSeen: 2 });
  const nodes = Array.from({ length: 12_001 }, (_, i) => n(i));
  const edges: TopoEdge[] = Array.from({ length: 30_000 }, (_, i) => ({ id: `RUNS:${i}`, kind: "RUNS", src: `host:h${i % 12_001}`, dst: `host:h${(i + 1) % 12_001}`, source: "agent:x", props: {}, firstSeen: 1, lastSeen: 2 }));
  const changes = { nodesUpserted: nodes, nodesRemoved: [], edgesUpserted: edges, edgesRemoved: [], created: new Set([...nodes.map((x) => x.id), ...edges.map((x) => x.id)]) };

  test("a retry after a commit that did land (stored rev already there or later) writes nothing", async () => {
    for (const stored of [7, 9]) {
      const { tx, runs } = recordingTx(stored);
      expect(await writeChanges(tx, changes, 7, { entries: [{ rev: 7, body: "b" }], sentUpTo: 6 })).toBe(false);
      expect(runs.map((r) => r.q)).toEqual(["MATCH (m:OrreryMeta {key: 'rev'}) RETURN m.value AS v"]);
    }
  });

  test("a large first write goes in bounded UNWIND chunks inside the one transaction, rev and outbox last", async () => {
    const { tx, runs } = recordingTx(null);
    expect(await writeChanges(tx, changes, 1, { entries: [{ rev: 1, body: "b" }], sentUpTo: 0 })).toBe(true);
    const nodeRuns = runs.filter((r) => r.q.includes("MERGE (n:Entity"));
    const edgeRuns = runs.filter((r) => r.q.includes("CREATE (a)-[e:RUNS"));
    expect(nodeRuns.map((r) => r.rows)).toEqual([5000, 5000, 2001]);
    expect(edgeRuns.map((r) => r.rows)).toEqual([5000, 5000, 5000, 5000, 5000, 5000]);
    expect(nodeRuns[0]!.q).toContain("n.owner = r.owner");
    expect(runs.at(-3)!.q).toContain("SET m.value = $rev");
    expect(runs.at(-1)!.q).toContain("OrreryOutbox");
  });
});

describe("unreachable server", () => {
  test("writes and reads fail as unavailable, promptly", async () => {
    // Port 1 on loopback: nothing listens, so the connection is refused at once. No retries (maxRetryMs 0).
    const store = new Neo4jGraphStore({ url: "bolt://127.0.0.1:1", user: "neo4j", password: "x", maxRetryMs: 0 });
    const t0 = performance.now();
    const w = await store.apply({ nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [] }, 1).catch((e) => e);
    expect(w).toBeInstanceOf(GraphStoreError);
    expect((w as GraphStoreError).code).toBe("unavailable");
    expect((w as GraphStoreError).message).toContain("ServiceUnavailable");
    const r = await store.query("MATCH (n) RETURN n LIMIT 1", {}, { timeoutMs: 2000 }).catch((e) => e);
    expect((r as GraphStoreError).code).toBe("unavailable");
    // The read-only check comes first and needs no server.
    const ro = await store.query("MATCH (n) DETACH DELETE n").catch((e) => e);
    expect((ro as GraphStoreError).code).toBe("read_only");
    expect(performance.now() - t0).toBeLessThan(10_000);
    await store.close();
    await store.close(); // idempotent
    const closed = await store.query("RETURN 1 AS one").catch((e) => e);
    expect((closed as GraphStoreError).message).toContain("closed");
    expect(((await store.apply({ nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [] }, 2).catch((e) => e)) as GraphStoreError).code).toBe("write_failed");
  });
});

describe.skipIf(!url)("neo4j server", () => {
  let driver: Driver;
  beforeAll(() => {
    driver = neo4j.driver(url!, user ? neo4j.auth.basic(user, password ?? "") : undefined);
  });
  afterAll(async () => {
    await driver?.close();
  });

  /** Deletes the whole graph in batches (a disposable database is required; see the header). */
  async function clear(): Promise<void> {
    const session = driver.session({ database });
    try {
      for (;;) {
        const r = await session.executeWrite((tx) => tx.run("MATCH (n) WITH n LIMIT 10000 DETACH DELETE n RETURN count(*) AS c"));
        if (Number(toPlain(r.records[0]?.get("c")) ?? 0) === 0) break;
      }
    } finally {
      await session.close();
    }
  }

  graphStoreContract("neo4j", async () => {
    await clear();
    const store = new Neo4jGraphStore(driver, { database });
    return { store, cleanup: () => store.close() };
  });

  const node = (id: string, kind: TopoNode["kind"], props: TopoNode["props"] = {}): TopoNode => ({ id, kind, name: id, source: "agent:h1", props, firstSeen: 1, lastSeen: 2 });
  const h = node("host:h1", "host");
  const p = node("process:h1:10:1", "process", { pid: 10, host: "h1" });
  const l = node("listener:h1:tcp:0.0.0.0:5432", "listener", { port: 5432, host: "h1" });
  const edges: TopoEdge[] = [
    { id: `RUNS:${h.id}->${p.id}`, kind: "RUNS", src: h.id, dst: p.id, source: "agent:h1", props: {}, firstSeen: 1, lastSeen: 2 },
    { id: `LISTENS:${p.id}->${l.id}`, kind: "LISTENS", src: p.id, dst: l.id, source: "agent:h1", props: {}, firstSeen: 1, lastSeen: 2 },
  ];
  const graph = { nodesUpserted: [h, p, l], nodesRemoved: [], edgesUpserted: edges, edgesRemoved: [], created: new Set([h.id, p.id, l.id, ...edges.map((e) => e.id)]) };

  async function freshStore(): Promise<Neo4jGraphStore> {
    await clear();
    const s = new Neo4jGraphStore(driver, { database });
    await s.init();
    await s.apply(graph, 7);
    return s;
  }

  test("integer columns are stored as INTEGER and integer parameters bind as INTEGER", async () => {
    const s = await freshStore();
    const rows = await s.query("MATCH (n:Entity) WHERE n.port > 0 RETURN toString(n.port) AS port, toString(n.firstSeen) AS first LIMIT $n", { n: 1 });
    expect(rows).toEqual([{ port: "5432", first: "1" }]);
    expect(await s.query("UNWIND range(1, $n) AS i RETURN i", { n: 3 })).toEqual([{ i: 1 }, { i: 2 }, { i: 3 }]);
    expect(await s.query("MATCH (m:OrreryMeta {key: 'rev'}) RETURN toString(m.value) AS v")).toEqual([{ v: "7" }]);
  });

  test("the server itself refuses a write in the read transaction, past the client-side check", async () => {
    const s = await freshStore();
    const err = await runReadQuery(driver, database, "CREATE (n:Entity {id: 'sneaky'}) RETURN n.id AS id").catch((e) => e);
    expect(err).toBeInstanceOf(GraphStoreError);
    expect((err as GraphStoreError).code).toBe("read_only");
    expect(await s.query("MATCH (n:Entity {id: 'sneaky'}) RETURN n.id AS id")).toEqual([]);
  });

  test("paths come back as {_nodes, _rels} of plain nodes and relationships", async () => {
    const s = await freshStore();
    const rows = await s.query("MATCH path = (a:Entity {id: $h})-[:RUNS]->(:Entity)-[:LISTENS]->(:Entity) RETURN path", { h: h.id });
    expect(rows.length).toBe(1);
    const path = rows[0]!.path as { _nodes: Record<string, unknown>[]; _rels: Record<string, unknown>[] };
    expect(path._nodes.map((n) => n.id)).toEqual([h.id, p.id, l.id]);
    expect(path._rels.map((r) => r._label)).toEqual(["RUNS", "LISTENS"]);
    expect(path._rels[0]!._src).toBe(path._nodes[0]!._id as string);
    expect(path._nodes[2]!.port).toBe(5432);
  });

  test("a query past its timeout is a timeout error, and the store keeps answering", async () => {
    const s = await freshStore();
    const t0 = performance.now();
    const err = await s.query("UNWIND range(1, 6000) AS i UNWIND range(1, 6000) AS j RETURN count(*) AS c", {}, { timeoutMs: 50 }).catch((e) => e);
    expect(err).toBeInstanceOf(GraphStoreError);
    expect((err as GraphStoreError).code).toBe("timeout");
    // enforced here at timeoutMs, whatever the server's timeout checker does
    expect(performance.now() - t0).toBeLessThan(50 + 1000);
    expect(await s.query("MATCH (n:Entity) RETURN count(n) AS c")).toEqual([{ c: 3 }]);
  });

  test("a retried write transaction that had committed changes nothing (no duplicate CREATEd edges)", async () => {
    const s = await freshStore();
    const session = driver.session({ database });
    try {
      const again = await session.executeWrite((tx) => writeChanges(tx, graph, 7));
      expect(again).toBe(false);
    } finally {
      await session.close();
    }
    expect(await s.query("MATCH ()-[e]->() RETURN count(e) AS c")).toEqual([{ c: 2 }]);
    await s.apply({ ...graph, nodesUpserted: [{ ...p, props: { ...p.props, owner: "ops" } }], edgesUpserted: [], created: new Set() }, 8);
    expect(await s.query("MATCH (n:Entity {id: $id}) RETURN n.owner AS owner", { id: p.id })).toEqual([{ owner: "ops" }]);
  });

  test("a large first write (chunked UNWIND in one transaction) lands whole", async () => {
    await clear();
    const s = new Neo4jGraphStore(driver, { database });
    await s.init();
    const nodes = Array.from({ length: 12_000 }, (_, i) => node(`host:big${i}`, "host"));
    const big: TopoEdge[] = Array.from({ length: 24_000 }, (_, i) => ({ id: `CONNECTS:${i}`, kind: "CONNECTS", src: `host:big${i % 12_000}`, dst: `host:big${(i * 7 + 1) % 12_000}`, source: "agent:h1", props: {}, firstSeen: 1, lastSeen: 2 }));
    await s.apply({ nodesUpserted: nodes, nodesRemoved: [], edgesUpserted: big, edgesRemoved: [], created: new Set([...nodes.map((x) => x.id), ...big.map((x) => x.id)]) }, 1);
    const g = await s.load();
    expect([g.rev, g.nodes.length, g.edges.length]).toEqual([1, 12_000, 24_000]);
  });

  test("the row limit stops the stream; a store built from a config owns and closes its driver", async () => {
    await clear();
    const s = new Neo4jGraphStore({ url: url!, user, password, database });
    await s.init();
    await s.apply(graph, 1);
    const tooMany = await s.query("UNWIND range(1, 1000000) AS i RETURN i", {}, { maxRows: 10 }).catch((e) => e);
    expect((tooMany as GraphStoreError).code).toBe("too_many_rows");
    expect((await s.load()).nodes.length).toBe(3);
    await s.close();
    const after = await s.query("RETURN 1 AS one").catch((e) => e);
    expect((after as GraphStoreError).message).toContain("closed");
    // the driver passed to other stores is untouched by their close()
    const other = new Neo4jGraphStore(driver, { database });
    await other.close();
    expect(await runReadQuery(driver, database, "RETURN 1 AS one")).toEqual([{ one: 1 }]);
  });
});
