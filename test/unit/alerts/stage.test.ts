/**
 * The pure alerts stage: normalization of payloads recorded from the real peers (Alertmanager 0.25.0 webhook v4,
 * Icinga2 r2.13.6 /v1/events and /v1/objects, trimmed of fields we do not read), dedup and flap damping, mapping
 * rules, health.
 */
import { describe, expect, test } from "bun:test";
import { validate } from "../../../pipelines/codec.ts";
import { Alert, GenericWebhook } from "../../../pipelines/contracts/alerts.ts";
import type { TopoNode } from "../../../pipelines/contracts/topology.ts";
import { normalizeAlertmanager } from "../../../pipelines/stages/alerts/alertmanager.ts";
import { emptyBook, foldAlert, tickBook } from "../../../pipelines/stages/alerts/book.ts";
import { normalizeGeneric } from "../../../pipelines/stages/alerts/generic.ts";
import { healthMap, healthOfEntity } from "../../../pipelines/stages/alerts/health.ts";
import { normalizeIcinga2Event, normalizeIcinga2Object } from "../../../pipelines/stages/alerts/icinga2.ts";
import { AlertRules, type AlertRulesInput, buildIndex, mapAlert, portInCheckName } from "../../../pipelines/stages/alerts/mapping.ts";
import { alertFromMacros, MacroError } from "../../../pipelines/stages/alerts/nagios.ts";
import { parseInstance } from "../../../pipelines/stages/alerts/normalize.ts";
import { AlertmanagerWebhook } from "../../../pipelines/contracts/vendors/alertmanager.ts";
import { Icinga2Event, Icinga2Object } from "../../../pipelines/contracts/vendors/icinga2.ts";
import { macrosFrom } from "../../../cli/commands/notify.ts";

// Recorded from prometheus-alertmanager 0.25.0 (webhook_configs, send_resolved: true).
const AM_FIRING = {
  receiver: "orrery",
  status: "firing",
  alerts: [
    {
      status: "firing",
      labels: { alertname: "PostgresDown", instance: "db1:5432", job: "postgres", severity: "critical" },
      annotations: { summary: "pg down" },
      startsAt: "2026-11-22T02:42:22.944Z",
      endsAt: "0001-01-01T00:00:00Z",
      generatorURL: "http://prom:9090/graph",
      fingerprint: "bbf630d9c014094b",
    },
  ],
  groupLabels: { alertname: "PostgresDown", instance: "db1:5432" },
  commonLabels: { alertname: "PostgresDown", instance: "db1:5432", job: "postgres", severity: "critical" },
  commonAnnotations: { summary: "pg down" },
  externalURL: "http://vm:19093",
  version: "4",
  groupKey: '{}:{alertname="PostgresDown", instance="db1:5432"}',
  truncatedAlerts: 0,
};
const AM_RESOLVED = {
  ...AM_FIRING,
  status: "resolved",
  alerts: [{ ...AM_FIRING.alerts[0]!, status: "resolved", endsAt: "2026-11-22T02:43:24.45Z" }],
};

