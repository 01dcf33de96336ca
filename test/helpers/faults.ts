/**
 * Fault-injection helpers: a publisher that keeps retrying a message with the same Nats-Msg-Id until JetStream acks it
 * (the agent's client call, `bus.js.publish` with a msgID, so JetStream's duplicate window makes a retry after a lost
 * ack harmless), a service started as its own process (`bun services/<name>/main.ts`, as the supervisor does) that a
 * test can SIGKILL and start again, and the store and stream reads a fault test checks its counts with.
 */
import { DeliverPolicy } from "@nats-io/jetstream";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decode } from "../../pipelines/codec.ts";
import type { DiscoveryBatch } from "../../pipelines/contracts/discovery.ts";
import { TopologyDelta, type TopoEdge, type TopoNode } from "../../pipelines/contracts/topology.ts";
import { applyDiscovery, emptyModel } from "../../pipelines/stages/topology/index.ts";
import { makeClickHouseClient } from "../../services/clickhouse/client.ts";
import type { Bus } from "../../services/shared/bus.ts";
import { metricsPortSetting, type ObservedService } from "../../services/shared/metrics-registry.ts";
import { hostSeen, listen, proc } from "./discovery.ts";
import { spawnUntilReady, type PipedProcess } from "./process.ts";

export interface Outgoing {
  subject: string;
  bytes: Uint8Array;
  /** the Nats-Msg-Id: the same on every try of one message */
  id: string;
  /** samples, hosts … the message carries */
  items: number;
}

export interface Published {
  messages: number;
  items: number;
  /** publishes that failed and were tried again */
  retries: number;
}

/**
 * Publishes message `i` every `everyMs` until stopped. A publish that fails (no server, the ack lost in a restart) is
 * tried again with the same Nats-Msg-Id until JetStream acks it, so each message is in the stream once.
 */
export function retryingPublisher(bus: Bus, one: (i: number) => Outgoing, everyMs: number) {
  let running = true;
  const n: Published = { messages: 0, items: 0, retries: 0 };
  const loop = (async () => {
    for (let i = 0; running; i++) {
      const m = one(i);
      for (;;) {
        try {
          await bus.js.publish(m.subject, m.bytes, { msgID: m.id, timeout: 5000 });
          break;
        } catch {
          n.retries++;
          await Bun.sleep(200);
        }
      }
      n.messages++;
      n.items += m.items;
      await Bun.sleep(everyMs);
    }
  })();
  return {
    /** what JetStream acked so far */
    now: (): Published => ({ ...n }),
    stop: async (): Promise<Published> => {
      running = false;
      await loop;
      return { ...n };
    },
  };
}

/** A service running as its own process, as the supervisor starts it. */
export interface ServiceProcess {
  proc: PipedProcess<"ignore">;
  log(): string;
  /** kill -9: no shutdown hook runs; resolves once it is gone */
  kill9(): Promise<number>;
  /** SIGTERM and wait (the service's own clean stop) */
  stop(): Promise<number>;
}

const ROOT = join(import.meta.dir, "../..");

/** Starts `bun services/<name>/main.ts` with `env` (its observability listener on a free port); resolves at its ready line. */
export async function startServiceProcess(name: ObservedService, env: Record<string, string>): Promise<ServiceProcess> {
  const { proc: p, log } = await spawnUntilReady([process.execPath, `services/${name}/main.ts`], {
    cwd: ROOT,
    env: { ...process.env, ORRERY_LOG_QUIET: "1", [metricsPortSetting(name)]: "0", ...env },
    ready: /"event":"ready"/,
    timeoutMs: 60_000,
    name: `the ${name} service`,
  });
  const gone = async (sig: "SIGKILL" | "SIGTERM") => {
    if (p.exitCode === null && p.signalCode === null) p.kill(sig);
    return await p.exited;
  };
  return { proc: p, log, kill9: () => gone("SIGKILL"), stop: () => gone("SIGTERM") };
}

/** One number from ClickHouse (`SELECT … AS n`). */
export async function chNumber(url: string, query: string): Promise<number> {
  const c = makeClickHouseClient({ url, logErrors: false, requestTimeoutMs: 10_000 });
  try {
    return Number((await (await c.query({ query, format: "JSONEachRow" })).json<{ n: string }>())[0]!.n);
  } finally {
    await c.close();
  }
}

/** Rows and distinct rows of the samples table: equal when nothing was stored twice. */
export async function sampleCounts(url: string, db: string, metric: string): Promise<{ rows: number; distinct: number }> {
  const c = makeClickHouseClient({ url, logErrors: false, requestTimeoutMs: 10_000 });
  try {
    const r = await c.query({ query: `SELECT count() AS rows, uniqExact(entity, metric, ts, labels) AS distinct FROM ${db}.samples WHERE metric = {m:String}`, query_params: { m: metric }, format: "JSONEachRow" });
    const [row] = await r.json<{ rows: string; distinct: string }>();
    return { rows: Number(row!.rows), distinct: Number(row!.distinct) };
  } finally {
    await c.close();
  }
}

export async function dlqSize(bus: Bus): Promise<number> {
  return (await bus.jsm.streams.info(bus.topo.streams.dlq.name)).state.messages;
}

/** Every message of a stream from the first, decoded (an ordered consumer of its own; the durables are untouched). */
export async function readStream<T>(bus: Bus, stream: string, decodeOne: (data: Uint8Array) => T): Promise<T[]> {
  const info = await bus.jsm.streams.info(stream);
  const consumer = await bus.js.consumers.get(stream, { deliver_policy: DeliverPolicy.All });
  const out: T[] = [];
  for (let i = 0; i < info.state.messages; i++) {
    const m = await consumer.next({ expires: 10_000 });
    if (!m) break;
    out.push(decodeOne(m.data));
  }
  return out;
}

