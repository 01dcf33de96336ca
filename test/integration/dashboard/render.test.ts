/**
 * Browser test of the built dashboard (dashboard/dist) against a fake gateway: a Bun.serve per test that serves the
 * static files, /ws (snapshot, then deltas the test pushes) and the /api reads. Chromium is driven by playwright-core.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, normalize, sep } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import type { TopoEdge, TopoNode, TopologyDelta, TopologySnapshot } from "../../../pipelines/contracts/topology.ts";
import type { HealthState } from "../../../pipelines/contracts/health.ts";
import { applyDelta, mirrorFromSnapshot, snapshotOf, type Mirror } from "../../../pipelines/stages/apply-delta.ts";
import { tempDir } from "../../helpers/tmp.ts";

const ROOT = join(import.meta.dir, "../../..");
const DIST = join(ROOT, "dashboard", "dist");
const T0 = 1_750_000_000_000;

const node = (id: string, kind: TopoNode["kind"], name: string, props: TopoNode["props"] = {}): TopoNode => ({
  id,
  kind,
  name,
  source: "agent:web-1",
  props,
  firstSeen: T0,
  lastSeen: T0,
});
const edge = (kind: TopoEdge["kind"], src: string, dst: string): TopoEdge => ({
  id: `${kind}:${src}->${dst}`,
  kind,
  src,
  dst,
  source: "agent:web-1",
  props: {},
  firstSeen: T0,
  lastSeen: T0,
});

const HOST = "host:web-1";
const NGINX = "process:web-1:101:5000";
const PG = "process:web-1:202:6000";
const NEW_LISTENER = "listener:web-1:tcp:0.0.0.0:8443";

function fixtureSnapshot(): TopologySnapshot {
  const nodes = [
    node(HOST, "host", "web-1", { hostname: "web-1", os: "Debian 12", kernel: "6.1", ips: "10.0.0.5", health: "ok" }),
    node(NGINX, "process", "nginx", { pid: 101, exe: "/usr/sbin/nginx", cmdline: "nginx -g daemon off;", user: "www-data" }),
    node(PG, "process", "postgres", { pid: 202, exe: "/usr/lib/postgresql/16/bin/postgres", user: "postgres", health: "critical" }),
    node("listener:web-1:tcp:0.0.0.0:443", "listener", "tcp/443", { host: "web-1", proto: "tcp", ip: "0.0.0.0", port: 443 }),
    node("listener:web-1:tcp:127.0.0.1:5432", "listener", "tcp/5432", { host: "web-1", proto: "tcp", ip: "127.0.0.1", port: 5432 }),
    node("external:203.0.113.7:443", "external", "203.0.113.7:443", { ip: "203.0.113.7", port: 443, health: "warning" }),
  ];
  const edges = [
    edge("RUNS", HOST, NGINX),
    edge("RUNS", HOST, PG),
    edge("LISTENS", NGINX, "listener:web-1:tcp:0.0.0.0:443"),
    edge("LISTENS", PG, "listener:web-1:tcp:127.0.0.1:5432"),
    edge("CONNECTS", NGINX, "listener:web-1:tcp:127.0.0.1:5432"),
    edge("CONNECTS", NGINX, "external:203.0.113.7:443"),
    // derived from the CONNECTS into postgres's listener: in the mirror, not drawn by default
    edge("DEPENDS_ON", NGINX, PG),
  ];
  return { schema: "topology.snapshot.v1", rev: 7, at: T0, nodes, edges };
}

function newListenerDelta(rev: number): TopologyDelta {
  return {
    schema: "topology.delta.v1",
    rev,
    at: T0 + 1000,
    nodesUpserted: [node(NEW_LISTENER, "listener", "tcp/8443", { host: "web-1", proto: "tcp", ip: "0.0.0.0", port: 8443 })],
    nodesRemoved: [],
    edgesUpserted: [edge("LISTENS", NGINX, NEW_LISTENER)],
    edgesRemoved: [],
  };
}

/** A fake gateway: static dist/, /ws from a mirror (snapshot on connect, deltas pushed by the test), /api reads. */
function startGateway() {
  const mirror: Mirror = mirrorFromSnapshot(fixtureSnapshot());
  const sockets = new Set<Bun.ServerWebSocket<unknown>>();
  const seriesRequests: URLSearchParams[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req, srv) {
      const url = new URL(req.url);
      if (url.pathname === "/ws") return srv.upgrade(req) ? undefined : new Response("upgrade failed", { status: 400 });
      if (url.pathname === "/api/snapshot") return Response.json(snapshotOf(mirror, Date.now()));
      // The time bar asks for the history range at start (no history here).
      if (url.pathname === "/api/topology/range") return Response.json({ earliest: null, latest: null, now: Date.now() });
      if (url.pathname === "/api/metrics/latest") {
        const entity = url.searchParams.get("entity") ?? "";
        if (entity !== HOST) return Response.json({ error: "no metrics" }, { status: 404 });
        return Response.json({ entity, values: { cpu_usage: { t: Date.now(), v: 42.5 }, mem_used_bytes: { t: Date.now(), v: 1e9 } } });
      }
      if (url.pathname === "/api/series") {
        seriesRequests.push(url.searchParams);
        const from = Number(url.searchParams.get("from"));
        const step = Number(url.searchParams.get("step")) * 1000;
        const points = Array.from({ length: 60 }, (_, i) => ({ t: from + i * step, v: 40 + 10 * Math.sin(i / 5) }));
        return Response.json({ entity: url.searchParams.get("entity"), metric: url.searchParams.get("metric"), points });
      }
      const rel = normalize(decodeURIComponent(url.pathname === "/" ? "/index.html" : url.pathname)).replace(/^[/\\]+/, "");
      const path = join(DIST, rel);
      if (!path.startsWith(DIST + sep)) return new Response("forbidden", { status: 403 });
      const file = Bun.file(path);
      return (await file.exists()) ? new Response(file) : new Response("not found", { status: 404 });
    },
    websocket: {
      open(ws) {
        sockets.add(ws);
        ws.send(JSON.stringify(snapshotOf(mirror, Date.now())));
      },
      close(ws) {
        sockets.delete(ws);
      },
      message() {},
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}/`,
    mirror,
    seriesRequests,
    get connections() {
      return sockets.size;
    },
    /** Applies a delta to the gateway mirror and sends it to every open socket. */
    push(d: TopologyDelta) {
      expect(applyDelta(mirror, d)).toBe(true);
      for (const ws of sockets) ws.send(JSON.stringify(d));
    },
    sendRaw(text: string) {
      for (const ws of sockets) ws.send(text);
    },
    dropAll() {
      for (const ws of sockets) ws.close(1012, "restarting");
    },
    stop: () => server.stop(true),
  };
}

const text = (page: Page, testid: string) => page.locator(`[data-testid="${testid}"]`).textContent().then((t) => t?.trim());
const waitText = (page: Page, testid: string, want: string, timeout = 15_000) =>
  page.waitForFunction(
    ([id, w]) => document.querySelector(`[data-testid="${id}"]`)?.textContent?.trim() === w,
    [testid, want] as const,
    { timeout },
  );

let browser: Browser;

/** A build older than its sources (or than the shared contracts it bundles) is rebuilt, so the test sees this code. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const d of [dir, join(ROOT, "pipelines", "contracts"), join(ROOT, "pipelines", "stages")]) {
    for (const e of readdirSync(d, { recursive: true, withFileTypes: true })) {
      if (e.isFile()) newest = Math.max(newest, statSync(join(e.parentPath, e.name)).mtimeMs);
    }
  }
  return newest;
}

beforeAll(async () => {
  if (!existsSync(join(DIST, "index.html")) || newestSource(join(ROOT, "dashboard", "src")) > statSync(join(DIST, "index.html")).mtimeMs) {
    const r = Bun.spawnSync([join(ROOT, "node_modules/.bin/vite"), "build"], { cwd: join(ROOT, "dashboard"), stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`dashboard build failed: ${r.stderr.toString()}`);
  }
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
});

afterAll(async () => {
  await browser?.close();
});

async function openDashboard(gatewayUrl: string) {
  const context = await browser.newContext({ viewport: { width: 1920, height: 1080 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    // The gateway answers 404 for entities without metrics; the browser logs that, the dashboard handles it.
    if (m.type() === "error" && !m.location().url.includes("/api/metrics/latest")) errors.push(`console: ${m.text()} (${m.location().url})`);
  });
  await page.goto(gatewayUrl);
  return { page, errors, close: () => context.close() };
}

describe("dashboard in a browser", () => {
  test("goes live from the snapshot, shows a listener a delta adds, and shows its details on click", async () => {
    const gw = startGateway();
    const { page, errors, close } = await openDashboard(gw.url);
    const tmp = tempDir("orrery-dashboard-");
    try {
      const snap = fixtureSnapshot();
      await waitText(page, "ws-status", "live");
      expect(await text(page, "ws-status")).toBe("live");
      expect(await text(page, "node-count")).toBe(String(snap.nodes.length));
      expect(await text(page, "edge-count")).toBe(String(snap.edges.length));
      expect(await text(page, "rev")).toBe(String(snap.rev));
      // Every entity is a row while the search is empty.
      expect(await page.locator("[data-node-id]").count()).toBe(snap.nodes.length);
      // Critical first: the NOC sees postgres at the top of the list.
      expect(await page.locator("[data-node-id]").first().getAttribute("data-node-id")).toBe(PG);

      await page.fill('[data-testid="search"]', "8443");
      await page.waitForFunction(() => document.querySelectorAll("[data-node-id]").length === 0);
      expect(await page.locator(`[data-node-id="${NEW_LISTENER}"]`).count()).toBe(0);

      // A malformed frame is dropped, the page stays live and unchanged.
      gw.sendRaw(JSON.stringify({ schema: "topology.delta.v1", rev: "eight" }));
      gw.sendRaw("not json");

      await page.evaluate(() => ((window as unknown as { __sameDocument: boolean }).__sameDocument = true));
      gw.push(newListenerDelta(snap.rev + 1));

      const row = page.locator(`[data-node-id="${NEW_LISTENER}"]`);
      await row.waitFor({ state: "visible", timeout: 15_000 });
      expect(await row.textContent()).toContain("tcp/8443");
      await waitText(page, "node-count", String(snap.nodes.length + 1));
      expect(await text(page, "edge-count")).toBe(String(snap.edges.length + 1));
      expect(await text(page, "rev")).toBe(String(snap.rev + 1));
      expect(await text(page, "ws-status")).toBe("live");
      expect(await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument)).toBe(true);

      // The listener is also found by name.
      await page.fill('[data-testid="search"]', "tcp/8443");
      await row.waitFor({ state: "visible" });

      await row.click();
      await waitText(page, "details-name", "tcp/8443");
      expect(await text(page, "details-id")).toBe(NEW_LISTENER);
      const props = await text(page, "details-props");
      expect(props).toContain("8443");
      expect(props).toContain("0.0.0.0");
      expect(await page.locator(`[data-testid="neighbours"] [data-neighbour-id="${NGINX}"]`).textContent()).toContain("nginx");
      expect(await row.getAttribute("aria-selected")).toBe("true");
      // No metrics for this listener (the gateway answers 404): a note, not an error.
      await page.getByText("no metrics for this entity").waitFor();

      const shot = join(tmp.dir, "dashboard.png");
      await page.screenshot({ path: shot });
      const png = new Uint8Array(await Bun.file(shot).arrayBuffer());
      expect(statSync(shot).size).toBeGreaterThan(10_000);
      expect([...png.slice(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      expect(errors).toEqual([]);
    } finally {
      await close();
      gw.stop();
      tmp.cleanup();
    }
  });

  test("draws a metric sparkline for an entity that has series", async () => {
    const gw = startGateway();
    const { page, errors, close } = await openDashboard(gw.url);
    try {
      await waitText(page, "ws-status", "live");
      await page.fill('[data-testid="search"]', "web-1");
      await page.locator(`[data-node-id="${HOST}"]`).click();
      await waitText(page, "details-name", "web-1");
      await page.waitForFunction(() => (document.querySelector('[data-testid="sparkline"] path')?.getAttribute("d") ?? "").length > 20);
      expect(await page.locator('[data-testid="sparkline"] path').count()).toBe(1);
      const req = gw.seriesRequests.at(-1)!;
      expect(req.get("entity")).toBe(HOST);
      expect(req.get("metric")).toBe("cpu_usage");
      expect(Number(req.get("to")) - Number(req.get("from"))).toBe(3_600_000);
      expect(errors).toEqual([]);
    } finally {
      await close();
      gw.stop();
    }
  });

  test("a click on the canvas selects the node under the pointer", async () => {
    const gw = startGateway();
    const { page, errors, close } = await openDashboard(gw.url);
    try {
      await waitText(page, "ws-status", "live");
      // Let the force layout settle so the node stays where the view centres it.
      await page.locator('[data-testid="layout-settling"]').waitFor({ state: "detached", timeout: 30_000 });
      await page.locator(`[data-node-id="${PG}"]`).click();
      await waitText(page, "details-name", "postgres");
      await page.keyboard.press("Escape");
      await page.waitForFunction(() => !document.querySelector('[data-testid="details-name"]'));
      await page.waitForTimeout(900); // the focus transition (600 ms) centres the node
      const box = (await page.locator('[data-testid="graph-canvas"]').boundingBox())!;
      await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
      await waitText(page, "details-name", "postgres");
      expect(await text(page, "details-health")).toBe("critical");
      expect(errors).toEqual([]);
    } finally {
      await close();
      gw.stop();
    }
  });

  test("an unhealthy node's impact is drawn: orange halo on what depends on it, the call into it coloured, listed in details", async () => {
    const gw = startGateway();
    const { page, errors, close } = await openDashboard(gw.url);
    try {
      await waitText(page, "ws-status", "live");
      await page.locator('[data-testid="layout-settling"]').waitFor({ state: "detached", timeout: 30_000 });
      const PG_L = "listener:web-1:tcp:127.0.0.1:5432";
      const NGINX_L = "listener:web-1:tcp:0.0.0.0:443";
      const CALL = `CONNECTS:${NGINX}->${PG_L}`;
      const state: HealthState = {
        schema: "health.state.v1",
        seq: 1,
        at: T0,
        entities: [{ id: PG, health: "critical", alerts: ["pg-down"] }],
        edges: [{ id: CALL, src: NGINX, dst: PG_L, health: "critical", cause: PG }],
        impact: [
          { id: PG_L, health: "critical", hops: 1, causes: [{ id: PG, health: "critical", hops: 1 }], causesTotal: 1 },
          { id: NGINX, health: "critical", hops: 2, causes: [{ id: PG, health: "critical", hops: 2 }], causesTotal: 1 },
          { id: NGINX_L, health: "critical", hops: 3, causes: [{ id: PG, health: "critical", hops: 3 }], causesTotal: 1 },
        ],
      };
      gw.sendRaw(JSON.stringify(state));
      await waitText(page, "impacted-count", "impacted 3");
      type Drawn = { id: string; hops: number; x: number; y: number; r: number };
      const drawn = async () => JSON.parse((await page.locator('[data-testid="graph-canvas"]').getAttribute("data-impacted")) ?? "[]") as Drawn[];
      await page.waitForFunction(() => JSON.parse(document.querySelector('[data-testid="graph-canvas"]')?.getAttribute("data-impacted") ?? "[]").length === 3);
      const halos = await drawn();
      expect(halos.map((h) => [h.id, h.hops])).toEqual([[NGINX_L, 3], [PG_L, 1], [NGINX, 2]].sort((a, b) => (a[0]! < b[0]! ? -1 : 1)));
      expect(JSON.parse((await page.locator('[data-testid="graph-canvas"]').getAttribute("data-unhealthy-edges")) ?? "[]")).toEqual([CALL]);
      // DEPENDS_ON is in the mirror (the edge count) but not laid out or drawn: it would duplicate the CONNECTS
      expect(await text(page, "edge-count")).toBe("7");
      expect(JSON.parse((await page.locator('[data-testid="graph-canvas"]').getAttribute("data-links")) ?? "{}")).toEqual({ RUNS: 2, LISTENS: 2, CONNECTS: 2, DEPENDS_ON: 0 });

      // The pixels: on nginx's halo circle the canvas is orange (#ff7a1a) — and is not once the impact is cleared.
      const nginx = halos.find((h) => h.id === NGINX)!;
      const orangeOnRing = (h: Drawn) =>
        page.evaluate(({ x, y, r }) => {
          const canvas = document.querySelector('[data-testid="graph-canvas"]') as HTMLCanvasElement;
          const ctx = canvas.getContext("2d")!;
          const scale = canvas.width / canvas.getBoundingClientRect().width;
          let hits = 0;
          for (let i = 0; i < 36; i++) {
            const a = (i / 36) * 2 * Math.PI;
            const px = Math.round((x + Math.cos(a) * r) * scale);
            const py = Math.round((y + Math.sin(a) * r) * scale);
            const d = ctx.getImageData(px - 1, py - 1, 3, 3).data;
            for (let j = 0; j < d.length; j += 4) {
              if (Math.abs(d[j]! - 255) < 40 && Math.abs(d[j + 1]! - 122) < 40 && d[j + 2]! < 80) {
                hits++;
                break;
              }
            }
          }
          return hits;
        }, h);
      expect(await orangeOnRing(nginx)).toBeGreaterThanOrEqual(12);

      // Details: postgres lists what it affects; nginx says what it is impacted by.
      await page.locator(`[data-node-id="${PG}"]`).click();
      await waitText(page, "details-name", "postgres");
      const affects = page.locator('[data-testid="affects"] [data-affected-id]');
      expect(await affects.evaluateAll((els) => els.map((e) => e.getAttribute("data-affected-id")))).toEqual([PG_L, NGINX, NGINX_L]);
      expect(await page.locator(`[data-testid="affects"] [data-affected-id="${NGINX}"]`).textContent()).toContain("2 hops");
      await page.locator(`[data-testid="affects"] [data-affected-id="${NGINX}"]`).click();
      await waitText(page, "details-name", "nginx");
      expect(await page.locator(`[data-testid="impacted-by"] [data-cause-id="${PG}"]`).textContent()).toContain("postgres");
      await page.keyboard.press("Escape");
      await page.waitForTimeout(900); // the focus transition moves the view

      // Cleared: a delta that resolves it removes the halo and the coloured call.
      const now = await drawn();
      const nginxNow = now.find((h) => h.id === NGINX)!;
      expect(await orangeOnRing(nginxNow)).toBeGreaterThanOrEqual(12);
      gw.sendRaw(JSON.stringify({ schema: "health.delta.v1", seq: 2, at: T0 + 1, entities: [{ id: PG, health: "ok", alerts: [] }], edges: [], edgesCleared: [CALL], impact: [], impactCleared: [PG_L, NGINX, NGINX_L] }));
      await waitText(page, "impacted-count", "impacted 0");
      await page.waitForFunction(() => document.querySelector('[data-testid="graph-canvas"]')?.getAttribute("data-impacted") === "[]");
      expect(await page.locator('[data-testid="graph-canvas"]').getAttribute("data-unhealthy-edges")).toBe("[]");
      expect(await orangeOnRing(nginxNow)).toBeLessThan(3);
      expect(errors).toEqual([]);
    } finally {
      await close();
      gw.stop();
    }
  });

  test("reconnects after the socket drops and resyncs from a fresh snapshot", async () => {
    const gw = startGateway();
    const { page, errors, close } = await openDashboard(gw.url);
    try {
      const snap = fixtureSnapshot();
      await waitText(page, "ws-status", "live");
      await page.evaluate(() => ((window as unknown as { __sameDocument: boolean }).__sameDocument = true));
      gw.dropAll();
      await waitText(page, "ws-status", "reconnecting");
      // While the dashboard is away the graph moves on; the new snapshot must carry the change.
      gw.push(newListenerDelta(snap.rev + 1));
      await waitText(page, "rev", String(snap.rev + 1));
      expect(await text(page, "ws-status")).toBe("live");
      expect(await text(page, "node-count")).toBe(String(snap.nodes.length + 1));
      expect(gw.connections).toBe(1);
      expect(await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument)).toBe(true);
      // Console errors about the dropped socket are expected from the browser itself; page errors are not.
      expect(errors.filter((e) => e.startsWith("pageerror"))).toEqual([]);
    } finally {
      await close();
      gw.stop();
    }
  });
});
