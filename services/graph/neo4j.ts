/**
 * Neo4j adapter of the GraphStore port (neo4j-driver 6; Neo4j 4.4 and 5.x). Same graph model as the Kuzu adapter, so
 * the same Cypher answers on both: (:Entity {id, kind, name, source, host, port (0 = none), exe ('' = none),
 * props (JSON string), firstSeen, lastSeen, owner ('' = none)}), relationships RUNS / LISTENS / CONNECTS / DEPENDS_ON
 * {id, source, props, firstSeen, lastSeen}, and (:OrreryMeta {key: 'rev', value}).
 *
 * Writes: one change set = one write transaction (executeWrite), `UNWIND $rows` batches of BATCH rows inside it (a
 * first scan of 100k nodes / 300k edges is ~80 statements in one transaction: bounded Bolt messages, but the whole
 * transaction state is held by the server until commit — see the README on transaction memory). The transaction
 * function is idempotent: the driver retries it after transient failures, including a commit whose reply was lost,
 * so it first reads the stored rev and does nothing when the store is already there (new edges are CREATEd: a
 * second run would duplicate them).
 * Reads: a READ session + executeRead, so the server itself refuses writes; assertReadOnly gives the clear error first.
 * The query time limit is enforced here at timeoutMs (the session is closed in the background, which resets the
 * connection and so ends the query on the server); the transaction timeout on the server is the backstop.
 * All sessions of a store share one bookmark manager, so on a cluster a read follows the writes before it (causal
 * consistency); load() and outbox() run on the leader, since after a restart there are no bookmarks yet.
 */
import neo4j, {
  isDate,
  isDateTime,
  isDuration,
  isInt,
  isLocalDateTime,
  isLocalTime,
  isNode,
  isPath,
  isPathSegment,
  isPoint,
  isRelationship,
  isTime,
  isUnboundRelationship,
  isVector,
  Neo4jError,
  type AuthToken,
  type BookmarkManager,
  type Driver,
  type ManagedTransaction,
} from "neo4j-driver";
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
  sortRegistry,
  toComponent,
  validHops,
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
  storedProps,
} from "./port.ts";
import { storeImpact } from "./store-impact.ts";

const EDGE_KINDS = EdgeKind.options;
/** Rows per UNWIND statement: bounded Bolt messages and server memory per statement; all inside one transaction. */
const BATCH = 5_000;
const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_ROWS = 10_000;

/** A server with dbms.security.auth_enabled=false (the driver has `auth.none()` at run time but does not type it). */
const NO_AUTH = { scheme: "none" } as AuthToken;

export interface Neo4jConfig {
  /** bolt://host:7687 or neo4j://host:7687 (+s / +ssc variants for TLS) */
  url: string;
  user?: string;
  password?: string;
  /** default "neo4j" */
  database?: string;
  /** how long the driver retries transient failures (leader switch, deadlock, lost connection); default 15 s */
  maxRetryMs?: number;
}

export class Neo4jGraphStore implements GraphStore {
  readonly name = "neo4j";
  readonly database: string;
  private readonly driver: Driver;
  /** A driver passed in belongs to the caller, who closes it; one built from a config is ours. */
  private readonly ownsDriver: boolean;
  /** Change sets are applied in order, one at a time, so the stored rev only moves forward. */
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Bookmarks of this store's transactions: every session reads what the store wrote before (causal chaining). */
  private readonly bookmarks: BookmarkManager = neo4j.bookmarkManager();

  constructor(target: Driver | Neo4jConfig, opts: { database?: string } = {}) {
    if (isDriver(target)) {
      this.driver = target;
      this.ownsDriver = false;
      this.database = opts.database ?? "neo4j";
    } else {
      // Integers stay lossless in the driver: toPlain converts them, the same way for a driver passed in.
      this.driver = neo4j.driver(target.url, target.user ? neo4j.auth.basic(target.user, target.password ?? "") : NO_AUTH, {
        maxTransactionRetryTime: target.maxRetryMs ?? 15_000,
        userAgent: "orrery",
      });
      this.ownsDriver = true;
      this.database = opts.database ?? target.database ?? "neo4j";
    }
  }

