/**
 * The alert normalizers: payloads recorded from the real peers (Alertmanager 0.25.0 webhook v4, Icinga2 r2.13.6
 * /v1/events and /v1/objects, trimmed of fields we do not read), Nagios notification macros, the generic webhook.
 */
import { describe, expect, test } from "bun:test";
import { validate } from "../../../pipelines/codec.ts";
import { Alert, GenericWebhook } from "../../../pipelines/contracts/alerts.ts";
import { AlertmanagerWebhook } from "../../../pipelines/contracts/vendors/alertmanager.ts";
import { Icinga2Event, Icinga2Object } from "../../../pipelines/contracts/vendors/icinga2.ts";
import { normalizeAlertmanager } from "../../../pipelines/stages/alerts/alertmanager.ts";
import { normalizeGeneric } from "../../../pipelines/stages/alerts/generic.ts";
import { normalizeIcinga2Event, normalizeIcinga2Object } from "../../../pipelines/stages/alerts/icinga2.ts";
import { alertFromMacros, MacroError } from "../../../pipelines/stages/alerts/nagios.ts";
import { parseInstance } from "../../../pipelines/stages/alerts/normalize.ts";
import { macrosFrom } from "../../../cli/commands/notify.ts";
import { AM_FIRING, AM_RESOLVED, IC_ACK_CLEARED, IC_ACK_SET, IC_CHECKRESULT_CRITICAL, IC_DOWNTIME_REMOVED, IC_DOWNTIME_STARTED, IC_HOST_DOWN, IC_SERVICE_CRITICAL, IC_SERVICE_OBJECT_OK } from "./fixtures.ts";


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
