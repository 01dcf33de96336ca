/**
 * Kuzu adapter (embedded default). One read-write process per database directory: the topology service owns it.
 * Model: one node table Entity (kind says host/process/listener/external), one rel table per edge kind.
 * Writes are per-row prepared statements with scalar parameters (endpoints looked up by primary key), kept a few in
 * flight; large batches of new entities a bulk COPY from a CSV file; many removed edges one hash join of their ids.
 * Matching endpoints from UNWIND rows does not use the primary-key index in Kuzu 0.11 (~55 edges/s, LIMITS.md), and
 * MERGE from UNWIND rows is several times slower than one CREATE per row. A COPY into a non-empty table checkpoints
 * at its commit, so it is kept for large batches; Kuzu's own checkpoints are made rare (checkpointThresholdMiB).
 *
 * User Cypher runs on readers' Connections (a few, so one slow question does not queue the rest) inside READ ONLY
 * transactions: Kuzu itself refuses any write there (behind assertReadOnly), and reads run beside the write
 * transaction, seeing the last committed state. Kuzu 0.11 blocks them only at a commit: beginning or ending a
 * transaction waits while a commit (and the checkpoint it may run) holds the transaction manager. A checkpoint also
 * waits for every open transaction to end, while holding the lock a read needs to end: a read open at that moment
 * stalls both for 5 s, then the checkpoint fails (measured: reads of 2-14 s, and a COPY write reported failed after
 * it had committed). So checkpoints happen only where this adapter decides: Kuzu's automatic one is off, the WAL
 * size is checked after each commit, and a checkpoint, or the commit of a COPY (which always checkpoints), first lets
 * open reads finish and holds new ones back (`exclusive`). Other commits run beside open reads; a read waits at most
 * one commit and checkpoint, and the topology service keeps each write bounded.
 */
import kuzu, { type Connection, type Database, type KuzuValue, type PreparedStatement } from "kuzu";
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { EdgeKind, TopologySnapshot, type TopoEdge, type TopoNode } from "../../pipelines/contracts/topology.ts";
import type { Changes } from "../../pipelines/stages/topology/index.ts";
import {
  assertReadOnly,
  GraphStoreError,
  INTERVAL_KEY,
  intervalRows,
  intervalsFrom,
  registryDiff,
  registryWriteCounts,
  validHops,
  type RegistryDiff,
  type RegistryGraphRows,
  type RegistryWrite,
  type ApplyOptions,
  type GraphStore,
  type ImpactOptions,
  type Neighbourhood,
  type NeighbourhoodOptions,
  type OutboxEntry,
  type QueryOptions,
  type StoredGraph,
  type StoreImpact,
} from "./port.ts";
import { readRegistry, REGISTRY_DDL, writeRegistryDiff } from "./kuzu-registry.ts";
import { storeImpact } from "./store-impact.ts";
import { CREATE_NODE, EDGE_COPY_COLS, edgeQuery, edgeRow, inFlight, NODE_COLS, NODE_COPY_COLS, NODE_STRINGS, nodeRow, plain, toEdge, toNode } from "./kuzu-rows.ts";

const EDGE_KINDS = EdgeKind.options;
/** Below this many new nodes (or new edges of one kind) a batch is created row by row rather than COPYed. */
const BULK_MIN = 4000;
/**
 * From this many removed edges of one kind, they are deleted by one statement. Kuzu 0.11 plans `UNWIND $ids … WHERE
 * e.id = x` as a hash join of the ids against a scan of the rel table: bench discovery's probe of the converged graph
 * deletes ~38k edges/s that way (3000 in one write), against ~1.5k/s one per row (endpoints by key, then adjacency).
 */
const JOIN_DELETE_MIN = 100;

/**
 * A checkpoint waits this long for open reads to end (new ones are held back meanwhile). Past it, a COPY's commit goes
 * ahead anyway (Kuzu then fails its checkpoint after the commit: the write stands, a later checkpoint catches up) and
 * a WAL-size checkpoint is left to the next commit. User reads end within their timeouts.
 */
const DRAIN_MS = 3000;

/**
 * Kuzu (embedded, no error codes) reports a failing or full disk as "IO exception: …": the store is unavailable, not
 * the write wrong. Everything else keeps the caller's code.
 */
function kuzuFailure(e: unknown, otherwise: "write_failed" | "query_failed"): "unavailable" | "write_failed" | "query_failed" {
  return e instanceof Error && /^IO exception/i.test(e.message) ? "unavailable" : otherwise;
}


/**
 * Kuzu's Node binding segfaults when a PreparedStatement is garbage-collected after its Database was closed (it has
 * no close()). Statements are cached per store and every cache is kept reachable for the life of the process, so
 * their finalizers never run against a closed database. The cost is a few statements per store ever opened.
 */
