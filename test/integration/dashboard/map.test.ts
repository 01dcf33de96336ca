/**
 * The map in headless Chromium (the built dashboard, dashboard/dist) against a gateway speaking the view contract
 * (view-gateway.ts): the page subscribes to a level of detail and holds only what it draws. Loads at groups level,
 * opens and closes a group, follows a live health change, restores a view from its URL, rotates a wallboard,
 * reconnects after the gateway restarts, and sends a page the gateway refuses (401) to the login page.
 *
 * Screenshots of each main view go to $TMPDIR/orrery-dashboard-shots/ (kept, to be looked at).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { fixtureEstate, startViewGateway } from "./view-gateway.ts";
import { waitFor } from "../../helpers/tmp.ts";
import { DIST, SHOTS, buildIfStale } from "./browser.ts";

let browser: Browser;

beforeAll(async () => {
  buildIfStale();
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
});

async function open(url: string, viewport = { width: 1920, height: 1080 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/WebSocket|Failed to load resource/.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  return { page, errors, close: () => context.close() };
}

const canvas = (page: Page) => page.getByTestId("map-canvas");
const drawn = async (page: Page) => Number(await canvas(page).getAttribute("data-drawn"));
/** Waits until the map has drawn exactly n marks (after its layout came back from the worker). */
const waitDrawn = (page: Page, n: number, timeout = 15_000) =>
  page.waitForFunction((want) => document.querySelector('[data-testid="map-canvas"]')?.getAttribute("data-drawn") === String(want), n, { timeout });
const screenOf = (page: Page, id: string) =>
  page.evaluate((i) => (window as unknown as { __orreryMap: { screenOf(id: string): { x: number; y: number; r: number; w: number; h: number } | null } }).__orreryMap.screenOf(i), id);

async function clickMark(page: Page, id: string, where: "centre" | "title" = "centre") {
  const s = await waitFor(() => screenOf(page, id), `${id} laid out`);
  const box = (await canvas(page).boundingBox())!;
  if (where === "centre") await page.mouse.click(box.x + s.x, box.y + s.y);
  else await page.mouse.click(box.x + s.x - s.w / 2 + 30, box.y + s.y - s.h / 2 + 10);
}

async function shot(page: Page, name: string) {
  const path = join(SHOTS, name);
  await page.screenshot({ path });
  expect(statSync(path).size).toBeGreaterThan(10_000);
}