  async init(): Promise<void> {
    // Schema statements need transactions of their own (no data writes beside them). This syntax is valid on 4.4 and 5.
    const schema = [
      "CREATE CONSTRAINT orrery_entity_id IF NOT EXISTS FOR (n:Entity) REQUIRE n.id IS UNIQUE",
      "CREATE CONSTRAINT orrery_meta_key IF NOT EXISTS FOR (m:OrreryMeta) REQUIRE m.key IS UNIQUE",
      "CREATE CONSTRAINT orrery_outbox_rev IF NOT EXISTS FOR (o:OrreryOutbox) REQUIRE o.rev IS UNIQUE",
      "CREATE INDEX orrery_entity_kind IF NOT EXISTS FOR (n:Entity) ON (n.kind)",
      "CREATE INDEX orrery_entity_source IF NOT EXISTS FOR (n:Entity) ON (n.source)",
      "CREATE CONSTRAINT orrery_component_id IF NOT EXISTS FOR (c:Component) REQUIRE c.id IS UNIQUE",
    ];
    const session = this.session("WRITE");
    try {
      for (const stmt of schema) {
        try {
          await session.executeWrite((tx) => tx.run(stmt));
        } catch (e) {
          // Two processes initialising at once: the loser sees the rule the winner just created.
          if (e instanceof Neo4jError && /AlreadyExists/.test(e.code)) continue;
          throw e;
        }
      }
    } catch (e) {
      throw toGraphStoreError(e, "write", `neo4j init (database ${this.database})`);
    } finally {
      await session.close();
    }
  }

  apply(c: Changes, rev: number, outbox?: { entries: OutboxEntry[]; sentUpTo: number }, opts: ApplyOptions = {}): Promise<void> {
    if (this.closed) return Promise.reject(new GraphStoreError("write_failed", "neo4j store is closed"));
    const signal = opts.signal;
    const abortable = () => {
      if (signal?.aborted) throw new GraphStoreError("aborted", "neo4j write abandoned (rolled back)");
    };
    const run = async () => {
      abortable();
      const session = this.session("WRITE");
      try {
        // The signal is checked before each statement and before the commit: throwing inside the transaction
        // function rolls the transaction back.
        await session.executeWrite(
          async (tx) => {
            const guarded = signal ? ({ run: (...a: Parameters<ManagedTransaction["run"]>) => (abortable(), tx.run(...a)) } as ManagedTransaction) : tx;
            const out = await writeChanges(guarded, c, rev, outbox);
            abortable();
            return out;
          },
          { metadata: { app: "orrery", op: "apply", rev } },
        );
      } catch (e) {
        throw toGraphStoreError(e, "write", "neo4j write");
      } finally {
        await session.close();
      }
    };
    const next = this.chain.then(run, run);
    this.chain = next.catch(() => undefined);
    return next;
  }

  async outbox(): Promise<OutboxEntry[]> {
    if (this.closed) throw new GraphStoreError("query_failed", "neo4j store is closed");
    const session = this.session("WRITE");
    try {
      // On the leader (a write transaction that only reads): after a restart no bookmark says where to read.
      const r = await session.executeWrite((tx) => tx.run("MATCH (o:OrreryOutbox) RETURN o.rev AS rev, o.body AS body ORDER BY rev"));
      return r.records.map((rec) => ({ rev: Number(toPlain(rec.get("rev"))), body: String(rec.get("body")) }));
    } catch (e) {
      throw toGraphStoreError(e, "read", "neo4j outbox");
    } finally {
      await session.close();
    }
  }