const statementCaches: Map<string, PreparedStatement>[] = [];

export class KuzuGraphStore implements GraphStore {
  readonly name = "kuzu";
  private db: Database;
  /** the writer's connection: apply, load, outbox (serialized on `chain`) */
  private conn: Connection;
  /** readers' connections: user Cypher, neighbourhood, impact, snapshot (one read transaction on each at a time) */
  private readers: Connection[];
  private idleReaders: Connection[];
  private readerWaiters: ((c: Connection) => void)[] = [];
  /** read transactions open now; a commit waits for them (see the header) */
  private openReads = 0;
  private readsDrained: (() => void) | undefined;
  /** set while a commit or checkpoint runs or waits to: new reads wait for it */
  private exclusiveHeld: Promise<void> | undefined;
  /** Kuzu allows one write transaction at a time per connection: serialize writers. */
  private chain: Promise<unknown> = Promise.resolve();
  /** bulk-copy files written (names them) */
  private copies = 0;
  /** the running write's abort signal (writes are serialized on `chain`) */
  private writeSignal: AbortSignal | undefined;
  /** the running write has COPYed: its commit checkpoints */
  private copiedInTx = false;
  private statements = new Map<Connection, Map<string, PreparedStatement>>();

  private readonly checkpointThresholdMiB: number;
  private readonly bufferPoolMiB: number | undefined;

  /**
   * `bufferPoolMiB`: Kuzu's page cache; unset, Kuzu takes up to 80% of the machine's memory as pages are touched.
   * `checkpointThresholdMiB`: the WAL size at which a commit also checkpoints (Kuzu's default is 16). Each checkpoint
   * re-lays out the edge lists touched since the last one, and in Kuzu 0.11 that costs more the more checkpoints came
   * before it (at 100k nodes under churn, frequent small checkpoints grew from seconds to over a minute each, where one
   * checkpoint of the same changes took seconds). So checkpoints are rare (64 MiB of WAL, ~200k changes) and the
   * topology service also asks for one when it is idle (`checkpoint()`), which keeps the WAL a restart replays short.
   */
  constructor(
    readonly path: string,
    opts: { bufferPoolMiB?: number; checkpointThresholdMiB?: number; readers?: number } = {},
  ) {
    this.checkpointThresholdMiB = opts.checkpointThresholdMiB ?? 64;
    this.bufferPoolMiB = opts.bufferPoolMiB;
    mkdirSync(dirname(path), { recursive: true });
    this.db = new kuzu.Database(path, opts.bufferPoolMiB ? opts.bufferPoolMiB * 1024 * 1024 : 0);
    this.conn = new kuzu.Connection(this.db);
    this.readers = Array.from({ length: Math.max(1, opts.readers ?? 3) }, () => new kuzu.Connection(this.db));
    this.idleReaders = [...this.readers];
    for (const c of [this.conn, ...this.readers]) {
      const cache = new Map<string, PreparedStatement>();
      this.statements.set(c, cache);
      statementCaches.push(cache);
    }
  }

  private async prepare(conn: Connection, cypher: string): Promise<PreparedStatement> {
    const cache = this.statements.get(conn)!;
    let ps = cache.get(cypher);
    if (!ps) {
      ps = await conn.prepare(cypher);
      // Failed ones are kept too (reachable until exit), but not cached for reuse.
      if (!ps.isSuccess()) {
        statementCaches.push(new Map([[cypher, ps]]));
        throw new Error(ps.getErrorMessage());
      }
      if (cache.size < 1000) cache.set(cypher, ps);
      else statementCaches.push(new Map([[cypher, ps]]));
    }
    return ps;
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const next = this.chain.then(f, f);
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** One read-only transaction on a free readers' connection; Kuzu refuses any write inside it. */
  private async readTx<T>(timeoutMs: number, f: (conn: Connection) => Promise<T>): Promise<T> {
    const conn = this.idleReaders.pop() ?? (await new Promise<Connection>((r) => this.readerWaiters.push(r)));
    try {
      while (this.exclusiveHeld) await this.exclusiveHeld;
      this.openReads++;
      try {
        conn.setQueryTimeout(timeoutMs);
        await this.execOn(conn, "BEGIN TRANSACTION READ ONLY");
        try {
          const out = await f(conn);
          await this.execOn(conn, "COMMIT");
          return out;
        } catch (e) {
          // Some failures end the transaction already (then ROLLBACK says there is none).
          await this.execOn(conn, "ROLLBACK").catch(() => undefined);
          throw e;
        }
      } finally {
        if (--this.openReads === 0) this.readsDrained?.();
      }
    } finally {
      const next = this.readerWaiters.shift();
      if (next) next(conn);
      else this.idleReaders.push(conn);
    }
  }

  /**
   * Runs `f` (a commit that checkpoints, or a checkpoint, on the writer's connection) with no read transaction open:
   * new reads wait, open ones finish first, for up to DRAIN_MS; then `f` runs anyway or is skipped (undefined). See the
   * header for why Kuzu needs this.
   */
  private async exclusive<T>(f: () => Promise<T>, ifStillOpen: "proceed" | "skip"): Promise<T | undefined> {
    let release!: () => void;
    this.exclusiveHeld = new Promise<void>((r) => (release = r));
    try {
      if (this.openReads > 0) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((r) => {
          this.readsDrained = r;
          timer = setTimeout(r, DRAIN_MS);
        });
        clearTimeout(timer);
        if (this.openReads > 0 && ifStillOpen === "skip") return undefined;
      }
      return await f();
    } finally {
      this.readsDrained = undefined;
      this.exclusiveHeld = undefined;
      release();
    }
  }