// Recorded from icinga2 r2.13.6 POST /v1/events (types CheckResult, StateChange, Acknowledgement*, Downtime*).
const IC_SERVICE_CRITICAL = {"acknowledgement": false, "check_result": {"active": false, "check_source": "testnode", "command": null, "execution_end": 1795315423.841335, "execution_start": 1795315423.841335, "exit_status": 0, "output": "CRITICAL - refused", "performance_data": null, "previous_hard_state": 0, "schedule_end": 1795315423.841335, "schedule_start": 1795315423.841335, "scheduling_source": "testnode", "state": 2, "ttl": 0, "type": "CheckResult", "vars_after": {"attempt": 1, "reachable": true, "state": 2, "state_type": 1}, "vars_before": {"attempt": 1, "reachable": true, "state": 0, "state_type": 1}}, "downtime_depth": 0, "host": "db1", "service": "PostgreSQL", "state": 2, "state_type": 1, "timestamp": 1795315423.841456, "type": "StateChange"};
const IC_CHECKRESULT_CRITICAL = { ...IC_SERVICE_CRITICAL, type: "CheckResult", timestamp: 1795315423.841377, state: undefined, state_type: undefined };
const IC_ACK_SET = {"acknowledgement_type": 1, "author": "ops", "comment": "looking", "expiry": 0, "host": "db1", "notify": false, "persistent": false, "service": "PostgreSQL", "state": 2, "state_type": 1, "timestamp": 1795315424.862067, "type": "AcknowledgementSet"};
const IC_ACK_CLEARED = {"acknowledgement_type": 0, "host": "db1", "service": "PostgreSQL", "state": 2, "state_type": 1, "timestamp": 1795315425.919346, "type": "AcknowledgementCleared"};
const IC_DOWNTIME_STARTED = {"downtime": {"__name": "db1!PostgreSQL!58975647-c3f9-4bdd-8ee1-fe5edd0bc037", "author": "ops", "comment": "maint", "duration": 0, "end_time": 1795316026, "entry_time": 1795315426.980451, "fixed": true, "host_name": "db1", "name": "58975647-c3f9-4bdd-8ee1-fe5edd0bc037", "remove_time": 0, "service_name": "PostgreSQL", "start_time": 1795315426, "trigger_time": 0, "type": "Downtime"}, "timestamp": 1795315426.982576, "type": "DowntimeStarted"};
const IC_DOWNTIME_REMOVED = {"downtime": {"__name": "db1!PostgreSQL!58975647-c3f9-4bdd-8ee1-fe5edd0bc037", "author": "ops", "comment": "maint", "duration": 0, "end_time": 1795316026, "entry_time": 1795315426.980451, "fixed": true, "host_name": "db1", "name": "58975647-c3f9-4bdd-8ee1-fe5edd0bc037", "remove_time": 1795315429.039606, "service_name": "PostgreSQL", "start_time": 1795315426, "trigger_time": 1795315426.980451, "type": "Downtime"}, "timestamp": 1795315429.039644, "type": "DowntimeRemoved"};
const IC_HOST_DOWN = {"acknowledgement": false, "check_result": {"active": false, "check_source": "testnode", "command": null, "execution_end": 1795315430.103138, "execution_start": 1795315430.103138, "exit_status": 0, "output": "DOWN", "performance_data": null, "previous_hard_state": 99, "schedule_end": 1795315430.103138, "schedule_start": 1795315430.103138, "scheduling_source": "testnode", "state": 2, "ttl": 0, "type": "CheckResult", "vars_after": {"attempt": 2, "reachable": true, "state": 2, "state_type": 0}, "vars_before": null}, "downtime_depth": 0, "host": "db1", "state": 1, "state_type": 0, "timestamp": 1795315430.103322, "type": "StateChange"};
// GET /v1/objects/services result
const IC_SERVICE_OBJECT_OK = {"attrs": {"acknowledgement": 0, "display_name": "PostgreSQL", "downtime_depth": 0, "host_name": "db1", "last_check_result": {"active": false, "check_source": "testnode", "command": null, "execution_end": 1795315431.163855, "execution_start": 1795315431.163855, "exit_status": 0, "output": "OK again", "performance_data": null, "previous_hard_state": 2, "schedule_end": 1795315431.163855, "schedule_start": 1795315431.163855, "scheduling_source": "testnode", "state": 0, "ttl": 0, "type": "CheckResult", "vars_after": {"attempt": 1, "reachable": true, "state": 0, "state_type": 1}, "vars_before": {"attempt": 1, "reachable": true, "state": 2, "state_type": 1}}, "last_state_change": 1795315431.163855, "name": "PostgreSQL", "state": 0, "state_type": 1}, "joins": {}, "meta": {}, "name": "db1!PostgreSQL", "type": "Service"};

const ic = (ev: unknown) => normalizeIcinga2Event(validate(Icinga2Event, "icinga2 event", ev));
const icAlert = (ev: unknown) => {
  const o = ic(ev);
  if (o.kind !== "alert") throw new Error(`expected an alert, got ${o.kind}`);
  return validate(Alert, "alert.v1", o.alert);
};

