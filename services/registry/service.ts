/**
 * The registry service's request/reply server (protocol in client.ts): assembles a request's parts, runs the verb,
 * answers in parts. Also computes drift whenever the registry or the topology changes (at most every few seconds)
 * and publishes a registry.drift.v1 event when the findings differ from the last one published.
 */
import { headers, type Msg } from "@nats-io/transport-node";
import { encode } from "../../pipelines/codec.ts";
import { Drift, RegistryRequest, type Caller } from "../../pipelines/contracts/registry.ts";
import type { Bus } from "../shared/bus.ts";
import { JsApiCode, jsApiCode } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import { chunks, concat } from "./client.ts";
import { RegistryError } from "./errors.ts";
import { driftKey } from "./match.ts";
import type { Progress, Registry } from "./registry.ts";

type Verb = (r: Registry, caller: Caller, input: unknown, progress?: Progress) => unknown;

/** Every operation the gateway (or a test) may ask for. Reads need any caller; the verbs check writes themselves. */
export const OPS: Record<string, Verb> = {
  "components.list": (r, _c, i) => r.list(i),
  "components.get": (r, _c, i) => r.get(i),
  "components.create": (r, c, i) => r.create(c, i),
  "components.put": (r, c, i) => r.update(c, i, "put"),
  "components.patch": (r, c, i) => r.update(c, i, "patch"),
  "components.delete": (r, c, i) => r.remove(c, i),
  "lists.get": (r) => r.lists(),
  "lists.put": (r, c, i) => r.setList(c, i),
  "requirements.get": (r) => r.requirements(),
  "groups.put": (r, c, i) => r.putGroup(c, i),
  "groups.delete": (r, c, i) => r.removeGroup(c, i),
  "requirements.put": (r, c, i) => r.putRequirement(c, i),
  "requirements.delete": (r, c, i) => r.removeRequirement(c, i),
  "status.put": (r, c, i) => r.setStatus(c, i),
  "status.signoff": (r, c, i) => r.signOff(c, i),
  readiness: (r) => r.readiness(),
  audit: (r, _c, i) => r.audit(i),
  service: (r, _c, i) => r.service(i),
  drift: (r, _c, i) => r.drift(i),
  export: (r, _c, i) => r.export(i),
  import: (r, c, i, p) => r.import(c, i, p),
};

const enc = new TextEncoder();
const dec = new TextDecoder();

export interface RegistryServer {
  stop(): Promise<void>;
}