  async init(): Promise<void> {
    await this.serial(async () => {
      await this.exec(
        "CREATE NODE TABLE IF NOT EXISTS Entity(id STRING, kind STRING, name STRING, source STRING, host STRING, port INT64, exe STRING, props STRING, firstSeen INT64, lastSeen INT64, owner STRING DEFAULT '', updateTag INT64 DEFAULT 0, PRIMARY KEY(id))",
      );
      // Data dirs made before `owner` / `updateTag` existed get the columns (last, in the order of a fresh table, so
      // COPY's column order holds).
      await this.exec("ALTER TABLE Entity ADD IF NOT EXISTS owner STRING DEFAULT ''");
      await this.exec("ALTER TABLE Entity ADD IF NOT EXISTS updateTag INT64 DEFAULT 0");
      for (const k of EDGE_KINDS) {
        await this.exec(
          `CREATE REL TABLE IF NOT EXISTS ${k}(FROM Entity TO Entity, id STRING, source STRING, props STRING, firstSeen INT64, lastSeen INT64, updateTag INT64 DEFAULT 0)`,
        );
        await this.exec(`ALTER TABLE ${k} ADD IF NOT EXISTS updateTag INT64 DEFAULT 0`);
      }
      // (checked by this adapter after each commit, Kuzu's automatic checkpoint being off: see the header)
      await this.exec("CALL auto_checkpoint=false");
      // Closing does not checkpoint: a service stopping within its deadline does not wait for one (at 10k hosts it can
      // take longer than the deadline); the next start replays the WAL, which the idle checkpoints keep short.
      await this.exec("CALL force_checkpoint_on_close=false");
      await this.exec("CREATE NODE TABLE IF NOT EXISTS OrreryMeta(key STRING, value INT64, PRIMARY KEY(key))");
      await this.exec("CREATE NODE TABLE IF NOT EXISTS OrreryOutbox(rev INT64, body STRING, PRIMARY KEY(rev))");
      for (const ddl of REGISTRY_DDL) await this.exec(ddl);
    });
  }

  async putRegistry(g: RegistryGraphRows): Promise<RegistryWrite> {
    return this.serial(async () => {
      let d: RegistryDiff;
      try {
        d = registryDiff(await this.loadRegistryOn(this.conn), g);
      } catch (e) {
        throw new GraphStoreError(kuzuFailure(e, "query_failed"), `kuzu registry read failed: ${(e as Error).message}`, { cause: e });
      }
      const out = registryWriteCounts(d);
      if (!Object.values(out).some((n) => n > 0)) return out;
      this.writeSignal = undefined;
      await this.exec("BEGIN TRANSACTION");
      try {
        await writeRegistryDiff((q, rows) => this.each(q, rows), d);
        await this.exec("COMMIT");
      } catch (e) {
        await this.exec("ROLLBACK").catch(() => undefined);
        throw new GraphStoreError(kuzuFailure(e, "write_failed"), `kuzu registry write failed: ${(e as Error).message}`, { cause: e });
      }
      return out;
    });
  }

  async loadRegistry(): Promise<RegistryGraphRows> {
    return this.serial(async () => {
      try {
        return await this.loadRegistryOn(this.conn);
      } catch (e) {
        throw new GraphStoreError(kuzuFailure(e, "query_failed"), `kuzu registry read failed: ${(e as Error).message}`, { cause: e });
      }
    });
  }

  private async loadRegistryOn(conn: Connection): Promise<RegistryGraphRows> {
    return readRegistry((q) => this.all(conn, q, {}));
  }

