/** Mapping alerts onto the topology: rules, host names and addresses, ports and processes in check names. */
import { describe, expect, test } from "bun:test";
import { validate } from "../../../pipelines/codec.ts";
import { Alert } from "../../../pipelines/contracts/alerts.ts";
import type { TopoNode } from "../../../pipelines/contracts/topology.ts";
import { AlertmanagerWebhook } from "../../../pipelines/contracts/vendors/alertmanager.ts";
import { normalizeAlertmanager } from "../../../pipelines/stages/alerts/alertmanager.ts";
import { AlertRules, type AlertRulesInput, buildIndex, mapAlert, portInCheckName } from "../../../pipelines/stages/alerts/mapping.ts";
import { AM_FIRING } from "./fixtures.ts";

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
