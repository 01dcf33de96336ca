/**
 * The simulator's loop (main.ts only wires it). Ticks run on deadlines (start + k × interval, not a sleep after the
 * work). Each tick scans the whole estate, then spreads the hosts' discovery batches, and the tick's metric messages,
 * over what is left of the interval (capped at `rate` discovery events/s, pace.ts), so the tick ends by the next
 * deadline and each host reports once per interval. Every message is cut to fit the bus (pipelines/contracts/split.ts).
 *
 * When a tick still overruns, the hosts report less often than the interval asked for. The simulator then says so,
 * with the period and the rates it holds, and declares the period it holds on its discovery batches
 * (DiscoveryBatch.intervalMs), so aging judges the hosts by what the simulator can do: none is marked stale for the
 * simulator's slowness.
 */
import type { DiscoveryBatch } from "../../pipelines/contracts/discovery.ts";
import { discoveryMessages, metricBatches, type OversizedItemError } from "../../pipelines/contracts/split.ts";
import type { Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { SimConfig } from "./config.ts";
import { makeEstate, scanEstate, type Estate } from "./estate.ts";
import { declaredInterval, nextTick, planTick, TokenBucket } from "./pace.ts";
import { truthOf } from "./truth.ts";
import { AlertSchedule } from "./alerts.ts";
import { alertPublisher } from "../alerts/client.ts";
import { normalizeAlertmanagerAlert } from "../../pipelines/stages/alerts/alertmanager.ts";
import type { AlertmanagerAlert } from "../../pipelines/contracts/vendors/alertmanager.ts";

/** What one tick did; `onTick` gets it (tests, benches). */
export interface TickReport {
  /** the estate's tick number */
  tick: number;
  deadline: number;
  scanMs: number;
  /** how late the tick began after its deadline (a previous tick overran) */
  lateMs: number;
  /** from its start until every message of the tick was acked */
  tookMs: number;
  /** the interval, or when the tick overran, the time since the previous one ended: how far apart a host's reports are */
  periodMs: number;
  hosts: number;
  events: number;
  samples: number;
  discoveryMessages: number;
  metricMessages: number;
  /** items too large for any message, left out and logged (none in a simulated estate) */
  refused: number;
  /** intervals wholly missed after this tick because it overran (the next tick then starts late, in the one it is in) */
  skipped: number;
  /** the interval declared on this tick's discovery batches (none while the simulator keeps its interval) */
  declaredIntervalMs?: number;
  /** the first publish failure of the tick */
  error?: string;
}

export interface SimulatorOptions {
  /** distinguishes this run's message ids from a previous run's (default: the start time) */
  boot?: string;
  onTick?: (r: TickReport) => void;
  /** publishes unacked at once (default 256): enough to pipeline, bounded so a slow server is felt as an overrun */
  maxInFlight?: number;
}

export interface Simulator {
  estate: Estate;
  stop(): Promise<void>;
}

/** Share of the interval the tick's sends are spread over: the rest is slack for the last acks. */
const SPREAD = 0.9;
/** The first tick's length as a multiple of its scan (measured at 10k hosts: 13 s for a 4.4 s scan). */
const FIRST_TICK_PER_SCAN = 3;
/** How many recent ticks' periods the declared interval covers (it comes down only after this many on time). */
const RECENT = 10;

export function startSimulator(bus: Bus, log: Logger, sim: SimConfig, o: SimulatorOptions = {}): Simulator {
  const estate = makeEstate(sim.hosts, { seed: sim.seed, churn: sim.churn });
  // what a converged graph holds (truth.ts), so a user can hold the dashboard's counts against it
  const truth = truthOf(estate);
  log.info("estate ground truth (without churn)", { hosts: truth.hosts, seed: truth.seed, nodes: truth.nodes, edges: truth.edges });
  const boot = o.boot ?? Date.now().toString(36);
  const maxInFlight = o.maxInFlight ?? 256;
  // at most a tenth of a second's events at once
  const bucket = sim.rate > 0 ? new TokenBucket(sim.rate, Math.max(1, Math.ceil(sim.rate / 10)), Date.now()) : null;
  let stopped = false;
  let wake: () => void = () => undefined;
  const sleepUntil = async (t: number) => {
    // a timer per host costs a millisecond or more even when due: a late tick sends without one
    if (stopped || t <= Date.now()) return;
    await new Promise<void>((r) => {
      const timer = setTimeout(r, Math.max(0, t - Date.now()));
      wake = () => {
        clearTimeout(timer);
        r();
      };
    });
  };

  // Simulated Alertmanager alerts (alerts.ts), published through the alerts client as the ingest does for a webhook.
  const schedule = sim.alerts?.enabled ? new AlertSchedule({ seed: sim.seed, intervalMs: sim.intervalMs, pace: sim.alerts.pace }) : null;
  const publishAlerts = schedule ? alertPublisher(bus) : null;
  let alertTick = 0;
  let alertWarned = false;
  const sendAlerts = async (alerts: AlertmanagerAlert[]) => {
    if (!alerts.length || !publishAlerts) return;
    const now = Date.now();
    try {
      const r = await publishAlerts(alerts.map((a) => normalizeAlertmanagerAlert(a, now)));
      for (const x of r.refused) log.warn("simulated alert refused", { fingerprint: x.alert.fingerprint, reason: x.reason });
    } catch (e) {
      // no alerts stream (a bench without the alerts service) is not the simulator's failure: said once
      if (!alertWarned) log.warn("simulated alerts not published", { error: String(e), hint: "ORRERY_SIM_ALERTS=off turns them off" });
      alertWarned = true;
    }
  };
  const hostsOf = (tier: string) => (estate.byTier.get(tier) ?? []).map((slot) => estate.hosts[slot]!.name);

  const startedAt = Date.now();
  const periods: number[] = [];
  let declared: number | undefined;

  const runTick = async (deadline: number): Promise<Omit<TickReport, "periodMs" | "skipped">> => {
    const t0 = Date.now();
    const { batches, samples } = scanEstate(estate, deadline);
    const scanMs = Date.now() - t0;
    let refused = 0;
    const onOversized = (e: OversizedItemError) => {
      refused++;
      log.warn("left out of a simulated scan: too large for one message", { schema: e.schema, item: e.item, bytes: e.bytes, limit: e.limit });
    };
    const byHost = new Map<string, DiscoveryBatch[]>();
    for (const b of batches) byHost.set(b.host, [...(byHost.get(b.host) ?? []), b]);
    const groups = [...byHost.values()];
    const metrics = metricBatches(samples, { source: "sim", idBase: `sim:${boot}:${estate.tick}`, onOversized });
    // Expect this tick to take as long as the slowest recent one, and at least its own scan plus a little sending;
    // the first (every host's full state) took about three times its scan at 10k hosts here. Declared before
    // sending, so a host's next report is never later than what its last one promised.
    const expected = !periods.length ? FIRST_TICK_PER_SCAN * scanMs : scanMs > SPREAD * sim.intervalMs ? scanMs + (1 - SPREAD) * sim.intervalMs : sim.intervalMs;
    declared = declaredInterval([...periods, expected], sim.intervalMs, declared);
    // Spread over what is left of the interval after the scan, so this tick ends by the next deadline.
    const ready = Date.now();
    const window = Math.max(0, deadline + SPREAD * sim.intervalMs - ready);
    const sizes = groups.map((g) => g.reduce((n, b) => n + b.events.length, 0));
    // the rate is applied when a host's scan is sent, not when planned: after a stall (a slow scan, a busy machine)
    // the sends that fell behind go out at the rate, not in one burst
    const times = planTick(sizes, ready, window, null);
    const metricTimes = planTick(metrics.map(() => 0), ready, window, null);

    const inFlight = new Set<Promise<void>>();
    let error: string | undefined;
    const send = async (publish: () => Promise<void>) => {
      while (inFlight.size >= maxInFlight) await Promise.race(inFlight);
      const p: Promise<void> = publish()
        .catch((e) => void (error ??= String(e)))
        .finally(() => inFlight.delete(p));
      inFlight.add(p);
    };
    // one lane per kind, merged by time: discovery in host order, metric parts spread the same way
    let m = 0;
    let discoveryCount = 0;
    for (const [i, g] of groups.entries()) {
      for (; m < metrics.length && metricTimes[m]! <= times[i]!; m++) await sendMetric(m);
      const due = bucket ? bucket.reserve(sizes[i]!, Math.max(times[i]!, Date.now())) : times[i]!;
      await sleepUntil(due);
      if (stopped) break;
      // cut and encoded when sent (stamped with the send time), so that work is spread over the tick too
      for (const d of discoveryMessages(g, { at: Math.round(Math.max(due, Date.now())), intervalMs: declared, onOversized })) {
        const b = d.batch;
        discoveryCount++;
        await send(() => bus.js.publish(bus.topo.subjects.discovery(b.host), d.bytes, { msgID: `${b.source}:${boot}:${b.scanId}:${b.part}`, timeout: 30_000 }).then(() => undefined));
      }
    }
    for (; m < metrics.length && !stopped; m++) await sendMetric(m);
    await Promise.all(inFlight);
    return {
      tick: estate.tick,
      deadline,
      scanMs,
      lateMs: t0 - deadline,
      tookMs: Date.now() - t0,
      hosts: groups.length,
      events: batches.reduce((n, b) => n + b.events.length, 0),
      samples: samples.length,
      discoveryMessages: discoveryCount,
      metricMessages: metrics.length,
      refused,
      ...(declared === undefined ? {} : { declaredIntervalMs: declared }),
      ...(error === undefined ? {} : { error }),
    };

    async function sendMetric(j: number) {
      await sleepUntil(metricTimes[j]!);
      if (stopped) return;
      const part = metrics[j]!;
      await send(() => bus.js.publish(bus.topo.subjects.metrics("sim"), part.bytes, { msgID: part.msgId, timeout: 30_000 }).then(() => undefined));
    }
  };

  const loop = (async () => {
    let k = 0;
    let lastEnd: number | undefined;
    while (!stopped) {
      const deadline = startedAt + k * sim.intervalMs;
      await sleepUntil(deadline);
      if (stopped) break;
      let done: Omit<TickReport, "periodMs" | "skipped"> | undefined;
      try {
        done = await runTick(deadline);
        if (schedule) await sendAlerts(schedule.step(alertTick++, Date.now(), hostsOf));
        if (done.error) log.warn("simulated scan not fully published", { tick: done.tick, error: done.error });
      } catch (e) {
        log.warn("simulated scan failed", { error: String(e) });
      }
      const now = Date.now();
      const next = nextTick(startedAt, sim.intervalMs, k, now);
      // overran: it ended after the next tick's deadline (a few ms of jitter between ticks is no overrun); then a
      // host's reports are this far apart (the next tick starts late, at once)
      const overran = now > deadline + sim.intervalMs;
      const period = overran ? Math.max(sim.intervalMs, now - (lastEnd ?? deadline)) : sim.intervalMs;
      lastEnd = now;
      periods.push(period);
      if (periods.length > RECENT) periods.shift();
      if (done) {
        const report: TickReport = { ...done, periodMs: period, skipped: next.skipped };
        if (overran) {
          const s = period / 1000;
          log.warn(`tick overran its interval: ${report.hosts} hosts are scanned every ${period} ms, not every ${sim.intervalMs} ms`, {
            tookMs: report.tookMs,
            lateMs: report.lateMs,
            scanMs: report.scanMs,
            intervalMs: sim.intervalMs,
            holds: { hostScansPerSec: Math.round(report.hosts / s), eventsPerSec: Math.round(report.events / s), samplesPerSec: Math.round(report.samples / s) },
            declaredIntervalMs: declared,
            rate: sim.rate || "unlimited",
            hint: "fewer hosts (ORRERY_SIM_HOSTS), a longer ORRERY_SIM_INTERVAL_MS, or a higher ORRERY_SIM_RATE",
          });
        }
        o.onTick?.(report);
      }
      k = next.k;
    }
  })();

  return {
    estate,
    stop: async () => {
      stopped = true;
      wake();
      await loop;
      // what is still firing is resolved, so a stopped demo leaves no alert open forever
      if (schedule) await sendAlerts(schedule.resolveAll(Date.now()));
    },
  };
}
