/**
 * Alerts for the simulated estate (pure, deterministic for a seed): a few realistic Alertmanager alerts raised and
 * resolved over time on the estate's hosts, so the demo shows health, impact and the alert list without anyone
 * injecting one. Each scenario fires on one host of its tier at a time (picked by a stable hash of the seed, the
 * scenario and the occurrence, never from the estate's own random stream, so discovery is unchanged), lasts a while,
 * resolves, and comes back later on another host. One scenario names a host the estate does not have, so there is
 * always an unmapped alert to see.
 *
 * The alerts are what Alertmanager would post (labels, annotations, startsAt/endsAt); run.ts normalizes them with the
 * ingest's own Alertmanager stage and publishes them through the alerts client, as the ingest does for a webhook.
 */
import type { AlertmanagerAlert } from "../../pipelines/contracts/vendors/alertmanager.ts";

export interface AlertScenario {
  alertname: string;
  severity: "critical" | "warning";
  /** the estate tier whose hosts it fires on; null: the host in `host` (one the estate does not have) */
  tier: string | null;
  host?: string;
  /** the port in `instance` (what the default mapping rules map the alert to, with the alert's name) */
  port: number;
  summary: string;
  description: (host: string) => string;
  /** first raised this long after start, ms */
  firstMs: number;
  /** how long an occurrence lasts, ms (min, max) */
  lastsMs: [number, number];
  /** quiet time between occurrences, ms (min, max) */
  gapMs: [number, number];
}

const MIN = 60_000;

/** The catalogue: names, texts and ports as common Prometheus exporters' alert rules have them. */
export const SCENARIOS: AlertScenario[] = [
  {
    alertname: "PostgreSQLDown",
    severity: "critical",
    tier: "db",
    port: 5432,
    summary: "PostgreSQL down",
    description: (h) => `PostgreSQL on ${h} does not accept connections on port 5432 (pg_up == 0 for 1m).`,
    firstMs: 10_000,
    lastsMs: [4 * MIN, 8 * MIN],
    gapMs: [6 * MIN, 12 * MIN],
  },
  {
    alertname: "NodeLoadHigh",
    severity: "warning",
    tier: "app",
    port: 9100,
    summary: "Load average high",
    description: (h) => `The 15-minute load average on ${h} is above 8 (4 CPUs) for 10 minutes.`,
    firstMs: 40_000,
    lastsMs: [3 * MIN, 6 * MIN],
    gapMs: [3 * MIN, 6 * MIN],
  },
  {
    alertname: "RedisMemoryHigh",
    severity: "warning",
    tier: "cache",
    port: 6379,
    summary: "Redis memory above 90%",
    description: (h) => `Redis on ${h} uses more than 90% of maxmemory; keys are being evicted.`,
    firstMs: 2 * MIN,
    lastsMs: [3 * MIN, 7 * MIN],
    gapMs: [5 * MIN, 10 * MIN],
  },
  {
    alertname: "KafkaUnderReplicatedPartitions",
    severity: "warning",
    tier: "queue",
    port: 9092,
    summary: "Kafka under-replicated partitions",
    description: (h) => `The Kafka broker on ${h} reports under-replicated partitions for 5 minutes.`,
    firstMs: 4 * MIN,
    lastsMs: [2 * MIN, 5 * MIN],
    gapMs: [8 * MIN, 14 * MIN],
  },
  {
    alertname: "NginxHighErrorRate",
    severity: "critical",
    tier: "web",
    port: 80,
    summary: "HTTP 5xx above 5%",
    description: (h) => `More than 5% of the requests nginx on ${h} served in the last 5 minutes were 5xx.`,
    firstMs: 6 * MIN,
    lastsMs: [2 * MIN, 4 * MIN],
    gapMs: [9 * MIN, 15 * MIN],
  },
  {
    alertname: "BackupJobFailed",
    severity: "warning",
    tier: null,
    host: "backup-vault-1.corp.example",
    port: 9100,
    summary: "Nightly backup failed",
    description: (h) => `The nightly-backup job on ${h} exited with status 2 (disk full on the backup volume).`,
    firstMs: 5_000,
    lastsMs: [20 * MIN, 40 * MIN],
    gapMs: [2 * MIN, 4 * MIN],
  },
];

