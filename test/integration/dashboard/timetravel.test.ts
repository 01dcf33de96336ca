/**
 * The wallboard's time slider in headless Chromium against real servers: nats-server (JetStream), the ClickHouse owner,
 * the history service storing a scripted sequence of topology deltas with known timestamps (hours ago), and the real
 * gateway (mirror, /ws, graph routes over the history store) serving the built dashboard. The test plays the topology
 * service: it publishes the deltas on the TOPOLOGY stream and answers the snapshot request with their fold.
 *
 * The page subscribes to a view (level=services: every host open with its services) and the time bar's time is the
 * view's `at`, which the gateway computes from the history store. What the page shows is read from the map's marks
 * (its test hook), the header, and the time bar's data attributes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { TopologyDelta, type EdgeKind, type NodeKind, type TopoEdge, type TopoNode } from "../../../pipelines/contracts/topology.ts";
import { applyDelta, emptyMirror, mirrorFromSnapshot, snapshotOf, type Mirror } from "../../../pipelines/stages/apply-delta.ts";
import { changeRows } from "../../../pipelines/stages/history.ts";
import { cutPage, deltaOfRows, groupByRev } from "../../../dashboard/src/lib/replay.ts";
import { edgeId } from "../../../pipelines/stages/topology/ids.ts";
import { startGatewayServer } from "../../../services/gateway/http.ts";
// ORRERY_AUTH=off explicitly: these tests are not about who may pass (test/integration/identity/ is)
import { openGate } from "../../../services/identity/client.ts";
import { startMirror, type TopologyMirror } from "../../../services/topology/client.ts";
import { graphRoutes } from "../../../services/gateway/routes/graph.ts";
import { viewRoutes } from "../../../services/gateway/routes/view.ts";
import { ViewHub } from "../../../services/gateway/views.ts";
import { ClickHouseHistoryStore } from "../../../services/history/clickhouse.ts";
import type { HistoryStore } from "../../../services/history/port.ts";
import { startHistoryService, type HistoryService } from "../../../services/history/service.ts";
import { connectBus, publishEvent, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const ROOT = join(import.meta.dir, "../../..");
const DIST = join(ROOT, "dashboard", "dist");
const log = makeLogger("test", true);
const MIN = 60_000;

// The script: three changes an hour apart, starting three hours ago; a fourth arrives live during the test.
const BASE = Math.floor((Date.now() - 180 * MIN) / 1000) * 1000;
const T1 = BASE;
const T2 = BASE + 60 * MIN;
const T3 = BASE + 120 * MIN;

const HOST = "host:web-1";
const NGINX = "service:web-1:nginx:80";
const PG = "service:web-1:postgres:5432";
const REDIS = "service:web-1:redis-server:6379";

const node = (id: string, kind: NodeKind, name: string): TopoNode => ({ id, kind, name, source: "agent:web-1", props: {}, firstSeen: T1, lastSeen: T1 });
const edge = (kind: EdgeKind, src: string, dst: string): TopoEdge => ({ id: edgeId(kind, src, dst), kind, src, dst, source: "agent:web-1", props: {}, firstSeen: T1, lastSeen: T1 });
const delta = (rev: number, at: number, d: Partial<TopologyDelta>): TopologyDelta => ({
  schema: "topology.delta.v1",
  rev,
  at,
  nodesUpserted: [],
  nodesRemoved: [],
  edgesUpserted: [],
  edgesRemoved: [],
  ...d,
});

const SCRIPT: TopologyDelta[] = [
  delta(1, T1, { nodesUpserted: [node(HOST, "host", "web-1"), node(NGINX, "process", "nginx")], edgesUpserted: [edge("RUNS", HOST, NGINX)] }),
  delta(2, T2, { nodesUpserted: [node(PG, "process", "postgres")], edgesUpserted: [edge("RUNS", HOST, PG)] }),
  delta(3, T3, { nodesRemoved: [NGINX], edgesRemoved: [edgeId("RUNS", HOST, NGINX)] }),
];
const liveDelta = (at: number) => delta(4, at, { nodesUpserted: [node(REDIS, "process", "redis")], edgesUpserted: [edge("RUNS", HOST, REDIS)] });

let nats: NatsServer;
let owner: TestClickHouse;
let browser: Browser;
const chDir = tempDir("orrery-tt-ch-");

/** A build older than its sources (or than the shared contracts it bundles) is rebuilt, so the test sees this code. */
function newestSource(): number {
  let newest = 0;
  for (const d of [join(ROOT, "dashboard", "src"), join(ROOT, "pipelines", "contracts"), join(ROOT, "pipelines", "stages")]) {
    for (const e of readdirSync(d, { recursive: true, withFileTypes: true })) {
      if (e.isFile()) newest = Math.max(newest, statSync(join(e.parentPath, e.name)).mtimeMs);
    }
  }
  return newest;
}