  async load(): Promise<StoredGraph> {
    if (this.closed) throw new GraphStoreError("query_failed", "neo4j store is closed");
    const session = this.session("WRITE");
    try {
      // On the leader, as outbox(): the model is rebuilt from the latest committed graph.
      return await session.executeWrite((tx) => loadGraph(tx));
    } catch (e) {
      throw toGraphStoreError(e, "read", "neo4j load");
    } finally {
      await session.close();
    }
  }

  async query(cypher: string, params: Record<string, unknown> = {}, opts: QueryOptions = {}): Promise<Record<string, unknown>[]> {
    assertReadOnly(cypher);
    if (this.closed) throw new GraphStoreError("query_failed", "neo4j store is closed");
    return runReadQuery(this.driver, this.database, cypher, params, opts, this.bookmarks);
  }

  async neighbourhood(id: string, opts: NeighbourhoodOptions): Promise<Neighbourhood> {
    const hops = validHops(opts.hops);
    const kinds = opts.kinds?.length ? [...new Set(opts.kinds)].filter((k) => EDGE_KINDS.includes(k)) : EDGE_KINDS;
    return this.read("neo4j neighbourhood", async (tx) => {
      // DISTINCT end nodes and no path variable: the planner expands breadth-first with pruning, not path by path.
      const reached = await tx.run(`MATCH (a:Entity {id: $id})-[:${kinds.join("|")}*1..${hops}]-(b:Entity) RETURN DISTINCT b.id AS id`, { id });
      const root = await tx.run("MATCH (n:Entity {id: $id}) RETURN n.id AS id", { id });
      if (!root.records.length) return { nodes: [], edges: [] };
      const ids = [id, ...reached.records.map((r) => String(r.get("id"))).filter((x) => x !== id)];
      const nodes = (await tx.run(`MATCH (n:Entity) WHERE n.id IN $ids RETURN ${NODE_COLS}`, { ids })).records.map((r) => toNode(r.toObject()));
      const edges = (
        await tx.run(`MATCH (a:Entity)-[e]->(b:Entity) WHERE a.id IN $ids AND b.id IN $ids AND type(e) IN $kinds RETURN ${EDGE_COLS}`, { ids, kinds })
      ).records.map((r) => toEdge(r.toObject()));
      return { nodes, edges };
    });
  }

  async impact(id: string, opts: ImpactOptions): Promise<StoreImpact> {
    validHops(opts.maxHops, "maxHops");
    return this.read("neo4j impact", (tx) =>
      storeImpact(async (q, p) => (await tx.run(q, toNeo4jParams(p))).records.map((r) => toPlain(r.toObject()) as Record<string, unknown>), id, opts),
    );
  }

  async exportSnapshot(): Promise<TopologySnapshot> {
    const g = await this.read("neo4j snapshot", (tx) => loadGraph(tx));
    return TopologySnapshot.parse({ schema: "topology.snapshot.v1", rev: g.rev, at: Date.now(), nodes: g.nodes, edges: g.edges });
  }

  private session(mode: "READ" | "WRITE") {
    return this.driver.session({
      database: this.database,
      defaultAccessMode: mode === "READ" ? neo4j.session.READ : neo4j.session.WRITE,
      bookmarkManager: this.bookmarks,
    });
  }

  /** Our own read-only Cypher (no user text) in one read transaction. */
  private async read<T>(what: string, f: (tx: ManagedTransaction) => Promise<T>): Promise<T> {
    if (this.closed) throw new GraphStoreError("query_failed", "neo4j store is closed");
    const session = this.session("READ");
    try {
      return await session.executeRead(f, { metadata: { app: "orrery", op: what } });
    } catch (e) {
      throw toGraphStoreError(e, "read", what);
    } finally {
      await session.close();
    }
  }

