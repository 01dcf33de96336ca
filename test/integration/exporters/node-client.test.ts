/** The Node client (clients/node), run by `node` itself: a JetStream durable, and the WebSocket feed's gap recovery. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { TopologyDelta } from "../../../pipelines/contracts/topology.ts";
import { connectBus, publishEvent } from "../../../services/shared/bus.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const node = Bun.which("node");
let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats.stop();
});

const delta = (rev: number) => ({ schema: "topology.delta.v1" as const, rev, at: 1, nodesUpserted: [{ id: `host:n${rev}`, kind: "host" as const, name: `n${rev}`, source: "s", props: {}, firstSeen: 1, lastSeen: 1 }], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [] });

function run(args: string[]) {
  const p = Bun.spawn([node!, "clients/node/example.mjs", ...args], { stdout: "pipe", stderr: "pipe" });
  const lines: Record<string, unknown>[] = [];
  void (async () => {
    let buf = "";
    for await (const chunk of p.stdout) {
      buf += new TextDecoder().decode(chunk);
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        lines.push(JSON.parse(buf.slice(0, i)));
        buf = buf.slice(i + 1);
      }
    }
  })();
  return { p, lines };
}

test.skipIf(!node)("JetStream durable: a restarted subscriber continues where it stopped (node)", async () => {
  const prefix = uniquePrefix("nodec");
  const bus = await connectBus({ url: nats.url, prefix, name: "node-client-test" });
  try {
    for (let r = 1; r <= 5; r++) await publishEvent(bus, bus.topo.subjects.topologyDelta, TopologyDelta, "topology.delta.v1", delta(r), `r${r}`);
    let c = run(["js", nats.url, prefix, "itsm"]);
    await waitFor(() => c.lines.filter((l) => l.event === "delta").length === 5, "first five deltas", 20_000);
    c.p.kill("SIGTERM");
    await c.p.exited;
    for (let r = 6; r <= 8; r++) await publishEvent(bus, bus.topo.subjects.topologyDelta, TopologyDelta, "topology.delta.v1", delta(r), `r${r}`);
    c = run(["js", nats.url, prefix, "itsm"]);
    await waitFor(() => c.lines.filter((l) => l.event === "delta").length === 3, "the three new deltas", 20_000);
    expect(c.lines.filter((l) => l.event === "delta").map((l) => l.rev)).toEqual([6, 7, 8]);
    c.p.kill("SIGTERM");
    await c.p.exited;
  } finally {
    await bus.close();
  }
}, 60_000);

test.skipIf(!node)("WebSocket: a gap in revs makes the client reconnect for a fresh snapshot; the token is sent (node)", async () => {
  // a stand-in for the gateway's /ws: the first connection skips rev 3, the second is whole
  let conns = 0;
  const auths: (string | null)[] = [];
  const srv = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: (req, s) => (auths.push(req.headers.get("authorization")), s.upgrade(req) ? undefined : new Response("no", { status: 426 })),
    websocket: {
      open: (ws) => {
        const n = ++conns;
        const snapRev = n === 1 ? 1 : 3;
        ws.send(JSON.stringify({ schema: "topology.snapshot.v1", rev: snapRev, at: 1, nodes: [], edges: [] }));
        for (const r of n === 1 ? [2, 4] : [4, 5]) ws.send(JSON.stringify(delta(r)));
      },
      message: () => {},
    },
  });
  const c = run(["ws", `http://127.0.0.1:${srv.port}`, "tok123"]);
  try {
    await waitFor(() => c.lines.some((l) => l.event === "delta" && l.rev === 5), "rev 5 after the resync", 20_000);
    expect(c.lines.map((l) => `${l.event}:${l.rev ?? ""}`)).toEqual(["snapshot:1", "delta:2", "resync:", "snapshot:3", "delta:4", "delta:5"]);
    expect(auths[0]).toBe("Bearer tok123");
  } finally {
    c.p.kill("SIGTERM");
    await c.p.exited;
    srv.stop(true);
  }
}, 60_000);
