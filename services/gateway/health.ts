/**
 * The gateway's view of health: health.state.v1 from the alerts service, then health.delta.v1 messages (entity
 * health, edge state, impact) as the HEALTH stream stores them. A gap in `seq` (a lost message, or an alerts service
 * restart) triggers a fresh state. While the alerts service answers `not_ready` (replaying after a restart) or does
 * not answer, the last known state stays: a wallboard is never cleared for want of an answer; the overlay asks again
 * every second until it gets one. Browsers get the state right after their topology snapshot, then every delta.
 */
import { decode } from "../../pipelines/codec.ts";
import { HealthDelta, type EdgeHealth, type HealthEntry, type HealthState, type ImpactEntry } from "../../pipelines/contracts/health.ts";
import { fetchHealthState } from "../alerts/routes.ts";
import { alertSubjects } from "../alerts/subjects.ts";
import type { Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";

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
        d = decode(HealthDelta, "health.delta.v1", m.data, 64 * 1024 * 1024);
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