  putRegistry(g: RegistryGraphRows): Promise<RegistryWrite> {
    if (this.closed) return Promise.reject(new GraphStoreError("write_failed", "neo4j store is closed"));
    const run = async (): Promise<RegistryWrite> => {
      const session = this.session("WRITE");
      try {
        // Read and write in one transaction: the diff is against what this transaction sees.
        return await session.executeWrite(
          async (tx) => {
            const d = registryDiff(await loadRegistryTx(tx), g);
            const each = async (q: string, rows: Record<string, unknown>[]) => {
              for (const b of batches(rows)) await tx.run(q, toNeo4jParams({ rows: b }));
            };
            await each("UNWIND $rows AS r MATCH (a:Component {id: r.src})-[x:DECLARES_DEPENDENCY]->(b:Component {id: r.dst}) DELETE x", d.delDeclares);
            await each("UNWIND $rows AS r MATCH (a:Component {id: r.component})-[x:MATCHES]->(b:Entity {id: r.entity}) DELETE x", d.delMatches);
            await each("UNWIND $rows AS r MATCH (c:Component {id: r.id}) DETACH DELETE c", d.remove.map((id) => ({ id })));
            await each("UNWIND $rows AS r MERGE (c:Component {id: r.id}) SET c += r", d.upsert.map((c) => ({ ...c })));
            await each("UNWIND $rows AS r MATCH (a:Component {id: r.component}), (b:Entity {id: r.entity}) MERGE (a)-[:MATCHES]->(b)", d.addMatches);
            await each("UNWIND $rows AS r MATCH (a:Component {id: r.src}), (b:Component {id: r.dst}) MERGE (a)-[:DECLARES_DEPENDENCY]->(b)", d.addDeclares);
            return registryWriteCounts(d);
          },
          { metadata: { app: "orrery", op: "putRegistry" } },
        );
      } catch (e) {
        throw toGraphStoreError(e, "write", "neo4j registry write");
      } finally {
        await session.close();
      }
    };
    const next = this.chain.then(run, run);
    this.chain = next.catch(() => undefined);
    return next;
  }

  async loadRegistry(): Promise<RegistryGraphRows> {
    return this.read("neo4j registry", (tx) => loadRegistryTx(tx));
  }

  /** The Neo4j server runs its own checkpoints (db.checkpoint.interval.*); nothing to do from here. */
  async checkpoint(): Promise<void> {}

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.chain;
    if (this.ownsDriver) await this.driver.close();
  }
}

function isDriver(x: unknown): x is Driver {
  return typeof (x as Driver).session === "function" && typeof (x as Driver).close === "function";
}

const NODE_COLS = "n.id AS id, n.kind AS kind, n.name AS name, n.source AS source, n.props AS props, n.firstSeen AS firstSeen, n.lastSeen AS lastSeen";
const EDGE_COLS = "e.id AS id, type(e) AS kind, a.id AS src, b.id AS dst, e.source AS source, e.props AS props, e.firstSeen AS firstSeen, e.lastSeen AS lastSeen";

function toNode(rec: Record<string, unknown>, unreadable?: string[]): TopoNode {
  const r = toPlain(rec) as Record<string, unknown>;
  return { ...r, props: storedProps(r.props, r.id, unreadable) } as TopoNode;
}

function toEdge(rec: Record<string, unknown>, unreadable?: string[]): TopoEdge {
  const r = toPlain(rec) as Record<string, unknown>;
  return { ...r, props: storedProps(r.props, r.id, unreadable) } as TopoEdge;
}

