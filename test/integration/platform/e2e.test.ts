/**
 * End to end, as a user runs it: the supervisor starts nats-server, the chDB owner, topology, metrics, gateway and
 * the local agent. The test opens a real TCP listener and a connection to it, and finds them in the graph store
 * (Cypher API), in the WebSocket stream, on the page in headless Chromium, and in ClickHouse via the series API.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chromium, type Browser } from "playwright-core";
import { connect, type Socket } from "node:net";
import { createServer, type Server } from "node:net";
import { WsFrame } from "../../../pipelines/contracts/topology.ts";
import { applyDelta, mirrorFromSnapshot, type Mirror } from "../../../pipelines/stages/apply-delta.ts";
import { expectCleanCtrlC, startStack, type Stack } from "../../helpers/stack.ts";
import { waitFor } from "../../helpers/tmp.ts";

const HOST = "e2e-host";
let stack: Stack & { cleanup: () => void };
let server: Server;
let client: Socket;
let port = 0;
let browser: Browser;

beforeAll(async () => {
  stack = await startStack({ ORRERY_HOST_ID: HOST });
});
afterAll(async () => {
  client?.destroy();
  server?.close();
  await browser?.close();
  if (stack) {
    if (stack.proc.exitCode === null) await stack.stop();
    stack.cleanup();
  }
});

test("health, snapshot and dashboard are served", async () => {
  await waitFor(async () => (await fetch(`${stack.dashboard}/healthz`)).ok, "gateway health");
  const html = await (await fetch(stack.dashboard)).text();
  expect(html).toContain("<div id=\"app\"");
  const bad = await fetch(`${stack.dashboard}/api/series?entity=x`);
  expect(bad.status).toBe(400);
  expect((await bad.json()).error).toContain("metric");
});

test("a new listener and a connection to it appear in the WebSocket stream, the graph store, the page and the series", async () => {
  // The browser and the WebSocket are open BEFORE the listener exists: it must arrive live, without a reload.
  const frames: Mirror[] = [];
  let mirror: Mirror | null = null;
  const health = new Map<string, string>();
  const ws = new WebSocket(stack.dashboard.replace("http", "ws") + "/ws");
  ws.onmessage = (ev) => {
    const f = WsFrame.parse(JSON.parse(String(ev.data)));
    if (f.schema === "topology.snapshot.v1") mirror = mirrorFromSnapshot(f);
    else if (f.schema === "topology.delta.v1" && mirror) applyDelta(mirror, f);
    else if (f.schema === "health.state.v1" || f.schema === "health.delta.v1") for (const e of f.entities) health.set(e.id, e.health);
    if (mirror) frames.push(mirror);
  };
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
  const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
  await page.goto(stack.dashboard);
  await page.getByTestId("ws-status").filter({ hasText: "live" }).waitFor({ timeout: 30_000 });

  server = createServer((s) => s.on("data", () => undefined));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as { port: number }).port;
  client = connect(port, "127.0.0.1");
  await new Promise<void>((r) => client.once("connect", () => r()));
  const listenerId = `listener:${HOST}:tcp:127.0.0.1:${port}`;

  // WebSocket: the listener, owned by this very process, and a CONNECTS edge to it from this process.
  await waitFor(() => mirror?.nodes.has(listenerId), "listener in the WebSocket stream", 30_000);
  const m = mirror!;
  const listens = [...m.edges.values()].find((e) => e.kind === "LISTENS" && e.dst === listenerId)!;
  const owner = m.nodes.get(listens.src)!;
  expect(owner.kind).toBe("process");
  expect(owner.props.pid).toBe(process.pid);
  await waitFor(() => [...mirror!.edges.values()].some((e) => e.kind === "CONNECTS" && e.dst === listenerId), "CONNECTS edge in the WebSocket stream");

  // Graph store, via the read-only Cypher API.
  const res = await fetch(`${stack.dashboard}/api/cypher`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ query: "MATCH (p:Entity)-[:CONNECTS]->(l:Entity {id: $id}) RETURN p.kind AS kind, l.port AS port", params: { id: listenerId } }),
  });
  expect(res.status).toBe(200);
  const body = await res.json();
  expect(body.rows).toContainEqual({ kind: "process", port });
  const write = await fetch(`${stack.dashboard}/api/cypher`, { method: "POST", body: JSON.stringify({ query: "MATCH (n) DETACH DELETE n" }) });
  expect(write.status).toBe(400);
  expect((await write.json()).code).toBe("read_only");

  // The page: search for the port, the listener row shows up without a reload.
  await page.getByTestId("search").fill(String(port));
  await page.locator(`[data-node-id="${listenerId}"]`).waitFor({ timeout: 30_000 });
  await page.screenshot({ path: `${stack.dataDir}/e2e.png` });

  // An alert about this host and port (generic webhook → ingest → JetStream → alerts service) turns it red, live.
  const alert = await fetch(`${stack.ingest}/api/alerts/generic`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ fingerprint: "e2e-1", severity: "critical", summary: "port down", target: { host: HOST, port } }),
  });
  expect(alert.status).toBe(202);
  await waitFor(() => health.get(listenerId) === "critical", "critical health frame for the listener", 30_000);
  const rejected = await fetch(`${stack.ingest}/api/alerts/generic`, { method: "POST", body: "{nope" });
  expect(rejected.status).toBe(400);

  // Closing the connection and the listener removes them live.
  client.destroy();
  server.close();
  await waitFor(() => !mirror!.nodes.has(listenerId), "listener gone from the WebSocket stream", 30_000);
  await page.locator(`[data-node-id="${listenerId}"]`).waitFor({ state: "detached", timeout: 30_000 });

  // Metrics: the agent's host samples reach ClickHouse and come back through the series API.
  const now = Date.now();
  const points = await waitFor(async () => {
    const r = await fetch(`${stack.dashboard}/api/series?entity=host:${HOST}&metric=host_listeners&from=${now - 600_000}&to=${now + 60_000}&step=10`);
    const j = await r.json();
    return j.points?.length ? j.points : null;
  }, "host_listeners series");
  expect(points[0].v).toBeGreaterThan(0);
  ws.close();
  expect(frames.length).toBeGreaterThan(1);
});

test("Ctrl-C (SIGINT to the whole process group) stops every child cleanly, services first and nats-server last", async () => {
  await expectCleanCtrlC(stack);
}, 60_000);