  async apply(c: Changes, rev: number, outbox?: { entries: OutboxEntry[]; sentUpTo: number }, opts: ApplyOptions = {}): Promise<void> {
    await this.serial(async () => {
      const signal = opts.signal;
      if (signal?.aborted) throw new GraphStoreError("aborted", "kuzu write abandoned before it began");
      // checked between statements (see `abortable`): a write is abandoned within one statement's time
      this.writeSignal = signal;
      this.copiedInTx = false;
      await this.exec("BEGIN TRANSACTION");
      try {
        // Per-row prepared statements, not UNWIND: Kuzu 0.11 plans `UNWIND $rows MATCH/MERGE` as joins that do not use
        // the primary-key index well; one execute per row with scalar parameters looks each endpoint up by key. At 100k
        // nodes / 466k edges, bench discovery's single-write rates went from ~505-580 created edges/s (UNWIND MERGE)
        // to ~1.4-2k/s.
        // Removed edges: one by one (endpoints by primary key) when few; many at once as a hash join of their ids
        // against one scan of the kind's table, which costs about what ~100 single deletes do but stays flat after.
        for (const k of EDGE_KINDS) {
          const gone = c.edgesRemoved.filter((e) => e.kind === k);
          if (gone.length >= JOIN_DELETE_MIN) await this.run(`UNWIND $ids AS x MATCH (a:Entity)-[e:${k}]->(b:Entity) WHERE e.id = x DELETE e`, { ids: gone.map((e) => e.id) });
          else if (gone.length) await this.each(`MATCH (a:Entity {id: $src})-[e:${k}]->(b:Entity {id: $dst}) DELETE e`, gone.map((e) => ({ src: e.src, dst: e.dst })));
        }
        if (c.nodesRemoved.length) await this.each("MATCH (n:Entity {id: $id}) DETACH DELETE n", c.nodesRemoved.map((id) => ({ id })));
        // New entities are created; large batches of them (a first scan, a new estate) are bulk-copied from a CSV file.
        // A COPY has a fixed cost that grows with the table (about a second into a 466k-edge table), so below BULK_MIN
        // per table the rows are created one by one.
        const isNew = (id: string) => c.created?.has(id) ?? false;
        await this.createNodes(c.nodesUpserted.filter((n) => isNew(n.id)).map((n) => nodeRow(n, rev)));
        // Changed ones: see `rewriteNodes` (never a string set in place). Their edges come back in the loop below.
        const changedNodes = c.nodesUpserted.filter((n) => !isNew(n.id)).map((n) => nodeRow(n, rev));
        const edgesBack = await this.rewriteNodes(changedNodes);
        for (const k of EDGE_KINDS) {
          // this write's rows win over the copies read back from rewritten nodes
          const back = new Map(edgesBack.get(k));
          const createdEdges: Record<string, unknown>[] = c.edgesUpserted.filter((e) => e.kind === k && (isNew(e.id) || back.has(e.id))).map((e) => edgeRow(e, rev));
          for (const e of createdEdges) back.delete(e.id as string);
          createdEdges.push(...back.values());
          const create = `MATCH (a:Entity {id: $src}), (b:Entity {id: $dst}) CREATE (a)-[e:${k} {id: $id, source: $source, props: $props, firstSeen: $firstSeen, lastSeen: $lastSeen, updateTag: $updateTag}]->(b)`;
          if (createdEdges.length >= BULK_MIN)
            await this.copy(k, EDGE_COPY_COLS, createdEdges, () =>
              this.run(
                `COPY ${k} FROM (UNWIND $rows AS r RETURN r.src, r.dst, r.id, r.source, r.props, CAST(r.firstSeen AS INT64), CAST(r.lastSeen AS INT64), CAST(r.updateTag AS INT64))`,
                { rows: createdEdges },
              ),
            );
          else if (createdEdges.length) await this.each(create, createdEdges);
          const changedEdges = c.edgesUpserted.filter((e) => e.kind === k && !isNew(e.id) && !edgesBack.get(k)?.has(e.id)).map((e) => edgeRow(e, rev));
          await this.rewriteEdges(k, changedEdges, create);
        }
        await this.run("MERGE (m:OrreryMeta {key: 'rev'}) SET m.value = $rev", { rev });
        const iv = intervalRows(c);
        if (iv.set.length) await this.run("UNWIND $rows AS r MERGE (m:OrreryMeta {key: r.key}) SET m.value = CAST(r.value AS INT64)", { rows: iv.set });
        if (iv.del.length) await this.run("UNWIND $keys AS k MATCH (m:OrreryMeta {key: k}) DELETE m", { keys: iv.del });
        if (outbox) {
          await this.run("MATCH (o:OrreryOutbox) WHERE o.rev <= $upto DELETE o", { upto: outbox.sentUpTo });
          if (outbox.entries.length)
            await this.run("UNWIND $rows AS r MERGE (o:OrreryOutbox {rev: CAST(r.rev AS INT64)}) SET o.body = r.body", { rows: outbox.entries });
        }
        this.abortable();
        this.writeSignal = undefined;
        const commit = () =>
          this.exec("COMMIT").catch((e) => {
            // Kuzu checkpoints after the commit is durable: a failed checkpoint leaves the write committed (the WAL
            // holds it and a later checkpoint catches up), so it must not be reported as a failed write.
            if (!/checkpoint/i.test(String((e as Error).message))) throw e;
          });
        if (this.copiedInTx) await this.exclusive(commit, "proceed");
        else await commit();
      } catch (e) {
        this.writeSignal = undefined;
        await this.exec("ROLLBACK").catch(() => undefined);
        if (e instanceof GraphStoreError && e.code === "aborted") throw e;
        const msg = (e as Error).message;
        // A write larger than the buffer pool can hold (its local storage lives there): rolled back, so the caller
        // can write it in parts; the message names the setting that gives it room.
        if (/buffer (pool|manager)|unable to allocate memory/i.test(msg))
          throw new GraphStoreError("too_large", `kuzu write failed: ${msg} (the write did not fit in Kuzu's buffer pool of ${this.bufferPoolMiB ?? "default"} MiB: ORRERY_KUZU_BUFFER_MIB)`, { cause: e });
        throw new GraphStoreError(kuzuFailure(e, "write_failed"), `kuzu write failed: ${msg}`, { cause: e });
      }
      // Kuzu's own rule (WAL past the threshold), applied here where open reads can be let finish first. A failure
      // leaves the WAL to the next one.
      if (this.walBytes() >= this.checkpointThresholdMiB * 1024 * 1024) await this.exclusive(() => this.exec("CHECKPOINT"), "skip").catch(() => undefined);
    });
  }