beforeAll(async () => {
  if (!existsSync(join(DIST, "index.html")) || newestSource() > statSync(join(DIST, "index.html")).mtimeMs) {
    const r = Bun.spawnSync([join(ROOT, "node_modules/.bin/vite"), "build"], { cwd: join(ROOT, "dashboard"), stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`dashboard build failed: ${r.stderr.toString()}`);
  }
  [nats, owner] = await Promise.all([startNats(), startClickHouse(chDir.dir)]);
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await nats?.stop();
  await owner?.stop();
  chDir.cleanup();
});

/** The test as the topology service: deltas on the stream, and the snapshot request answered from their fold. */
async function playTopologyService(bus: Bus) {
  const model: Mirror = emptyMirror();
  const sub = bus.nc.subscribe(bus.topo.subjects.snapshotRpc, {
    callback: (err, msg) => {
      if (err || !msg.reply) return;
      msg.respond(new TextEncoder().encode(JSON.stringify({ ...snapshotOf(model, Date.now()), part: 0, parts: 1 })));
    },
  });
  return {
    model,
    async publish(d: TopologyDelta) {
      expect(applyDelta(model, d)).toBe(true);
      await publishEvent(bus, bus.topo.subjects.topologyDelta, TopologyDelta, "topology.delta.v1", d, `${bus.topo.prefix}:delta:${d.rev}`);
    },
    stop: () => sub.unsubscribe(),
  };
}

async function openDashboard(url: string, allowHttpErrors = false) {
  const context = await browser.newContext({ viewport: { width: 1920, height: 1080 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    // The browser logs failed fetches itself; the error test expects the history API's 503s.
    if (allowHttpErrors && m.location().url.includes("/api/topology/")) return;
    // this gateway has no registry routes: the map's drift read (every 30 s) fails, which the map takes as no badges
    if (m.location().url.includes("/api/registry/drift")) return;
    errors.push(`console: ${m.text()} (${m.location().url})`);
  });
  await page.goto(url);
  return { page, errors, close: () => context.close() };
}

type MapHook = { __orreryMap?: { marks(): { id: string; kind: string }[] } };
/** the entities the map draws (its leaf marks: a leaf's mark id is its topology node id) */
const ids = (page: Page) =>
  page.evaluate(() => ((window as unknown as MapHook).__orreryMap?.marks() ?? []).filter((m) => m.kind !== "group").map((m) => m.id).sort());
const text = (page: Page, testid: string) => page.locator(`[data-testid="${testid}"]`).textContent().then((t) => t?.trim());
const bar = (page: Page) =>
  page.locator('[data-testid="timebar"]').evaluate((el: HTMLElement) => ({ mode: el.dataset.mode, at: el.dataset.at ? Number(el.dataset.at) : null, rev: Number(el.dataset.rev), playing: el.dataset.playing === "true" }));

/** Waits until the page shows exactly these entities (the map's marks) in this time-bar mode. */
async function waitShown(page: Page, want: string[], mode: "live" | "history", timeout = 15_000) {
  const sorted = [...want].sort();
  try {
    await page.waitForFunction(
      ([w, m]) => {
        const got = ((window as unknown as MapHook).__orreryMap?.marks() ?? []).filter((x) => x.kind !== "group").map((x) => x.id).sort();
        const b = document.querySelector<HTMLElement>('[data-testid="timebar"]');
        return b?.dataset.mode === m && b.dataset.loading === "false" && JSON.stringify(got) === JSON.stringify(w);
      },
      [sorted, mode] as const,
      { timeout },
    );
  } catch (e) {
    throw new Error(`page did not show ${JSON.stringify(sorted)} (${mode}); shows ${JSON.stringify(await ids(page))}, bar ${JSON.stringify(await bar(page))}: ${e}`);
  }
}

/** Clicks the slider's track where time t is (a real pointer click, as an operator would). */
async function clickTime(page: Page, t: number) {
  const slider = page.locator('[data-testid="time-slider"]');
  const box = (await slider.boundingBox())!;
  const { min, max } = await slider.evaluate((el: HTMLInputElement) => ({ min: Number(el.min), max: Number(el.max) }));
  expect(t).toBeGreaterThan(min);
  expect(t).toBeLessThan(max);
  // Chromium maps the pointer to the thumb's centre, which travels the track minus one thumb width (~16 px).
  const thumb = 16;
  await page.mouse.click(box.x + thumb / 2 + ((t - min) / (max - min)) * (box.width - thumb), box.y + box.height / 2);
}

describe("replay pages (pure)", () => {
  test("change rows of a delta fold back into the same delta", () => {
    const d = delta(9, T2, {
      nodesUpserted: [{ ...node(PG, "process", "postgres"), props: { pid: 202, user: "postgres", tls: true, note: null } }],
      edgesUpserted: [edge("RUNS", HOST, PG)],
      edgesRemoved: [edgeId("RUNS", HOST, NGINX)],
      nodesRemoved: [NGINX],
    });
    expect(deltaOfRows(changeRows(d))).toEqual(d);
    expect(() => deltaOfRows([...changeRows(d), ...changeRows({ ...d, rev: 10 })])).toThrow("rows of revs 9 and 10");
  });

  test("a page cut at its limit keeps whole milliseconds; one millisecond over the limit jumps", () => {
    const [r1, r2, r3] = SCRIPT.map(changeRows) as [ReturnType<typeof changeRows>, ReturnType<typeof changeRows>, ReturnType<typeof changeRows>];
    expect(groupByRev([...r2, ...r3]).map((g) => g.map((r) => r.rev))).toEqual([[2, 2], [3, 3]]);
    expect(cutPage({ changes: [...r2, ...r3], truncated: false }, T3 + 5)).toEqual({ rows: [...r2, ...r3], fetchedTo: T3 + 5 });
    // rev 3 was cut after its first row: it is asked for again, from just before its ts
    expect(cutPage({ changes: [...r2, r3[0]!], truncated: true }, T3 + 5)).toEqual({ rows: r2, fetchedTo: T3 - 1 });
    expect(cutPage({ changes: r1.slice(0, 2), truncated: true }, T3)).toEqual({ jumpTo: T1 });
  });
});

describe("wallboard time slider", () => {
  let bus: Bus;
  let topo: Awaited<ReturnType<typeof playTopologyService>>;
  let history: HistoryService;
  let store: ClickHouseHistoryStore;
  let reader: ClickHouseHistoryStore;
  let mirror: TopologyMirror;
  let gateway: ReturnType<typeof startGatewayServer>;
  let views: ViewHub;
  const database = uniquePrefix("tt_");

  beforeAll(async () => {
    bus = await connectBus({ url: nats.url, prefix: uniquePrefix("tt"), name: "test" });
    store = new ClickHouseHistoryStore(owner.client({ logErrors: false }), { database, ttlDays: 30 });
    history = await startHistoryService({ bus, store, log });
    topo = await playTopologyService(bus);
    for (const d of SCRIPT) await topo.publish(d);
    await waitFor(() => history.rev() === 3, "history service to store the three scripted deltas");
    mirror = await startMirror(bus, log);
    await waitFor(() => mirror.synced() && mirror.mirror().rev === 3, "gateway mirror synced at rev 3");
    // The gateway reads the history through its own client, as in production.
    reader = new ClickHouseHistoryStore(owner.client({ logErrors: false }), { database, ttlDays: 30 });
    views = new ViewHub({ mirror, history: reader, log });
    gateway = startGatewayServer({ auth: openGate(), bus, mirror, log, host: "127.0.0.1", port: 0, dashboardDir: DIST, views, extraRoutes: { ...graphRoutes({ mirror, history: reader, log }), ...viewRoutes({ views }) } });
  }, 60_000);

  afterAll(async () => {
    await gateway?.stop(true);
    views?.stop();
    await mirror?.stop();
    topo?.stop();
    await history?.stop();
    await store?.close();
    await reader?.close();
    await bus?.close();
  });

  test("the range starts at the oldest change", async () => {
    const r = await fetch(`http://127.0.0.1:${gateway.port}/api/topology/range`);
    expect(r.status).toBe(200);
    const body = (await r.json()) as { earliest: number; latest: number; now: number };
    expect(body.earliest).toBe(T1);
    expect(body.latest).toBe(T3);
    expect(Math.abs(body.now - Date.now())).toBeLessThan(5000);
  });

  test("slide before a node existed → absent; after → present; replay removes it; live deltas kept meanwhile; LIVE → current", async () => {
    const { page, errors, close } = await openDashboard(`http://127.0.0.1:${gateway.port}/?level=services`);
    try {
      // Live: the fold of all three deltas.
      await waitShown(page, [HOST, PG], "live");
      expect(await text(page, "ws-status")).toBe("live");
      expect(await text(page, "timebar-state")).toBe("LIVE");
      await page.waitForFunction((t) => Number(document.querySelector<HTMLInputElement>('[data-testid="time-slider"]')?.min) === t, T1);
      await page.evaluate(() => ((window as unknown as { __sameDocument: boolean }).__sameDocument = true));

      // Half an hour after the first change: nginx runs, postgres does not exist yet.
      await clickTime(page, T1 + 30 * MIN);
      await waitShown(page, [HOST, NGINX], "history");
      let b = await bar(page);
      expect(b.at).toBeGreaterThan(T1 + 25 * MIN);
      expect(b.at).toBeLessThan(T1 + 35 * MIN);
      expect(b.rev).toBe(1);
      expect(await text(page, "ws-status")).toBe("history");
      expect(await text(page, "node-count")).toBe("2");
      expect(await text(page, "edge-count")).toBe("1");
      expect(await text(page, "timebar-state")).toMatch(/^viewing (\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d$/);
      expect(await page.locator('[data-testid="go-live"]').textContent()).toContain("back to LIVE");

      // A live change arrives while the operator looks at the past: the past stays on screen.
      await topo.publish(liveDelta(Date.now()));
      await waitFor(() => mirror.mirror().rev === 4, "gateway mirror at rev 4");
      await waitFor(() => history.rev() === 4, "history service stored rev 4");
      await Bun.sleep(500);
      expect(await ids(page)).toEqual([HOST, NGINX].sort());
      expect((await bar(page)).mode).toBe("history");

      // Half an hour after postgres appeared: both run.
      await clickTime(page, T2 + 30 * MIN);
      await waitShown(page, [HOST, NGINX, PG], "history");
      b = await bar(page);
      expect(b.at).toBeGreaterThan(T2 + 25 * MIN);
      expect(b.at).toBeLessThan(T2 + 35 * MIN);
      expect(b.rev).toBe(2);

      // Replay at 10 min/s: nginx's removal (T3, ~3 s away) is applied as the cursor passes it, still in the past.
      await page.selectOption('[data-testid="speed"]', "600");
      await page.click('[data-testid="play"]');
      await page.waitForFunction(
        ([t3, gone]) => {
          const el = document.querySelector<HTMLElement>('[data-testid="timebar"]')!;
          const shown = ((window as unknown as MapHook).__orreryMap?.marks() ?? []).map((x) => x.id);
          return el.dataset.mode === "history" && el.dataset.playing === "true" && Number(el.dataset.at) >= t3 && !shown.includes(gone);
        },
        [T3, NGINX] as const,
        { timeout: 20_000 },
      );
      await page.click('[data-testid="pause"]');
      b = await bar(page);
      expect(b.mode).toBe("history");
      expect(b.playing).toBe(false);
      expect(b.rev).toBe(3);
      expect(b.at!).toBeLessThan(Date.now() - 20 * MIN);
      expect(await ids(page)).toEqual([HOST, PG].sort());

      // LIVE: the current graph, with the delta that arrived meanwhile, without a reload or a new socket.
      await page.click('[data-testid="go-live"]');
      await waitShown(page, [HOST, PG, REDIS], "live");
      expect(await text(page, "rev")).toBe("4");
      expect(await text(page, "ws-status")).toBe("live");
      expect(await text(page, "timebar-state")).toBe("LIVE");
      expect(await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument)).toBe(true);

      // A replay that catches up with now goes LIVE by itself (rev 4, stored minutes ago, is replayed on the way).
      await clickTime(page, T3 + 30 * MIN);
      await waitShown(page, [HOST, PG], "history");
      await page.selectOption('[data-testid="speed"]', "3600");
      await page.click('[data-testid="play"]');
      await waitShown(page, [HOST, PG, REDIS], "live", 30_000);
      expect(await text(page, "ws-status")).toBe("live");
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  }, 120_000);

  test("stateAt(T) + replay pages of 3 rows, cut and resumed as the slider does = stateAt(now)", async () => {
    const to = Date.now();
    const fold = mirrorFromSnapshot(await reader.stateAt(T1));
    let from = T1;
    let midDeltaCuts = 0;
    for (let pages = 0; ; pages++) {
      expect(pages).toBeLessThan(20);
      const page = await reader.replay(from, to, 3);
      const cut = cutPage(page, to);
      if ("jumpTo" in cut) {
        Object.assign(fold, mirrorFromSnapshot(await reader.stateAt(cut.jumpTo)));
        from = cut.jumpTo;
        continue;
      }
      if (cut.rows.length < page.changes.length) midDeltaCuts++;
      for (const g of groupByRev(cut.rows)) expect(applyDelta(fold, deltaOfRows(g))).toBe(true);
      from = cut.fetchedTo;
      if (!page.truncated) break;
    }
    expect(midDeltaCuts).toBeGreaterThan(0);
    const want = await reader.stateAt(to);
    expect(fold.rev).toBe(want.rev);
    expect([...fold.nodes.values()].sort((a, b) => a.id.localeCompare(b.id))).toEqual([...want.nodes].sort((a, b) => a.id.localeCompare(b.id)));
    expect([...fold.edges.keys()].sort()).toEqual(want.edges.map((e) => e.id).sort());
  });

  test("a failing history store is shown as an error; the map keeps what it drew", async () => {
    // Same live graph, but the history store points at a database that does not exist: every history query fails.
    const broken = new ClickHouseHistoryStore(owner.client({ logErrors: false }), { database: uniquePrefix("missing_"), ttlDays: 30 });
    const hub = new ViewHub({ mirror, history: broken, log });
    const gw = startGatewayServer({ auth: openGate(), bus, mirror, log, host: "127.0.0.1", port: 0, dashboardDir: DIST, views: hub, extraRoutes: { ...graphRoutes({ mirror, history: broken, log }), ...viewRoutes({ views: hub }) } });
    const { page, errors, close } = await openDashboard(`http://127.0.0.1:${gw.port}/?level=services`, true);
    const live = [...mirror.mirror().nodes.keys()];
    try {
      await waitShown(page, live, "live");
      const err = page.locator('[data-testid="timetravel-error"]');
      await err.waitFor({ timeout: 15_000 });
      expect(await err.textContent()).toContain("history range unavailable: HTTP 503: history query failed");

      // The slider still spans the last day; asking for a time says the gateway could not compute that view, and the
      // map keeps the live one.
      await clickTime(page, Date.now() - 6 * 3600_000);
      const viewErr = page.getByTestId("view-error");
      await viewErr.waitFor({ timeout: 15_000 });
      expect(await viewErr.textContent()).toMatch(/this view is unavailable \(\w+\): .+/);
      await waitShown(page, live, "history");
      expect(await text(page, "node-count")).toBe(String(live.length));
      expect(errors).toEqual([]);
    } finally {
      await close();
      await gw.stop(true);
      hub.stop();
      await broken.close();
    }
  }, 60_000);

  test("a malformed history answer is never drawn", async () => {
    // The store answers, but with a node kind the contract does not know (what a newer or broken gateway might send).
    const bad: HistoryStore = Object.assign(Object.create(reader) as ClickHouseHistoryStore, {
      stateAt: async (t: number) => {
        const s = await reader.stateAt(t);
        return { ...s, nodes: [...s.nodes, { ...s.nodes[0]!, id: "planet:mars", kind: "planet" as NodeKind }] };
      },
    });
    const hub = new ViewHub({ mirror, history: bad, log });
    const gw = startGatewayServer({ auth: openGate(), bus, mirror, log, host: "127.0.0.1", port: 0, dashboardDir: DIST, views: hub, extraRoutes: { ...graphRoutes({ mirror, history: bad, log }), ...viewRoutes({ views: hub }) } });
    const { page, errors, close } = await openDashboard(`http://127.0.0.1:${gw.port}/?level=services`);
    const live = [...mirror.mirror().nodes.keys()];
    try {
      await waitShown(page, live, "live");
      await page.waitForFunction((t) => Number(document.querySelector<HTMLInputElement>('[data-testid="time-slider"]')?.min) === t, T1);
      await clickTime(page, T2 + 30 * MIN);
      // the gateway reads the past from the store and answers a view of it, or an error: never the unknown kind
      await page.waitForFunction(
        () => document.querySelector('[data-testid="view-error"]') !== null || document.querySelector<HTMLElement>('[data-testid="timebar"]')?.dataset.mode === "history",
        undefined,
        { timeout: 15_000 },
      );
      await Bun.sleep(1500);
      expect(await ids(page)).not.toContain("planet:mars");
      expect(errors).toEqual([]);
    } finally {
      await close();
      await gw.stop(true);
      hub.stop();
    }
  }, 60_000);
});
