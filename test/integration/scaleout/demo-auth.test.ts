/**
 * The demo with NATS credentials on (its default; the test stacks turn them off explicitly): the supervisor generates
 * a user per child at first start, the banner says auth is on, a client without credentials is refused, and the
 * platform converges — the local agent's host and the simulated estate in the graph, samples in ClickHouse, an alert
 * through the ingest service — with no permission refused on the way, and stops cleanly.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { expectCleanCtrlC, startStack, type Stack } from "../../helpers/stack.ts";
import { waitFor } from "../../helpers/tmp.ts";

let stack: Stack & { cleanup: () => void };
const HOST = hostname();

beforeAll(async () => {
  stack = await startStack({ ORRERY_NATS_AUTH: "on", ORRERY_SIM_HOSTS: "3" });
}, 150_000);
afterAll(() => {
  if (stack?.proc.exitCode === null) process.kill(-stack.proc.pid, "SIGKILL");
  stack?.cleanup();
});

const cypher = async (query: string, params: Record<string, unknown> = {}) => {
  const r = await fetch(`${stack.dashboard}/api/cypher`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query, params }) });
  return (await r.json()) as { rows?: Record<string, unknown>[] };
};

test("credentials generated at first start, one banner line, a client without them refused", async () => {
  expect(stack.logs()).toContain("  NATS auth:  on (a user per service and agent; the admin user is in");
  const file = join(stack.dataDir, "nats", "credentials.json");
  expect(statSync(file).mode & 0o777).toBe(0o600);
  await expect(connect({ servers: stack.nats, maxReconnectAttempts: 0 })).rejects.toThrow(/authorization/i);
}, 30_000);

test("the demo converges with every child on its own credentials", async () => {
  await waitFor(async () => (await cypher("MATCH (h:Entity {id: $id}) RETURN h.id AS id", { id: `host:${HOST}` })).rows?.length === 1, "the local agent's host in the graph", 60_000, 500);
  await waitFor(async () => Number((await cypher("MATCH (h:Entity {kind: 'host'}) RETURN count(h) AS n")).rows?.[0]?.n ?? 0) >= 4, "the simulated hosts in the graph", 60_000, 500);
  const now = Date.now();
  await waitFor(async () => {
    const j = await (await fetch(`${stack.dashboard}/api/series?entity=host:${HOST}&metric=host_listeners&from=${now - 600_000}&to=${now + 60_000}&step=10`)).json();
    return j.points?.length > 0;
  }, "the agent's samples in ClickHouse", 60_000, 500);
  const alert = await fetch(`${stack.ingest}/api/alerts/generic`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ fingerprint: "auth-1", severity: "critical", summary: "down", target: { host: HOST } }),
  });
  expect(alert.status).toBe(202);
  expect(stack.logs()).not.toMatch(/permissions violation|authorization violation/i);
}, 120_000);

test("Ctrl-C stops it cleanly", async () => {
  await expectCleanCtrlC(stack);
}, 60_000);
