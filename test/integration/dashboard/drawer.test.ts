/**
 * The entity drawer in headless Chromium against the whole platform (simulated estate, real gateway, alerts service,
 * metrics in ClickHouse, Kuzu): a database host's 5432 listener found by search shows its short name and host, the
 * alert posted for it as Alertmanager would ("PostgreSQL down"), charts of its service's metrics (a listener has no
 * samples of its own), readable properties; its service shows owner and team and who annotated them (not raw
 * JSON); "open in Cypher" prefills the console with a query for it, which runs. And the side panel's list: it pages
 * (saying how many more) instead of stopping at 200, every row with its host; the kind chips filter the view (the URL's
 * `kind`), and the header stays on one line at 1920 and 1280 px.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Browser } from "playwright-core";
import type { Stack } from "../../helpers/stack.ts";
import { ensureDashboardBuilt, launchChromium, openPage, postAlertmanager, shot, startDemoStack, waitAlert } from "./stack-page.ts";

let stack: Stack & { cleanup: () => void };
let browser: Browser;

const LISTENER = "listener:sim-db-1:tcp:0.0.0.0:5432";

beforeAll(async () => {
  ensureDashboardBuilt();
  // the simulator's own alerts off: this test posts the one it looks for
  // 40 hosts: a search for "sim" matches more than one page of the list
  stack = await startDemoStack({ ORRERY_SIM_ALERTS: "off", ORRERY_SIM_HOSTS: "40" });
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  stack?.cleanup();
});

test("a listener's drawer: name and host, its alert's text, its service's metric charts, readable properties, open in Cypher", async () => {
  await postAlertmanager(stack.ingest, [{ alertname: "PostgreSQLDown", instance: "sim-db-1:5432", severity: "critical", summary: "PostgreSQL down", fingerprint: "drawer-pg-1" }]);
  await waitAlert(stack.dashboard, "drawer-pg-1", LISTENER);
  const { page, errors, close } = await openPage(browser, stack.dashboard);
  try {
    await page.getByTestId("search").fill("5432");
    const row = page.locator(`[data-node-id="${LISTENER}"]`);
    await row.waitFor({ timeout: 45_000 });
    // a row says which host it is on
    expect(await row.textContent()).toContain("on sim-db-1");
    await row.click();

    await page.getByTestId("details-name").filter({ hasText: "tcp/5432" }).waitFor();
    expect(await page.getByTestId("details-sublabel").textContent()).toBe("on sim-db-1");
    expect(await page.getByTestId("details-id").textContent()).toBe(LISTENER);
    // the alert with its text
    await page.getByTestId("details-alerts").getByText("PostgreSQL down").waitFor({ timeout: 45_000 });
    expect(await page.getByTestId("details-health").textContent()).toBe("critical");
    // what depends on it, by short name and host: sixteen `orders` are sixteen hosts, no two rows alike
    await page.locator('[data-testid="dependants"] [data-dependant-id^="service:"]').first().waitFor({ timeout: 45_000 });
    const deps = await page.locator('[data-testid="dependants"] [data-dependant-id^="service:"]').allTextContents();
    for (const d of deps) expect(d).toMatch(/on sim-[a-z]+-\d+/);
    expect(deps.some((d) => d.includes("image:"))).toBe(false);
    expect(new Set(deps.map((d) => d.replace(/^\s*\d+ hops?\s*/, "").trim())).size).toBe(deps.length);
    // a listener's metrics are its service's: charts, not "no metrics for this entity"
    await page.getByTestId("metrics-of").waitFor({ timeout: 60_000 });
    expect(await page.getByTestId("metrics-of").textContent()).toContain("postgres on sim-db-1");
    await page.waitForFunction(() => [...document.querySelectorAll('[data-testid="sparkline"] path')].some((p) => (p.getAttribute("d") ?? "").length > 10), undefined, { timeout: 60_000 });
    const charts = await page.getByTestId("metric-chart").evaluateAll((els) => els.map((e) => e.getAttribute("data-metric")));
    expect(charts).toContain("process_rss_bytes");
    // every chart fits the drawer: nothing cut off on the right
    const fits = await page.evaluate(() => {
      const box = document.querySelector('[data-testid="details"]')!.getBoundingClientRect();
      return [...document.querySelectorAll('[data-testid="sparkline"]')].every((s) => s.getBoundingClientRect().right <= box.right + 0.5);
    });
    expect(fits).toBe(true);
    expect(await page.getByText("no metrics for this entity").count()).toBe(0);
    const props = (await page.getByTestId("details-props").textContent())!;
    expect(props).toContain("5432");
    // 24-hour ISO-like times
    expect(props).toMatch(/last seen\s*\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}/);
    expect(props).not.toMatch(/\b(AM|PM)\b/);
    await shot(page, "drawer-listener.png");

    // its service, through the neighbour list: owner, team, who said so
    await page.locator('[data-testid="neighbours"] [data-neighbour-id^="service:sim-db-1:"]').first().click();
    await page.getByTestId("details-name").filter({ hasText: "postgres" }).waitFor();
    const owner = (await page.getByTestId("details-owner").textContent())!;
    expect(owner).toMatch(/owner\s*\w+/);
    const serviceProps = (await page.getByTestId("details-props").textContent())!;
    if (serviceProps.includes("annotated by")) {
      expect(serviceProps).toMatch(/owner, team ← agent:sim-db-1/);
      expect(serviceProps).not.toContain('{"');
    } else expect(owner).toContain("nobody"); // one of the seeded unowned services
    // every chart loaded, and drawn where the metric has samples
    await page.waitForFunction(
      () => {
        const charts = [...document.querySelectorAll('[data-testid="metric-chart"]')];
        return charts.length >= 3 && charts.every((c) => !c.textContent?.includes("loading")) && charts.filter((c) => (c.querySelector("path")?.getAttribute("d") ?? "").length > 10).length >= 3;
      },
      undefined,
      { timeout: 60_000 },
    );
    await shot(page, "drawer-service.png");

    // open in Cypher: the console with a query for this entity, and it runs
    await page.getByTestId("open-cypher").click();
    await page.getByTestId("cypher-console").waitFor();
    expect(await page.getByTestId("cypher-query").inputValue()).toContain("$id");
    expect(await page.getByTestId("cypher-params").inputValue()).toContain("service:sim-db-1:");
    await page.getByTestId("cypher-run").click();
    await page.getByTestId("cypher-graph").waitFor({ timeout: 45_000 });
    expect(Number(await page.getByTestId("cypher-graph").getAttribute("data-nodes"))).toBeGreaterThanOrEqual(3);
    await shot(page, "drawer-open-in-cypher.png");
    expect(errors).toEqual([]);
  } finally {
    await close();
  }
}, 240_000);

