/**
 * The gateway's view of health: health.state.v1 from the alerts service, then health.delta.v1 messages (entity
 * health, edge state, impact) as the HEALTH stream stores them. A gap in `seq` (a lost message, or an alerts service
 * restart) triggers a fresh state. While the alerts service answers `not_ready` (replaying after a restart) or does
 * not answer, the last known state stays: a wallboard is never cleared for want of an answer; the overlay asks again
 * every second until it gets one. Browsers get the state right after their topology snapshot, then every delta.
 */
import { z } from "zod";
import { decode } from "../../pipelines/codec.ts";
import { HealthDelta, type EdgeHealth, type HealthEntry, type HealthState, type ImpactEntry } from "../../pipelines/contracts/health.ts";
import { fetchHealthState } from "../alerts/client.ts";
import { alertSubjects } from "../../pipelines/streams.ts";
import type { Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";

/** health.delta.v1 compiled by zod (generated parser); a delta it refuses is parsed by zod's runtime, same errors. */
const HealthDeltaCompiled = z.compile(HealthDelta);

export interface HealthOverlay {
  state(): HealthState;
  /** the alerts service's state was received and deltas follow it without a gap */
  synced(): boolean;
  onFrame(f: (frame: HealthDelta | HealthState) => void): void;
  stop(): void;
}

export function startHealthOverlay(bus: Bus, log: Logger, opts: { retryMs?: number } = {}): HealthOverlay {
  const subjects = alertSubjects(bus.topo);
  const entities = new Map<string, HealthEntry>();
  const edges = new Map<string, EdgeHealth>();
  const impact = new Map<string, ImpactEntry>();
  let seq = 0;
  let synced = false;
  let stopped = false;
  let retry: ReturnType<typeof setTimeout> | undefined;
  const listeners: ((f: HealthDelta | HealthState) => void)[] = [];
  const emit = (f: HealthDelta | HealthState) => listeners.forEach((l) => l(f));
  const fold = (e: HealthEntry) => (e.health === "ok" && e.alerts.length === 0 ? entities.delete(e.id) : entities.set(e.id, e));
  const state = (): HealthState => ({
    schema: "health.state.v1",
    seq,
    at: Date.now(),
    entities: [...entities.values()],
    edges: [...edges.values()],
    impact: [...impact.values()],
  });

  const later = () => {
    if (stopped || retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      void resync();
    }, opts.retryMs ?? 1000);
  };

  let fetching: Promise<void> | null = null;
  const resync = () =>
    (fetching ??= (async () => {
      try {
        const s = await fetchHealthState(bus);
        if (!("schema" in s)) {
          // not ready (replaying) or an error: keep what the wallboards show, ask again shortly
          synced = false;
          log.info("health state not available yet", { reason: s.error });
          later();
          return;
        }
        entities.clear();
        edges.clear();
        impact.clear();
        for (const e of s.entities) fold(e);
        for (const e of s.edges) edges.set(e.id, e);
        for (const e of s.impact) impact.set(e.id, e);
        seq = s.seq;
        synced = true;
        emit(state());
      } catch (e) {
        // No alerts service (yet): health stays as it is; ask again shortly (and on the next delta).
        synced = false;
        log.info("health state unavailable", { error: String(e) });
        later();
      }
    })().finally(() => (fetching = null)));

  const sub = bus.nc.subscribe(subjects.health, {
    callback: (err, m) => {
      if (err) return;
      let d: HealthDelta;
      try {
        d = decode(HealthDeltaCompiled, "health.delta.v1", m.data, 64 * 1024 * 1024);
      } catch (e) {
        log.warn("bad health delta skipped", { error: String(e) });
        return;
      }
      if (!synced || d.seq !== seq + 1) {
        // a gap, a restarted alerts service, or a publish retried after a lost ack: the state settles it
        synced = false;
        void resync();
        return;
      }
      seq = d.seq;
      for (const e of d.entities) fold(e);
      for (const id of d.edgesCleared) edges.delete(id);
      for (const e of d.edges) edges.set(e.id, e);
      for (const id of d.impactCleared) impact.delete(id);
      for (const e of d.impact) impact.set(e.id, e);
      emit(d);
    },
  });
  void resync();
  return {
    state,
    synced: () => synced,
    onFrame: (f) => listeners.push(f),
    stop: () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      sub.unsubscribe();
    },
  };
}