export const readDeltas = (bus: Bus) => readStream(bus, bus.topo.streams.topology.name, (d) => decode(TopologyDelta, "topology.delta.v1", d));

/**
 * A churning estate of `hosts` hosts, one full scan per host per round: the host, one listener whose port moves every
 * round and whose process restarts every 7 rounds. Round `r` of host `h` is message `r * hosts + h`.
 */
export function churnScan(prefix: string, hosts: number, i: number): DiscoveryBatch {
  const h = i % hosts;
  const r = Math.floor(i / hosts);
  const host = `${prefix}h${h}`;
  return {
    schema: "discovery.v1",
    source: `agent:${host}`,
    host,
    scanId: r,
    part: 0,
    parts: 1,
    full: true,
    at: 1_700_000_000_000 + r,
    events: [hostSeen([`10.7.${h >> 8}.${h & 255}`], host), listen(8000 + (r % 5), proc(100 + Math.floor(r / 7), "svc"))],
  };
}

export const nodeKey = (n: Pick<TopoNode, "id" | "kind" | "name" | "source" | "props">) => JSON.stringify([n.id, n.kind, n.name, n.source, n.props]);
export const edgeKey = (e: Pick<TopoEdge, "id" | "kind" | "src" | "dst" | "source" | "props">) => JSON.stringify([e.id, e.kind, e.src, e.dst, e.source, e.props]);

/** The graph the batches fold into, in a fresh model: what the topology service must end with. */
export function foldDiscovery(batches: DiscoveryBatch[]): { nodes: string[]; edges: string[] } {
  const model = emptyModel();
  for (const b of batches) applyDiscovery(model, b, 1);
  return { nodes: [...model.nodes.values()].map(nodeKey).sort(), edges: [...model.edges.values()].map(edgeKey).sort() };
}

/**
 * Why a test cannot mount a tmpfs here (not root, or mounting not allowed in this container), or null when it can:
 * tried once with a probe mount.
 */
export function tmpfsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return "not root: mounting a small tmpfs needs uid 0";
  const dir = mkdtempSync(join(tmpdir(), "orrery-tmpfs-probe-"));
  try {
    const m = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir], { stderr: "pipe" });
    if (m.exitCode !== 0) return `cannot mount a tmpfs here: ${m.stderr.toString().trim()}`;
    Bun.spawnSync(["umount", dir]);
    return null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A tmpfs of `mib` MiB on `dir` (made if missing); unmount() lazily detaches it, whatever still holds files there. */
export function mountTmpfs(dir: string, mib: number): { unmount(): void } {
  mkdirSync(dir, { recursive: true });
  const m = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", `size=${mib}m`, "tmpfs", dir], { stderr: "pipe" });
  if (m.exitCode !== 0) throw new Error(`mount tmpfs on ${dir}: ${m.stderr.toString().trim()}`);
  return { unmount: () => void Bun.spawnSync(["umount", "-l", dir]) };
}

/** Writes `file` until the filesystem is full (ENOSPC); returns the bytes written. */
export function fillDisk(file: string): number {
  const chunk = Buffer.alloc(1 << 20, 1);
  const fd = openSync(file, "w");
  let written = 0;
  try {
    for (;;) {
      try {
        written += writeSync(fd, chunk);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOSPC") break;
        throw e;
      }
    }
  } finally {
    closeSync(fd);
  }
  // the last partial chunk: every byte gone
  for (const size of [65536, 4096, 512, 1]) {
    const fd2 = openSync(`${file}.${size}`, "w");
    try {
      for (;;) written += writeSync(fd2, chunk.subarray(0, size));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOSPC") throw e;
    } finally {
      closeSync(fd2);
    }
  }
  return written;
}

/** Frees what fillDisk took. */
export function freeDisk(file: string): void {
  for (const f of [file, ...[65536, 4096, 512, 1].map((s) => `${file}.${s}`)]) rmSync(f, { force: true });
}

/**
 * Starts an instance of a service that may stand by (a lease holder's peer): resolves at its ready line or at
 * its standby line, whichever comes first, and says which.
 */
export async function startServiceInstance(name: ObservedService, env: Record<string, string>): Promise<ServiceProcess & { role: "ready" | "standby" }> {
  const { proc: p, log, match } = await spawnUntilReady([process.execPath, `services/${name}/main.ts`], {
    cwd: ROOT,
    env: { ...process.env, ORRERY_LOG_QUIET: "1", [metricsPortSetting(name)]: "0", ...env },
    ready: /"event":"(ready|standby)"/,
    timeoutMs: 60_000,
    name: `the ${name} service`,
  });
  const gone = async (sig: "SIGKILL" | "SIGTERM") => {
    if (p.exitCode === null && p.signalCode === null) p.kill(sig);
    return await p.exited;
  };
  return { proc: p, log, kill9: () => gone("SIGKILL"), stop: () => gone("SIGTERM"), role: match[1] === "standby" ? "standby" : "ready" };
}

/** The value of `key` in the first JSON line of `log` whose event is "ready" (e.g. a gateway's url). */
export function readyField(log: string, key: string): string | undefined {
  for (const line of log.split("\n")) {
    if (!line.includes('"event":"ready"')) continue;
    try {
      const v = (JSON.parse(line) as Record<string, unknown>)[key];
      if (v !== undefined) return String(v);
    } catch {
      // not a JSON line
    }
  }
  return undefined;
}
