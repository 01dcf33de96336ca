/**
 * The writer lease's renewals, on a thread of their own (a Worker started by lease.ts) with a NATS connection of
 * their own: a long synchronous step on the service's thread (a 100k-node model load, a large fold, a collection)
 * must not let the lease lapse, or a lone writer at 10k hosts fences itself and reloads every few seconds. The
 * fencing itself is unchanged: this thread keeps its own deadline on its own clock and flags the lease lapsed the
 * moment it has not renewed in time, and the service's thread asks that flag before every write.
 */
import { Kvm, type KV } from "@nats-io/kv";
import { connectBus, JsApiCode, jsApiCode, type Bus } from "../shared/bus.ts";
import { LEASE_LAPSED, LEASE_LOST, LEASE_OK, type RenewerEvent, type RenewerInit } from "./lease.ts";

declare const self: Worker;

const isConflict = (e: unknown) => {
  const c = jsApiCode(e);
  return c === JsApiCode.StreamWrongLastSequence || c === JsApiCode.StreamWrongLastSequenceUnknown;
};

const post = (e: RenewerEvent) => self.postMessage(e);

let bus: Bus | undefined;
let renewing: Promise<void> | undefined;
let released = false;
let timer: ReturnType<typeof setInterval> | undefined;
let fence: ReturnType<typeof setTimeout> | undefined;

self.onmessage = async (ev: MessageEvent<RenewerInit | { type: "release" }>) => {
  const m = ev.data;
  if ("type" in m) return release();
  started = true;
  const state = new Int32Array(m.cells, 0, 2);
  const rev = new BigInt64Array(m.cells, 8, 1);
  let revision = m.revision;
  const now = () => performance.now();
  const end = (kind: "lapsed" | "lost", why: string, holder?: string) => {
    if (Atomics.load(state, 0) !== LEASE_OK) return;
    Atomics.store(state, 0, kind === "lost" ? LEASE_LOST : LEASE_LAPSED);
    clearInterval(timer);
    clearTimeout(fence);
    post({ type: kind, why, holder });
  };
  let kv: KV;
  try {
    bus = await connectBus({ ...m.connect, name: `${m.connect.name}-lease`, declare: false });
    kv = await new Kvm(bus.js).open(m.bucket);
  } catch (e) {
    // the service thread's own deadline (its first window) fences it
    post({ type: "log", level: "error", msg: "lease renewer could not connect to NATS", fields: { error: String(e) } });
    if (released) post({ type: "released" });
    return;
  }
  const holder = (() => {
    try {
      return (JSON.parse(new TextDecoder().decode(m.value)) as { holder?: string }).holder;
    } catch {
      return undefined;
    }
  })();

  const renew = async () => {
    const sent = now();
    try {
      revision = await kv.update(m.key, m.value, revision);
      Atomics.store(rev, 0, BigInt(revision));
      if (Atomics.load(state, 0) !== LEASE_OK || released) return;
      Atomics.store(state, 1, 1);
      // trusted until `sent + ttl - margin` on this thread's clock (lease.ts explains the margin)
      clearTimeout(fence);
      fence = setTimeout(() => end("lapsed", "not renewed in time"), Math.max(0, sent + m.timing.ttlMs - m.timing.marginMs - now()));
    } catch (e) {
      if (!isConflict(e)) {
        post({ type: "log", level: "warn", msg: "lease renewal failed; retrying", fields: { key: m.key, error: String(e) } });
        return;
      }
      // someone wrote the key, or our own previous write landed and only its answer was lost
      const cur = await kv.get(m.key).catch(() => null);
      let curHolder: string | undefined;
      try {
        curHolder = cur && cur.operation === "PUT" ? (JSON.parse(new TextDecoder().decode(cur.value)) as { holder?: string }).holder : undefined;
      } catch {
        curHolder = undefined;
      }
      if (cur && curHolder !== undefined && curHolder === holder) {
        revision = cur.revision;
        Atomics.store(rev, 0, BigInt(revision));
      } else end("lost", "another instance holds it", curHolder);
    }
  };
  const tick = () => {
    if (renewing || released || Atomics.load(state, 0) !== LEASE_OK) return;
    renewing = renew().finally(() => (renewing = undefined));
  };
  tick();
  timer = setInterval(tick, m.timing.renewMs);

  release = async () => {
    released = true;
    clearInterval(timer);
    clearTimeout(fence);
    // a renewal in flight lands first, so the delete names the revision it wrote
    await renewing;
    if (Atomics.load(state, 0) === LEASE_OK) {
      // only if it is still ours: a delete against a newer revision fails and leaves the new holder alone
      await kv.delete(m.key, { previousSeq: revision }).catch((e) => post({ type: "log", level: "warn", msg: "lease not released; a standby takes over once it lapses", fields: { key: m.key, error: String(e) } }));
    }
    await bus?.close();
    post({ type: "released" });
  };
  if (released) await release();
};

let started = false;
/** Until the init has connected, a release only marks it (the init releases once connected). */
let release = async () => {
  released = true;
  if (!started) post({ type: "released" });
};