/**
 * Several health deltas as one, equal to applying them in order the way readers do (cleared ids first, then the
 * entries): per id the last entry wins, an id cleared after it was set is cleared, one set after it was cleared is
 * set (and may stay listed as cleared too: readers clear before they set). seq and at are the last delta's.
 */
export class HealthDeltaMerge {
  #last: HealthDelta | null = null;
  #n = 0;
  #entities = new Map<string, HealthDelta["entities"][number]>();
  #edges = new Map<string, EdgeHealth>();
  #edgesCleared = new Set<string>();
  #impact = new Map<string, ImpactEntry>();
  #impactCleared = new Set<string>();

  get size(): number {
    return this.#n;
  }

  add(d: HealthDelta): void {
    this.#n++;
    this.#last = d;
    for (const e of d.entities) this.#entities.set(e.id, e);
    for (const id of d.edgesCleared) {
      this.#edges.delete(id);
      this.#edgesCleared.add(id);
    }
    for (const e of d.edges) this.#edges.set(e.id, e);
    for (const id of d.impactCleared) {
      this.#impact.delete(id);
      this.#impactCleared.add(id);
    }
    for (const e of d.impact) this.#impact.set(e.id, e);
  }

  /** The merged delta (the delta itself when there was one), and an empty merge again; null when there was none. */
  take(): HealthDelta | null {
    const last = this.#last;
    if (!last) return null;
    const out: HealthDelta =
      this.#n === 1
        ? last
        : {
            schema: "health.delta.v1",
            seq: last.seq,
            at: last.at,
            entities: [...this.#entities.values()],
            edges: [...this.#edges.values()],
            edgesCleared: [...this.#edgesCleared],
            impact: [...this.#impact.values()],
            impactCleared: [...this.#impactCleared],
          };
    this.#last = null;
    this.#n = 0;
    this.#entities.clear();
    this.#edges.clear();
    this.#edgesCleared.clear();
    this.#impact.clear();
    this.#impactCleared.clear();
    return out;
  }
}

/**
 * Health frames to browsers, coalesced per tick: idle, a delta goes out at once; under load (a frame went out less
 * than `windowMs` ago) the deltas that arrive wait until `windowMs` after it and go out as one merged frame. So a
 * wallboard gets at most one health frame per tick, in which an entity hit many times appears once, and the gateway
 * serialises once per tick instead of once per delta. A health.state.v1 supersedes whatever is pending and goes out
 * at once.
 */
export function healthFrameCoalescer(send: (frame: HealthDelta | HealthState) => void, opts: { windowMs?: number; now?: () => number } = {}) {
  const windowMs = opts.windowMs ?? 50;
  const now = opts.now ?? (() => performance.now());
  const pending = new HealthDeltaMerge();
  let lastSent = -Infinity;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    timer = undefined;
    const d = pending.take();
    if (!d) return;
    lastSent = now();
    send(d);
  };
  return {
    push(f: HealthDelta | HealthState) {
      if (f.schema === "health.state.v1") {
        if (timer) clearTimeout(timer);
        timer = undefined;
        pending.take();
        lastSent = now();
        send(f);
        return;
      }
      pending.add(f);
      if (timer) return;
      const wait = lastSent + windowMs - now();
      if (wait <= 0) flush();
      else timer = setTimeout(flush, wait);
    },
    stop() {
      if (timer) clearTimeout(timer);
      timer = undefined;
    },
  };
}
