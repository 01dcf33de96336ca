/** The alert list's order (GET /api/alerts?sort=): worst first then longest open, or newest first. */
import { expect, test } from "bun:test";
import type { AlertView } from "../../../pipelines/contracts/alerts.ts";
import { sortAlerts } from "../../../services/gateway/routes/alerts.ts";

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
