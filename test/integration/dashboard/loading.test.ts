/**
 * The built dashboard (dashboard/dist) in Chromium against the real gateway (its mirror over a real nats-server, fed by
 * a fake topology service, and its view hub): the page subscribes to a view instead of loading the raw graph, so an
 * estate of 3,000 hosts arrives as a few marks (and not one byte of the raw stream), and the deltas
 * published while it loads are in what it shows: the churn host of the last rev is counted, its predecessors are not.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { startGatewayServer } from "../../../services/gateway/http.ts";
import { ViewHub } from "../../../services/gateway/views.ts";
import { openGate } from "../../../services/identity/client.ts";
import { connectBus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startMirror } from "../../../services/topology/client.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix, waitFor } from "../../helpers/tmp.ts";
import { churnDelta, estate, fakeTopologyService } from "../gateway/estate.ts";
import { snapshotOf } from "../../../pipelines/stages/apply-delta.ts";
import { DIST, SHOTS, buildIfStale } from "./browser.ts";

let nats: NatsServer;
let browser: Browser;

beforeAll(async () => {
  buildIfStale();
  nats = await startNats();
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await nats?.stop();
});

test("a large estate loads as a view of a few marks, with the deltas sent meanwhile, and no raw graph in the page", async () => {
  const truth = estate({ hosts: 3000, procs: 3, rev: 10, pad: 100 });
  const log = makeLogger("gateway-test", true);
  const bus = await connectBus({ url: nats.url, prefix: uniquePrefix("dash"), name: "test" });
  const topo = fakeTopologyService(bus, truth);
  const mirror = await startMirror(bus, log);
  const views = new ViewHub({ mirror, log });
  const server = startGatewayServer({ auth: openGate(), bus, mirror, log, host: "127.0.0.1", port: 0, dashboardDir: DIST, views, maxFrameBytes: 64 * 1024 });
  const context = await browser.newContext({ viewport: { width: 1600, height: 900 } });
  try {
    await waitFor(() => mirror.synced(), "gateway mirror synced");
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    // every byte the page's socket receives, and of it the view frames
    let received = 0;
    let viewBytes = 0;
    page.on("websocket", (ws) =>
      ws.on("framereceived", (f) => {
        const n = typeof f.payload === "string" ? f.payload.length : f.payload.byteLength;
        received += n;
        if (typeof f.payload === "string" && f.payload.startsWith('{"schema":"view.')) viewBytes += n;
      }),
    );
    let publishing = true;
    const churn = (async () => {
      while (publishing) {
        await topo.publish(churnDelta(truth.rev + 1));
        await Bun.sleep(20);
      }
    })();
    await page.goto(`http://127.0.0.1:${server.port}/`);
    await page.getByTestId("ws-status").filter({ hasText: "live" }).waitFor({ timeout: 30_000 });
    await Bun.sleep(500);
    publishing = false;
    await churn;

    // the estate plus the churn host of the last rev (its predecessors removed again)
    await page.waitForFunction((n) => document.querySelector('[data-testid="summary-hosts"]')?.textContent === n, (3000 + 1).toLocaleString("en"), { timeout: 15_000 });
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="map-canvas"]')?.getAttribute("data-drawn")) > 0, undefined, { timeout: 15_000 });
    const drawn = Number(await page.getByTestId("map-canvas").getAttribute("data-drawn"));
    expect(drawn).toBeLessThan(50);
    // a view, not the raw snapshot (3,000 hosts with 9,000 processes and listeners: megabytes): the page's socket is a
    // view socket from the start (/ws?view), so not even a slice of the raw stream arrives
    const raw = JSON.stringify(snapshotOf(truth, Date.now())).length;
    console.log(`raw snapshot ${raw.toLocaleString("en")} B; the page received ${received.toLocaleString("en")} B, of it view frames ${viewBytes.toLocaleString("en")} B; marks drawn: ${drawn}`);
    expect(viewBytes).toBeLessThan(200_000);
    expect(received).toBe(viewBytes);
    await page.screenshot({ path: join(SHOTS, "loading-3000-hosts.png") });
    expect(errors).toEqual([]);
  } finally {
    await context.close();
    views.stop();
    server.stop(true);
    await mirror.stop();
    topo.stop();
    await bus.close();
  }
}, 120_000);
