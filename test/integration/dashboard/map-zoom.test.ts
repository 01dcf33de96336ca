/**
 * The map's semantic zoom and its path to an entity, in headless Chromium against the fake view gateway
 * (view-gateway.ts): zooming into a group opens it with one subscribe for the whole gesture and zooming back out
 * closes it; clicks still open groups; an entity picked from the search list inside a closed group gets its path
 * opened and is centred; the focus chip names it as people do.
 *
 * Screenshots go to $TMPDIR/orrery-dashboard-shots/ (kept, to be looked at).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { startViewGateway } from "./view-gateway.ts";
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

async function open(url: string) {
  const context = await browser.newContext({ viewport: { width: 1920, height: 1080 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !/WebSocket|Failed to load resource/.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  await page.goto(url);
  return { page, errors, close: () => context.close() };
}

type Screen = { x: number; y: number; r: number; w: number; h: number };
const canvas = (page: Page) => page.getByTestId("map-canvas");
const waitDrawn = (page: Page, n: number, timeout = 15_000) =>
  page.waitForFunction((want) => document.querySelector('[data-testid="map-canvas"]')?.getAttribute("data-drawn") === String(want), n, { timeout });
/** marks the page holds (what the view sent; data-drawn counts only those in sight) */
const markCount = (page: Page) => page.evaluate(() => (window as unknown as { __orreryMap: { marks(): unknown[] } }).__orreryMap.marks().length);
const screenOf = (page: Page, id: string) =>
  page.evaluate((i) => (window as unknown as { __orreryMap: { screenOf(id: string): Screen | null } }).__orreryMap.screenOf(i), id);

async function shot(page: Page, name: string) {
  const path = join(SHOTS, name);
  await page.screenshot({ path });
  expect(statSync(path).size).toBeGreaterThan(10_000);
}

/** One wheel gesture over a point: `steps` notches 30 ms apart (well inside the map's settle time). */
async function wheel(page: Page, x: number, y: number, deltaY: number, steps: number) {
  await page.mouse.move(x, y);
  for (let i = 0; i < steps; i++) {
    await page.mouse.wheel(0, deltaY);
    await page.waitForTimeout(30);
  }
}

describe("semantic zoom", () => {
  test("zooming into a group opens it with one subscribe; zooming out closes it; clicks still open groups", async () => {
    const gw = startViewGateway(DIST);
    const { page, errors, close } = await open(gw.url);
    try {
      await page.getByTestId("ws-status").filter({ hasText: "live" }).waitFor({ timeout: 15_000 });
      await waitDrawn(page, 4);
      const box = (await canvas(page).boundingBox())!;
      const side = Math.min(box.width, box.height);
      const app = await waitFor(() => screenOf(page, "group:tier:app"), "app group laid out");
      // enough notches to pass the open threshold (each notch of 100 scales by 2^0.2)
      const need = Math.ceil(Math.log2((0.6 * side) / (2 * app.r)) / 0.2);
      expect(need).toBeGreaterThan(1);
      const before = gw.subscribed.length;
      await wheel(page, box.x + app.x, box.y + app.y, -100, need);
      await waitFor(() => screenOf(page, "host:sim-app-1"), "the app group's hosts laid out");
      expect(await markCount(page)).toBe(4 + 10);
      // the whole gesture asked for one view
      await page.waitForTimeout(800);
      expect(gw.subscribed.length - before).toBe(1);
      expect(gw.subscribed.at(-1)!.open).toEqual(["group:tier:app"]);
      expect(new URL(page.url()).search).toContain("open=");
      // the camera stays on the group it opened: the container fills much of the map
      const opened = (await screenOf(page, "group:tier:app"))!;
      expect(Math.max(opened.w, opened.h)).toBeGreaterThan(0.5 * side);
      await shot(page, "zoom-opened-app.png");

      // zooming back out (one gesture) closes what zoom opened
      const mid = { x: box.x + box.width / 2, y: box.y + box.height / 2 };
      const before2 = gw.subscribed.length;
      await wheel(page, mid.x, mid.y, 100, 12);
      await waitDrawn(page, 4);
      await page.waitForTimeout(800);
      expect(gw.subscribed.length - before2).toBe(1);
      expect(gw.subscribed.at(-1)!.open).toEqual([]);
      await shot(page, "zoom-closed.png");

      // a click opens a group as before (and zoom does not close a group a click opened)
      const db = await waitFor(() => screenOf(page, "group:tier:db"), "db group laid out");
      await page.mouse.click(box.x + db.x, box.y + db.y);
      await waitDrawn(page, 4 - 1 + 1 + 3);
      expect(gw.subscribed.at(-1)!.open).toEqual(["group:tier:db"]);
      const n = gw.subscribed.length;
      await wheel(page, mid.x, mid.y, 100, 4);
      await page.waitForTimeout(800);
      expect(gw.subscribed.length).toBe(n);
      expect(errors).toEqual([]);
    } finally {
      await close();
      gw.stop();
    }
  }, 90_000);
});

describe("focus from a list", () => {
  test("an entity inside a closed group: its path opens, it is centred, and the focus chip names it", async () => {
    const gw = startViewGateway(DIST);
    const { page, errors, close } = await open(gw.url);
    try {
      await page.getByTestId("ws-status").filter({ hasText: "live" }).waitFor({ timeout: 15_000 });
      await waitDrawn(page, 4);
      const id = "service:sim-app-4:payments";
      await page.getByTestId("search").fill("payments");
      await page.locator(`li[data-node-id="${id}"]`).click();
      // its tier group and its host open (one change of view), and the service is drawn and centred
      await waitFor(async () => (await screenOf(page, id)) ?? null, "the service laid out", 15_000);
      expect(gw.subscribed.at(-1)!.open).toEqual(expect.arrayContaining(["group:tier:app", "host:sim-app-4"]));
      const box = (await canvas(page).boundingBox())!;
      await waitFor(
        async () => {
          const s = await screenOf(page, id);
          return s && Math.abs(s.x - box.width / 2) < 4 && Math.abs(s.y - box.height / 2) < 4 ? s : null;
        },
        "the service centred",
        // the camera eases there; a loaded machine draws fewer frames of the ease (CI once needed more than 5 s)
        15_000,
      );
      await shot(page, "focus-from-search.png");

      // focusing on it: the button and the chip say its name and host, not its id
      const btn = page.getByTestId("focus-selected");
      expect(await btn.textContent()).toBe("focus on payments on sim-app-4");
      await btn.click();
      const chip = page.locator(".chip.focus");
      await chip.waitFor();
      expect(await chip.textContent()).toContain("around payments on sim-app-4 (2 hops)");
      expect(await chip.textContent()).not.toContain("service:");
      await shot(page, "focus-chip.png");
      expect(errors).toEqual([]);
    } finally {
      await close();
      gw.stop();
    }
  }, 90_000);
});