describe("normalize", () => {
  test("Alertmanager webhook v4: firing then resolved, same fingerprint, target from instance and alertname", () => {
    const now = Date.UTC(2026, 10, 22, 2, 42, 30);
    const [f] = normalizeAlertmanager(validate(AlertmanagerWebhook, "am", AM_FIRING), now);
    const [r] = normalizeAlertmanager(validate(AlertmanagerWebhook, "am", AM_RESOLVED), now + 60_000);
    expect(validate(Alert, "alert.v1", f)).toMatchObject({
      source: "alertmanager",
      fingerprint: "alertmanager:bbf630d9c014094b",
      severity: "critical",
      state: "firing",
      summary: "pg down",
      target: { host: "db1", port: 5432, service: "PostgresDown" },
      startsAt: Date.parse("2026-11-22T02:42:22.944Z"),
      endsAt: null,
      // Alertmanager's clock, not the receive time: startsAt while firing, endsAt once resolved
      at: Date.parse("2026-11-22T02:42:22.944Z"),
    });
    expect(r).toMatchObject({ fingerprint: f!.fingerprint, state: "resolved", endsAt: Date.parse("2026-11-22T02:43:24.45Z"), at: Date.parse("2026-11-22T02:43:24.45Z") });
    expect(r!.id).not.toBe(f!.id);
    // a webhook retried by Alertmanager carries the same event id (JetStream dedups it)
    expect(normalizeAlertmanager(validate(AlertmanagerWebhook, "am", AM_FIRING), now + 5000)[0]!.id).toBe(f!.id);
    expect(() => validate(AlertmanagerWebhook, "alertmanager webhook", { ...AM_FIRING, version: "3" })).toThrow(/version/);
  });

  test("instance labels: host:port, ip:port, [v6]:port, URL", () => {
    expect(parseInstance("db1:9100")).toEqual({ host: "db1", port: 9100 });
    expect(parseInstance("10.0.0.5:5432")).toEqual({ address: "10.0.0.5", port: 5432 });
    expect(parseInstance("[fd00::1]:6379")).toEqual({ address: "fd00::1", port: 6379 });
    expect(parseInstance("https://web1.example.com/health")).toEqual({ host: "web1.example.com", port: 443 });
    expect(parseInstance("db1")).toEqual({ host: "db1", port: undefined });
  });

  test("Icinga2 events: CheckResult and StateChange of one check share the event id; ack, downtime, host states", () => {
    const sc = icAlert(IC_SERVICE_CRITICAL);
    const cr = icAlert(IC_CHECKRESULT_CRITICAL);
    expect(sc).toMatchObject({ source: "icinga2", fingerprint: "icinga2:db1!PostgreSQL", severity: "critical", state: "firing", summary: "CRITICAL - refused", target: { host: "db1", service: "PostgreSQL" }, at: 1795315423841 });
    expect(cr.id).toBe(sc.id);
    expect(icAlert(IC_ACK_SET)).toMatchObject({ state: "acknowledged", severity: "critical", labels: { author: "ops" } });
    expect(icAlert(IC_ACK_CLEARED)).toMatchObject({ state: "firing", severity: "critical" });
    expect(icAlert(IC_DOWNTIME_STARTED)).toMatchObject({ fingerprint: "icinga2:db1!PostgreSQL", state: "downtime", severity: "unknown" });
    expect(ic(IC_DOWNTIME_REMOVED)).toEqual({ kind: "resync", host: "db1", service: "PostgreSQL" });
    // host check result state 2 (service codes) and StateChange state 1 (host codes) are both DOWN
    expect(icAlert(IC_HOST_DOWN)).toMatchObject({ fingerprint: "icinga2:db1", severity: "critical", state: "firing", labels: { state_type: "soft" } });
    expect(ic({ type: "ObjectCreated", timestamp: 1 })).toMatchObject({ kind: "ignore" });
  });

  test("Icinga2 object state (resync after connect or downtime end)", () => {
    const a = normalizeIcinga2Object(validate(Icinga2Object, "obj", IC_SERVICE_OBJECT_OK), 1795315500000, () => "10.0.0.5")!;
    expect(validate(Alert, "alert.v1", a)).toMatchObject({ fingerprint: "icinga2:db1!PostgreSQL", state: "resolved", severity: "ok", target: { host: "db1", service: "PostgreSQL", address: "10.0.0.5" }, at: 1795315500000, startsAt: 1795315431164 });
    const pending = { ...IC_SERVICE_OBJECT_OK, attrs: { ...IC_SERVICE_OBJECT_OK.attrs, last_check_result: null } };
    expect(normalizeIcinga2Object(validate(Icinga2Object, "obj", pending), 1)).toBeNull();
  });

  test("Nagios macros → generic alert → alert.v1", () => {
    const env = { NAGIOS_NOTIFICATIONTYPE: "PROBLEM", NAGIOS_HOSTNAME: "db1", NAGIOS_HOSTADDRESS: "10.0.0.5", NAGIOS_SERVICEDESC: "check_tcp!5432", NAGIOS_SERVICESTATE: "CRITICAL", NAGIOS_SERVICEOUTPUT: "Connection refused", NAGIOS_SERVICESTATETYPE: "HARD", HOSTNAME: "the-shell-host" };
    const g = alertFromMacros(macrosFrom(env, {}));
    expect(g).toMatchObject({ source: "nagios", fingerprint: "nagios:db1!check_tcp!5432", severity: "critical", state: "firing", target: { host: "db1", address: "10.0.0.5", service: "check_tcp!5432" }, labels: { notification_type: "PROBLEM", state_type: "hard" } });
    const a = normalizeGeneric(validate(GenericWebhook, "g", g).alerts[0]!, 1000);
    expect(validate(Alert, "alert.v1", a)).toMatchObject({ state: "firing", at: 1000 });
    expect(alertFromMacros(macrosFrom({ ICINGA_HOSTNAME: "db1", ICINGA_HOSTSTATE: "UP", ICINGA_NOTIFICATIONTYPE: "Recovery" }, {}))).toMatchObject({ fingerprint: "nagios:db1", state: "resolved", severity: "ok" });
    expect(alertFromMacros(macrosFrom({}, { host: "db1", service: "Disk", state: "WARNING", type: "ACKNOWLEDGEMENT", author: "ann" }))).toMatchObject({ state: "acknowledged", severity: "warning", labels: { author: "ann" } });
    // flags override the environment; a host notification may give its state with --state
    expect(alertFromMacros(macrosFrom({ NAGIOS_HOSTNAME: "x" }, { host: "db2", state: "DOWN" }))).toMatchObject({ fingerprint: "nagios:db2", severity: "critical" });
    expect(() => alertFromMacros(macrosFrom({}, { service: "x", state: "CRITICAL" }))).toThrow(MacroError);
    expect(() => alertFromMacros(macrosFrom({}, { host: "db1", service: "x", state: "BROKEN" }))).toThrow(/BROKEN/);
  });

  test("generic webhook: documented schema, reasons for bad bodies", () => {
    const ok = validate(GenericWebhook, "generic", { alerts: [{ severity: "warning", target: { host: "web1", service: "nginx" }, startsAt: "2026-11-22T02:00:00Z" }] });
    // the sender's startsAt is its `at` too: one clock for its events; the receive time only when it gives none
    expect(normalizeGeneric(ok.alerts[0]!, 5)).toMatchObject({ source: "generic", severity: "warning", state: "firing", startsAt: Date.parse("2026-11-22T02:00:00Z"), at: Date.parse("2026-11-22T02:00:00Z") });
    expect(normalizeGeneric(validate(GenericWebhook, "generic", { target: { host: "web1" } }).alerts[0]!, 5)).toMatchObject({ at: 5, startsAt: 5 });
    expect(() => validate(GenericWebhook, "generic alert", { severity: "bad", target: { host: "x" } })).toThrow(/alerts\.0\.severity/);
    expect(() => validate(GenericWebhook, "generic alert", { severity: "critical" })).toThrow(/fingerprint or at least one of target/);
  });
});

