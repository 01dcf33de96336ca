/**
 * The simulator's alert schedule (services/simulator/alerts.ts): deterministic for a seed, raises and resolves each
 * scenario over time on hosts of the estate, and its alerts, normalized by the ingest's Alertmanager stage and mapped
 * by the alerts service's default rules onto a graph the topology stage built from the same simulated estate, land
 * on the entity they are about (PostgreSQL down → the db host's 5432 listener), except the one about a host the
 * estate does not have, which stays unmapped.
 */
import { expect, test } from "bun:test";
import { validate } from "../../../pipelines/codec.ts";
import { AlertmanagerAlert } from "../../../pipelines/contracts/vendors/alertmanager.ts";
import { normalizeAlertmanagerAlert } from "../../../pipelines/stages/alerts/alertmanager.ts";
import { AlertRules, buildIndex, mapAlert } from "../../../pipelines/stages/alerts/mapping.ts";
import { applyDiscovery, emptyModel } from "../../../pipelines/stages/topology/index.ts";
import { AlertSchedule, SCENARIOS } from "../../../services/simulator/alerts.ts";
import { loadSimConfig } from "../../../services/simulator/config.ts";
import { makeEstate, NO_CHURN, scanEstate } from "../../../services/simulator/estate.ts";

const T0 = 1_800_000_000_000;
const INTERVAL = 5000;

/** Runs a schedule for `ticks` ticks; every alert it emits, with its tick. */
function run(seed: number, ticks: number, hostsOf: (tier: string) => string[], pace = 1) {
  const s = new AlertSchedule({ seed, intervalMs: INTERVAL, pace });
  const out: { tick: number; alert: AlertmanagerAlert }[] = [];
  for (let t = 0; t < ticks; t++) for (const alert of s.step(t, T0 + t * INTERVAL, hostsOf)) out.push({ tick: t, alert });
  return { schedule: s, out };
}

const estate = makeEstate(40, { seed: 7, churn: NO_CHURN });
const hostsOf = (tier: string) => (estate.byTier.get(tier) ?? []).map((slot) => estate.hosts[slot]!.name);

test("deterministic for a seed, different for another", () => {
  const a = run(7, 2000, hostsOf).out;
  const b = run(7, 2000, hostsOf).out;
  const c = run(8, 2000, hostsOf).out;
  expect(a.length).toBeGreaterThan(20);
  expect(b).toEqual(a);
  expect(JSON.stringify(c)).not.toBe(JSON.stringify(a));
  // the schedule never draws from the estate's random stream: discovery is what it was without alerts
  const plain = makeEstate(40, { seed: 7, churn: NO_CHURN });
  expect(estate.rnd()).toBe(plain.rnd());
});

test("every scenario fires and resolves, alternating, with its text; a valid Alertmanager alert each time", () => {
  // 2000 ticks of 5 s: close to three hours
  const { out, schedule } = run(7, 2000, hostsOf);
  for (const s of SCENARIOS) {
    const mine = out.filter((o) => o.alert.labels.alertname === s.alertname);
    expect(mine.length).toBeGreaterThanOrEqual(4);
    // firing, resolved, firing, …: a resolve always ends the firing before it, on the same host
    mine.forEach((o, i) => {
      expect(o.alert.status).toBe(i % 2 === 0 ? "firing" : "resolved");
      if (i % 2 === 1) {
        expect(o.alert.labels.instance).toBe(mine[i - 1]!.alert.labels.instance);
        expect(o.alert.startsAt).toBe(mine[i - 1]!.alert.startsAt);
        expect(Date.parse(o.alert.endsAt!)).toBeGreaterThan(Date.parse(o.alert.startsAt));
      }
      expect(o.alert.annotations.summary).toBe(s.summary);
      expect(o.alert.labels.severity).toBe(s.severity);
      validate(AlertmanagerAlert, "alertmanager alert", o.alert);
    });
    // it lasts minutes, within the scenario's range
    const lasted = (mine[1]!.tick - mine[0]!.tick) * INTERVAL;
    expect(lasted).toBeGreaterThanOrEqual(s.lastsMs[0] - INTERVAL);
    expect(lasted).toBeLessThanOrEqual(s.lastsMs[1] + INTERVAL);
  }
  // PostgreSQL down is among the first: the demo shows a critical within its first minute
  const pg = out.find((o) => o.alert.labels.alertname === "PostgreSQLDown")!;
  expect(pg.tick * INTERVAL).toBeLessThanOrEqual(60_000);
  expect(pg.alert.annotations.summary).toBe("PostgreSQL down");
  expect(pg.alert.labels.instance).toMatch(/^sim-db-\d+:5432$/);
  // occurrences move between hosts of the tier
  const pgHosts = new Set(out.filter((o) => o.alert.labels.alertname === "PostgreSQLDown").map((o) => o.alert.labels.instance));
  expect(pgHosts.size).toBeGreaterThan(1);
  // resolveAll closes what is still firing
  const open = schedule.firing();
  const closing = schedule.resolveAll(T0 + 2001 * INTERVAL);
  expect(closing.map((a) => a.labels.alertname).sort()).toEqual(open.map((f) => f.scenario.alertname).sort());
  expect(closing.every((a) => a.status === "resolved")).toBe(true);
  expect(schedule.firing()).toEqual([]);
});