  private walBytes(): number {
    try {
      return statSync(`${this.path}.wal`).size;
    } catch {
      return 0;
    }
  }

  /**
   * Writes what the WAL holds into the data files now (between writes, on the writer's chain). Reads open longer than
   * DRAIN_MS, or Kuzu refusing, make it fail with write_failed; a later checkpoint catches up.
   */
  async checkpoint(): Promise<void> {
    await this.serial(async () => {
      let done: boolean | undefined;
      try {
        done = await this.exclusive(() => this.exec("CHECKPOINT").then(() => true), "skip");
      } catch (e) {
        throw new GraphStoreError("write_failed", `kuzu checkpoint failed: ${(e as Error).message}`, { cause: e });
      }
      if (!done) throw new GraphStoreError("write_failed", `kuzu checkpoint skipped: reads still open after ${DRAIN_MS} ms`);
    });
  }

  async outbox(): Promise<OutboxEntry[]> {
    return this.serial(async () => {
      try {
        const rows = await this.all(this.conn, "MATCH (o:OrreryOutbox) RETURN o.rev AS rev, o.body AS body ORDER BY rev", {});
        return rows.map((r) => ({ rev: Number(r.rev), body: String(r.body) }));
      } catch (e) {
        throw new GraphStoreError(kuzuFailure(e, "query_failed"), `kuzu outbox read failed: ${(e as Error).message}`, { cause: e });
      }
    });
  }

  async load(): Promise<StoredGraph> {
    return this.serial(async () => {
      try {
        return await this.loadOn(this.conn);
      } catch (e) {
        throw new GraphStoreError(kuzuFailure(e, "query_failed"), `kuzu load failed: ${(e as Error).message}`, { cause: e });
      }
    });
  }

  private async loadOn(conn: Connection): Promise<StoredGraph> {
    const meta = await this.all(conn, "MATCH (m:OrreryMeta {key: 'rev'}) RETURN m.value AS v", {});
    const unreadable: string[] = [];
    const nodes = (await this.all(conn, `MATCH (n:Entity) RETURN ${NODE_COLS}`, {})).map((r) => toNode(r, unreadable));
    const edges: TopoEdge[] = [];
    for (const k of EDGE_KINDS) for (const r of await this.all(conn, edgeQuery(k, ""), {})) edges.push(toEdge(r, k, unreadable));
    const intervals = await this.all(conn, "MATCH (m:OrreryMeta) WHERE m.key STARTS WITH $p RETURN m.key AS k, m.value AS v", { p: INTERVAL_KEY });
    return { rev: Number(meta[0]?.v ?? 0), nodes, edges, sourceIntervals: intervalsFrom(intervals), unreadable };
  }

  async query(cypher: string, params: Record<string, unknown> = {}, opts: QueryOptions = {}): Promise<Record<string, unknown>[]> {
    assertReadOnly(cypher);
    return this.readQuery(cypher, params, opts);
  }