describe("the map", () => {
  test("loads at groups level, opens a group into its hosts and closes it again", async () => {
    const gw = startViewGateway(DIST);
    const { page, errors, close } = await open(gw.url);
    try {
      await page.getByTestId("ws-status").filter({ hasText: "live" }).waitFor({ timeout: 15_000 });
      // four tiers: lb, web, app, db
      await waitDrawn(page, 4);
      expect(gw.subscribed[0]).toMatchObject({ level: "groups", groupBy: "tier", open: [] });
      expect(await page.getByTestId("summary-hosts").textContent()).toBe("21");
      expect(await page.getByTestId("node-count").textContent()).toBe(String(gw.estate.hosts.length + gw.estate.services.length));
      await shot(page, "groups-layered.png");

      await clickMark(page, "group:tier:app");
      // the app group holds 10 hosts, drawn inside it (the container is drawn too)
      await waitDrawn(page, 4 - 1 + 1 + 10);
      expect(new URL(page.url()).searchParams.getAll("open")).toEqual(["group:tier:app"]);
      expect(gw.subscribed.at(-1)!.open).toEqual(["group:tier:app"]);
      await shot(page, "group-open.png");

      // a host inside is a leaf: a click selects it (the drawer's entity), it does not open
      await clickMark(page, "host:sim-app-3");
      await page.getByTestId("focus-selected").waitFor();
      expect(await page.getByTestId("focus-selected").textContent()).toContain("sim-app-3");

      // the container's title bar closes it
      await clickMark(page, "group:tier:app", "title");
      await waitDrawn(page, 4);
      expect(new URL(page.url()).searchParams.getAll("open")).toEqual([]);
      // Back re-opens it (the URL is the view)
      await page.goBack();
      await waitDrawn(page, 14);
      expect(errors).toEqual([]);
    } finally {
      await close();
      gw.stop();
    }
  }, 90_000);

  test("a live health change reaches the summary and the marks without a reload", async () => {
    const gw = startViewGateway(DIST);
    const { page, errors, close } = await open(gw.url);
    try {
      await waitDrawn(page, 4);
      expect(await page.getByTestId("summary-criticals").textContent()).toBe("0");
      await page.evaluate(() => ((window as unknown as { __sameDocument: boolean }).__sameDocument = true));
      const pg = gw.estate.services.find((s) => s.name === "postgres")!;
      pg.health = "critical";
      for (const s of gw.estate.services.filter((x) => x.name === "orders")) s.impacted = true;
      gw.push();
      await page.getByTestId("summary-criticals").filter({ hasText: "1" }).waitFor({ timeout: 10_000 });
      expect(await page.getByTestId("summary-impacted").textContent()).toBe("10");
      expect(await page.getByTestId("status-summary").getAttribute("data-worst")).toBe("critical");
      // The pixels: the db group's critical halo, the app group's dashed impact ring, the call from app to db coloured.
      const db = (await screenOf(page, "group:tier:db"))!;
      const app = (await screenOf(page, "group:tier:app"))!;
      const count = (pts: { x: number; y: number }[], want: "critical" | "impacted") =>
        page.evaluate(
          ([ps, w]) => {
            const c = document.querySelector<HTMLCanvasElement>('[data-testid="map-canvas"]')!;
            const ctx = c.getContext("2d")!;
            const d = devicePixelRatio;
            let hits = 0;
            for (const p of ps) {
              const [r, g, b] = ctx.getImageData(Math.round(p.x * d), Math.round(p.y * d), 1, 1).data;
              // critical #ff5a36, impacted #d783c0
              if (w === "critical" ? r! > 200 && g! < 140 && b! < 110 : r! > 170 && g! < 170 && b! > 140) hits++;
            }
            return hits;
          },
          [pts, want] as const,
        );
      const ring = (s: { x: number; y: number; r: number }, grow: number) =>
        Array.from({ length: 36 }, (_, i) => ({ x: s.x + Math.cos((i * Math.PI) / 18) * (s.r + grow), y: s.y + Math.sin((i * Math.PI) / 18) * (s.r + grow) }));
      expect(await count(ring(db, 3), "critical")).toBeGreaterThanOrEqual(12);
      expect(await count(ring(db, 3), "impacted")).toBe(0);
      // dashed: about half of the ring
      expect(await count(ring(app, 8), "impacted")).toBeGreaterThanOrEqual(8);
      expect(await count(ring(app, 8), "critical")).toBe(0);
      // between the two circles, the link's pixels (a few rows either side of the straight line)
      const link = Array.from({ length: 20 }, (_, i) => {
        const t = 0.3 + (0.4 * i) / 19;
        return { x: app.x + (db.x - app.x) * t, y: app.y + (db.y - app.y) * t };
      });
      expect(await count(link, "critical")).toBeGreaterThanOrEqual(10);
      // and it is not the healthy link from web to app
      const web = (await screenOf(page, "group:tier:web"))!;
      expect(await count([{ x: (web.x + app.x) / 2, y: (web.y + app.y) / 2 }], "critical")).toBe(0);
      expect(await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument)).toBe(true);
      await shot(page, "groups-critical.png");
      expect(errors).toEqual([]);
    } finally {
      await close();
      gw.stop();
    }
  }, 90_000);

  test("a URL restores its view: level, grouping, open marks, filters and layout", async () => {
    const gw = startViewGateway(DIST);
    const q = "?level=groups&group=site&open=group%3Asite%3Aeu-west&health=critical&layout=force";
    gw.estate.services.find((s) => s.name === "postgres")!.health = "critical";
    gw.estate.services.find((s) => s.name === "orders")!.health = "critical";
    const { page, errors, close } = await open(gw.url + q);
    try {
      await waitFor(() => gw.subscribed.length > 0, "a subscribe");
      expect(gw.subscribed[0]).toMatchObject({ level: "groups", groupBy: "site", open: ["group:site:eu-west"], filters: { health: ["critical"] } });
      await page.waitForFunction(() => document.querySelector('[data-testid="map-canvas"]')?.getAttribute("data-layout") === "force");
      expect(await page.getByTestId("group-by").inputValue()).toBe("site");
      expect(await page.getByTestId("layout-force").getAttribute("class")).toContain("on");
      expect(await page.getByTestId("filter-critical").getAttribute("class")).toContain("on");
      expect(await drawn(page)).toBeGreaterThan(1);
      await shot(page, "url-restored-force.png");

      // the whole estate in the layered view at services level, with a filter typed into the box
      await page.goto(`${gw.url}?level=services`);
      await page.waitForFunction(() => Number(document.querySelector('[data-testid="map-canvas"]')?.getAttribute("data-drawn")) > 60);
      await shot(page, "services-layered.png");
      await page.getByTestId("map-filter").fill("orders");
      await waitFor(() => gw.subscribed.at(-1)?.filters.q === "orders", "the filter in the subscribe");
      await page.waitForFunction(() => new URL(location.href).searchParams.get("q") === "orders");
      expect(errors).toEqual([]);
    } finally {
      await close();
      gw.stop();
    }
  }, 90_000);

  test("keyboard: arrows move between marks, Enter opens a group, Escape closes it, f refits after panning", async () => {
    const gw = startViewGateway(DIST);
    const { page, errors, close } = await open(gw.url);
    try {
      await waitDrawn(page, 4);
      const k0 = await canvas(page).getAttribute("data-k");
      // pan away, then f fits again
      const box = (await canvas(page).boundingBox())!;
      await page.mouse.move(box.x + 300, box.y + 300);
      await page.mouse.down();
      await page.mouse.move(box.x + 700, box.y + 500, { steps: 5 });
      await page.mouse.up();
      await page.mouse.wheel(0, 400);
      await page.waitForFunction((k) => document.querySelector('[data-testid="map-canvas"]')?.getAttribute("data-k") !== k, k0);
      await page.keyboard.press("f");
      await page.waitForFunction((k) => document.querySelector('[data-testid="map-canvas"]')?.getAttribute("data-k") === k, k0, { timeout: 5000 });
      // the left-most mark first (lb), then right to web
      await page.keyboard.press("ArrowRight");
      await page.keyboard.press("ArrowRight");
      await page.keyboard.press("Enter");
      await waitFor(() => gw.subscribed.at(-1)?.open.length === 1, "an open from the keyboard");
      expect(gw.subscribed.at(-1)!.open[0]).toMatch(/^group:tier:/);
      await page.keyboard.press("Escape");
      await waitFor(() => gw.subscribed.at(-1)?.open.length === 0, "Escape closes it");
      expect(errors).toEqual([]);
    } finally {
      await close();
      gw.stop();
    }
  }, 90_000);
});