test("pace makes time run faster for alerts", () => {
  const slow = run(7, 600, hostsOf, 1).out.length;
  const fast = run(7, 600, hostsOf, 10).out.length;
  expect(fast).toBeGreaterThan(slow * 5);
});

test("mapped by the default rules onto the simulated graph: each onto its entity, the backup host's unmapped", () => {
  const model = emptyModel();
  const e = makeEstate(40, { seed: 7, churn: NO_CHURN });
  for (const b of scanEstate(e, T0).batches) applyDiscovery(model, b, T0);
  const index = buildIndex(model.nodes.values());
  const rules = validate(AlertRules, "alert rules", {});
  const hosts = (tier: string) => (e.byTier.get(tier) ?? []).map((slot) => e.hosts[slot]!.name);
  const firing = run(7, 2000, hosts).out.filter((o) => o.alert.status === "firing");
  const mapped = new Map<string, string[]>();
  for (const { alert } of firing) {
    const a = normalizeAlertmanagerAlert(alert, T0);
    const m = mapAlert({ rules, index, alert: a });
    mapped.set(alert.labels.alertname!, m?.entities ?? []);
    const host = alert.labels.instance!.split(":")[0]!;
    const entities = m?.entities ?? [];
    switch (alert.labels.alertname) {
      case "PostgreSQLDown":
        expect(entities).toEqual([`listener:${host}:tcp:0.0.0.0:5432`]);
        break;
      case "RedisMemoryHigh":
        expect(entities).toEqual([`listener:${host}:tcp:0.0.0.0:6379`]);
        break;
      case "KafkaUnderReplicatedPartitions":
        expect(entities).toEqual([`listener:${host}:tcp:0.0.0.0:9092`]);
        break;
      case "NginxHighErrorRate":
        expect(entities).toEqual([`listener:${host}:tcp:0.0.0.0:80`]);
        break;
      case "NodeLoadHigh":
        expect(entities).toEqual([`host:${host}`]);
        break;
      case "BackupJobFailed":
        expect(entities).toEqual([]);
        break;
    }
  }
  expect([...mapped.keys()].sort()).toEqual(SCENARIOS.map((s) => s.alertname).sort());
});

test("config: on by default, off and pace from the environment, a bad value named", () => {
  expect(loadSimConfig({}).alerts).toEqual({ enabled: true, pace: 1 });
  expect(loadSimConfig({ ORRERY_SIM_ALERTS: "off", ORRERY_SIM_ALERT_PACE: "30" }).alerts).toEqual({ enabled: false, pace: 30 });
  expect(() => loadSimConfig({ ORRERY_SIM_ALERTS: "maybe" })).toThrow(/ORRERY_SIM_ALERTS/);
});
