/**
 * The time slider on a page of views, against the whole platform: moving it back puts the time in the view's `at`
 * (the URL says so, the gateway computes the view from history and the map still draws it) without the page ever
 * downloading the past graph itself (no /api/topology/at, no replay pages); a replay moves `at` forward and reaches
 * LIVE; "back to LIVE" drops `at`.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Browser } from "playwright-core";
import type { Stack } from "../../helpers/stack.ts";
import { ensureDashboardBuilt, launchChromium, openPage, shot, startDemoStack } from "./stack-page.ts";

let stack: Stack & { cleanup: () => void };
let browser: Browser;

beforeAll(async () => {
  ensureDashboardBuilt();
  stack = await startDemoStack({ ORRERY_SIM_ALERTS: "off" });
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  stack?.cleanup();
});

const bar = (page: import("playwright-core").Page) =>
  page.getByTestId("timebar").evaluate((el: HTMLElement) => ({ mode: el.dataset.mode, at: el.dataset.at ? Number(el.dataset.at) : null, playing: el.dataset.playing === "true" }));

test("back in time through the view's `at`, a replay that reaches LIVE, and back to LIVE; no past graph downloaded", async () => {
  // some history to go back into
  await Bun.sleep(8000);
  const { page, errors, close } = await openPage(browser, stack.dashboard);
  const pastGraphReads: string[] = [];
  page.on("request", (r) => {
    if (/\/api\/topology\/(at|replay)/.test(r.url())) pastGraphReads.push(r.url());
  });
  try {
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="time-slider"]')?.getAttribute("min")) > 0);
    const target = Date.now() - 4000;
    // as the slider's release does: a change event at that time
    await page.getByTestId("time-slider").evaluate((el: HTMLInputElement, t) => {
      el.value = String(t);
      el.dispatchEvent(new Event("change", { bubbles: true }));
    }, target);
    await page.waitForFunction(() => document.querySelector<HTMLElement>('[data-testid="timebar"]')?.dataset.mode === "history");
    const b = await bar(page);
    expect(Math.abs(b.at! - target)).toBeLessThan(1000);
    // the view asked for is at that time, and the URL says so
    await page.waitForFunction(() => /[?&]at=\d+/.test(location.search));
    const at = Number(new URL(page.url()).searchParams.get("at"));
    expect(Math.abs(at - target)).toBeLessThan(1000);
    expect(await page.getByTestId("timebar-state").textContent()).toMatch(/viewing \d{2}:\d{2}:\d{2}/);
    // the gateway's view at that time is drawn
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="map-canvas"]')?.getAttribute("data-drawn")) > 0, undefined, { timeout: 20_000 });
    // no "nothing recorded" note: the page holds no past graph to count, the gateway's view is what is shown
    expect(await page.getByTestId("timetravel-empty").count()).toBe(0);
    await shot(page, "timeslider-past.png");

    // back to LIVE drops the time from the view
    await page.getByTestId("go-live").click();
    await page.waitForFunction(() => document.querySelector<HTMLElement>('[data-testid="timebar"]')?.dataset.mode === "live");
    await page.waitForFunction(() => !/[?&]at=/.test(location.search));

    // a replay from 20 s ago at 10×: `at` moves forward, then it is LIVE again
    await page.getByTestId("time-slider").evaluate((el: HTMLInputElement, t) => {
      el.value = String(t);
      el.dispatchEvent(new Event("change", { bubbles: true }));
    }, Date.now() - 20_000);
    await page.waitForFunction(() => document.querySelector<HTMLElement>('[data-testid="timebar"]')?.dataset.mode === "history");
    const start = (await bar(page)).at!;
    await page.selectOption('[data-testid="speed"]', "10");
    await page.getByTestId("play").click();
    await page.waitForFunction((s) => Number(document.querySelector<HTMLElement>('[data-testid="timebar"]')?.dataset.at) > s + 5000, start, { timeout: 10_000 });
    await page.waitForFunction(() => document.querySelector<HTMLElement>('[data-testid="timebar"]')?.dataset.mode === "live", undefined, { timeout: 15_000 });

    // the page never loaded a past graph: the gateway computed every view at `at`
    expect(pastGraphReads).toEqual([]);
    expect(errors).toEqual([]);
  } finally {
    await close();
  }
}, 240_000);