test("the list pages instead of stopping at 200, kind chips filter the view, the header stays on one line", async () => {
  const { page, errors, close } = await openPage(browser, stack.dashboard);
  try {
    await page.getByTestId("search").fill("sim");
    await page.getByTestId("list-more").waitFor({ timeout: 45_000 });
    const rows = () => page.locator("[data-node-id]").count();
    expect(await rows()).toBe(200);
    const more = Number(/([\d,]+) more/.exec((await page.getByTestId("list-more").textContent())!)![1]!.replace(/,/g, ""));
    expect(more).toBeGreaterThan(0);
    expect(await page.getByTestId("result-count").textContent()).toBe(`200 of ${(200 + more).toLocaleString("en")}`);
    await page.getByTestId("show-more").click();
    await page.waitForFunction((n) => document.querySelectorAll("[data-node-id]").length === Math.min(400, n), 200 + more);
    // no two rows alike: each service row says its host
    const names = await page.locator('[data-node-id^="service:"] .name').allTextContents();
    expect(names.length).toBeGreaterThan(50);
    expect(new Set(names).size).toBe(names.length);

    // kind chips: listeners off filters the list and asks the gateway for a view without them (the URL says so)
    await page.getByTestId("kind-listener").click();
    await page.waitForFunction(() => /[?&]kind=/.test(location.search) && !new URLSearchParams(location.search).getAll("kind").includes("listener"));
    expect(new URLSearchParams(new URL(page.url()).search).getAll("kind").sort()).toEqual(["external", "host", "service"]);
    expect(await page.locator('[data-node-id^="listener:"]').count()).toBe(0);
    expect(await page.getByTestId("list-more").textContent()).toContain("hidden by the kind filter");
    await page.getByTestId("kind-listener").click();
    await page.waitForFunction(() => !/[?&]kind=/.test(location.search));

    // the header: one line, at 1920 and 1280 px
    for (const width of [1920, 1280]) {
      await page.setViewportSize({ width, height: 900 });
      const h = await page.locator("header").first().evaluate((el) => ({ height: el.getBoundingClientRect().height, cut: el.scrollWidth > el.clientWidth + 1 }));
      expect(h.height).toBeLessThanOrEqual(66);
      // nor anything pushed off its right edge
      expect(h.cut).toBe(false);
    }
    await shot(page, "list-1280.png");
    expect(errors).toEqual([]);
  } finally {
    await close();
  }
}, 120_000);