/** The whole stored graph, streamed record by record, in one transaction. */
async function loadRegistryTx(tx: ManagedTransaction): Promise<RegistryGraphRows> {
  const rows = async (q: string) => (await tx.run(q)).records.map((r) => toPlain(r.toObject()) as Record<string, unknown>);
  const components = (
    await rows(
      "MATCH (c:Component) RETURN c.id AS id, c.name AS name, c.category AS category, c.lifecycle AS lifecycle, c.privacy AS privacy, c.location AS location, c.language AS language, c.framework AS framework, c.team AS team, c.owners AS owners, c.maintainers AS maintainers, c.tags AS tags, c.rev AS rev",
    )
  ).map(toComponent);
  const matches = (await rows("MATCH (a:Component)-[:MATCHES]->(b:Entity) RETURN a.id AS component, b.id AS entity")) as { component: string; entity: string }[];
  const declares = (await rows("MATCH (a:Component)-[:DECLARES_DEPENDENCY]->(b:Component) RETURN a.id AS src, b.id AS dst")) as { src: string; dst: string }[];
  return sortRegistry({ components, matches, declares });
}

async function loadGraph(tx: ManagedTransaction): Promise<StoredGraph> {
  const meta = await tx.run("MATCH (m:OrreryMeta {key: 'rev'}) RETURN m.value AS v");
  const nodes: TopoNode[] = [];
  const unreadable: string[] = [];
  for await (const rec of tx.run(`MATCH (n:Entity) RETURN ${NODE_COLS}`)) nodes.push(toNode(rec.toObject(), unreadable));
  const edges: TopoEdge[] = [];
  for await (const rec of tx.run(`MATCH (a:Entity)-[e]->(b:Entity) WHERE type(e) IN $kinds RETURN ${EDGE_COLS}`, { kinds: EDGE_KINDS })) edges.push(toEdge(rec.toObject(), unreadable));
  const iv = await tx.run("MATCH (m:OrreryMeta) WHERE m.key STARTS WITH $p RETURN m.key AS k, m.value AS v", { p: INTERVAL_KEY });
  const sourceIntervals = intervalsFrom(iv.records.map((r) => ({ k: r.get("k"), v: toPlain(r.get("v")) })));
  return { rev: Number(toPlain(meta.records[0]?.get("v")) ?? 0), nodes, edges, sourceIntervals, unreadable };
}

/**
 * One change set, in the order that keeps every step valid: removals first, then nodes, edges, and the rev. Returns
 * false, writing nothing, when the store is already at `rev` or later: this is a retry of a transaction that did
 * commit (the driver retries when the commit's reply is lost).
 */
