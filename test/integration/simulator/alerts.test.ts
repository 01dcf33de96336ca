/**
 * The simulator process raises and resolves alerts on its own (ORRERY_SIM_ALERTS, on by default): alert.v1 batches
 * on the ALERTS stream of a real nats-server, as the ingest would publish an Alertmanager webhook, firing and then
 * resolved, with their text; on SIGTERM whatever still fires is resolved. ORRERY_SIM_ALERTS=off publishes none.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { decode } from "../../../pipelines/codec.ts";
import { AlertBatch, type Alert } from "../../../pipelines/contracts/alerts.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix, waitFor } from "../../helpers/tmp.ts";

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.stop();
});

async function withSimulator(env: Record<string, string>, body: (alerts: Alert[]) => Promise<void>): Promise<{ alerts: Alert[]; stderr: string; code: number }> {
  const prefix = uniquePrefix("simalerts");
  const nc = await connect({ servers: nats.url });
  const alerts: Alert[] = [];
  nc.subscribe(`${prefix}.alerts.v1.>`, { callback: (_e, m) => void alerts.push(...decode(AlertBatch, "alert.v1", m.data).alerts) });
  await nc.flush();
  const proc = Bun.spawn([process.execPath, "run", join(import.meta.dir, "../../../services/simulator/main.ts")], {
    env: { ...process.env, NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_LOG_QUIET: "1", ORRERY_SIM_HOSTS: "20", ORRERY_SIM_INTERVAL_MS: "500", ORRERY_SIM_SEED: "5", ORRERY_SIM_CHURN: "none", ...env },
    stdout: "ignore",
    stderr: "pipe",
  });
  const stderr = new Response(proc.stderr).text();
  try {
    await body(alerts);
  } finally {
    proc.kill("SIGTERM");
  }
  const code = await proc.exited;
  await Bun.sleep(200);
  await nc.close();
  return { alerts, stderr: await stderr, code };
}

test("raises and resolves realistic alerts over time, and resolves what still fires when stopped", async () => {
  const { alerts, stderr, code } = await withSimulator({ ORRERY_SIM_ALERT_PACE: "60" }, async (seen) => {
    await waitFor(() => seen.some((a) => a.labels.alertname === "PostgreSQLDown" && a.state === "resolved"), "PostgreSQL down raised and resolved", 60_000, 50);
  });
  expect(code).toBe(0);
  expect(stderr).not.toContain("not published");
  const pg = alerts.filter((a) => a.labels.alertname === "PostgreSQLDown");
  expect(pg[0]!.state).toBe("firing");
  expect(pg[0]!.source).toBe("alertmanager");
  expect(pg[0]!.severity).toBe("critical");
  expect(pg[0]!.summary).toBe("PostgreSQL down");
  expect(pg[0]!.target).toMatchObject({ port: 5432, service: "PostgreSQLDown" });
  expect(pg[0]!.target.host).toMatch(/^sim-db-\d+$/);
  const resolved = pg.find((a) => a.state === "resolved")!;
  expect(resolved.fingerprint).toBe(pg[0]!.fingerprint);
  expect(resolved.at).toBeGreaterThan(pg[0]!.at);
  // the unmapped one is among them (a host the estate does not have)
  expect(alerts.some((a) => a.labels.alertname === "BackupJobFailed" && a.target.host === "backup-vault-1.corp.example")).toBe(true);
  // stopped: every fingerprint's last event is a resolve
  const last = new Map<string, Alert>();
  for (const a of alerts) last.set(a.fingerprint, a);
  expect([...last.values()].filter((a) => a.state !== "resolved").map((a) => a.labels.alertname)).toEqual([]);
});

test("ORRERY_SIM_ALERTS=off publishes no alert", async () => {
  const { alerts, code } = await withSimulator({ ORRERY_SIM_ALERTS: "off", ORRERY_SIM_ALERT_PACE: "60" }, async () => {
    await Bun.sleep(3000);
  });
  expect(code).toBe(0);
  expect(alerts).toEqual([]);
});
