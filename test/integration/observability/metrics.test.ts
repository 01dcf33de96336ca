/**
 * /metrics, /livez and /readyz on every service of a started stack (the supervisor's demo layout), each on its own
 * observability port; every exposition passes `promtool check metrics` (Debian's prometheus package).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { METRICS_PORTS, metricsPortSetting, type ObservedService } from "../../../services/shared/metrics-registry.ts";
import { startStack, type Stack } from "../../helpers/stack.ts";
import { waitFor } from "../../helpers/tmp.ts";

const PROMTOOL = Bun.which("promtool") ?? Bun.which("promtool", { PATH: "/usr/bin:/usr/local/bin" });
/** what the default stack runs (the broker and the exporters start only when configured) */
const SERVICES: ObservedService[] = ["clickhouse", "topology", "metrics", "history", "alerts", "registry", "ingest", "gateway", "agent", "jobs", "simulator"];

function freePort(): number {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = s.port;
  s.stop(true);
  return p;
}

const ports = Object.fromEntries(SERVICES.map((s) => [s, freePort()])) as Record<ObservedService, number>;
let stack: (Stack & { cleanup: () => void }) | null = null;

beforeAll(async () => {
  stack = await startStack(Object.fromEntries(SERVICES.map((s) => [metricsPortSetting(s), String(ports[s])])));
}, 180_000);
afterAll(async () => {
  await stack?.stop();
  stack?.cleanup();
});

async function promtool(text: string): Promise<{ code: number; out: string }> {
  const p = Bun.spawn([PROMTOOL!, "check", "metrics"], { stdin: new TextEncoder().encode(text), stdout: "pipe", stderr: "pipe" });
  const out = (await new Response(p.stdout).text()) + (await new Response(p.stderr).text());
  return { code: await p.exited, out };
}

test("every service has its own usual observability port", () => {
  expect(new Set(Object.values(METRICS_PORTS)).size).toBe(Object.keys(METRICS_PORTS).length);
});

test.skipIf(!PROMTOOL)("every service answers /livez, /readyz and a /metrics that promtool accepts (promtool not installed)", async () => {
  const scraped: Record<string, string> = {};
  for (const s of SERVICES) {
    const base = `http://127.0.0.1:${ports[s]}`;
    expect((await fetch(`${base}/livez`)).status).toBe(200);
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, `${s} ready`, 30_000);
    const r = await fetch(`${base}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toContain("text/plain");
    const text = await r.text();
    expect(text).toContain(`service="${s}"`);
    const check = await promtool(text);
    if (check.code !== 0) throw new Error(`promtool check metrics on ${s}:\n${check.out}`);
    scraped[s] = text;
  }
  // consumer lag of each durable its owner declares, dead letters, store writes, WebSocket clients, ingest rates
  expect(scraped.topology).toMatch(/orrery_consumer_pending_messages\{[^}]*durable="topology"/);
  expect(scraped.topology).toMatch(/orrery_consumer_info_up\{[^}]*durable="topology-registry"[^}]*\} 1/);
  expect(scraped.metrics).toMatch(/orrery_consumer_redelivered_messages\{[^}]*durable="metrics"/);
  expect(scraped.history).toMatch(/orrery_consumer_info_up\{[^}]*durable="history"[^}]*\} 1/);
  expect(scraped.alerts).toMatch(/durable="alerts-history"/);
  expect(scraped.jobs).toMatch(/orrery_consumer_pending_messages\{[^}]*durable="jobs-/);
  expect(scraped.gateway).toMatch(/orrery_gateway_websocket_clients\{[^}]*\} \d+/);
  expect(scraped.ingest).toContain("orrery_ingest_published_total");
  expect(scraped.topology).toContain("orrery_dlq_messages");
  // the simulator and the agent feed discovery and metrics: writes reach the graph store and ClickHouse
  await waitFor(async () => /orrery_store_write_seconds_count\{[^}]*op="apply"[^}]*\} [1-9]/.test(await (await fetch(`http://127.0.0.1:${ports.topology}/metrics`)).text()), "a timed graph write", 30_000);
  await waitFor(async () => /orrery_store_write_seconds_count\{[^}]*store="clickhouse"[^}]*\} [1-9]/.test(await (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text()), "a timed ClickHouse write", 30_000);
}, 180_000);

test("an unknown path on the observability listener is a 404 that names the endpoints", async () => {
  const r = await fetch(`http://127.0.0.1:${ports.gateway}/nope`);
  expect(r.status).toBe(404);
  expect(await r.text()).toContain("/metrics");
});

test("the ingest gives each webhook request an id (the sender's X-Request-Id, else its own) and counts what it published", async () => {
  const body = JSON.stringify({ version: "4", groupKey: "{}:{}", status: "firing", receiver: "orrery", alerts: [{ status: "firing", labels: { alertname: "ObsTest", instance: "obs-host:9100" }, annotations: {}, startsAt: new Date().toISOString() }] });
  const mine = await fetch(`${stack!.ingest}/api/alerts/alertmanager`, { method: "POST", body, headers: { "content-type": "application/json", "x-request-id": "req-obs-1" } });
  expect(mine.status).toBe(202);
  expect(mine.headers.get("x-request-id")).toBe("req-obs-1");
  const ours = await fetch(`${stack!.ingest}/api/alerts/alertmanager`, { method: "POST", body, headers: { "content-type": "application/json" } });
  expect(ours.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  const text = await (await fetch(`http://127.0.0.1:${ports.ingest}/metrics`)).text();
  expect(text).toMatch(/orrery_ingest_published_total\{[^}]*kind="alerts_stored"[^}]*\} [1-9]/);
});
