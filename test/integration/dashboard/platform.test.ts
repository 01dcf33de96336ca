/**
 * The map on the real platform, as `npm run demo` runs it (test/helpers/stack.ts: supervisor, simulator, topology,
 * gateway computing views; auth off): the page loads at groups level from the gateway's view, opens the biggest group,
 * and comes back by itself after the gateway process is killed and restarted by the supervisor.
 *
 * Screenshots go to $TMPDIR/orrery-dashboard-shots/platform-*.png.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { startStack, type Stack } from "../../helpers/stack.ts";
import { waitFor } from "../../helpers/tmp.ts";
import { SHOTS, buildIfStale } from "./browser.ts";

let browser: Browser;
let stack: (Stack & { cleanup: () => void }) | undefined;

beforeAll(async () => {
  buildIfStale();
  mkdirSync(SHOTS, { recursive: true });
  stack = await startStack({ ORRERY_SIM_HOSTS: "60", ORRERY_SIM_INTERVAL_MS: "1000" });
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  stack?.cleanup();
});

const drawn = (page: Page) => page.getByTestId("map-canvas").getAttribute("data-drawn").then(Number);
type Hook = { __orreryMap: { screenOf(id: string): { x: number; y: number } | null; marks(): { id: string; kind: string; count: number }[] } };

test("the real gateway's view: groups with counts, a group opened in place, back after the gateway restarts", async () => {
  const context = await browser.newContext({ viewport: { width: 1920, height: 1080 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  try {
    await page.goto(stack!.dashboard);
    await page.getByTestId("ws-status").filter({ hasText: "live" }).waitFor({ timeout: 60_000 });
    // the simulator's 60 hosts, reported by agents and folded by the topology service
    await page.getByTestId("summary-hosts").filter({ hasText: /^60$/ }).waitFor({ timeout: 90_000 });
    await waitFor(async () => (await drawn(page)) > 0, "marks drawn", 30_000);
    const groups = await drawn(page);
    // groups, not hosts: a handful of marks for 60 hosts
    expect(groups).toBeLessThan(30);
    await Bun.sleep(500);
    await page.screenshot({ path: join(SHOTS, "platform-groups.png") });

    // open the group that holds the most, by its mark (read from the page's view)
    const box = (await page.getByTestId("map-canvas").boundingBox())!;
    const marks = await page.evaluate(() => (window as unknown as Hook).__orreryMap.marks());
    const group = marks.filter((m) => m.kind === "group").sort((a, b) => b.count - a.count)[0]?.id;
    expect(group).toBeDefined();
    const at = await page.evaluate((id) => (window as unknown as Hook).__orreryMap.screenOf(id), group!);
    await page.mouse.click(box.x + at!.x, box.y + at!.y);
    await page.waitForFunction((id) => new URL(location.href).searchParams.getAll("open").includes(id), group!);
    await waitFor(async () => (await drawn(page)) > groups, "the group's hosts drawn", 30_000);
    await Bun.sleep(500);
    await page.screenshot({ path: join(SHOTS, "platform-open.png") });

    // kill the gateway: the supervisor restarts it, the page resubscribes to the same view on its own
    const gateway = stack!.descendants().find((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("gateway");
      } catch {
        return false;
      }
    });
    expect(gateway).toBeDefined();
    process.kill(gateway!, "SIGKILL");
    await page.getByTestId("ws-status").filter({ hasNotText: "live" }).waitFor({ timeout: 15_000 });
    await page.getByTestId("ws-status").filter({ hasText: "live" }).waitFor({ timeout: 90_000 });
    await waitFor(async () => (await drawn(page)) > groups, "the open group drawn again", 30_000);
    expect(new URL(page.url()).searchParams.getAll("open")).toContain(group!);
    expect(errors).toEqual([]);
  } finally {
    await context.close();
  }
}, 300_000);
