/**
 * The Cypher console in headless Chromium against the whole platform (the graph store is Kuzu, queried read-only
 * through the gateway): a query with a parameter answers a table and a graph of the nodes and relationships it
 * returned; a syntax error is shown with its line and column marked under the query; a write is refused.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Browser } from "playwright-core";
import type { Stack } from "../../helpers/stack.ts";
import { ensureDashboardBuilt, launchChromium, openPage, shot, startDemoStack } from "./stack-page.ts";

let stack: Stack & { cleanup: () => void };
let browser: Browser;

beforeAll(async () => {
  ensureDashboardBuilt();
  stack = await startDemoStack();
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  stack?.cleanup();
});

test("a parameterised query answers a table and a graph; an error shows its line and column; a write is refused", async () => {
  const { page, errors, close } = await openPage(browser, stack.dashboard);
  try {
    await page.getByTestId("open-cypher-console").click();
    await page.getByTestId("cypher-console").waitFor();

    // hosts of the db tier and what they run: a parameter, nodes and relationships
    await page.getByTestId("cypher-query").fill("MATCH (h:Entity)-[r:RUNS]->(s:Entity)\nWHERE h.kind = $kind AND h.name STARTS WITH $prefix\nRETURN h, r, s\nLIMIT 40");
    await page.getByTestId("cypher-params").fill('{"kind": "host", "prefix": "sim-db-"}');
    await page.getByTestId("cypher-run").click();
    await page.getByTestId("cypher-table").waitFor({ timeout: 20_000 });
    const header = await page.locator('[data-testid="cypher-table"] th').allTextContents();
    expect(header).toEqual(["h", "r", "s"]);
    const rows = await page.locator('[data-testid="cypher-table"] tbody tr').count();
    expect(rows).toBeGreaterThanOrEqual(4);
    expect(await page.locator('[data-testid="cypher-table"] tbody tr').first().textContent()).toContain("sim-db-");
    expect(await page.getByTestId("cypher-stat").textContent()).toContain(`${rows} rows`);
    await shot(page, "cypher-table.png");

    await page.getByTestId("cypher-tab-graph").click();
    const graph = page.getByTestId("cypher-graph");
    await graph.waitFor();
    // every row's host and service, each once; a RUNS line per row
    expect(Number(await graph.getAttribute("data-rels"))).toBe(rows);
    expect(Number(await graph.getAttribute("data-nodes"))).toBeGreaterThan(rows);
    expect(await page.locator('[data-cypher-node^="host:sim-db-"]').count()).toBeGreaterThanOrEqual(1);
    await shot(page, "cypher-graph.png");

    // a clicked node becomes the selection (the drawer shows it)
    const host = page.locator('[data-cypher-node^="host:sim-db-"]').first();
    const hostId = (await host.getAttribute("data-cypher-node"))!;
    await host.click();
    await page.getByTestId("details-id").filter({ hasText: hostId }).waitFor();

    // a syntax error on the second line: where it is, marked under the query
    await page.getByTestId("cypher-query").fill("MATCH (n:Entity)\nRETRN n.id");
    await page.getByTestId("cypher-params").fill("");
    await page.getByTestId("cypher-query").press("Control+Enter");
    const err = page.getByTestId("cypher-error");
    await err.waitFor({ timeout: 20_000 });
    expect(await err.textContent()).toContain("at line 2, column 1");
    const pos = (await page.getByTestId("cypher-error-pos").textContent())!;
    expect(pos).toContain("2 | RETRN n.id");
    expect(pos).toMatch(/\|\s\^/);
    await shot(page, "cypher-error.png");

    // read-only: a write is refused by the graph store
    await page.getByTestId("cypher-query").fill("CREATE (n:Entity {id: 'console-write'}) RETURN n");
    await page.getByTestId("cypher-run").click();
    await page.waitForFunction(() => document.querySelector('[data-testid="cypher-error"]')?.textContent?.includes("read_only"), undefined, { timeout: 20_000 });

    // parameters that are not a JSON object are said so, nothing is sent
    await page.getByTestId("cypher-params").fill("[1, 2]");
    await page.getByTestId("cypher-run").click();
    await page.waitForFunction(() => document.querySelector('[data-testid="cypher-error"]')?.textContent?.includes("must be a JSON object"));
    expect(errors).toEqual([]);
  } finally {
    await close();
  }
}, 240_000);
