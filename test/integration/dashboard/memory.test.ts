/**
 * The page's memory stays flat while view deltas stream: a wallboard left for a day must not grow. The fake view
 * gateway (view-gateway.ts) pushes a delta every 25 ms (40/s, ten times the real gateway's 4/s per view) for three
 * minutes with health flips and service churn (new ids every few seconds, so per-id caches would show), the page
 * drawing each one; the JS heap after a forced GC (CDP HeapProfiler.collectGarbage, Runtime.getHeapUsage) at the
 * end may not exceed its value at minute 1 by more than a small bound.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type CDPSession } from "playwright-core";
import { fixtureEstate, startViewGateway, type Svc } from "./view-gateway.ts";
import { DIST, SHOTS, buildIfStale } from "./browser.ts";

/** ORRERY_MEMORY_TEST_MS runs it longer (a heap that creeps shows better over 10 minutes) */
const RUN_MS = Math.max(120_000, Number(process.env.ORRERY_MEMORY_TEST_MS) || 180_000);
const WARM_MS = 60_000;
const DELTA_EVERY_MS = 25;
/** growth allowed between minute 1 and the end (GC timing and V8's code caches move a few hundred KiB) */
const BOUND_BYTES = 2 * 1024 * 1024;

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

async function heapAfterGc(cdp: CDPSession): Promise<number> {
  // twice: the first pass frees what finalizers and weak maps only release on the second
  await cdp.send("HeapProfiler.collectGarbage");
  await cdp.send("HeapProfiler.collectGarbage");
  const u = await cdp.send("Runtime.getHeapUsage");
  return u.usedSize;
}

test(`the page's JS heap is flat over ${RUN_MS / 60_000} minutes of view deltas at ${1000 / DELTA_EVERY_MS}/s`, async () => {
  const estate = fixtureEstate({ lb: 4, web: 20, app: 60, db: 12 });
  const gw = startViewGateway(DIST, { estate });
  // the app group open, so hosts (and the churned services' hosts) are marks that change
  const context = await browser.newContext({ viewport: { width: 1920, height: 1080 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  let timer: ReturnType<typeof setInterval> | undefined;
  try {
    await page.goto(`${gw.url}?open=${encodeURIComponent("group:tier:app")}&open=${encodeURIComponent("host:sim-app-1")}`);
    await page.getByTestId("ws-status").filter({ hasText: "live" }).waitFor({ timeout: 15_000 });
    const cdp = await context.newCDPSession(page);
    await cdp.send("HeapProfiler.enable");

    let n = 0;
    let churned: Svc | null = null;
    timer = setInterval(() => {
      n++;
      const s = estate.services[n % estate.services.length]!;
      s.health = s.health === "ok" ? (n % 3 ? "warning" : "critical") : "ok";
      s.impacted = n % 5 === 0;
      // every 4 s a service goes and a new one (a new id, a new label) comes on sim-app-1
      if (n % 160 === 0) {
        if (churned) estate.services.splice(estate.services.indexOf(churned), 1);
        churned = { id: `service:sim-app-1:job-${n}`, name: `job-${n}`, host: "host:sim-app-1", port: 9000, health: "ok", impacted: false };
        estate.services.push(churned);
      }
      gw.push();
    }, DELTA_EVERY_MS);

    const version = () => page.evaluate(() => (window as unknown as { __orreryMap: { viewVersion(): number } }).__orreryMap.viewVersion());
    await page.waitForTimeout(WARM_MS);
    const v1 = await version();
    const atMinute1 = await heapAfterGc(cdp);
    // a sample a minute, printed, so a slow creep is seen as a trend and not only as an end value
    const samples = [atMinute1];
    for (let t = WARM_MS; t < RUN_MS; t += 60_000) {
      await page.waitForTimeout(Math.min(60_000, RUN_MS - t));
      if (t + 60_000 < RUN_MS) samples.push(await heapAfterGc(cdp));
    }
    const v2 = await version();
    const atEnd = await heapAfterGc(cdp);
    samples.push(atEnd);
    clearInterval(timer);
    timer = undefined;
    const mib = (b: number) => (b / 1024 / 1024).toFixed(2);
    console.log(`heap after GC, a sample a minute from minute 1: ${samples.map(mib).join(", ")} MiB; ${v2 - v1} view frames applied after minute 1`);
    await page.screenshot({ path: join(SHOTS, "memory-end.png") });
    expect(statSync(join(SHOTS, "memory-end.png")).size).toBeGreaterThan(10_000);
    // the page kept up with the stream (a frozen page would look flat too)
    expect(v2 - v1).toBeGreaterThan(((RUN_MS - WARM_MS) / DELTA_EVERY_MS) * 0.5);
    expect(atEnd - atMinute1).toBeLessThan(BOUND_BYTES);
    expect(errors).toEqual([]);
  } finally {
    if (timer) clearInterval(timer);
    await context.close();
    gw.stop();
  }
}, RUN_MS + 120_000);