  /**
   * `query` without the client-side check: the engine's READ ONLY transaction is the only guard. For tests of that
   * guard (as neo4j.ts's runReadQuery); user Cypher goes through `query`.
   */
  async readQuery(cypher: string, params: Record<string, unknown> = {}, opts: QueryOptions = {}): Promise<Record<string, unknown>[]> {
    const maxRows = opts.maxRows ?? 10_000;
    const timeoutMs = opts.timeoutMs ?? 10_000;
    // Kuzu checks the timeout itself and interrupts the query.
    return this.readTx(timeoutMs, async (rconn) => {
      try {
        const ps = await this.prepare(rconn, cypher);
        const r = await rconn.execute(ps, params as Record<string, KuzuValue>);
        const qr = Array.isArray(r) ? r[r.length - 1]! : r;
        // Rows are converted one by one and only up to the limit (getAll of a million rows takes tens of seconds).
        const rows: Record<string, unknown>[] = [];
        try {
          while (rows.length <= maxRows && qr.hasNext()) rows.push(plain(await qr.getNext()));
        } finally {
          qr.close();
        }
        if (rows.length > maxRows) throw new GraphStoreError("too_many_rows", `query returned more than ${maxRows} rows; add LIMIT`);
        return rows;
      } catch (e) {
        if (e instanceof GraphStoreError) throw e;
        const msg = (e as Error).message;
        if (/interrupt|timeout/i.test(msg)) throw new GraphStoreError("timeout", `query exceeded ${timeoutMs} ms`, { cause: e });
        if (/write query inside a read-only transaction/i.test(msg)) throw new GraphStoreError("read_only", `read-only queries only: ${msg}`, { cause: e });
        throw new GraphStoreError("query_failed", msg, { cause: e });
      }
    });
  }

  async neighbourhood(id: string, opts: NeighbourhoodOptions): Promise<Neighbourhood> {
    const hops = validHops(opts.hops);
    const kinds = opts.kinds?.length ? [...new Set(opts.kinds)].filter((k) => EDGE_KINDS.includes(k)) : EDGE_KINDS;
    return this.internalRead(async (rconn) => {
      // SHORTEST is breadth-first: one path per reached node, so 10 hops on a dense graph does not enumerate walks.
      const reached = await this.all(rconn, `MATCH (a:Entity {id: $id})-[:${kinds.join("|")}* SHORTEST 1..${hops}]-(b:Entity) RETURN DISTINCT b.id AS id`, { id });
      const root = await this.all(rconn, "MATCH (n:Entity {id: $id}) RETURN n.id AS id", { id });
      if (!root.length) return { nodes: [], edges: [] };
      const ids = [id, ...reached.map((r) => String(r.id)).filter((x) => x !== id)];
      const nodes = (await this.all(rconn, `MATCH (n:Entity) WHERE n.id IN $ids RETURN ${NODE_COLS}`, { ids })).map((r) => toNode(r));
      const edges: TopoEdge[] = [];
      for (const k of kinds) for (const r of await this.all(rconn, edgeQuery(k, "WHERE a.id IN $ids AND b.id IN $ids"), { ids })) edges.push(toEdge(r, k));
      return { nodes, edges };
    });
  }

  async impact(id: string, opts: ImpactOptions): Promise<StoreImpact> {
    validHops(opts.maxHops, "maxHops");
    return this.internalRead((rconn) => storeImpact((q, p) => this.all(rconn, q, p), id, opts));
  }

  async exportSnapshot(): Promise<TopologySnapshot> {
    // One read transaction: nodes, edges and rev from the same committed state, without holding up the writer.
    const g = await this.internalRead((rconn) => this.loadOn(rconn), 600_000);
    return TopologySnapshot.parse({ schema: "topology.snapshot.v1", rev: g.rev, at: Date.now(), nodes: g.nodes, edges: g.edges });
  }

  private async internalRead<T>(f: (conn: Connection) => Promise<T>, timeoutMs = 60_000): Promise<T> {
    try {
      return await this.readTx(timeoutMs, f);
    } catch (e) {
      if (e instanceof GraphStoreError) throw e;
      throw new GraphStoreError("query_failed", `kuzu read failed: ${(e as Error).message}`, { cause: e });
    }
  }

  async close(): Promise<void> {
    await this.chain;
    // every reader back (each read ends within its query timeout)
    while (this.idleReaders.length < this.readers.length) await new Promise<Connection>((r) => this.readerWaiters.push(r)).then((c) => this.idleReaders.push(c));
    for (const c of this.readers) await c.close();
    await this.conn.close();
    await this.db.close();
  }

  /** Unparameterised statement; its results are closed at once (see statementCaches on native finalizers). */
  private exec(cypher: string): Promise<void> {
    return this.execOn(this.conn, cypher);
  }

  private async execOn(conn: Connection, cypher: string): Promise<void> {
    const r = await conn.query(cypher);
    for (const qr of Array.isArray(r) ? r : [r]) qr.close();
  }

