/**
 * The built dashboard (dashboard/dist) in Chromium against a real gateway (its mirror over a real nats-server, fed by
 * a fake topology service) whose frame limit is tiny: the snapshot arrives in hundreds of chunks, the page says how far
 * it is ("Loading topology: n / total nodes and edges") and then shows the whole graph, with deltas sent meanwhile.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { startGatewayServer } from "../../../services/gateway/http.ts";
// ORRERY_AUTH=off explicitly: these tests are not about who may pass (test/integration/identity/ is)
import { openGate } from "../../../services/identity/client.ts";
import { connectBus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startMirror } from "../../../services/topology/client.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix, waitFor } from "../../helpers/tmp.ts";
import { churnDelta, estate, fakeTopologyService } from "../gateway/estate.ts";

const ROOT = join(import.meta.dir, "../../..");
const DIST = join(ROOT, "dashboard", "dist");

let nats: NatsServer;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(join(DIST, "index.html"))) {
    const r = Bun.spawnSync([join(ROOT, "node_modules/.bin/vite"), "build"], { cwd: join(ROOT, "dashboard"), stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`dashboard build failed: ${r.stderr.toString()}`);
  }
  nats = await startNats();
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
});

afterAll(async () => {
  await browser?.close();
  await nats?.stop();
});

test("a snapshot streamed in chunks shows its progress, then the whole graph with the deltas sent meanwhile", async () => {
  expect(statSync(join(DIST, "index.html")).isFile()).toBe(true);
  const truth = estate({ hosts: 300, procs: 5, rev: 10, pad: 300 });
  const log = makeLogger("gateway-test", true);
  const bus = await connectBus({ url: nats.url, prefix: uniquePrefix("dash"), name: "test" });
  const topo = fakeTopologyService(bus, truth);
  const mirror = await startMirror(bus, log);
  const server = startGatewayServer({ auth: openGate(), bus, mirror, log, host: "127.0.0.1", port: 0, dashboardDir: DIST, maxFrameBytes: 8 * 1024 });
  const context = await browser.newContext({ viewport: { width: 1600, height: 900 } });
  try {
    await waitFor(() => mirror.synced(), "gateway mirror synced");
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    // every text the progress indicator shows, however briefly
    await page.addInitScript(() => {
      const seen: string[] = [];
      (window as unknown as { progressSeen: string[] }).progressSeen = seen;
      new MutationObserver(() => {
        const t = document.querySelector('[data-testid="load-progress"]')?.textContent?.trim().replace(/\s+/g, " ");
        if (t && seen.at(-1) !== t) seen.push(t);
      }).observe(document, { subtree: true, childList: true, characterData: true });
    });
    // the snapshot's total: the estate, plus the churn host once the first delta is in
    const totals = [0, 1].map((k) => (truth.nodes.size + truth.edges.size + k).toLocaleString("en")).join("|");
    // deltas published while the page loads the snapshot
    let publishing = true;
    const churn = (async () => {
      while (publishing) {
        await topo.publish(churnDelta(truth.rev + 1));
        await Bun.sleep(20);
      }
    })();
    await page.goto(`http://127.0.0.1:${server.port}/`);
    await page.getByTestId("ws-status").filter({ hasText: "live" }).waitFor({ timeout: 30_000 });
    publishing = false;
    await churn;

    const seen = await page.evaluate(() => (window as unknown as { progressSeen: string[] }).progressSeen);
    console.log(`progress texts seen: ${seen.length}, first "${seen[0]}", last "${seen.at(-1)}"`);
    expect(seen.length).toBeGreaterThan(1);
    expect(seen[0]).toMatch(new RegExp(`^Loading topology: [\\d,]+ / (${totals}) nodes and edges$`));
    expect(seen.at(-1)).toMatch(/^Loading topology: [\d,]+ \/ [\d,]+ nodes and edges$/);
    // the whole estate, the deltas included: the churn host of the last rev is there, its predecessors gone
    await page.waitForFunction(([n]) => document.querySelector('[data-testid="rev"]')?.textContent?.trim() === String(n), [truth.rev] as const, { timeout: 15_000 });
    expect(await page.getByTestId("node-count").textContent()).toBe(String(truth.nodes.size));
    expect(await page.getByTestId("edge-count").textContent()).toBe(String(truth.edges.size));
    expect(await page.getByTestId("load-progress").count()).toBe(0);
    expect(errors).toEqual([]);
  } finally {
    await context.close();
    server.stop(true);
    await mirror.stop();
    topo.stop();
    await bus.close();
  }
}, 120_000);
