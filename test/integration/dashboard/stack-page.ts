/**
 * For the browser tests of what is around the map (drawer, alert list, Cypher console): the whole platform as
 * `npm run demo` starts it (test/helpers/stack.ts: supervisor, NATS, ClickHouse, topology with Kuzu, alerts, ingest,
 * gateway, the simulated estate), the built dashboard in headless Chromium, alerts posted as Alertmanager posts them,
 * and screenshots in the folder the dashboard tests share.
 */
import { existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { startStack, type Stack } from "../../helpers/stack.ts";
import { waitFor } from "../../helpers/tmp.ts";

const ROOT = join(import.meta.dir, "../../..");
const DIST = join(ROOT, "dashboard", "dist");
export const SHOTS = join(tmpdir(), "orrery-dashboard-shots");

/** A build older than its sources (or the shared contracts and stages it bundles) is rebuilt, so the test sees this code. */
export function ensureDashboardBuilt(): void {
  let newest = 0;
  for (const d of [join(ROOT, "dashboard", "src"), join(ROOT, "pipelines", "contracts"), join(ROOT, "pipelines", "stages")]) {
    for (const e of readdirSync(d, { recursive: true, withFileTypes: true })) if (e.isFile()) newest = Math.max(newest, statSync(join(e.parentPath, e.name)).mtimeMs);
  }
  const index = join(DIST, "index.html");
  if (existsSync(index) && statSync(index).mtimeMs >= newest) return;
  const r = Bun.spawnSync([join(ROOT, "node_modules/.bin/vite"), "build"], { cwd: join(ROOT, "dashboard"), stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`dashboard build failed: ${r.stderr.toString()}`);
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
}

/** The platform with a small simulated estate, authentication off (these tests are not about who may pass). */
export async function startDemoStack(env: Record<string, string> = {}): Promise<Stack & { cleanup: () => void }> {
  const stack = await startStack({ ORRERY_AUTH: "off", ORRERY_SIM_HOSTS: "12", ORRERY_SIM_INTERVAL_MS: "1000", ...env });
  // the estate is in the live graph once its database hosts are searchable
  await waitFor(
    async () => {
      const r = await fetch(`${stack.dashboard}/api/view/search?q=sim-db-1&limit=5`).catch(() => null);
      return !!r?.ok && ((await r.json()) as { total: number }).total > 0;
    },
    "the simulated estate in the gateway's graph",
    90_000,
    500,
  );
  return stack;
}

export async function openPage(browser: Browser, url: string) {
  const context = await browser.newContext({ viewport: { width: 1920, height: 1080 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.getByTestId("ws-status").filter({ hasText: "live" }).waitFor({ timeout: 60_000 });
  return { page, errors, close: () => context.close() };
}

export async function shot(page: Page, name: string): Promise<string> {
  mkdirSync(SHOTS, { recursive: true });
  const path = join(SHOTS, name);
  await page.screenshot({ path });
  return path;
}

export interface PostedAlert {
  alertname: string;
  instance?: string;
  severity: "critical" | "warning";
  summary: string;
  fingerprint: string;
  status?: "firing" | "resolved";
  labels?: Record<string, string>;
}

/** Posts alerts to the ingest's Alertmanager webhook (payload version 4), as Alertmanager does. */
export async function postAlertmanager(ingest: string, alerts: PostedAlert[]): Promise<void> {
  const now = new Date().toISOString();
  const body = {
    version: "4",
    groupKey: "{}:{alertname=~\".*\"}",
    status: "firing",
    receiver: "orrery",
    alerts: alerts.map((a) => ({
      status: a.status ?? "firing",
      labels: { alertname: a.alertname, severity: a.severity, ...(a.instance ? { instance: a.instance } : {}), ...a.labels },
      annotations: { summary: a.summary },
      startsAt: now,
      endsAt: a.status === "resolved" ? now : "0001-01-01T00:00:00Z",
      fingerprint: a.fingerprint,
    })),
  };
  const r = await fetch(`${ingest}/api/alerts/alertmanager`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  if (r.status !== 202) throw new Error(`ingest answered ${r.status}: ${await r.text()}`);
}

/** Waits until the alerts service holds the alert (mapped onto `entity` when given). */
export async function waitAlert(gateway: string, fingerprint: string, entity?: string): Promise<void> {
  await waitFor(
    async () => {
      const r = await fetch(`${gateway}/api/alerts?limit=10000`).catch(() => null);
      if (!r?.ok) return false;
      const a = ((await r.json()) as { alerts: { fingerprint: string; entities: string[] }[] }).alerts.find((x) => x.fingerprint === `alertmanager:${fingerprint}`);
      return !!a && (entity === undefined || a.entities.includes(entity));
    },
    `alert ${fingerprint} held by the alerts service${entity ? ` on ${entity}` : ""}`,
    60_000,
    300,
  );
}