// A topology as the topology stage builds it (ids and props as in pipelines/stages/topology/).
const node = (id: string, kind: TopoNode["kind"], name: string, props: TopoNode["props"]): TopoNode => ({ id, kind, name, source: "agent:x", props, firstSeen: 1, lastSeen: 1 });
const NODES: TopoNode[] = [
  node("host:db1", "host", "db1.prod.example.com", { hostname: "db1.prod.example.com", ips: "10.0.0.5,127.0.0.1" }),
  node("process:db1:100:1", "process", "postgres", { host: "db1", pid: 100, exe: "/usr/lib/postgresql/15/bin/postgres" }),
  node("listener:db1:tcp:0.0.0.0:5432", "listener", "tcp/5432", { host: "db1", proto: "tcp", ip: "0.0.0.0", port: 5432 }),
  node("listener:db1:tcp:[::]:5432", "listener", "tcp/5432", { host: "db1", proto: "tcp", ip: "::", port: 5432 }),
  node("process:db1:200:1", "process", "node_exporter", { host: "db1", pid: 200, exe: "/usr/bin/prometheus-node-exporter" }),
  node("listener:db1:tcp:0.0.0.0:9100", "listener", "tcp/9100", { host: "db1", proto: "tcp", ip: "0.0.0.0", port: 9100 }),
  node("process:db1:300:1", "process", "sshd", { host: "db1", pid: 300, exe: "/usr/sbin/sshd" }),
  node("host:web1", "host", "web1", { hostname: "web1", ips: "10.0.0.7" }),
  node("process:web1:10:1", "process", "nginx", { host: "web1", pid: 10, exe: "/usr/sbin/nginx" }),
  node("listener:web1:tcp:10.0.0.7:8443", "listener", "tcp/8443", { host: "web1", proto: "tcp", ip: "10.0.0.7", port: 8443 }),
];

