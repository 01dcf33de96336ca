/**
 * How other processes talk to the registry service (the gateway, tests, benches): request/reply over core NATS on
 * `<prefix>.rpc.registry`, in chunks both ways so an import file or an export larger than NATS's payload limit
 * travels whole.
 *
 *   request: part 0 to the queue subject (any registry instance takes it), headers Rpc-Id and Rpc-Parts; when there
 *            are more parts, the instance answers `Rpc-Continue: <its own subject>` and the rest go there, so one
 *            instance gets them all.
 *   reply:   progress messages (Rpc-Kind: progress, an ImportProgress each) while it works, then the RegistryReply in
 *            parts (Rpc-Kind: part, Rpc-Part, Rpc-Parts).
 */
import type { StoredMsg } from "@nats-io/jetstream";
import { createInbox, headers, type Msg, type MsgHdrs } from "@nats-io/transport-node";
import { ImportProgress, RegistryGraph, RegistryReply, type Caller, type RegistryErrorCode } from "../../pipelines/contracts/registry.ts";
import type { Bus } from "../shared/bus.ts";
import { JsApiCode, jsApiCode } from "../shared/bus.ts";

/** bytes of a request or reply chunk: well under NATS's default 1 MiB max_payload, headers included */
export const RPC_CHUNK_BYTES = 512 * 1024;

export class RegistryClientError extends Error {
  override readonly name = "RegistryClientError";
  constructor(
    readonly code: RegistryErrorCode,
    message: string,
    readonly detail?: unknown,
  ) {
    super(message);
  }
}

/** The one mapping of the registry's codes to HTTP statuses. */
export const REGISTRY_STATUS: Record<RegistryErrorCode, number> = { bad_request: 400, forbidden: 403, not_found: 404, conflict: 409, unavailable: 503, too_large: 413 };

export function chunks(data: Uint8Array, size = RPC_CHUNK_BYTES): Uint8Array[] {
  if (data.byteLength <= size) return [data];
  const out: Uint8Array[] = [];
  for (let i = 0; i < data.byteLength; i += size) out.push(data.subarray(i, i + size));
  return out;
}

export function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

export interface CallOptions {
  onProgress?: (p: ImportProgress) => void;
  /** how long to wait without hearing anything from the registry */
  idleTimeoutMs?: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function hdrs(kv: Record<string, string>): MsgHdrs {
  const h = headers();
  for (const [k, v] of Object.entries(kv)) h.set(k, v);
  return h;
}

/** Asks the registry service; resolves to the value, or throws RegistryClientError with the service's code. */
export async function callRegistry<T = unknown>(bus: Bus, op: string, caller: Caller, input: unknown, o: CallOptions = {}): Promise<T> {
  const id = crypto.randomUUID();
  const inbox = createInbox();
  const sub = bus.nc.subscribe(inbox);
  const parts = chunks(enc.encode(JSON.stringify({ op, caller, input, progress: o.onProgress ? "1" : undefined })));
  const idle = o.idleTimeoutMs ?? 30_000;
  try {
    const send = (subject: string, i: number) => bus.nc.publish(subject, parts[i]!, { reply: inbox, headers: hdrs({ "Rpc-Id": id, "Rpc-Part": String(i), "Rpc-Parts": String(parts.length) }) });
    send(bus.topo.subjects.registryRpc, 0);
    const got: Uint8Array[] = [];
    let expected = -1;
    const it = sub[Symbol.asyncIterator]();
    let answered = false;
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const next = await Promise.race([it.next(), new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), idle)))]);
      clearTimeout(timer);
      if (next === "timeout") throw new RegistryClientError("unavailable", answered ? `the registry stopped answering (nothing for ${idle} ms)` : `the registry service did not answer within ${idle} ms (is it running?)`);
      if (next.done) throw new RegistryClientError("unavailable", "the registry reply was cut short");
      answered = true;
      const m: Msg = next.value;
      const kind = m.headers?.get("Rpc-Kind");
      const cont = m.headers?.get("Rpc-Continue");
      if (cont) {
        for (let i = 1; i < parts.length; i++) send(cont, i);
        continue;
      }
      if (kind === "progress") {
        const p = ImportProgress.safeParse(JSON.parse(dec.decode(m.data)));
        if (p.success) o.onProgress?.(p.data);
        continue;
      }
      // a reply without our headers: "no responders" (no registry service is running)
      if (kind !== "part") throw new RegistryClientError("unavailable", "no registry service is running");
      const i = Number(m.headers?.get("Rpc-Part") ?? "0");
      expected = Number(m.headers?.get("Rpc-Parts") ?? "1");
      got[i] = m.data;
      if (got.filter(Boolean).length === expected) break;
    }
    const r = RegistryReply.safeParse(JSON.parse(dec.decode(concat(got))));
    if (!r.success) throw new RegistryClientError("unavailable", "the registry answered with something that is not a registry reply");
    if (!r.data.ok) throw new RegistryClientError(r.data.code, r.data.error, r.data.detail);
    return r.data.value as T;
  } finally {
    sub.unsubscribe();
  }
}

