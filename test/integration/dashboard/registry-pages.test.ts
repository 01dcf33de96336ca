/**
 * The registry pages in headless Chromium against the real gateway and registry service (auth on, people from a real
 * slapd): bob is a viewer who owns pay-api, alice an expert, dave an admin. The component list with its search and
 * tag chips; an import whose dry run lists its problems by row and column (Apply stays off), then a clean file
 * applied; an edit by the owner, a concurrent change answered with the current record, the controls hidden for a
 * component bob does not own; a status set by the owner and signed off by the expert; the History tab and the
 * estate's history. Screenshots go to SHOTS (test/integration/dashboard/stack-page.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join, resolve } from "node:path";
import type { Browser, Page } from "playwright-core";
import { slapdMissing, startSlapd, type TestSlapd } from "../../helpers/ldap.ts";
import { spawnUntilReady, type ReadyProcess } from "../../helpers/process.ts";
import { ldapEnv, login, startAuthStack, type AuthStack } from "../identity/stack.ts";
import { DIST } from "./browser.ts";
import { ensureDashboardBuilt, launchChromium, shot } from "./stack-page.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const noSlapd = slapdMissing();
let slapd: TestSlapd;
let stack: AuthStack;
let registry: ReadyProcess;
let browser: Browser;
const cookies: Record<string, string> = {};

async function api(who: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${stack.gateway}${path}`, { method, headers: { cookie: cookies[who]!, ...(body !== undefined ? { "content-type": "application/json" } : {}) }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: await res.json().catch(() => null) };
}

beforeAll(async () => {
  if (noSlapd) return;
  ensureDashboardBuilt();
  slapd = await startSlapd();
  stack = await startAuthStack({ env: { ...ldapEnv(slapd), ORRERY_DASHBOARD_DIR: DIST } });
  registry = await spawnUntilReady([process.execPath, join(ROOT, "services/registry/main.ts")], {
    cwd: ROOT,
    env: { ...process.env, NATS_URL: stack.nats.url, ORRERY_PREFIX: stack.prefix, ORRERY_LOG_QUIET: "0" },
    ready: /^(\{"event":"ready".*)\n/m,
    timeoutMs: 60_000,
    name: "the registry",
  });
  for (const who of ["bob", "alice", "dave"]) {
    const r = await login(stack.gateway, who, slapd.users[who]!.password);
    expect(r.res.status).toBe(200);
    cookies[who] = r.cookie!;
  }
  expect((await api("dave", "PUT", "/api/registry/requirement-groups/ops", { name: "Operations", description: "running it" })).status).toBe(200);
  expect((await api("dave", "PUT", "/api/registry/requirements/runbook", { group: "ops", name: "Has a runbook", signoff: "expert" })).status).toBe(200);
  expect((await api("dave", "PUT", "/api/registry/requirements/perf-test", { group: "ops", name: "Has a performance test", signoff: "expert" })).status).toBe(200);
  for (const c of [
    { name: "pay-api", category: "service", lifecycle: "mature", description: "takes payments", tags: ["payments", "api"], owners: ["user:bob"], dependsOn: [] },
    { name: "ledger", category: "database", lifecycle: "legacy", tags: ["payments"], owners: ["user:dave"] },
    { name: "search-ui", category: "frontend", tags: ["web"], owners: ["user:dave"], dependsOn: ["pay-api"] },
  ])
    expect((await api("dave", "POST", "/api/registry/components", c)).status).toBe(201);
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  registry?.proc.kill("SIGTERM");
  await registry?.proc.exited;
  await stack?.stop();
  await slapd?.stop();
});

/** a page logged in as `who` (the session cookie of a real login), at a registry hash */
async function open(who: string, hash: string): Promise<{ page: Page; errors: string[]; close: () => Promise<void> }> {
  const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const [name, value] = cookies[who]!.split("=") as [string, string];
  await context.addCookies([{ name, value, url: stack.gateway }]);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  await page.goto(`${stack.gateway}/${hash}`);
  await page.getByTestId("registry").waitFor({ timeout: 30_000 });
  await page.getByTestId("me").filter({ hasText: who }).waitFor();
  return { page, errors, close: () => context.close() };
}