describe("mapping", () => {
  const index = buildIndex(NODES);
  const rules = (r: AlertRulesInput = {}) => validate(AlertRules, "rules", r);
  const alert = (target: Alert["target"], labels: Record<string, string> = {}, source = "generic"): Alert =>
    validate(Alert, "alert.v1", { id: "x", source, fingerprint: "f", severity: "critical", state: "firing", labels, target, startsAt: 1, at: 1 });

  test("a check that names a service, a port or a process maps to the listener or process of that host", () => {
    const m = (t: Alert["target"], r?: AlertRulesInput) => mapAlert({ rules: rules(r), index, alert: alert(t) });
    expect(m({ host: "db1", service: "PostgreSQL" })).toEqual({ entities: ["listener:db1:tcp:0.0.0.0:5432", "listener:db1:tcp:[::]:5432"], via: "rule:postgresql" });
    expect(m({ host: "db1", service: "check_tcp!5432" })).toEqual({ entities: ["listener:db1:tcp:0.0.0.0:5432", "listener:db1:tcp:[::]:5432"], via: "port-in-check-name" });
    expect(m({ host: "web1", service: "TCP port 8443" })?.entities).toEqual(["listener:web1:tcp:10.0.0.7:8443"]);
    expect(m({ host: "db1", service: "check_procs!sshd" })).toEqual({ entities: ["process:db1:300:1"], via: "process-name" });
    // "nginx" matches the http rule first, but web1 has no listener on 80: the nginx process it is
    expect(m({ host: "web1", service: "nginx" })).toEqual({ entities: ["process:web1:10:1"], via: "process-name" });
    expect(m({ host: "db1", service: "Disk /var" })).toEqual({ entities: ["host:db1"], via: "rule:host-level" });
    expect(m({ host: "db1", service: "Something else" })).toEqual({ entities: ["host:db1"], via: "host-fallback" });
    expect(m({ host: "db1", service: "Something else" }, { fallbackToHost: false })).toBeNull();
    expect(m({ host: "db1" })).toEqual({ entities: ["host:db1"], via: "host" });
  });

  test("hosts by short name, FQDN, IP and alias; unknown hosts stay unmapped", () => {
    const m = (t: Alert["target"], r?: AlertRulesInput) => mapAlert({ rules: rules(r), index, alert: alert(t) })?.entities;
    expect(m({ host: "DB1.prod.example.com" })).toEqual(["host:db1"]);
    expect(m({ address: "10.0.0.5" })).toEqual(["host:db1"]);
    expect(m({ host: "10.0.0.7" })).toEqual(["host:web1"]);
    expect(m({ host: "pg-primary" }, { hostAliases: { "pg-primary": "db1" } })).toEqual(["host:db1"]);
    expect(m({ host: "nowhere", service: "PostgreSQL" })).toBeUndefined();
  });

  test("Alertmanager labels: instance port, label matchers in user rules", () => {
    const [am] = normalizeAlertmanager(validate(AlertmanagerWebhook, "am", { ...AM_FIRING, alerts: [{ ...AM_FIRING.alerts[0]!, labels: { alertname: "ExporterScrapeSlow", instance: "db1:9100", job: "node" } }] }), 1);
    expect(mapAlert({ rules: rules(), index, alert: am! })).toEqual({ entities: ["listener:db1:tcp:0.0.0.0:9100"], via: "port" });
    const custom = rules({ rules: [{ name: "node-job", when: { labels: { job: "^node$" } }, to: { process: "node_exporter" } }] });
    expect(mapAlert({ rules: custom, index, alert: am! })).toEqual({ entities: ["process:db1:200:1"], via: "rule:node-job" });
    expect(() => rules({ rules: [{ name: "bad", when: { check: "(" }, to: { port: 1 } }] })).toThrow(/regular expression/);
    expect(() => rules({ rules: [{ name: "none", when: { check: "x" }, to: {} }] })).toThrow(/port, a process, the host/);
  });

  test("alerts without a host: the orrery_entity label names the entity; rules place label-only alerts by entity id or process fingerprint across hosts", () => {
    const SERVICES: TopoNode[] = [
      ...NODES,
      node("host:app1", "host", "app1", { hostname: "app1", ips: "10.0.0.21" }),
      node("host:app2", "host", "app2", { hostname: "app2", ips: "10.0.0.22" }),
      node("service:app1:java:orders.jar:8080", "process", "java:orders.jar", { host: "app1", exe: "/usr/bin/java" }),
      node("service:app2:java:orders.jar:8080", "process", "java:orders.jar", { host: "app2", exe: "/usr/bin/java" }),
      node("service:app2:java:billing.jar:9090", "process", "java:billing.jar", { host: "app2", exe: "/usr/bin/java" }),
    ];
    const idx = buildIndex(SERVICES);
    const m = (a: Alert, r?: AlertRulesInput) => mapAlert({ rules: rules(r), index: idx, alert: a });
    // a Prometheus alert on a job: no instance, so no host
    const [jobAlert] = normalizeAlertmanager(validate(AlertmanagerWebhook, "am", { ...AM_FIRING, alerts: [{ ...AM_FIRING.alerts[0]!, labels: { alertname: "OrdersErrorRate", job: "orders", severity: "critical" } }] }), 1);
    expect(jobAlert!.target.host).toBeUndefined();
    expect(m(jobAlert!)).toBeNull();
    const byFingerprint: AlertRulesInput = { rules: [{ name: "orders-job", when: { labels: { job: "^orders$" } }, to: { fingerprint: "java:orders.jar" } }] };
    expect(m(jobAlert!, byFingerprint)).toEqual({ entities: ["service:app1:java:orders.jar:8080", "service:app2:java:orders.jar:8080"], via: "rule:orders-job" });
    // with a host, the same rule keeps to that host's services
    expect(m({ ...jobAlert!, target: { ...jobAlert!.target, host: "app2" } }, byFingerprint)).toEqual({ entities: ["service:app2:java:orders.jar:8080"], via: "rule:orders-job" });
    const byId: AlertRulesInput = { rules: [{ name: "billing", when: { labels: { job: "^billing$" } }, to: { entity: "service:app2:java:billing.jar:9090" } }] };
    expect(m({ ...jobAlert!, labels: { ...jobAlert!.labels, job: "billing" } }, byId)).toEqual({ entities: ["service:app2:java:billing.jar:9090"], via: "rule:billing" });
    // a label-only rule also applies to an alert with no check name at all
    expect(m(alert({}, { job: "billing" }), byId)?.entities).toEqual(["service:app2:java:billing.jar:9090"]);
    // an entity id nobody has: the rule does not apply
    expect(m(alert({}, { job: "billing" }), { rules: [{ name: "gone", when: { labels: { job: "." } }, to: { entity: "service:nowhere:x:1" } }] })).toBeNull();
    // the label wins over everything, host hints included; an id the graph lacks falls back to the usual mapping
    expect(m(alert({ host: "db1", service: "PostgreSQL" }, { orrery_entity: "service:app1:java:orders.jar:8080" }))).toEqual({ entities: ["service:app1:java:orders.jar:8080"], via: "label:orrery_entity" });
    expect(m(alert({}, { orrery_entity: "host:app2" }))).toEqual({ entities: ["host:app2"], via: "label:orrery_entity" });
    expect(m(alert({ host: "db1", service: "PostgreSQL" }, { orrery_entity: "service:ghost:x:1" }))?.via).toBe("rule:postgresql");
    expect(() => rules({ rules: [{ name: "none", when: { labels: { job: "x" } }, to: {} }] })).toThrow(/an entity or a fingerprint/);
  });

  test("port in check names", () => {
    expect(["check_tcp!5432", "tcp_5432", "TCP port 5432", "port-5432", "svc:5432", "check_tcp!5432!-w 2"].map(portInCheckName)).toEqual([5432, 5432, 5432, 5432, 5432, 5432]);
    expect(portInCheckName("PostgreSQL")).toBeUndefined();
    expect(portInCheckName("check_tcp!99999")).toBeUndefined();
  });
});

