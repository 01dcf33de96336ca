import { afterEach, describe, expect, test } from "bun:test";
import kuzu from "kuzu";
import { existsSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { graphStoreContract } from "../../../services/graph/contract.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { GraphStoreError } from "../../../services/graph/port.ts";
import type { TopoNode } from "../../../pipelines/contracts/topology.ts";
import { tempDir } from "../../helpers/tmp.ts";

graphStoreContract("kuzu", async () => {
  const { dir, cleanup } = tempDir("orrery-kuzu-");
  const store = new KuzuGraphStore(join(dir, "db"));
  return {
    store,
    cleanup: async () => {
      await store.close();
      cleanup();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

/** Kuzu-specific: the engine's own guards behind assertReadOnly, the read connection, streaming, schema migration. */
describe("kuzu adapter", () => {
  const node = (id: string, kind: TopoNode["kind"], props: TopoNode["props"] = {}): TopoNode => ({ id, kind, name: id, source: "agent:h1", props, firstSeen: 1, lastSeen: 2 });
  const h = node("host:h1", "host");
  const p = node("service:h1:app:client", "process", { host: "h1", owner: "team-a" });
  const graph = {
    nodesUpserted: [h, p],
    nodesRemoved: [],
    edgesUpserted: [{ id: `RUNS:${h.id}->${p.id}`, kind: "RUNS" as const, src: h.id, dst: p.id, source: "agent:h1", props: {}, firstSeen: 1, lastSeen: 2 }],
    edgesRemoved: [],
  };
  let stores: KuzuGraphStore[] = [];
  let dirs: (() => void)[] = [];
  const open = async (path?: string) => {
    let p = path;
    if (!p) {
      const t = tempDir("orrery-kuzu-");
      dirs.push(t.cleanup);
      p = join(t.dir, "db");
    }
    const s = new KuzuGraphStore(p);
    stores.push(s);
    await s.init();
    return s;
  };
  afterEach(async () => {
    for (const s of stores) await s.close();
    for (const d of dirs) d();
    stores = [];
    dirs = [];
  });

  test("nodes whose props change, each write followed by a checkpoint, do not grow the file (Kuzu grows it when a string is set in place)", async () => {
    const t = tempDir("orrery-kuzu-");
    dirs.push(t.cleanup);
    const path = join(t.dir, "db");
    const s = new KuzuGraphStore(path, { bufferPoolMiB: 128 });
    stores.push(s);
    await s.init();
    const text = (i: number) => `${i}:`.padEnd(400, String.fromCharCode(97 + (i % 26)));
    const nodes = Array.from({ length: 8000 }, (_, i) => node(`service:h${i % 100}:app${i}:80`, "process", { host: `h${i % 100}`, cmdline: text(i) }));
    await s.apply({ nodesUpserted: nodes, nodesRemoved: [], edgesUpserted: [], edgesRemoved: [], created: new Set(nodes.map((n) => n.id)) }, 1);
    await s.checkpoint();
    const size = () => statSync(path).size + (existsSync(`${path}.wal`) ? statSync(`${path}.wal`).size : 0);
    const start = size();
    for (let round = 0; round < 12; round++) {
      const changed = Array.from({ length: 20 }, (_, k) => nodes[(round * 397 + k * 131) % nodes.length]!).map((n) => ({ ...n, props: { ...n.props, cmdline: text(round * 1000 + n.name.length) } }));
      await s.apply({ nodesUpserted: changed, nodesRemoved: [], edgesUpserted: [], edgesRemoved: [] }, 2 + round);
      await s.checkpoint();
    }
    const grown = (size() - start) / 1048576;
    // set in place, the file grew by ~4 MiB a round here (and filled a 128 MiB pool); written again, by a few at most
    expect(grown).toBeLessThan(8);
    expect((await s.load()).nodes.length).toBe(nodes.length);
  }, 60_000);

  test("past the client-side check, the READ ONLY transaction itself refuses every write and the graph is unchanged", async () => {
    const s = await open();
    await s.apply(graph, 1);
    const before = await s.load();
    for (const q of [
      "MATCH (n) DETACH DELETE n",
      `MATCH (n:Entity) WHERE n.name = "it's" DETACH DELETE n RETURN 'x'`,
      "MATCH (n) // it's\nDETACH DELETE n // '\nRETURN 1",
      "CREATE (n:Entity {id: 'sneaky'})",
      "MATCH (n:Entity) SET n.name = 'x'",
      "CREATE NODE TABLE X(id STRING, PRIMARY KEY(id))",
      "ALTER TABLE Entity ADD foo STRING",
      "COPY Entity FROM (RETURN 'zz', 'process', 'z', 's', 'h', 0, '', '{}', 1, 2, '')",
    ]) {
      const err = await s.readQuery(q).catch((e) => e);
      expect(err, q).toBeInstanceOf(GraphStoreError);
      expect([q, (err as GraphStoreError).code]).toEqual([q, "read_only"]);
    }
    expect(await s.load()).toEqual(before);
    // the read connection is still usable after the refusals
    expect(await s.query("MATCH (n:Entity) RETURN count(n) AS c")).toEqual([{ c: 2 }]);
  });

  test("a slow user query does not hold up graph writes, and sees the state it started on", async () => {
    const s = await open();
    await s.apply(graph, 1);
    let queryDone = 0;
    const slow = s
      .query("MATCH (n:Entity) WITH count(n) AS c UNWIND range(1, 8000) AS i UNWIND range(1, 8000) AS j WITH c, i, j WHERE (i * j) % 7 = 3 RETURN c, count(*) AS k", {}, { timeoutMs: 60_000 })
      .then((r) => {
        queryDone = performance.now();
        return r;
      });
    await Bun.sleep(150);
    const t0 = performance.now();
    await s.apply({ nodesUpserted: [node("host:h2", "host")], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [] }, 2);
    const writeDone = performance.now();
    const rows = await slow;
    expect(queryDone).toBeGreaterThan(writeDone); // the write finished while the query was still running
    expect(writeDone - t0).toBeLessThan(1000);
    expect(rows[0]!.c).toBe(2);
    expect((await s.load()).nodes.length).toBe(3);
  });

  test("the time limit interrupts a query; rows are streamed and reading stops at the row limit", async () => {
    const s = await open();
    await s.apply(graph, 1);
    const t0 = performance.now();
    const slow = await s.query("UNWIND range(1, 8000) AS i UNWIND range(1, 8000) AS j WITH i, j WHERE (i * j) % 7 = 3 RETURN i, j ORDER BY i * j DESC LIMIT 3", {}, { timeoutMs: 100 }).catch((e) => e);
    expect((slow as GraphStoreError).code).toBe("timeout");
    expect(performance.now() - t0).toBeLessThan(2000);
    // Converting a million rows with getAll takes tens of seconds here; stopping at maxRows + 1 takes a blink.
    const t1 = performance.now();
    const many = await s.query("UNWIND range(1, 1000000) AS i RETURN i", {}, { maxRows: 10, timeoutMs: 30_000 }).catch((e) => e);
    expect((many as GraphStoreError).code).toBe("too_many_rows");
    expect(performance.now() - t1).toBeLessThan(5000);
    expect(await s.query("UNWIND range(1, 10) AS i RETURN i", {}, { maxRows: 10 })).toHaveLength(10);
  });

  test("a data dir made before the owner column is migrated in place and keeps its data", async () => {
    const t = tempDir("orrery-kuzu-old-");
    dirs.push(t.cleanup);
    const path = join(t.dir, "db");
    {
      // The schema as it was (no owner), written with plain statements.
      const db = new kuzu.Database(path);
      const conn = new kuzu.Connection(db);
      for (const q of [
        "CREATE NODE TABLE Entity(id STRING, kind STRING, name STRING, source STRING, host STRING, port INT64, exe STRING, props STRING, firstSeen INT64, lastSeen INT64, PRIMARY KEY(id))",
        "CREATE NODE TABLE OrreryMeta(key STRING, value INT64, PRIMARY KEY(key))",
        "CREATE REL TABLE RUNS(FROM Entity TO Entity, id STRING, source STRING, props STRING, firstSeen INT64, lastSeen INT64)",
        "CREATE (:Entity {id: 'host:old', kind: 'host', name: 'old', source: 'agent:old', host: 'old', port: 0, exe: '', props: '{}', firstSeen: 1, lastSeen: 2})",
        "CREATE (:OrreryMeta {key: 'rev', value: 5})",
      ]) {
        const r = await conn.query(q);
        for (const qr of Array.isArray(r) ? r : [r]) qr.close();
      }
      await conn.close();
      await db.close();
    }
    const s = await open(path);
    await s.init(); // twice: idempotent
    const g = await s.load();
    expect(g.rev).toBe(5);
    expect(g.nodes.map((n) => n.id)).toEqual(["host:old"]);
    expect(await s.query("MATCH (n:Entity) WHERE n.owner = '' RETURN n.id AS id")).toEqual([{ id: "host:old" }]);
    // new entities, merged and bulk-copied, get their owner column after the migration too
    const many = Array.from({ length: 2100 }, (_, i) => node(`host:n${i}`, "host", { owner: i % 2 ? "ops" : "" }));
    await s.apply({ nodesUpserted: [p, ...many], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [], created: new Set(many.map((n) => n.id)) }, 6);
    expect(await s.query("MATCH (n:Entity) WHERE n.owner <> '' RETURN n.owner AS o, count(*) AS c ORDER BY o")).toEqual([
      { o: "ops", c: 1050 },
      { o: "team-a", c: 1 },
    ]);
    // and the updateTag columns (nodes and relationships): old rows 0, written ones their rev, bulk-copied included
    expect(await s.query("MATCH (n:Entity) RETURN n.updateTag AS tag, count(*) AS c ORDER BY tag")).toEqual([
      { tag: 0, c: 1 },
      { tag: 6, c: 2101 },
    ]);
    const runs = many.map((h) => ({ id: `RUNS:${h.id}->${p.id}`, kind: "RUNS" as const, src: h.id, dst: p.id, source: "agent:h1", props: {}, firstSeen: 1, lastSeen: 2 }));
    await s.apply({ nodesUpserted: [], nodesRemoved: [], edgesUpserted: runs, edgesRemoved: [], created: new Set(runs.map((e) => e.id)) }, 7);
    expect(await s.query("MATCH ()-[e:RUNS]->() RETURN e.updateTag AS tag, count(*) AS c")).toEqual([{ tag: 7, c: 2100 }]);
  });
});