export interface SimAlertOptions {
  seed: number;
  /** the simulator's tick interval: scenario times are turned into ticks with it */
  intervalMs: number;
  /** time runs this many times faster for alerts (tests; default 1) */
  pace?: number;
  scenarios?: AlertScenario[];
}

/** A stable pseudo-random number in [0,1) for (seed, a, b). */
function hash01(seed: number, a: number, b: number): number {
  let h = Math.imul(seed ^ 0x5bd1e995, 0x85ebca6b) ^ Math.imul(a + 3, 0xc2b2ae35) ^ Math.imul(b + 11, 0x27d4eb2f);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}

interface Occurrence {
  host: string;
  startTick: number;
  endTick: number;
  startsAt: number;
}

interface ScenarioState {
  k: number;
  nextTick: number;
  current: Occurrence | null;
}

/**
 * The alert schedule of one simulator run. `step(tick, now, hostsOf)` returns the Alertmanager alerts whose state
 * changes at that tick (fired or resolved); `resolveAll(now)` resolves what is still firing (the simulator's stop).
 */
export class AlertSchedule {
  readonly scenarios: AlertScenario[];
  private readonly state: ScenarioState[];
  private readonly ticks: (ms: number) => number;

  constructor(private readonly o: SimAlertOptions) {
    this.scenarios = o.scenarios ?? SCENARIOS;
    const pace = o.pace ?? 1;
    this.ticks = (ms) => Math.max(1, Math.round(ms / pace / o.intervalMs));
    this.state = this.scenarios.map((s) => ({ k: 0, nextTick: this.ticks(s.firstMs), current: null }));
  }

  /** The alerts firing now, by scenario. */
  firing(): { scenario: AlertScenario; host: string; startsAt: number }[] {
    return this.state.flatMap((st, i) => (st.current ? [{ scenario: this.scenarios[i]!, host: st.current.host, startsAt: st.current.startsAt }] : []));
  }

  step(tick: number, now: number, hostsOf: (tier: string) => string[]): AlertmanagerAlert[] {
    const out: AlertmanagerAlert[] = [];
    this.scenarios.forEach((s, i) => {
      const st = this.state[i]!;
      const span = (r: [number, number], salt: number) => this.ticks(r[0] + hash01(this.o.seed, i * 97 + salt, st.k) * (r[1] - r[0]));
      if (st.current && tick >= st.current.endTick) {
        out.push(alertOf(s, st.current.host, st.current.startsAt, now));
        st.current = null;
        st.k++;
        st.nextTick = tick + span(s.gapMs, 2);
      }
      if (!st.current && tick >= st.nextTick) {
        const hosts = s.tier === null ? [s.host!] : hostsOf(s.tier);
        if (!hosts.length) return;
        const host = hosts[Math.floor(hash01(this.o.seed, i * 97, st.k) * hosts.length)]!;
        st.current = { host, startTick: tick, endTick: tick + span(s.lastsMs, 1), startsAt: now };
        out.push(alertOf(s, host, now, null));
      }
    });
    return out;
  }

  resolveAll(now: number): AlertmanagerAlert[] {
    const out: AlertmanagerAlert[] = [];
    this.scenarios.forEach((s, i) => {
      const st = this.state[i]!;
      if (!st.current) return;
      out.push(alertOf(s, st.current.host, st.current.startsAt, now));
      st.current = null;
    });
    return out;
  }
}

/** One alert as Alertmanager posts it: firing (endsAt null) or resolved at `endsAt`. */
export function alertOf(s: AlertScenario, host: string, startsAt: number, endsAt: number | null): AlertmanagerAlert {
  return {
    status: endsAt === null ? "firing" : "resolved",
    labels: { alertname: s.alertname, severity: s.severity, instance: `${host}:${s.port}`, job: s.tier ?? "backup", source: "simulator" },
    annotations: { summary: s.summary, description: s.description(host) },
    startsAt: new Date(startsAt).toISOString(),
    // Alertmanager's "zero" endsAt for a firing alert is 0001-01-01; a resolved one carries when it ended
    endsAt: endsAt === null ? "0001-01-01T00:00:00Z" : new Date(endsAt).toISOString(),
    generatorURL: "",
  };
}