  /**
   * Bulk-inserts rows with COPY FROM a CSV file in `<db>.copy/`: at 100k nodes / 300k edges that is ~9× faster than
   * COPY FROM an UNWIND subquery (a 190k-edge batch: ~5 s against ~48 s here), the difference between a 10k-host
   * estate converging in a minute or in several. Every value is quoted (RFC 4180, quotes doubled), so '' stays an
   * empty string. A row with a line break in a value takes the subquery path (`fallback`): Kuzu's parallel CSV reader
   * splits on newlines.
   */
  /**
   * Writes changed nodes without setting a string column in place: Kuzu 0.11.3 grows its file and fills its buffer
   * pool at every checkpoint that follows such a set (`bench kuzu-strings`: a 256 MiB pool full after 8 checkpoints on
   * 20,000 nodes), while deleting and creating a row again does not. A node whose strings are as stored (a lastSeen
   * refresh) has its integer columns set; one whose strings changed is read with its edges and its registry MATCHES,
   * deleted and created again. The edges are returned, by kind and id, to be created with this write's own; the
   * MATCHES are created here. A node the store lacks (a repair the stage forces) is created.
   */
  private async rewriteNodes(rows: Record<string, unknown>[]): Promise<Map<string, Map<string, Record<string, unknown>>>> {
    const edges = new Map<string, Map<string, Record<string, unknown>>>();
    if (!rows.length) return edges;
    const stored = await this.eachRows("MATCH (n:Entity {id: $id}) RETURN n.kind AS kind, n.name AS name, n.source AS source, n.host AS host, n.exe AS exe, n.props AS props, n.owner AS owner", rows, ["id"]);
    const lacking: Record<string, unknown>[] = [];
    const same: Record<string, unknown>[] = [];
    const changed: Record<string, unknown>[] = [];
    rows.forEach((r, i) => {
      const s = stored[i]![0];
      if (!s) lacking.push(r);
      else if (NODE_STRINGS.every((k) => s[k] === r[k])) same.push(r);
      else changed.push(r);
    });
    if (same.length)
      await this.each(
        "MATCH (n:Entity {id: $id}) SET n.port = $port, n.firstSeen = $firstSeen, n.lastSeen = $lastSeen, n.updateTag = $updateTag",
        same.map((r) => ({ id: r.id, port: r.port, firstSeen: r.firstSeen, lastSeen: r.lastSeen, updateTag: r.updateTag })),
      );
    if (changed.length) {
      const ids = changed.map((r) => ({ id: r.id }));
      const cols = "label(e) AS kind, e.id AS id, e.source AS source, e.props AS props, e.firstSeen AS firstSeen, e.lastSeen AS lastSeen, e.updateTag AS updateTag";
      const out = await this.eachRows(`MATCH (a:Entity {id: $id})-[e]->(b:Entity) RETURN a.id AS src, b.id AS dst, ${cols}`, ids, ["id"]);
      const inn = await this.eachRows(`MATCH (a:Entity)-[e]->(b:Entity {id: $id}) RETURN a.id AS src, b.id AS dst, ${cols}`, ids, ["id"]);
      const matches = await this.eachRows("MATCH (c:Component)-[:MATCHES]->(n:Entity {id: $id}) RETURN c.id AS c, n.id AS id", ids, ["id"]);
      for (const e of [...out.flat(), ...inn.flat()]) {
        const k = String(e.kind);
        let m = edges.get(k);
        if (!m) edges.set(k, (m = new Map()));
        m.set(String(e.id), { id: e.id, src: e.src, dst: e.dst, source: e.source, props: e.props, firstSeen: Number(e.firstSeen), lastSeen: Number(e.lastSeen), updateTag: Number(e.updateTag) });
      }
      await this.each("MATCH (n:Entity {id: $id}) DETACH DELETE n", ids);
      lacking.push(...changed);
      await this.createNodes(lacking);
      await this.each("MATCH (c:Component {id: $c}), (n:Entity {id: $id}) CREATE (c)-[:MATCHES]->(n)", matches.flat());
    } else await this.createNodes(lacking);
    return edges;
  }

  /** Nodes created: many by one COPY, else row by row. */
  private async createNodes(rows: Record<string, unknown>[]): Promise<void> {
    if (rows.length >= BULK_MIN)
      await this.copy("Entity", NODE_COPY_COLS, rows, () =>
        this.run(
          "COPY Entity FROM (UNWIND $rows AS r RETURN r.id, r.kind, r.name, r.source, r.host, CAST(r.port AS INT64), r.exe, r.props, CAST(r.firstSeen AS INT64), CAST(r.lastSeen AS INT64), r.owner, CAST(r.updateTag AS INT64))",
          { rows },
        ),
      );
    else if (rows.length) await this.each(CREATE_NODE, rows);
  }