export async function writeChanges(tx: ManagedTransaction, c: Changes, rev: number, outbox?: { entries: OutboxEntry[]; sentUpTo: number }): Promise<boolean> {
  const cur = await tx.run("MATCH (m:OrreryMeta {key: 'rev'}) RETURN m.value AS v");
  const stored = Number(toPlain(cur.records[0]?.get("v")) ?? 0);
  if (stored >= rev) return false;
  const isNew = (id: string) => c.created?.has(id) ?? false;
  for (const k of EDGE_KINDS) {
    const rows = c.edgesRemoved.filter((e) => e.kind === k).map((e) => ({ src: e.src, dst: e.dst }));
    for (const b of batches(rows)) await tx.run(`UNWIND $rows AS r MATCH (a:Entity {id: r.src})-[e:${k}]->(b:Entity {id: r.dst}) DELETE e`, { rows: b });
  }
  for (const b of batches(c.nodesRemoved)) await tx.run("UNWIND $ids AS i MATCH (n:Entity {id: i}) DETACH DELETE n", { ids: b });
  // Nodes always MERGE: the unique constraint makes it an index lookup, and a node the model thinks is new but the
  // store already has (say, after a crash between write and ack) is updated instead of failing the whole set.
  for (const b of batches(c.nodesUpserted.map((n) => nodeRow(n, rev))))
    await tx.run(
      "UNWIND $rows AS r MERGE (n:Entity {id: r.id}) SET n.kind = r.kind, n.name = r.name, n.source = r.source, n.host = r.host, n.port = r.port, n.exe = r.exe, n.owner = r.owner, n.props = r.props, n.firstSeen = r.firstSeen, n.lastSeen = r.lastSeen, n.updateTag = r.updateTag",
      { rows: b },
    );
  for (const k of EDGE_KINDS) {
    // New edges are CREATEd: MERGE of a relationship checks the existing ones between the two endpoints, which a
    // host with thousands of RUNS edges makes costly on a first full scan. Endpoints MERGE as in the Kuzu adapter.
    const created = c.edgesUpserted.filter((e) => e.kind === k && isNew(e.id)).map((e) => edgeRow(e, rev));
    for (const b of batches(created))
      await tx.run(
        `UNWIND $rows AS r MERGE (a:Entity {id: r.src}) MERGE (b:Entity {id: r.dst}) CREATE (a)-[e:${k} {id: r.id}]->(b) SET e.source = r.source, e.props = r.props, e.firstSeen = r.firstSeen, e.lastSeen = r.lastSeen, e.updateTag = r.updateTag`,
        { rows: b },
      );
    const changed = c.edgesUpserted.filter((e) => e.kind === k && !isNew(e.id)).map((e) => edgeRow(e, rev));
    for (const b of batches(changed))
      await tx.run(
        `UNWIND $rows AS r MERGE (a:Entity {id: r.src}) MERGE (b:Entity {id: r.dst}) MERGE (a)-[e:${k} {id: r.id}]->(b) SET e.source = r.source, e.props = r.props, e.firstSeen = r.firstSeen, e.lastSeen = r.lastSeen, e.updateTag = r.updateTag`,
        { rows: b },
      );
  }
  await tx.run("MERGE (m:OrreryMeta {key: 'rev'}) SET m.value = $rev", { rev: neo4j.int(rev) });
  const iv = intervalRows(c);
  if (iv.set.length) await tx.run("UNWIND $rows AS r MERGE (m:OrreryMeta {key: r.key}) SET m.value = r.value", { rows: iv.set.map((r) => ({ key: r.key, value: neo4j.int(r.value) })) });
  if (iv.del.length) await tx.run("UNWIND $keys AS k MATCH (m:OrreryMeta {key: k}) DELETE m", { keys: iv.del });
  if (outbox) {
    await tx.run("MATCH (o:OrreryOutbox) WHERE o.rev <= $upto DELETE o", { upto: neo4j.int(outbox.sentUpTo) });
    if (outbox.entries.length)
      await tx.run("UNWIND $rows AS r MERGE (o:OrreryOutbox {rev: r.rev}) SET o.body = r.body", {
        rows: outbox.entries.map((e) => ({ rev: neo4j.int(e.rev), body: e.body })),
      });
  }
  return true;
}

function* batches<T>(rows: T[]): Generator<T[]> {
  for (let i = 0; i < rows.length; i += BATCH) yield rows.slice(i, i + BATCH);
}

/**
 * The driver sends every JS number as a Cypher FLOAT: integer columns are sent as Integer so they are stored as
 * INTEGER (`range(0, n.port)` and `LIMIT $n` need that), exactly as Kuzu stores them as INT64.
 */
function nodeRow(n: TopoNode, updateTag: number) {
  const p = n.props;
  return {
    id: n.id,
    kind: n.kind,
    name: n.name,
    source: n.source,
    host: typeof p.host === "string" ? p.host : n.kind === "host" ? n.id.slice(5) : "",
    port: neo4j.int(typeof p.port === "number" && Number.isSafeInteger(p.port) ? p.port : 0),
    exe: typeof p.exe === "string" ? p.exe : "",
    owner: typeof p.owner === "string" ? p.owner : "",
    props: JSON.stringify(p),
    firstSeen: neo4j.int(n.firstSeen),
    lastSeen: neo4j.int(n.lastSeen),
    /** the topology rev of the write (cartography's update tag) */
    updateTag: neo4j.int(updateTag),
  };
}

function edgeRow(e: TopoEdge, updateTag: number) {
  return { id: e.id, src: e.src, dst: e.dst, source: e.source, props: JSON.stringify(e.props), firstSeen: neo4j.int(e.firstSeen), lastSeen: neo4j.int(e.lastSeen), updateTag: neo4j.int(updateTag) };
}

