/**
 * The alert list's order (GET /api/alerts?sort=): worst first then longest open, or newest first; and the event an
 * acknowledgement publishes (POST /api/alerts/ack).
 */
import { expect, test } from "bun:test";
import type { AlertView } from "../../../pipelines/contracts/alerts.ts";
import { validate } from "../../../pipelines/codec.ts";
import { Alert } from "../../../pipelines/contracts/alerts.ts";
import { ackEvent, sortAlerts } from "../../../services/gateway/routes/alerts.ts";

const alert = (fingerprint: string, severity: AlertView["severity"], startsAt: number): AlertView => ({
  fingerprint,
  source: "alertmanager",
  state: "firing",
  severity,
  flapping: false,
  summary: fingerprint,
  labels: {},
  target: {},
  startsAt,
  at: startsAt,
  entities: [],
  via: "",
});

test("severity: critical before warning before info, the longest open first within one; age: newest first", () => {
  const list = [alert("w-new", "warning", 300), alert("c-new", "critical", 200), alert("i", "info", 50), alert("c-old", "critical", 100), alert("w-old", "warning", 10)];
  expect(sortAlerts(list, "severity").map((a) => a.fingerprint)).toEqual(["c-old", "c-new", "w-old", "w-new", "i"]);
  expect(sortAlerts(list, "age").map((a) => a.fingerprint)).toEqual(["w-new", "c-new", "c-old", "i", "w-old"]);
  // the input is left as it was
  expect(list[0]!.fingerprint).toBe("w-new");
});

test("an acknowledgement is the alert's own event in state acknowledged, after its last one whatever the source's clock", () => {
  const a = { ...alert("am:1", "critical", 1000), at: 5000, labels: { alertname: "PostgreSQLDown" }, target: { host: "db-1", port: 5432 } };
  const e = ackEvent(a, 3000, "looking at it");
  expect(validate(Alert, "alert.v1", e)).toEqual(e);
  expect(e).toMatchObject({ fingerprint: "am:1", source: "alertmanager", state: "acknowledged", severity: "critical", startsAt: 1000, at: 5001, target: { host: "db-1", port: 5432 } });
  expect(e.labels).toEqual({ alertname: "PostgreSQLDown", ack_comment: "looking at it" });
  expect(ackEvent(a, 9000).at).toBe(9000);
  expect(ackEvent(a, 9000).id).not.toBe(ackEvent(a, 9001).id);
});