describe("the wallboard", () => {
  test("rotates through its views at the set interval, with the big status summary", async () => {
    const gw = startViewGateway(DIST);
    gw.estate.services.find((s) => s.name === "postgres")!.health = "critical";
    const views = ["level=groups&group=tier", "level=groups&group=site&layout=force", "level=services&health=critical"];
    const q = `?wall=1&every=5&${views.map((v) => `v=${encodeURIComponent(v)}`).join("&")}`;
    const { page, errors, close } = await open(gw.url + q);
    try {
      await page.getByTestId("wallboard").waitFor();
      await waitDrawn(page, 4);
      const historyAtStart = await page.evaluate(() => history.length);
      expect(await page.getByTestId("summary-criticals").textContent()).toBe("1");
      expect(await page.getByTestId("summary-worst").textContent()).toContain("critical");
      await shot(page, "wallboard-1.png");
      await waitFor(() => gw.subscribed.some((s) => s.groupBy === "site"), "the second view", 12_000);
      await page.waitForFunction(() => document.querySelector('[data-testid="wallboard"]')?.getAttribute("data-index") === "1");
      await page.waitForFunction(() => document.querySelector('[data-testid="map-canvas"]')?.getAttribute("data-layout") === "force");
      await Bun.sleep(500);
      await shot(page, "wallboard-2.png");
      await waitFor(() => gw.subscribed.some((s) => s.level === "services"), "the third view", 12_000);
      await waitFor(() => gw.subscribed.filter((s) => s.level === "groups" && s.groupBy === "tier").length >= 2, "back to the first", 12_000);
      // the URL follows the view shown, the rotation stays in it, and history does not grow per rotation
      expect(new URL(page.url()).searchParams.getAll("v")).toEqual(views);
      expect(await page.evaluate(() => history.length)).toBe(historyAtStart);
      expect(errors).toEqual([]);
    } finally {
      await close();
      gw.stop();
    }
  }, 90_000);

  test("says how old its data is while the gateway is down, and comes back by itself when it restarts", async () => {
    let gw = startViewGateway(DIST);
    const port = gw.port;
    const { page, errors, close } = await open(`${gw.url}?wall=1`);
    try {
      await waitDrawn(page, 4);
      gw.stop();
      await page.getByTestId("data-age").waitFor({ timeout: 10_000 });
      expect(await page.getByTestId("data-age").textContent()).toContain("gateway unreachable");
      // still drawn meanwhile
      expect(await drawn(page)).toBe(4);
      await Bun.sleep(3000);
      expect(await page.getByTestId("data-age").textContent()).toMatch(/data is \d+ s old/);
      await shot(page, "wallboard-stale.png");
      // the gateway restarts (same port), with a fifth group: the page resubscribes and shows it
      const estate = fixtureEstate();
      estate.hosts.push({ id: "host:sim-cache-1", name: "sim-cache-1", tier: "cache", site: "eu-west", health: "ok" });
      estate.services.push({ id: "service:sim-cache-1:memcached", name: "memcached", host: "host:sim-cache-1", port: 11211, health: "ok", impacted: false });
      gw = startViewGateway(DIST, { port, estate });
      await waitDrawn(page, 5, 30_000);
      await page.getByTestId("data-age").waitFor({ state: "detached", timeout: 10_000 });
      expect(gw.connections).toBe(1);
      expect(errors).toEqual([]);
    } finally {
      await close();
      gw.stop();
    }
  }, 90_000);

  test("a gateway that requires a login sends the page to /login with the view to come back to", async () => {
    const gw = startViewGateway(DIST, { auth: true });
    const { page, close } = await open(`${gw.url}?level=hosts&group=site`);
    try {
      await page.waitForURL(/\/login\?next=/, { timeout: 15_000 });
      const next = new URL(page.url()).searchParams.get("next");
      expect(next).toBe("/?level=hosts&group=site");
    } finally {
      await close();
      gw.stop();
    }
  }, 60_000);
});