/**
 * Runs read-only Cypher in a READ session (the server refuses any write), with the row limit checked while streaming
 * (the rest of a too-large result is never fetched) and the time limit enforced here: at timeoutMs the caller gets a
 * timeout error and the session is closed in the background (which cancels the result and resets the connection, so
 * the server stops the query). The same timeout in the transaction config makes the server end it too. Callers that
 * take Cypher from users call assertReadOnly first, as Neo4jGraphStore.query does.
 */
export async function runReadQuery(
  driver: Driver,
  database: string,
  cypher: string,
  params: Record<string, unknown> = {},
  opts: QueryOptions = {},
  bookmarkManager?: BookmarkManager,
): Promise<Record<string, unknown>[]> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxRows = opts.maxRows ?? DEFAULT_MAX_ROWS;
  const session = driver.session({ database, defaultAccessMode: neo4j.session.READ, fetchSize: Math.min(maxRows + 1, 1000), bookmarkManager });
  let timedOut = false;
  const work = session
    .executeRead(
      async (tx) => {
        const rows: Record<string, unknown>[] = [];
        for await (const rec of tx.run(cypher, toNeo4jParams(params))) {
          if (timedOut) break;
          if (rows.length >= maxRows) throw new GraphStoreError("too_many_rows", `query returned more than ${maxRows} rows; add LIMIT`);
          rows.push(toPlain(rec.toObject()) as Record<string, unknown>);
        }
        return rows;
      },
      { timeout: timeoutMs, metadata: { app: "orrery", op: "cypher" } },
    )
    .catch((e) => {
      throw toGraphStoreError(e, "read", "neo4j query", timeoutMs);
    });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(new GraphStoreError("timeout", `query exceeded ${timeoutMs} ms`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([work, guard]);
  } finally {
    clearTimeout(timer);
    work.catch(() => undefined); // the loser of the race settles later; it is not an unhandled rejection
    // When the time limit won, closing the session (which cancels the running query) must not hold up the caller.
    if (timedOut) void session.close().catch(() => undefined);
    else await session.close();
  }
}

/** JSON parameters → Bolt values: integral numbers become Integer (see nodeRow), recursively in lists and maps. */
export function toNeo4jParams(v: Record<string, unknown>): Record<string, unknown> {
  return toNeo4jValue(v) as Record<string, unknown>;
}

function toNeo4jValue(v: unknown): unknown {
  if (typeof v === "number") return Number.isSafeInteger(v) ? neo4j.int(v) : v;
  if (Array.isArray(v)) return v.map(toNeo4jValue);
  if (v && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = toNeo4jValue(x);
    return o;
  }
  return v;
}

/**
 * Driver values → plain JSON, in the same shapes the Kuzu adapter returns: a node is its properties plus `_label` and
 * `_id`; a relationship adds `_src` and `_dst`; a path is `{_nodes, _rels}`. `_id`s are Neo4j element ids. Integers
 * outside ±2^53 become decimal strings rather than silently losing digits; temporals become ISO-8601 strings.
 */