  /**
   * Changed edges of one kind, as `rewriteNodes` writes nodes: integers set when the strings are as stored, else the
   * edge deleted and created again; one the store lacks is created.
   */
  private async rewriteEdges(k: string, rows: Record<string, unknown>[], create: string): Promise<void> {
    if (!rows.length) return;
    const match = `MATCH (a:Entity {id: $src})-[e:${k}]->(b:Entity {id: $dst}) WHERE e.id = $id`;
    const stored = await this.eachRows(`${match} RETURN e.source AS source, e.props AS props`, rows, ["src", "dst", "id"]);
    const same: Record<string, unknown>[] = [];
    const again: Record<string, unknown>[] = [];
    const lacking: Record<string, unknown>[] = [];
    rows.forEach((r, i) => {
      const s = stored[i]![0];
      if (!s) lacking.push(r);
      else if (s.source === r.source && s.props === r.props) same.push(r);
      else again.push(r);
    });
    if (same.length)
      await this.each(
        `${match} SET e.firstSeen = $firstSeen, e.lastSeen = $lastSeen, e.updateTag = $updateTag`,
        same.map((r) => ({ src: r.src, dst: r.dst, id: r.id, firstSeen: r.firstSeen, lastSeen: r.lastSeen, updateTag: r.updateTag })),
      );
    if (again.length) await this.each(`${match} DELETE e`, again.map((r) => ({ src: r.src, dst: r.dst, id: r.id })));
    lacking.push(...again);
    if (lacking.length) await this.each(create, lacking);
  }

  private async copy(table: string, cols: readonly string[], rows: Record<string, unknown>[], fallback: () => Promise<void>): Promise<void> {
    this.abortable();
    // (either way a COPY: its commit checkpoints)
    this.copiedInTx = true;
    const lines: string[] = [];
    for (const r of rows) {
      const fields: string[] = [];
      for (const c of cols) {
        const v = r[c];
        if (typeof v === "number") fields.push(String(v));
        else {
          const str = String(v ?? "");
          if (str.includes("\n") || str.includes("\r")) return fallback();
          fields.push(`"${str.replaceAll('"', '""')}"`);
        }
      }
      lines.push(fields.join(","));
    }
    const dir = `${this.path}.copy`;
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${table}-${process.pid}-${++this.copies}.csv`);
    writeFileSync(file, lines.join("\n") + "\n");
    try {
      await this.exec(`COPY ${table} FROM '${file.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}' (HEADER=false, DELIM=',', QUOTE='"', ESCAPE='"')`);
    } finally {
      rmSync(file, { force: true });
    }
  }

  /** Throws `aborted` when the running write's signal says so (between statements; the caller rolls back). */
  private abortable(): void {
    if (this.writeSignal?.aborted) throw new GraphStoreError("aborted", "kuzu write abandoned (rolled back)");
  }

  /** One execute of a prepared statement per row, with the rows each returned (in the order of `rows`). */
  private async eachRows(cypher: string, rows: Record<string, unknown>[], params: string[]): Promise<Record<string, unknown>[][]> {
    const ps = await this.prepare(this.conn, cypher);
    const out: Record<string, unknown>[][] = new Array(rows.length);
    const indexed = rows.map((row, i) => ({ row, i }));
    await inFlight(indexed, async ({ row, i }) => {
      this.abortable();
      const r = await this.conn.execute(ps, Object.fromEntries(params.map((p) => [p, row[p]])) as Record<string, KuzuValue>);
      const qrs = Array.isArray(r) ? r : [r];
      try {
        out[i] = ((await qrs[qrs.length - 1]!.getAll()) as Record<string, unknown>[]).map(plain);
      } finally {
        for (const qr of qrs) qr.close();
      }
    });
    return out;
  }
  /** One execute of a prepared statement per row (scalar parameters). */
  private async each(cypher: string, rows: Record<string, unknown>[]): Promise<void> {
    const ps = await this.prepare(this.conn, cypher);
    await inFlight(rows, async (row) => {
      this.abortable();
      const r = await this.conn.execute(ps, row as Record<string, KuzuValue>);
      for (const qr of Array.isArray(r) ? r : [r]) qr.close();
    });
  }

  /** `each` for a statement returning `count(…) AS n`: the rows it matched nothing for. */


  private async run(cypher: string, params: Record<string, unknown>): Promise<void> {
    this.abortable();
    const ps = await this.prepare(this.conn, cypher);
    const r = await this.conn.execute(ps, params as Record<string, KuzuValue>);
    for (const qr of Array.isArray(r) ? r : [r]) qr.close();
  }

  private async all(conn: Connection, cypher: string, params: Record<string, unknown>): Promise<Record<string, unknown>[]> {
    const ps = await this.prepare(conn, cypher);
    const r = await conn.execute(ps, params as Record<string, KuzuValue>);
    const qr = Array.isArray(r) ? r[r.length - 1]! : r;
    try {
      return ((await qr.getAll()) as Record<string, unknown>[]).map(plain);
    } finally {
      qr.close();
    }
  }
}
