/** The gateway's HTTP + WebSocket surface (Bun.serve): snapshot, Cypher, health, /ws, the built dashboard; feature
 * modules add their routes through `extraRoutes` (services/gateway/routes/). Routes throw; the server's `error` hook
 * answers through toHttpError (services/shared/http.ts). */
import { existsSync, statSync } from "node:fs";
import { join, normalize, resolve } from "node:path";
import { snapshotOf } from "../../pipelines/stages/apply-delta.ts";
import type { Logger } from "../shared/log.ts";
import type { TopologyMirror } from "../topology/client.ts";
import { CypherRequest, CypherResponse } from "../../pipelines/contracts/cypher.ts";
import { decode } from "../../pipelines/codec.ts";
import type { Bus } from "../shared/bus.ts";
import { GRAPH_STATUS, HttpError, httpErrors, parseBody, type Routes } from "../shared/http.ts";
import { healthFrameCoalescer, type HealthOverlay } from "./health.ts";

/** Read-only Cypher is answered by the graph store's owner (the topology service) over NATS request/reply. */
async function cypher(bus: Bus, req: Request): Promise<Response> {
  const q = await parseBody(CypherRequest, req, '{"query": "MATCH …", "params": {…}}');
  let reply;
  try {
    reply = await bus.nc.request(bus.topo.subjects.cypherRpc, new TextEncoder().encode(JSON.stringify(q)), { timeout: q.timeoutMs + 5000 });
  } catch (e) {
    throw new HttpError(503, `graph store unavailable: ${(e as Error).message}`);
  }
  const r = decode(CypherResponse, "cypher.v1", reply.data, 256 * 1024 * 1024);
  if (r.ok) return Response.json(r);
  return Response.json(r, { status: GRAPH_STATUS[r.code as keyof typeof GRAPH_STATUS] ?? 500 });
}

export function startGatewayServer(deps: {
  bus: Bus;
  mirror: TopologyMirror;
  log: Logger;
  host: string;
  port: number;
  dashboardDir: string;
  extraRoutes?: Routes;
  health?: HealthOverlay;
  /** health deltas to browsers are coalesced to at most one frame per this many ms under load (default 50) */
  healthCoalesceMs?: number;
}) {
  const { mirror } = deps;
  const root = resolve(deps.dashboardDir);

  const server = Bun.serve({
    hostname: deps.host,
    port: deps.port,
    routes: {
      ...deps.extraRoutes,
      "/healthz": () => {
        const m = mirror.mirror();
        return Response.json({ status: mirror.synced() ? "ok" : "syncing", rev: m.rev, nodes: m.nodes.size, edges: m.edges.size }, { status: mirror.synced() ? 200 : 503 });
      },
      // before the mirror has its first snapshot it is empty, and an empty graph would read as "nothing is running"
      "/api/snapshot": () => (mirror.synced() ? Response.json(snapshotOf(mirror.mirror(), Date.now())) : Response.json({ error: "not synced" }, { status: 503 })),
      "/api/cypher": { POST: (req) => cypher(deps.bus, req) },
    },
    error: httpErrors(deps.log),
    fetch(req, srv) {
      const url = new URL(req.url);
      if (url.pathname === "/ws") {
        if (srv.upgrade(req)) return undefined;
        return new Response("expected a WebSocket upgrade", { status: 426 });
      }
      if (url.pathname.startsWith("/api/")) return Response.json({ error: `no such endpoint: ${url.pathname}` }, { status: 404 });
      return serveStatic(root, url.pathname);
    },
    websocket: {
      // Wallboards on slow links must not make the gateway buffer without bound: drop them and let them resync.
      backpressureLimit: 64 * 1024 * 1024,
      closeOnBackpressureLimit: true,
      open(ws) {
        if (mirror.synced()) ws.send(JSON.stringify(snapshotOf(mirror.mirror(), Date.now())));
        // health with impact and edge states; not before the overlay has the alerts service's state, so a browser
        // reconnecting to a restarted gateway keeps its wallboard instead of being told "all clear"
        if (deps.health?.synced()) ws.send(JSON.stringify(deps.health.state()));
        ws.subscribe("topology");
      },
      message() {
        // The stream is one-way; clients have nothing to say yet.
      },
    },
  });

  mirror.onFrame((f) => {
    const sent = server.publish("topology", JSON.stringify(f));
    if (sent === 0 && server.subscriberCount("topology") > 0) deps.log.warn("delta dropped for some clients", { rev: f.rev });
  });

  if (deps.health) {
    // (a tick still pending when the server stops publishes to no one: publish returns 0)
    const health = healthFrameCoalescer((f) => server.publish("topology", JSON.stringify(f)), { windowMs: deps.healthCoalesceMs });
    deps.health.onFrame((f) => health.push(f));
  }

  return server;
}

function serveStatic(root: string, pathname: string): Response {
  const rel = normalize(decodeURIComponent(pathname)).replace(/^(\.\.[/\\])+/, "");
  let file = join(root, rel);
  if (!file.startsWith(root)) return new Response("not found", { status: 404 });
  if (!existsSync(file) || statSync(file).isDirectory()) file = join(root, "index.html");
  if (!existsSync(file)) return new Response(`dashboard not built: run \`npm run build:dashboard\` (looked in ${root})`, { status: 503 });
  return new Response(Bun.file(file));
}