export function toPlain(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (typeof v !== "object") return v;
  if (isInt(v)) return v.inSafeRange() ? v.toNumber() : v.toString();
  if (isNode(v)) return { ...plainProps(v.properties), _label: v.labels[0] ?? null, _id: v.elementId };
  if (isRelationship(v)) return { ...plainProps(v.properties), _src: v.startNodeElementId, _dst: v.endNodeElementId, _label: v.type, _id: v.elementId };
  if (isUnboundRelationship(v)) return { ...plainProps(v.properties), _label: v.type, _id: v.elementId };
  if (isPath(v)) return { _nodes: [v.start, ...v.segments.map((s) => s.end)].map(toPlain), _rels: v.segments.map((s) => toPlain(s.relationship)) };
  if (isPathSegment(v)) return { start: toPlain(v.start), relationship: toPlain(v.relationship), end: toPlain(v.end) };
  if (isDate(v) || isDateTime(v) || isLocalDateTime(v) || isLocalTime(v) || isTime(v) || isDuration(v)) return v.toString();
  if (isPoint(v)) {
    const p: Record<string, unknown> = { srid: toPlain(v.srid), x: v.x, y: v.y };
    if (v.z !== undefined) p.z = v.z;
    return p;
  }
  if (isVector(v)) return Array.from(v.asTypedArray() as ArrayLike<number | bigint>, toPlain);
  if (v instanceof Uint8Array) return Array.from(v);
  if (Array.isArray(v)) return v.map(toPlain);
  if (Object.getPrototypeOf(v) === Object.prototype) return plainProps(v as Record<string, unknown>);
  return String(v); // any type this driver version adds later: its text form, never a class instance
}

function plainProps(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(o)) out[k] = toPlain(x);
  return out;
}

/** Codes that mean "this transaction may not write", across 4.4 and 5.x, single instance and cluster. */
const READ_ONLY_CODES = new Set([
  "Neo.ClientError.Statement.AccessMode",
  "Neo.ClientError.Fabric.AccessMode",
  "Neo.ClientError.Cluster.NotALeader",
  "Neo.ClientError.General.ForbiddenOnReadOnlyDatabase",
]);

/** The driver's codes for a server it cannot reach or lost (no database code: the failure is on the way there). */
const UNREACHABLE_CODES = new Set([neo4j.error.SERVICE_UNAVAILABLE, neo4j.error.SESSION_EXPIRED]);

/**
 * One mapping from driver errors to GraphStoreError codes. Reads: writes refused by the server → read_only; the
 * transaction timeout (4.4: TransactionTimedOut; 5.x: TransactionTimedOutClientConfiguration) → timeout. Reads and
 * writes: an unreachable server, a lost session or the server's own transient errors (Neo.TransientError.*: out of
 * memory, a leader switch, a deadlock) → unavailable, which a consumer waits out. The rest (syntax, semantics,
 * missing parameter; any other failure of a write, a timed-out one too) → query_failed or write_failed.
 */
export function toGraphStoreError(e: unknown, op: "read" | "write", what: string, timeoutMs?: number): GraphStoreError {
  if (e instanceof GraphStoreError) return e;
  const code = e instanceof Neo4jError ? e.code : "";
  const message = e instanceof Error ? e.message : String(e);
  const detail = `${what} failed: ${message}${code ? ` (${code})` : ""}`;
  const timedOut = /TransactionTimedOut/.test(code) || (/^Neo\.\w+\.Transaction\./.test(code) && /timed? ?out|timeout/i.test(message));
  if (op === "read" && timedOut)
    return new GraphStoreError("timeout", `query exceeded ${timeoutMs === undefined ? "the server's timeout" : `${timeoutMs} ms`}: ${message}`, { cause: e });
  // a write over the server's memory (its transaction limit or heap): the caller writes it in parts
  if (op === "write" && /OutOfMemory|MemoryLimit/i.test(code)) return new GraphStoreError("too_large", detail, { cause: e });
  // (a write the server timed out may just be too large: unknown, so a consumer splits its batch rather than wait)
  if (!timedOut && (UNREACHABLE_CODES.has(code) || code.startsWith("Neo.TransientError."))) return new GraphStoreError("unavailable", detail, { cause: e });
  if (op === "write") return new GraphStoreError("write_failed", detail, { cause: e });
  if (READ_ONLY_CODES.has(code) || /read access mode|restricted to READ/i.test(message))
    return new GraphStoreError("read_only", `read-only queries only: the server refused a write (${message})`, { cause: e });
  return new GraphStoreError("query_failed", detail, { cause: e });
}