const rowIds = (page: Page) => page.locator("[data-testid=component-table] tbody tr[data-component]").evaluateAll((rs) => rs.map((r) => r.getAttribute("data-component")));

describe.skipIf(!!noSlapd)(`registry pages${noSlapd ? ` (${noSlapd})` : ""}`, () => {
  test("the list: every component, a search, tag chips (all must match), the total", async () => {
    const { page, errors, close } = await open("bob", "#/registry");
    try {
      await page.locator("tr[data-component=search-ui]").waitFor();
      expect((await rowIds(page)).sort()).toEqual(["ledger", "pay-api", "search-ui"]);
      expect(await page.getByTestId("list-total").textContent()).toBe("1–3 of 3");
      // every word must match somewhere (name, description, tags, owners …)
      await page.getByTestId("registry-search").fill("takes payments");
      await page.waitForFunction(() => document.querySelectorAll("[data-testid=component-table] tbody tr[data-component]").length === 1);
      expect(await rowIds(page)).toEqual(["pay-api"]);
      expect(page.url()).toContain("#/registry?q=takes+payments");
      await page.getByTestId("registry-search").fill("");
      await page.getByTestId("tag-chip").filter({ hasText: /^payments$/ }).click();
      await page.waitForFunction(() => document.querySelectorAll("[data-testid=component-table] tbody tr[data-component]").length === 2);
      expect((await rowIds(page)).sort()).toEqual(["ledger", "pay-api"]);
      // a second chip narrows: both tags must match; the chip is a button, so the keyboard works too
      await page.getByTestId("tag-chip").filter({ hasText: /^api$/ }).focus();
      await page.keyboard.press("Enter");
      await page.waitForFunction(() => document.querySelectorAll("[data-testid=component-table] tbody tr[data-component]").length === 1);
      expect(page.url()).toContain("tag=payments%2Capi");
      await shot(page, "registry-list.png");
      await page.locator("tr[data-component=pay-api] a").click();
      await page.getByTestId("component-name").filter({ hasText: "pay-api" }).waitFor();
      expect(await page.getByTestId("dependents").textContent()).toContain("search-ui");
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  test("import: the dry run lists every problem by row and column and Apply stays off; a clean file applies", async () => {
    const { page, errors, close } = await open("dave", "#/registry/import");
    try {
      const bad = "name,category,owners,depends_on\r\nimp-a,service,user:bob,imp-b\r\nimp-b,database,,\r\nimp-c,spaceship,bob,ghost\r\n";
      await page.getByTestId("import-file").setInputFiles({ name: "bad.csv", mimeType: "text/csv", buffer: Buffer.from(bad) });
      await page.getByTestId("import-dry-run").click();
      await page.getByTestId("import-problems").waitFor();
      const problems = await page.getByTestId("import-problem").evaluateAll((rs) => rs.map((r) => [...r.querySelectorAll("td")].slice(1, 3).map((td) => td.textContent).join(":")));
      expect(problems).toEqual(["4:category", "4:depends_on", "4:owners"]);
      expect(await page.getByTestId("import-report").textContent()).toContain("3 problems in 3 rows: nothing was changed");
      expect(await page.getByTestId("import-apply").isDisabled()).toBe(true);
      await shot(page, "registry-import-dry-run.png");

      const good = "name,category,owners,depends_on\r\nimp-a,service,user:bob,imp-b\r\nimp-b,database,,\r\n";
      await page.getByTestId("import-file").setInputFiles({ name: "good.csv", mimeType: "text/csv", buffer: Buffer.from(good) });
      await page.getByTestId("import-dry-run").click();
      await page.getByTestId("import-report").filter({ hasText: "would create 2" }).waitFor();
      expect((await api("dave", "GET", "/api/registry/components/imp-a")).status).toBe(404);
      await page.getByTestId("import-apply").click();
      await page.getByTestId("import-report").filter({ hasText: "Imported: 2 created" }).waitFor();
      // the progress bar was fed by the NDJSON lines
      expect(await page.getByTestId("import-progress").textContent()).toMatch(/\d+\/\d+/);
      await shot(page, "registry-import-applied.png");
      expect((await api("dave", "GET", "/api/registry/components/imp-a")).body.component.dependsOn).toEqual(["imp-b"]);
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  test("an owner edits (and meets a concurrent change with the current record); a viewer sees no controls on another's", async () => {
    const { page, errors, close } = await open("bob", "#/registry/c/pay-api");
    try {
      await page.getByTestId("edit").click();
      await page.getByTestId("edit-description").fill("takes payments, 24/7");
      await page.getByTestId("edit-lifecycle").selectOption("new");
      await page.getByTestId("save").click();
      await page.getByTestId("saved").waitFor();
      expect(await page.getByTestId("field-description").textContent()).toBe("takes payments, 24/7");
      expect(await page.getByTestId("field-lifecycle").textContent()).toBe("new");

      // bad input is said on the form before anything is sent
      await page.getByTestId("edit").click();
      await page.getByTestId("edit-owners").fill("user:bob, bob");
      await page.getByTestId("save").click();
      expect(await page.getByTestId("save-error").textContent()).toContain('owners: "bob" is neither user:<login> nor group:<name>');
      await page.getByTestId("edit-owners").fill("user:bob");

      // someone else changes it meanwhile: the save is refused with the record as it is now, which can be reloaded
      const cur = (await api("dave", "GET", "/api/registry/components/pay-api")).body.component;
      expect((await api("dave", "PATCH", "/api/registry/components/pay-api", { rev: cur.rev, description: "changed by dave" })).status).toBe(200);
      await page.getByTestId("edit-description").fill("bob's later words");
      await page.getByTestId("save").click();
      await page.getByTestId("conflict-current").filter({ hasText: "changed by dave" }).waitFor();
      expect(await page.getByTestId("save-error").textContent()).toContain("Your changes were not saved");
      await shot(page, "registry-edit-conflict.png");
      await page.getByTestId("reload-current").click();
      expect(await page.getByTestId("edit-description").inputValue()).toBe("changed by dave");

      // not his: no Edit button, said plainly
      await page.goto(`${stack.gateway}/#/registry/c/ledger`);
      await page.getByTestId("read-only").waitFor();
      expect(await page.getByTestId("edit").count()).toBe(0);
      await shot(page, "registry-read-only.png");
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
    // and the door is shut as well as hidden
    const ledger = (await api("bob", "GET", "/api/registry/components/ledger")).body.component;
    expect((await api("bob", "PATCH", "/api/registry/components/ledger", { rev: ledger.rev, description: "x" })).status).toBe(403);
  });

  test("requirements: the owner sets a status with notes and a link; the viewer cannot sign off, the expert does", async () => {
    const owner = await open("bob", "#/registry/c/pay-api/requirements");
    try {
      const row = owner.page.locator("tr[data-requirement=runbook]");
      await row.getByTestId("req-edit").click();
      await owner.page.locator("input[name=status-runbook][value=yes]").check();
      await owner.page.getByTestId("req-notes").fill("on the wiki");
      await owner.page.getByTestId("req-links").fill("https://wiki.example/pay-api/runbook");
      await owner.page.getByTestId("req-save").click();
      await row.getByTestId("req-status").filter({ hasText: "yes" }).waitFor();
      expect(await row.locator("a[href='https://wiki.example/pay-api/runbook']").count()).toBe(1);
      // a viewer holds no expert role: no sign-off offered
      expect(await row.getByTestId("req-signoff").count()).toBe(0);
      expect(owner.errors).toEqual([]);
    } finally {
      await owner.close();
    }
    const expert = await open("alice", "#/registry/c/pay-api/requirements");
    try {
      const row = expert.page.locator("tr[data-requirement=runbook]");
      await row.getByTestId("req-signoff").click();
      await row.getByTestId("req-signed").filter({ hasText: "alice" }).waitFor();
      const signed = (await row.getByTestId("req-signed").textContent())!;
      expect(signed).toContain("(expert)");
      expect(signed).toMatch(/\d{4}-\d\d-\d\d [0-2]\d:[0-5]\d:[0-5]\d/);
      expect(await row.getByTestId("req-signoff").count()).toBe(0);
      await shot(expert.page, "registry-signoff.png");
      expect(expert.errors).toEqual([]);
    } finally {
      await expert.close();
    }
    const d = (await api("bob", "GET", "/api/registry/components/pay-api")).body;
    expect(d.statuses.find((s: { requirement: string }) => s.requirement === "runbook").signedOff).toMatchObject({ by: "alice", role: "expert" });
  });

  test("history: a component's tab (who, when, old → new) and the estate's page with the import", async () => {
    const { page, errors, close } = await open("bob", "#/registry/c/pay-api/history");
    try {
      await page.getByTestId("audit-row").first().waitFor();
      const rows = await page.getByTestId("audit-row").allTextContents();
      expect(rows.some((r) => r.includes("bob (viewer)") && r.includes("description: takes payments → takes payments, 24/7"))).toBe(true);
      expect(rows.some((r) => r.includes("alice (expert)") && r.includes("signedOff"))).toBe(true);
      expect(rows.every((r) => /\d{4}-\d\d-\d\d [0-2]\d:[0-5]\d:[0-5]\d/.test(r))).toBe(true);
      await shot(page, "registry-history.png");
      await page.getByTestId("nav-audit").click();
      await page.waitForFunction(() => location.hash === "#/registry/audit");
      // the import is one entry of its own (the file, how many created) beside each component it created
      await page.getByTestId("audit-row").filter({ hasText: "file: ∅ → good.csv" }).waitFor();
      expect(await page.getByTestId("audit-row").filter({ hasText: "created: ∅ → 2" }).count()).toBe(1);
      expect(await page.getByTestId("audit-row").filter({ hasText: "dave (admin)" }).count()).toBeGreaterThan(0);
      await shot(page, "registry-estate-history.png");
      // readiness across the estate: pay-api has one of two requirements met and signed off
      await page.getByTestId("nav-readiness").click();
      await page.getByTestId("estate-readiness").waitFor();
      expect(await page.locator("tr", { hasText: "pay-api" }).textContent()).toContain("50%");
      await shot(page, "registry-readiness.png");
      // and back to the map, whose URL state (the query string) the registry never touched
      await page.getByTestId("to-map").click();
      await page.getByTestId("open-registry").waitFor();
      await shot(page, "registry-map-tab.png");
      expect(await page.getByTestId("registry").count()).toBe(0);
      await page.getByTestId("open-registry").click();
      await page.getByTestId("registry").waitFor();
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });

  test("the map where drift cannot be read (no topology behind the registry): no badges, no error, one read per 30 s", async () => {
    // the premise: this stack has a registry and no topology service, so drift answers unavailable
    expect((await api("bob", "GET", "/api/registry/drift")).status).toBe(503);
    const { page, errors, close } = await open("bob", "#/registry");
    const reads: string[] = [];
    page.on("request", (r) => {
      if (r.url().includes("/api/registry/drift")) reads.push(r.url());
    });
    try {
      await page.getByTestId("to-map").click();
      await page.getByTestId("map-canvas").waitFor();
      await waitForReads(reads, 1);
      // unanswerable drift is not retried before its 30 s are up
      await page.waitForTimeout(4_000);
      expect(reads.length).toBe(1);
      expect(await page.getByTestId("map-canvas").getAttribute("data-drift")).toBe("0");
      expect(await page.getByRole("alert").filter({ hasText: /drift|registry/i }).count()).toBe(0);
      await shot(page, "registry-map-no-drift.png");
      expect(errors).toEqual([]);
    } finally {
      await close();
    }
  });
});

async function waitForReads(reads: string[], n: number): Promise<void> {
  const until = Date.now() + 15_000;
  while (reads.length < n && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  expect(reads.length).toBe(n);
}
