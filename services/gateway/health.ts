/**
 * The gateway's view of health: health.state.v1 from the alerts service, then health.delta.v1 frames from core NATS.
 * A gap in `seq` (a lost frame, or an alerts service restart) triggers a fresh state. Browsers get the state right
 * after their topology snapshot, then every delta.
 */
import { decode } from "../../pipelines/codec.ts";
import { HealthDelta, HealthState, type HealthEntry } from "../../pipelines/contracts/health.ts";
import { alertSubjects } from "../alerts/subjects.ts";
import type { Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";

export interface HealthOverlay {
  state(): HealthState;
  onFrame(f: (frame: HealthDelta | HealthState) => void): void;
  stop(): void;
}

export function startHealthOverlay(bus: Bus, log: Logger): HealthOverlay {
  const subjects = alertSubjects(bus.topo);
  const entities = new Map<string, HealthEntry>();
  let seq = 0;
  let synced = false;
  const listeners: ((f: HealthDelta | HealthState) => void)[] = [];
  const emit = (f: HealthDelta | HealthState) => listeners.forEach((l) => l(f));
  const fold = (e: HealthEntry) => (e.health === "ok" && e.alerts.length === 0 ? entities.delete(e.id) : entities.set(e.id, e));
  const state = (): HealthState => ({ schema: "health.state.v1", seq, at: Date.now(), entities: [...entities.values()] });

  let fetching: Promise<void> | null = null;
  const resync = () =>
    (fetching ??= (async () => {
      try {
        const r = await bus.nc.request(subjects.rpc, new TextEncoder().encode(JSON.stringify({ op: "health" })), { timeout: 5000 });
        const s = decode(HealthState, "health.state.v1", r.data, 256 * 1024 * 1024);
        entities.clear();
        for (const e of s.entities) fold(e);
        seq = s.seq;
        synced = true;
        emit(state());
      } catch (e) {
        // No alerts service (yet): health stays as it is; the next delta tries again.
        synced = false;
        log.info("health state unavailable", { error: String(e) });
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
        void resync();
        return;
      }
      seq = d.seq;
      for (const e of d.entities) fold(e);
      emit(d);
    },
  });
  void resync();
  return { state, onFrame: (f) => listeners.push(f), stop: () => sub.unsubscribe() };
}
