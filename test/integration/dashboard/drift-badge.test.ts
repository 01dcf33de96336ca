/**
 * Drift on the map, in headless Chromium against the whole platform (test/helpers/stack.ts: topology, registry,
 * gateway, a simulated estate; authentication off): two running services registered as components, the database
 * declaring a dependency on the other that discovery never sees, so drift names both. The map badges the
 * group-by-component groups and the service inside; the service's drawer names its component with the finding and
 * links to the component's registry page. The case where drift cannot be read (no topology behind the registry) is in
 * registry-pages.test.ts.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Browser, Page } from "playwright-core";
import type { Stack } from "../../helpers/stack.ts";
import { waitFor } from "../../helpers/tmp.ts";
import { ensureDashboardBuilt, launchChromium, openPage, shot, startDemoStack } from "./stack-page.ts";

interface Unregistered {
  id: string;
  name: string;
  host: string;
}
interface MapHook {
  screenOf(id: string): { x: number; y: number; r: number } | null;
  marks(): { id: string; kind: string; label: string }[];
  drift(): Record<string, string[]>;
}

let stack: Stack & { cleanup: () => void };
let browser: Browser;

beforeAll(async () => {
  ensureDashboardBuilt();
  stack = await startDemoStack({ ORRERY_SIM_ALERTS: "off", ORRERY_REGISTRY_DRIFT_EVERY_S: "0.5" });
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  stack?.cleanup();
});

const mapOf = (page: Page) =>
  page.evaluate(() => {
    const m = (window as unknown as { __orreryMap: MapHook }).__orreryMap;
    return { drift: m.drift(), marks: m.marks() };
  });
const screenOf = (page: Page, id: string) => page.evaluate((i) => (window as unknown as { __orreryMap: MapHook }).__orreryMap.screenOf(i), id);

test("a component with drift: badges on the map, the finding and a registry link in the drawer", async () => {
  const get = async (path: string) => {
    const r = await fetch(`${stack.dashboard}${path}`);
    return { status: r.status, body: (await r.json()) as any };
  };
  // postgres calls nothing in the simulated estate: a dependency it declares is never seen
  const [db, other] = await waitFor(
    async () => {
      const d = await get("/api/registry/drift");
      if (d.status !== 200) return null;
      const un = d.body.unregistered as Unregistered[];
      const pg = un.find((u) => /postgres/.test(u.name) && u.host);
      const o = pg && un.find((u) => /redis|kafka|prometheus/.test(u.name) && u.host && u.host !== pg.host);
      return pg && o ? ([pg, o] as const) : null;
    },
    "a running postgres and a service it does not call, both unregistered",
    90_000,
    500,
  );
  const post = async (c: object) =>
    expect((await fetch(`${stack.dashboard}/api/registry/components`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(c) })).status).toBe(201);
  await post({ name: "badge-side", owners: ["group:data-platform"], match: [{ fingerprint: other.name, host: other.host }] });
  await post({ name: "badge-db", owners: ["group:data-platform"], dependsOn: ["badge-side"], match: [{ fingerprint: db.name, host: db.host }] });
  await waitFor(
    async () => ((await get("/api/registry/drift")).body.declaredNotSeen as { from: string; to: string }[]).some((p) => p.from === "badge-db" && p.to === "badge-side"),
    "drift to name badge-db → badge-side as declared, never seen",
    60_000,
    500,
  );

  // grouped by component: the registry's annotation reaches the view through discovery and the topology service
  const { page, errors, close } = await openPage(browser, `${stack.dashboard}/?group=component&open=${encodeURIComponent("group:component:badge-db")}`);
  const drifts: string[] = [];
  page.on("request", (r) => {
    if (r.url().includes("/api/registry/drift")) drifts.push(r.url());
  });
  try {
    const service = await waitFor(
      async () => {
        const badged = await mapOf(page);
        const svc = badged.marks.find((mk) => mk.kind === "service" && badged.drift[mk.id]);
        return badged.drift["group:component:badge-db"] && badged.drift["group:component:badge-side"] && svc ? { ...svc, why: badged.drift[svc.id]! } : null;
      },
      "badges on the drifting components' groups and on the service inside",
      120_000,
      500,
    );
    expect(service.why).toContain("badge-db: declares badge-side, never seen");
    // drawn, not only computed: the canvas says how many badges its last frame drew
    await waitFor(async () => Number(await page.getByTestId("map-canvas").getAttribute("data-drift")) >= 2, "badges drawn", 15_000);
    // groups no component matches are not badged
    expect(Object.keys((await mapOf(page)).drift).every((id) => /badge-(db|side)/.test(id) || !id.startsWith("group:"))).toBe(true);
    await shot(page, "drift-badges.png");

    // the service's drawer: its component, the finding, a link to the registry page
    // clicked where the map draws it now, again if the picture moved under the first click (a loaded machine)
    await waitFor(
      async () => {
        const s = await screenOf(page, service.id);
        if (!s) return null;
        const box = (await page.getByTestId("map-canvas").boundingBox())!;
        await page.mouse.click(box.x + s.x, box.y + s.y);
        return page
          .getByTestId("details-id")
          .filter({ hasText: service.id })
          .waitFor({ timeout: 5000 })
          .then(() => true)
          .catch(() => null);
      },
      "the service's drawer open",
      60_000,
      500,
    );
    const reg = page.getByTestId("details-registry");
    await reg.waitFor({ timeout: 30_000 });
    await reg.getByTestId("details-drift").waitFor({ timeout: 30_000 });
    expect(await reg.textContent()).toContain("declares badge-side, never seen");
    const link = reg.locator('[data-component-id="badge-db"] [data-testid="details-component-link"]');
    expect(await link.getAttribute("href")).toBe("#/registry/c/badge-db");
    await shot(page, "drift-drawer.png");
    await link.click();
    await page.waitForURL(/#\/registry\/c\/badge-db$/);
    await page.getByText("badge-db").first().waitFor({ timeout: 15_000 });
    // the map polls drift every 30 s at most (this page has been open well under a minute past the first read)
    expect(drifts.length).toBeLessThanOrEqual(3);
    expect(errors).toEqual([]);
  } finally {
    await close();
  }
}, 400_000);