describe("dedup, flap damping, health", () => {
  const mk = (state: Alert["state"], severity: Alert["severity"], at: number, fp = "fp1"): Alert =>
    validate(Alert, "alert.v1", { id: `${fp}:${at}`, source: "generic", fingerprint: fp, severity, state, target: { host: "db1" }, startsAt: at, at });

  test("repeats are duplicates, older events are stale", () => {
    const book = emptyBook();
    expect(foldAlert(book, mk("firing", "critical", 10), 10)).toBe("new");
    expect(foldAlert(book, mk("firing", "critical", 20), 20)).toBe("duplicate");
    expect(foldAlert(book, mk("resolved", "ok", 5), 30)).toBe("stale");
    expect(foldAlert(book, mk("resolved", "ok", 40), 40)).toBe("changed");
    // a downtime event without a check state keeps the known severity
    expect(foldAlert(book, mk("firing", "warning", 50), 50)).toBe("changed");
    expect(foldAlert(book, mk("downtime", "unknown", 60), 60)).toBe("changed");
    expect(book.entries.get("fp1")!.published).toEqual({ state: "downtime", severity: "warning" });
  });

  test("N changes within the window: flapping, at most one published change per window, the last state wins", () => {
    const book = emptyBook({ windowMs: 1000, threshold: 4, retainResolvedMs: 60_000 });
    const outcomes = [0, 10, 20, 30, 40, 50, 60].map((t, i) => foldAlert(book, mk(i % 2 ? "resolved" : "firing", i % 2 ? "ok" : "critical", t), t));
    expect(outcomes).toEqual(["new", "changed", "changed", "changed", "damped", "damped", "damped"]);
    const e = book.entries.get("fp1")!;
    expect(e.flapping).toBe(true);
    expect(e.published.state).toBe("resolved"); // what was published at t=30
    expect(tickBook(book, 500).changed).toEqual([]);
    // one window after the last publish the pending state (firing, from t=60) goes out
    expect(tickBook(book, 1031).changed).toEqual(["fp1"]);
    expect(e.published).toEqual({ state: "firing", severity: "critical" });
    // settled: changes age out, flapping ends; a resolved alert is forgotten after retention
    expect(foldAlert(book, mk("resolved", "ok", 3000), 3000)).toBe("changed");
    expect(book.entries.get("fp1")!.flapping).toBe(false);
    expect(tickBook(book, 70_000).forgotten).toEqual(["fp1"]);
  });

  test("the clock visits only what is due: steadily firing alerts leave book.due, a change brings them back", () => {
    const book = emptyBook({ windowMs: 1000, threshold: 4, retainResolvedMs: 60_000 });
    for (let i = 0; i < 1000; i++) foldAlert(book, mk("firing", "critical", 1, `steady-${i}`), 1);
    foldAlert(book, mk("firing", "critical", 1, "gone"), 1);
    foldAlert(book, mk("resolved", "ok", 2, "gone"), 2);
    expect(book.due.size).toBe(1001);
    tickBook(book, 5000); // the change of "gone" aged out of the window; firing ones have nothing to wait for
    expect([...book.due]).toEqual(["gone"]); // resolved: waits to be forgotten
    const t = tickBook(book, 70_000);
    expect(t.forgotten).toEqual(["gone"]);
    expect(t.forgottenEntities.get("gone")).toEqual([]);
    expect(book.due.size).toBe(0);
    expect(book.entries.size).toBe(1000);
    // a steady alert that changes is due again, and its damped change still goes out
    expect(foldAlert(book, mk("resolved", "ok", 80_000, "steady-7"), 80_000)).toBe("changed");
    expect([...book.due]).toEqual(["steady-7"]);
  });

  test("health: worst firing severity; acknowledged counts as listed, not as colour; resolved drops out", () => {
    const book = emptyBook();
    foldAlert(book, mk("firing", "warning", 1, "a"), 1);
    foldAlert(book, mk("firing", "critical", 1, "b"), 1);
    foldAlert(book, mk("acknowledged", "critical", 1, "c"), 1);
    for (const fp of ["a", "b", "c"]) book.entries.get(fp)!.entities = ["host:db1"];
    expect(healthOfEntity(book, "host:db1", ["a", "b", "c"])).toEqual({ id: "host:db1", health: "critical", alerts: ["a", "b", "c"] });
    foldAlert(book, mk("resolved", "ok", 2, "b"), 2);
    expect(healthMap(book).get("host:db1")).toEqual({ id: "host:db1", health: "warning", alerts: ["a", "c"] });
  });
});
