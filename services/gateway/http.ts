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
import { healthStateFrames, SocketSender, topologySnapshotFrames } from "./snapshot-stream.ts";
import type { ServerWebSocket } from "bun";
import type { TopologyDelta } from "../../pipelines/contracts/topology.ts";
import type { HealthDelta } from "../../pipelines/contracts/health.ts";
import type { Gate, SocketLease } from "../identity/client.ts";
import { leaveRawStream, type ViewHub } from "./views.ts";

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

/**
 * Sized for a 10k-host estate (a ~134 MB snapshot): 1 MiB frames make ~130 chunks a browser parses without a long
 * stall; 64 MiB of backpressure holds minutes of deltas at churn for a client that reads slowly, while a snapshot
 * stream itself never buffers more than a frame or two.
 */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024;
export const DEFAULT_BACKPRESSURE_LIMIT = 64 * 1024 * 1024;

interface SocketData {
  openedAt: number;
  /** `/ws?view`: the client will subscribe to a view, so the raw stream is not started for it (views.ts) */
  viewOnly?: boolean;
  /** set in `open` */
  sender?: SocketSender;
  /** the credentials it was opened with: the socket is closed when they end (logout, revocation, expiry) */
  lease?: SocketLease;
  unwatch?: () => void;
}

export function startGatewayServer(deps: {
  bus: Bus;
  mirror: TopologyMirror;
  log: Logger;
  host: string;
  port: number;
  dashboardDir: string;
  extraRoutes?: Routes;
  /** who may pass each door: every route and the WebSocket upgrade (authGate, or openGate for ORRERY_AUTH=off) */
  auth: Gate;
  health?: HealthOverlay;
  /** view subscriptions (views.ts): a socket that subscribes leaves the raw stream */
  views?: ViewHub;
  /** health deltas to browsers are coalesced to at most one frame per this many ms under load (default 50) */
  healthCoalesceMs?: number;
  /** largest WebSocket frame of a snapshot or health state, in bytes (larger states are streamed in chunks) */
  maxFrameBytes?: number;
  /** bytes a WebSocket may have buffered before the gateway closes it as a slow client */
  backpressureLimit?: number;
}) {
  const { mirror } = deps;
  const root = resolve(deps.dashboardDir);

  const maxFrameBytes = deps.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const backpressureLimit = deps.backpressureLimit ?? DEFAULT_BACKPRESSURE_LIMIT;
  const sockets = new Set<ServerWebSocket<SocketData>>();

  const server = Bun.serve<SocketData, string>({
    hostname: deps.host,
    port: deps.port,
    // every route of the table behind its role (services/identity/gate.ts), in this one place
    routes: deps.auth.guard({
      ...deps.extraRoutes,
      "/healthz": () => {
        const m = mirror.mirror();
        return Response.json({ status: mirror.synced() ? "ok" : "syncing", rev: m.rev, nodes: m.nodes.size, edges: m.edges.size }, { status: mirror.synced() ? 200 : 503 });
      },
      // before the mirror has its first snapshot it is empty, and an empty graph would read as "nothing is running"
      "/api/snapshot": () => (mirror.synced() ? Response.json(snapshotOf(mirror.mirror(), Date.now())) : Response.json({ error: "not synced" }, { status: 503 })),
      "/api/cypher": { POST: (req) => cypher(deps.bus, req) },
    }),
    error: httpErrors(deps.log),
    fetch(req, srv) {
      const url = new URL(req.url);
      if (url.pathname === "/ws") {
        const denied = deps.auth.checkUpgrade(req, srv);
        if (denied) return denied;
        if (srv.upgrade(req, { data: { openedAt: Date.now(), viewOnly: url.searchParams.has("view"), lease: deps.auth.lease(req) } })) return undefined;
        return new Response("expected a WebSocket upgrade", { status: 426 });
      }
      if (url.pathname.startsWith("/api/")) return Response.json({ error: `no such endpoint: ${url.pathname}` }, { status: 404 });
      return serveStatic(root, url.pathname);
    },
    websocket: {
      // Over the limit a frame is dropped (send returns 0) and the SocketSender closes that socket and says why;
      // Bun's own close on the limit would close it without a word.
      backpressureLimit,
      closeOnBackpressureLimit: false,
      open(ws) {
        ws.data.unwatch = ws.data.lease?.watch((code, reason) => ws.close(code, reason));
        const sender = new SocketSender(ws, {
          backpressureLimit,
          onSlow: (s) => deps.log.warn("slow WebSocket client closed", { remote: ws.remoteAddress, ...s }),
        });
        ws.data.sender = sender;
        if (ws.data.viewOnly) return;
        sockets.add(ws);
        if (mirror.synced()) sender.stream("topology", snapshotNow);
        // health with impact and edge states; not before the overlay has the alerts service's state, so a browser
        // reconnecting to a restarted gateway keeps its wallboard instead of being told "all clear"
        if (deps.health?.synced()) sender.stream("health", healthNow);
      },
      drain(ws) {
        ws.data.sender?.drain();
      },
      message(ws, msg) {
        // view.subscribe / view.unsubscribe (views.ts): a view socket gets view frames only, the raw stream again after
        const sender = ws.data.sender;
        if (!sender || !deps.views) return;
        const mode = deps.views.message(sender, msg);
        if (mode === "view" && sockets.delete(ws)) leaveRawStream(sender);
        else if (mode === "raw" && !sockets.has(ws)) {
          sockets.add(ws);
          if (mirror.synced()) sender.stream("topology", snapshotNow);
          if (deps.health?.synced()) sender.stream("health", healthNow);
        }
      },
      close(ws, code, reason) {
        ws.data.unwatch?.();
        sockets.delete(ws);
        if (ws.data.sender) deps.views?.close(ws.data.sender);
        const { sender } = ws.data;
        if (sender?.closed) return; // closed by the sender, already logged
        sender?.closedBySocket();
        if (code !== 1000 && code !== 1001 && code !== 1005) deps.log.info("WebSocket client gone", { remote: ws.remoteAddress, code, reason, connectedMs: Date.now() - ws.data.openedAt });
      },
    },
  });

  // The state each stream sends is taken when its turn comes on that socket (see SocketSender.stream).
  const snapshotNow = () => {
    const m = mirror.mirror();
    return topologySnapshotFrames({ rev: m.rev, nodes: [...m.nodes.values()], edges: [...m.edges.values()] }, Date.now(), maxFrameBytes);
  };
  const healthNow = () => healthStateFrames(deps.health!.state(), maxFrameBytes);
  // Deltas are bounded upstream (topology: 1500 items, health: one NATS message, though the coalescer may merge a
  // burst of them), so they go as they are; one over the frame limit is said, at most once a minute.
  let oversizeWarnedAt = -Infinity;
  const live = (f: TopologyDelta | HealthDelta) => {
    const frame = JSON.stringify(f);
    if (frame.length > maxFrameBytes && performance.now() - oversizeWarnedAt > 60_000) {
      oversizeWarnedAt = performance.now();
      deps.log.warn("delta frame over the WebSocket frame limit", { schema: f.schema, bytes: Buffer.byteLength(frame), maxFrameBytes });
    }
    for (const ws of sockets) ws.data.sender?.send(frame);
  };

  mirror.onFrame((f) => {
    // a resync: every browser gets the new snapshot in its own stream, never as one frame of the whole graph
    if (f.schema === "topology.snapshot.v1") for (const ws of sockets) ws.data.sender?.stream("topology", snapshotNow);
    else live(f);
  });

  if (deps.health) {
    // (a tick still pending when the server stops sends to no one)
    const health = healthFrameCoalescer(
      (f) => {
        if (f.schema === "health.state.v1") for (const ws of sockets) ws.data.sender?.stream("health", healthNow);
        else live(f);
      },
      { windowMs: deps.healthCoalesceMs },
    );
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
