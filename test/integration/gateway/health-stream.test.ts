/**
 * The health state is the gateway's other large frame (an outage at 10k hosts marks tens of thousands of entities
 * impacted): with a tiny frame limit a browser gets it as begin/chunks/end, each under the limit, and the health
 * deltas that cross it on the wire count only past its seq. The gateway's health overlay is the real one, over a real
 * nats-server, answered by a fake alerts service.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { HealthDelta, HealthEntry, HealthState } from "../../../pipelines/contracts/health.ts";
import { WsFrame } from "../../../pipelines/contracts/topology.ts";
import { alertSubjects } from "../../../pipelines/streams.ts";
import { startGatewayServer } from "../../../services/gateway/http.ts";
// ORRERY_AUTH=off explicitly: these tests are not about who may pass (test/integration/identity/ is)
import { openGate } from "../../../services/identity/client.ts";
import { startHealthOverlay } from "../../../services/gateway/health.ts";
import { connectBus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startMirror } from "../../../services/topology/client.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";
import { estate, fakeTopologyService } from "./estate.ts";

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.stop();
});

test("a large health state streams in frames under the limit; health deltas crossing it apply past its seq", async () => {
  const truth = estate({ hosts: 20, procs: 2, rev: 3 });
  const log = makeLogger("gateway-test", true);
  const bus = await connectBus({ url: nats.url, prefix: uniquePrefix("ghs"), name: "test" });
  const topo = fakeTopologyService(bus, truth);
  const subjects = alertSubjects(bus.topo);
  // the alerts service's state: 4000 entities in alert, with impact on each
  const SEQ = 7;
  // (40 alert fingerprints each make it ~7 MB, more than loopback's kernel buffers: the stream waits on the client)
  const fingerprints = (i: number) => Array.from({ length: 40 }, (_, k) => `alert-fingerprint-${i}-${k}-${"f".repeat(16)}`);
  const entities: HealthEntry[] = Array.from({ length: 4000 }, (_, i) => ({ id: `process:h${i}:1`, health: "critical", alerts: fingerprints(i) }));
  const state: HealthState = {
    schema: "health.state.v1",
    seq: SEQ,
    at: 1,
    entities,
    edges: [],
    impact: entities.map((e, i) => ({ id: `caller:${i}`, health: "critical", hops: 1, causes: [{ id: e.id, health: "critical", hops: 1 }], causesTotal: 1 })),
  };
  // answered in parts, as the alerts service does past NATS's payload limit
  const rpc = bus.nc.subscribe(subjects.rpc, {
    callback: (_e, m) => {
      const parts = 20;
      const per = state.entities.length / parts;
      for (let p = 0; p < parts; p++) {
        const part = { ...state, entities: state.entities.slice(p * per, (p + 1) * per), impact: state.impact.slice(p * per, (p + 1) * per), part: p, parts };
        m.respond(new TextEncoder().encode(JSON.stringify(part)));
      }
    },
  });
  const mirror = await startMirror(bus, log);
  const health = startHealthOverlay(bus, log);
  const tmp = tempDir();
  const LIMIT = 4096;
  const server = startGatewayServer({ auth: openGate(), bus, mirror, log, host: "127.0.0.1", port: 0, dashboardDir: tmp.dir, health, maxFrameBytes: LIMIT, healthCoalesceMs: 0 });
  let ws: WebSocket | null = null;
  try {
    await waitFor(() => mirror.synced() && health.synced(), "mirror and health overlay synced");
    const delta = (seq: number, i: number): HealthDelta => ({
      schema: "health.delta.v1",
      seq,
      at: seq,
      entities: [{ id: `process:h${i}:1`, health: "ok", alerts: [] }],
      edges: [],
      edgesCleared: [],
      impact: [],
      impactCleared: [`caller:${i}`],
    });

    const schemas: string[] = [];
    let maxHealthFrame = 0;
    let pending: { seq: number; entities: Map<string, string>; impact: Set<string>; chunks: number } | null = null;
    let current: { seq: number; entities: Map<string, string>; impact: Set<string> } | null = null;
    const held: HealthDelta[] = [];
    let heldCount = 0;
    const fold = (s: { seq: number; entities: Map<string, string>; impact: Set<string> }, d: HealthDelta) => {
      if (d.seq <= s.seq) return;
      for (const id of d.impactCleared) s.impact.delete(id);
      for (const e of d.entities) e.health === "ok" && !e.alerts.length ? s.entities.delete(e.id) : s.entities.set(e.id, e.health);
      for (const e of d.impact) s.impact.add(e.id);
      s.seq = d.seq;
    };
    ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws`);
    ws.onmessage = (ev) => {
      const text = String(ev.data);
      const f = WsFrame.parse(JSON.parse(text));
      schemas.push(f.schema);
      if (f.schema.startsWith("health.state")) maxHealthFrame = Math.max(maxHealthFrame, Buffer.byteLength(text));
      switch (f.schema) {
        case "health.state.begin.v1":
          pending = { seq: f.seq, entities: new Map(), impact: new Set(), chunks: 0 };
          // deltas now reach the gateway while the state is still on its way
          for (let i = 1; i <= 10; i++) bus.nc.publish(subjects.health, new TextEncoder().encode(JSON.stringify(delta(SEQ + i, i))));
          break;
        case "health.state.chunk.v1":
          for (const e of f.entities) pending!.entities.set(e.id, e.health);
          for (const e of f.impact) pending!.impact.add(e.id);
          pending!.chunks++;
          break;
        case "health.state.end.v1":
          expect(f.chunks).toBe(pending!.chunks);
          current = pending!;
          for (const d of held) fold(current, d);
          break;
        case "health.delta.v1":
          if (current) fold(current, f);
          else {
            heldCount++;
            held.push(f);
          }
          break;
      }
    };
    await waitFor(() => current?.seq === SEQ + 10, "state and every delta applied", 30_000);
    const c = current!;
    expect(schemas.filter((s) => s === "health.state.v1")).toEqual([]);
    expect(schemas.filter((s) => s === "health.state.chunk.v1").length).toBeGreaterThan(50);
    expect(maxHealthFrame).toBeLessThanOrEqual(LIMIT);
    expect(heldCount).toBeGreaterThan(0);
    // the 10 deltas cleared entities 1..10 and their impact; the rest is the state as sent
    expect(c.entities.size).toBe(4000 - 10);
    expect(c.impact.size).toBe(4000 - 10);
    expect(c.entities.has("process:h1:1")).toBe(false);
    expect(c.entities.get("process:h11:1")).toBe("critical");
  } finally {
    ws?.close();
    server.stop(true);
    health.stop();
    rpc.unsubscribe();
    await mirror.stop();
    topo.stop();
    await bus.close();
    tmp.cleanup();
  }
}, 60_000);
