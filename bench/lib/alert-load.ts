/**
 * The alerts bench's load: which fingerprint fires or resolves in each send slot, and every HTTP request of the run
 * (generic alerts and Alertmanager webhooks), built before the clock starts.
 */
import { HttpLoad } from "./http-load.ts";

/** One prebuilt POST and the events it carries (event k = fingerprint f firing (2f) or resolving (2f+1)). */
export interface BenchRequest {
  kind: "generic" | "alertmanager";
  bytes: Uint8Array;
  events: number[];
  /** index of its last event in send order: it goes out once that event is due */
  last: number;
}

/** Fingerprint f goes one event per POST (generic) when this says so, else in Alertmanager groups; fixed per f. */
const isSingle = (f: number, share: number) => ((f * 2654435761) >>> 0) / 2 ** 32 < share;

/**
 * The events of the run, in send order (slot i is scheduled at t0 + i / rate); event k = fingerprint f firing (2f)
 * or resolving (2f + 1), each fingerprint firing once. With `hold` > 0 (the default, a steady state) a fingerprint
 * resolves `hold` seconds or more after it fired: odd slots resolve the oldest alert that is due, every other slot
 * fires a new one, so about rate × hold alerts are open at any time after the first `hold` seconds. With hold = 0
 * every fingerprint fires in the first half and resolves in the second (open alerts pile up for half the run).
 */
export function benchEvents(o: { total: number; rate: number; hold: number }): { events: Int32Array; fingerprints: number; firedAt: Int32Array } {
  const events = new Int32Array(o.total);
  const firedAt = new Int32Array(o.total); // slot each fingerprint fired in
  let next = 0;
  if (o.hold <= 0) {
    const half = Math.ceil(o.total / 2);
    for (let i = 0; i < o.total; i++) events[i] = i < half ? 2 * i : 2 * (i - half) + 1;
    for (let f = 0; f < half; f++) firedAt[f] = f;
    return { events, fingerprints: half, firedAt };
  }
  const holdSlots = Math.ceil(o.hold * o.rate);
  let oldest = 0; // fingerprints below it have resolved
  for (let i = 0; i < o.total; i++) {
    if (i % 2 === 1 && oldest < next && i - firedAt[oldest]! >= holdSlots) events[i] = 2 * oldest++ + 1;
    else {
      firedAt[next] = i;
      events[i] = 2 * next++;
    }
  }
  return { events, fingerprints: next, firedAt };
}

/**
 * Every request of the run, in send order. A fingerprint always comes the same way (generic or Alertmanager), so
 * its resolve matches its fire; an Alertmanager group carries the next `group` events of its fingerprints, firing
 * and resolved together (as a notification does), with startsAt / endsAt at their scheduled times.
 */
export function buildRequests(o: { total: number; hosts: number; rate: number; group: number; singles: number; hold: number; t0: number; host: string }): { requests: BenchRequest[]; fingerprints: number } {
  const { events, fingerprints, firedAt } = benchEvents(o);
  const out: BenchRequest[] = [];
  const iso = (slot: number) => new Date(o.t0 + Math.floor((slot / o.rate) * 1000)).toISOString();
  let open: { events: number[]; alerts: { status: string }[] } | null = null;
  const closeGroup = (last: number) => {
    if (!open) return;
    const body = {
      version: "4",
      groupKey: `{}:{alertname="PostgresDown"}`,
      truncatedAlerts: 0,
      status: open.alerts.some((a) => a.status === "firing") ? "firing" : "resolved",
      receiver: "orrery",
      groupLabels: { alertname: "PostgresDown" },
      commonLabels: { alertname: "PostgresDown", job: "postgres", severity: "critical" },
      commonAnnotations: {},
      externalURL: "http://alertmanager:9093",
      alerts: open.alerts,
    };
    out.push({ kind: "alertmanager", bytes: HttpLoad.request("/api/alerts/alertmanager", o.host, JSON.stringify(body)), events: open.events, last });
    open = null;
  };
  for (let i = 0; i < o.total; i++) {
    const k = events[i]!;
    const f = k >> 1;
    const resolve = (k & 1) === 1;
    const host = `h${f % o.hosts}`;
    if (isSingle(f, o.singles)) {
      // `orrery notify` style: no `at` (the ingest stamps the time it received it)
      const body = {
        source: "bench",
        fingerprint: `bench:${f}`,
        severity: resolve ? "ok" : "critical",
        state: resolve ? "resolved" : "firing",
        summary: "PostgreSQL connection refused",
        target: { host, service: "PostgreSQL" },
      };
      out.push({ kind: "generic", bytes: HttpLoad.request("/api/alerts/generic", o.host, JSON.stringify(body)), events: [k], last: i });
      continue;
    }
    open ??= { events: [], alerts: [] };
    open.events.push(k);
    open.alerts.push({
      status: resolve ? "resolved" : "firing",
      labels: { alertname: "PostgresDown", instance: `${host}:5432`, job: "postgres", severity: "critical" },
      annotations: { summary: "PostgreSQL connection refused" },
      startsAt: iso(firedAt[f]!),
      endsAt: resolve ? iso(i) : "0001-01-01T00:00:00Z",
      generatorURL: "http://prometheus:9090/graph?g0.expr=pg_up+%3D%3D+0",
      fingerprint: `bench-${f}`,
    } as { status: string });
    if (open.events.length >= o.group) closeGroup(i);
  }
  closeGroup(o.total - 1);
  return { requests: out, fingerprints };
}