export function serveRegistry(bus: Bus, registry: Registry, log: Logger): RegistryServer {
  const rpc = bus.topo.subjects.registryRpc;
  const direct = `${rpc}.at.${crypto.randomUUID().replaceAll("-", "")}`;
  /** requests still receiving parts, by Rpc-Id */
  const partial = new Map<string, { parts: Uint8Array[]; n: number; reply: string; timer: ReturnType<typeof setTimeout> }>();

  const respond = (reply: string, body: unknown) => {
    const ps = chunks(enc.encode(JSON.stringify(body)));
    ps.forEach((p, i) => {
      const h = headers();
      h.set("Rpc-Kind", "part");
      h.set("Rpc-Part", String(i));
      h.set("Rpc-Parts", String(ps.length));
      bus.nc.publish(reply, p, { headers: h });
    });
  };

  const handle = async (reply: string, data: Uint8Array) => {
    let req;
    try {
      req = RegistryRequest.parse(JSON.parse(dec.decode(data)));
    } catch (e) {
      return respond(reply, { ok: false, code: "bad_request", error: `not a registry request: ${String(e).slice(0, 300)}` });
    }
    const verb = OPS[req.op];
    if (!verb) return respond(reply, { ok: false, code: "bad_request", error: `unknown operation "${req.op}"` });
    let last = 0;
    const progress: Progress | undefined = req.progress
      ? (p) => {
          // at most ~20 progress messages a second
          const now = performance.now();
          if (now - last < 50 && p.done !== p.total) return;
          last = now;
          const h = headers();
          h.set("Rpc-Kind", "progress");
          bus.nc.publish(reply, enc.encode(JSON.stringify(p)), { headers: h });
        }
      : undefined;
    try {
      respond(reply, { ok: true, value: (await verb(registry, req.caller, req.input, progress)) ?? null });
    } catch (e) {
      if (e instanceof RegistryError) return respond(reply, { ok: false, code: e.code, error: e.message, detail: e.detail });
      const id = crypto.randomUUID();
      log.error("registry request failed", { id, op: req.op, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e), stack: e instanceof Error ? e.stack : undefined });
      respond(reply, { ok: false, code: "unavailable", error: `internal error (id ${id})` });
    }
  };

  const onMessage = (m: Msg) => {
    if (!m.reply) return;
    const id = m.headers?.get("Rpc-Id") ?? "";
    const n = Number(m.headers?.get("Rpc-Parts") ?? "1");
    const i = Number(m.headers?.get("Rpc-Part") ?? "0");
    if (!(n >= 1 && n <= 4096 && i >= 0 && i < n)) return respond(m.reply, { ok: false, code: "too_large", error: "a request has at most 4096 parts" });
    if (n === 1) return void handle(m.reply, m.data);
    let p = partial.get(id);
    if (!p) {
      if (i !== 0) return;
      const reply = m.reply;
      p = { parts: [], n, reply, timer: setTimeout(() => partial.delete(id), 60_000) };
      partial.set(id, p);
      const h = headers();
      h.set("Rpc-Continue", direct);
      bus.nc.publish(reply, new Uint8Array(), { headers: h });
    }
    p.parts[i] = m.data;
    if (p.parts.filter(Boolean).length === p.n) {
      clearTimeout(p.timer);
      partial.delete(id);
      void handle(p.reply, concat(p.parts));
    }
  };

  const subs = [bus.nc.subscribe(rpc, { queue: "registry", callback: (_e, m) => onMessage(m) }), bus.nc.subscribe(direct, { callback: (_e, m) => onMessage(m) })];
  return {
    stop: async () => {
      for (const s of subs) s.unsubscribe();
      for (const p of partial.values()) clearTimeout(p.timer);
    },
  };
}

/**
 * Watches for drift: recomputed when the registry or the topology changed, at most every `everyMs`; a
 * registry.drift.v1 event is published when the findings differ from the last published one (the DRIFT stream's
 * last message, so a restart does not repeat it).
 */
export async function watchDrift(bus: Bus, registry: Registry, log: Logger, o: { everyMs: number; windowMs: number }): Promise<{ stop(): void }> {
  let lastKey: string | undefined;
  try {
    const m = await bus.jsm.streams.getMessage(bus.topo.streams.drift.name, { last_by_subj: bus.topo.subjects.drift });
    if (m) lastKey = driftKey(Drift.parse(m.json()));
  } catch (e) {
    if (jsApiCode(e) !== JsApiCode.NoMessageFound && jsApiCode(e) !== 10037) log.warn("could not read the last drift event", { error: String(e) });
  }
  let lastSeen = "";
  const tick = async () => {
    const m = registry.matches();
    if (!m) return;
    const seen = `${registry.state.seq}/${m.rev}`;
    if (seen === lastSeen) return;
    lastSeen = seen;
    // the event lists at most 1000 of each finding (the API lists them all)
    const d = registry.drift({ windowMs: o.windowMs, max: 1000 });
    const key = driftKey(d);
    if (key === lastKey) return;
    await bus.js.publish(bus.topo.subjects.drift, encode(Drift, "registry.drift.v1", d, 8 * 1024 * 1024));
    lastKey = key;
    log.info("drift changed", { declaredNotSeen: d.declaredNotSeen.length, seenNotDeclared: d.seenNotDeclared.length, notRunning: d.notRunning.length, unregistered: d.unregistered.length });
  };
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    tick()
      .catch((e) => log.warn("drift check failed", { error: String(e) }))
      .finally(() => (busy = false));
  }, o.everyMs);
  return { stop: () => clearInterval(timer) };
}