// ---- registry.graph.v1 in parts ----

const jsonBytes = (v: unknown) => Buffer.byteLength(JSON.stringify(v));

/**
 * Cuts one registry graph state into parts that each encode within `maxBytes` (rows in order: components, then
 * matches, then declares). A state that fits goes out as one part, as before parts existed.
 */
export function registryGraphParts(g: RegistryGraph, maxBytes: number, generation: string): RegistryGraph[] {
  const base = { ...g, components: [], matches: [], declares: [], generation, part: 0, parts: 1 };
  if (jsonBytes({ ...g, generation, part: 0, parts: 1 }) <= maxBytes) return [{ ...g, generation, part: 0, parts: 1 }];
  // room for the envelope with the largest part numbers, and a comma per row
  const budget = maxBytes - jsonBytes({ ...base, part: 99_999, parts: 99_999 }) - 64;
  const out: RegistryGraph[] = [];
  let cur: RegistryGraph = { ...base, components: [], matches: [], declares: [] };
  let used = 0;
  const add = <K extends "components" | "matches" | "declares">(key: K, row: RegistryGraph[K][number]) => {
    const n = jsonBytes(row) + 1;
    if (n > budget) throw new RegistryClientError("too_large", `a registry graph row is ${n} bytes, over a message's ${budget}`);
    if (used + n > budget) {
      out.push(cur);
      cur = { ...base, components: [], matches: [], declares: [] };
      used = 0;
    }
    (cur[key] as RegistryGraph[K][number][]).push(row);
    used += n;
  };
  for (const c of g.components) add("components", c);
  for (const m of g.matches) add("matches", m);
  for (const d of g.declares) add("declares", d);
  out.push(cur);
  return out.map((p, i) => ({ ...p, part: i, parts: out.length }));
}

/** the state of a complete set of parts: the rows of all, the rest from the last */
export function joinRegistryGraph(parts: RegistryGraph[]): RegistryGraph {
  const last = parts.at(-1)!;
  return { ...last, part: 0, parts: 1, components: parts.flatMap((p) => p.components), matches: parts.flatMap((p) => p.matches), declares: parts.flatMap((p) => p.declares) };
}

export const isLastPart = (g: RegistryGraph) => (g.part ?? 0) === (g.parts ?? 1) - 1;

/**
 * The whole state whose last part is `last` (stored at `seq`), read back from the REGISTRY_GRAPH stream: its parts
 * are the messages just before it. Undefined when they are not all there (a publisher that died half-way through a
 * state, whose next state will follow whole).
 */
export async function readRegistryGraphAt(bus: Bus, seq: number, last: RegistryGraph): Promise<RegistryGraph | undefined> {
  const parts = last.parts ?? 1;
  if (!isLastPart(last)) return undefined;
  if (parts === 1) return last;
  const got: RegistryGraph[] = [];
  for (let i = 0; i < parts - 1; i++) {
    const m = await bus.jsm.streams.getMessage(bus.topo.streams.registryGraph.name, { seq: seq - (parts - 1) + i }).catch((e) => {
      if (jsApiCode(e) === JsApiCode.NoMessageFound || jsApiCode(e) === 10037) return null;
      throw e;
    });
    const p = m ? RegistryGraph.safeParse(m.json()) : undefined;
    if (!p?.success || p.data.generation !== last.generation || (p.data.part ?? 0) !== i) return undefined;
    got.push(p.data);
  }
  return joinRegistryGraph([...got, last]);
}

/** The last complete registry graph state on the stream (walking back past a state cut short), or undefined. */
export async function lastRegistryGraph(bus: Bus): Promise<{ seq: number; graph: RegistryGraph } | undefined> {
  const stream = bus.topo.streams.registryGraph.name;
  let m: StoredMsg | null;
  try {
    m = await bus.jsm.streams.getMessage(stream, { last_by_subj: bus.topo.subjects.registryGraph });
  } catch (e) {
    if (jsApiCode(e) === JsApiCode.NoMessageFound || jsApiCode(e) === 10037) return undefined;
    throw e;
  }
  for (let tries = 0; m && tries < 20; tries++) {
    const g = RegistryGraph.parse(m.json());
    const whole = await readRegistryGraphAt(bus, m.seq, g);
    if (whole) return { seq: m.seq, graph: whole };
    const before: number = m.seq - ((g.part ?? 0) + 1);
    if (before < 1) return undefined;
    m = await bus.jsm.streams.getMessage(stream, { seq: before }).catch(() => null);
  }
  return undefined;
}
