/**
 * `bun run bench kuzu-strings [--nodes 20000] [--bytes 400] [--updates 40] [--rounds 60] [--pool-mib 256]`
 *
 * Not in CI and not in `bench all`: raw Kuzu, no Orrery code, to show where the graph store's file and buffer pool
 * go under churn (bench soak's topology died with "the buffer pool is full" after 18 minutes at 2,000 hosts). A
 * table of --nodes nodes, each with a --bytes string property (the size of a service's `props`), is bulk-copied; then
 * each round changes --updates nodes' strings in one transaction and checkpoints, as the topology service's commits
 * and checkpoints do. Three ways, each in a fresh database with a --pool-mib buffer pool:
 *   set       `SET n.props = $p` in place (what the Kuzu adapter does for a changed node)
 *   recreate  the same nodes deleted and created again with the new string
 *   int       an INT64 column set in place instead (no string written)
 * Reports the database file's size (with its WAL) after each round, and the round at which Kuzu refused with
 * "buffer pool is full", if it did. Left out: edges, the WAL threshold and idle timing of real checkpoints, reads.
 */
import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import kuzu, { type Connection, type PreparedStatement, type QueryResult } from "kuzu";
import { tempDir } from "../test/helpers/tmp.ts";

type Way = "set" | "recreate" | "int";

interface WayResult {
  way: Way;
  /** MiB after the bulk copy, then after each round that completed */
  fileMiB: number[];
  /** the round Kuzu refused at (1-based), or null when every round completed */
  failedAtRound: number | null;
  error: string | null;
  ms: number;
}

async function run(c: Connection, q: string, params?: Record<string, unknown>): Promise<void> {
  const r = params ? await c.execute(await c.prepare(q), params as never) : await c.query(q);
  for (const x of Array.isArray(r) ? r : [r]) x.close();
}

const text = (n: number, seed: number) => {
  let s = "";
  let x = seed;
  while (s.length < n) {
    x = (x * 1103515245 + 12345) % 2147483648;
    s += x.toString(36);
  }
  return s.slice(0, n);
};

async function oneWay(way: Way, o: { nodes: number; bytes: number; updates: number; rounds: number; poolMiB: number }, dir: string): Promise<WayResult> {
  const path = join(dir, way);
  const db = new kuzu.Database(path, o.poolMiB * 1024 * 1024);
  const c = new kuzu.Connection(db);
  const size = () => {
    let t = 0;
    for (const f of [path, `${path}.wal`])
      try {
        t += statSync(f).size;
      } catch {}
    return Math.round((t / 1048576) * 10) / 10;
  };
  const out: WayResult = { way, fileMiB: [], failedAtRound: null, error: null, ms: 0 };
  const t0 = performance.now();
  try {
    await run(c, "CALL auto_checkpoint=false");
    await run(c, "CREATE NODE TABLE E(id STRING, props STRING, v INT64, PRIMARY KEY(id))");
    await run(c, "COPY E FROM (UNWIND $rows AS r RETURN r.id, r.p, CAST(0 AS INT64))", { rows: Array.from({ length: o.nodes }, (_, i) => ({ id: `n${i}`, p: text(o.bytes, i) })) });
    await run(c, "CHECKPOINT");
    out.fileMiB.push(size());
    const set = await c.prepare("MATCH (e:E {id: $id}) SET e.props = $p");
    const setInt = await c.prepare("MATCH (e:E {id: $id}) SET e.v = $v");
    const del = await c.prepare("MATCH (e:E {id: $id}) DELETE e");
    const create = await c.prepare("CREATE (e:E {id: $id, props: $p, v: 0})");
    for (let round = 1; round <= o.rounds; round++) {
      try {
        await run(c, "BEGIN TRANSACTION");
        for (let k = 0; k < o.updates; k++) {
          const i = (round * 7919 + k * 104_729) % o.nodes;
          const id = `n${i}`;
          const p = text(o.bytes, round * 1_000_003 + k);
          const steps: [PreparedStatement, Record<string, unknown>][] =
            way === "set" ? [[set, { id, p }]] : way === "int" ? [[setInt, { id, v: round }]] : [[del, { id }], [create, { id, p }]];
          for (const [st, params] of steps) for (const x of ([] as QueryResult[]).concat(await c.execute(st, params as never))) x.close();
        }
        await run(c, "COMMIT");
        await run(c, "CHECKPOINT");
        out.fileMiB.push(size());
      } catch (e) {
        out.failedAtRound = round;
        out.error = (e as Error).message;
        break;
      }
    }
  } finally {
    out.ms = Math.round(performance.now() - t0);
    await c.close();
    await db.close();
    rmSync(path, { force: true });
    rmSync(`${path}.wal`, { force: true });
  }
  return out;
}

export async function benchKuzuStrings(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { nodes: { type: "string", default: "20000" }, bytes: { type: "string", default: "400" }, updates: { type: "string", default: "40" }, rounds: { type: "string", default: "60" }, "pool-mib": { type: "string", default: "256" } },
    strict: true,
  });
  const num = (k: keyof typeof values, min: number) => {
    const n = Number(values[k]);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${k}: expected an integer ≥ ${min}, got "${values[k]}"`);
    return n;
  };
  const o = { nodes: num("nodes", 1), bytes: num("bytes", 1), updates: num("updates", 1), rounds: num("rounds", 1), poolMiB: num("pool-mib", 64) };
  const tmp = tempDir("orrery-bench-kuzu-strings-");
  const results: WayResult[] = [];
  try {
    for (const way of ["int", "recreate", "set"] as const) {
      const r = await oneWay(way, o, tmp.dir);
      process.stderr.write(`${way}: ${r.failedAtRound ? `refused at round ${r.failedAtRound}` : `all ${o.rounds} rounds`}, file ${r.fileMiB[0]} → ${r.fileMiB.at(-1)} MiB, ${r.ms} ms\n`);
      results.push(r);
    }
  } finally {
    tmp.cleanup();
  }
  const last = (w: Way) => results.find((r) => r.way === w)!;
  // the in-place way's file beside the delete-and-create way's, at the last round both reached
  const reached = Math.min(last("set").fileMiB.length, last("recreate").fileMiB.length) - 1;
  console.log(
    JSON.stringify(
      {
        bench: "kuzu-strings",
        kuzu: (JSON.parse(readFileSync(require.resolve("kuzu/package.json"), "utf8")) as { version: string }).version,
        ...o,
        results,
        atRound: reached,
        fileRatioSetToRecreate: reached > 0 ? Math.round((last("set").fileMiB[reached]! / last("recreate").fileMiB[reached]!) * 100) / 100 : null,
      },
      null,
      2,
    ),
  );
}
