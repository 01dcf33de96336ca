/**
 * The ingest service's HTTP surface (Bun.serve `routes`): webhooks in, JetStream out. An accepted request is answered
 * 2xx only after JetStream has stored every valid event it carried, so nothing acknowledged is lost across a restart;
 * a bus failure is a 503 (the sender retries; Nats-Msg-Id makes retries idempotent). Invalid alerts are refused one
 * by one: 202 listing the refusals when anything was stored, 400 when nothing was (an unreadable body too).
 * Handlers throw; the server's `error` hook answers through toHttpError (services/shared/http.ts).
 *   POST /api/alerts/:source   alertmanager | generic (services/ingest/webhooks.ts)
 *   GET  /api/alerts/rejected[?limit=N]   refused alerts: counts per source since start, the latest (RejectedAlerts)
 *   GET  /healthz
 *   + extraRoutes, e.g. { "/api/v1/write": { POST: remoteWrite } }
 * Every route but /healthz checks `auth` first: posting needs an ingest token for its source (remote_write: source
 * prometheus), reading needs an API or kiosk token (services/identity/ingest-auth.ts).
 * The same refusals are answered over NATS (<prefix>.rpc.ingest, serveIngestRpc) for the gateway, which asks every
 * instance at once (services/ingest/client.ts).
 */
import type { BunRequest, Server } from "bun";
import type { Subscription } from "@nats-io/transport-node";
import { decode, MAX_MESSAGE_BYTES } from "../../pipelines/codec.ts";
import { IngestQuery, type Alert, type IngestRejected, type RejectedAlerts } from "../../pipelines/contracts/alerts.ts";
import type { Bus } from "../shared/bus.ts";
import { httpErrors, type Routes } from "../shared/http.ts";
import type { Logger } from "../shared/log.ts";
import type { PublishResult } from "../alerts/client.ts";
import { RejectedLog } from "./rejected.ts";
import { alertsFromWebhook, IngestError, type Refusal } from "./webhooks.ts";
import type { IngestAuth, IngestDoor } from "../identity/client.ts";

export const MAX_ALERT_BODY_BYTES = 4 * 1024 * 1024;

export interface IngestDeps {
  /** resolves once every valid alert is durable (alertPublisher(bus) from services/alerts/client.ts) */
  publishAlerts: (alerts: Alert[]) => Promise<PublishResult>;
  /** where refused alerts are kept (default: a new one); GET /api/alerts/rejected serves it */
  rejected?: RejectedLog;
  log: Logger;
  host: string;
  port: number;
  extraRoutes?: Routes;
  /** who may post and read (IngestTokens, or ingestAuthOff() for ORRERY_AUTH=off) */
  auth: IngestAuth;
  /** server-wide request body limit (remote_write batches can be large) */
  maxRequestBodyBytes?: number;
  now?: () => number;
}

async function readJson(req: Request, limit: number): Promise<unknown> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) throw new IngestError(413, `body is ${declared} bytes, limit is ${limit}`);
  const text = await req.text();
  if (text.length > limit) throw new IngestError(413, `body is over ${limit} bytes`);
  if (!text.trim()) throw new IngestError(400, "empty body: expected JSON");
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new IngestError(400, `body is not JSON: ${(e as Error).message}`);
  }
}

function rejectedLimit(req: Request): number {
  const raw = new URL(req.url).searchParams.get("limit");
  const limit = raw === null ? 1000 : Number(raw);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new IngestError(400, `limit: an integer from 1 to 10000 (got ${JSON.stringify(raw)})`);
  return limit;
}

export function startIngestServer(deps: IngestDeps): Server<undefined> {
  const now = deps.now ?? Date.now;
  const rejected = deps.rejected ?? new RejectedLog();

  const postAlerts = async (req: BunRequest<"/api/alerts/:source">) => {
    // Bun's router has parsed (and percent-decoded) it already
    const source = req.params.source;
    // the request id a sender (or a proxy in front) gave, else ours: in every log line of this request and in the answer
    const requestId = req.headers.get("x-request-id")?.slice(0, 128) || crypto.randomUUID();
    deps.auth.check(req, { post: source });
    const body = await readJson(req, MAX_ALERT_BODY_BYTES);
    const at = now();
    const { alerts, indexes, refused } = alertsFromWebhook(source, body, at);
    let result: PublishResult;
    try {
      result = await deps.publishAlerts(alerts);
    } catch (e) {
      deps.log.warn("alerts not stored; sender must retry", { requestId, source, count: alerts.length, error: String(e) });
      throw new IngestError(503, `alerts not stored (event bus unavailable: ${(e as Error).message}); retry`);
    }
    const refusals: Refusal[] = [
      ...refused,
      ...result.refused.map((r) => ({ index: indexes[r.index]!, alert: `fingerprint=${r.alert.fingerprint}`, reason: `alerts.${indexes[r.index]}: ${r.reason}` })),
    ].sort((a, b) => a.index - b.index);
    if (refusals.length) {
      rejected.record(source, at, refusals);
      deps.log.warn("alerts refused", { requestId, source, refused: refusals.length, stored: result.stored.length, first: refusals[0]!.reason });
    }
    const answer = { accepted: result.stored.length, ids: result.stored.map((a) => a.id), rejected: refusals };
    // 4xx only when nothing was stored: Alertmanager drops a group it got a 4xx for, stored alerts and all
    if (!result.stored.length && refusals.length) {
      return Response.json({ error: `no alert stored: ${refusals.slice(0, 10).map((r) => r.reason).join("; ")}`, ...answer }, { status: 400, headers: { "x-request-id": requestId } });
    }
    return Response.json(answer, { status: 202, headers: { "x-request-id": requestId } });
  };

  return Bun.serve({
    hostname: deps.host,
    port: deps.port,
    maxRequestBodySize: deps.maxRequestBodyBytes ?? 64 * 1024 * 1024,
    routes: {
      ...guardExtra(deps.extraRoutes ?? {}, deps.auth),
      "/healthz": () => Response.json({ status: "ok" }),
      "/api/alerts/rejected": {
        GET: (req: Request) => {
          deps.auth.check(req, "read");
          return Response.json(rejected.list(rejectedLimit(req)) satisfies RejectedAlerts);
        },
      },
      "/api/alerts/:source": { POST: postAlerts },
    },
    error: httpErrors(deps.log),
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (path.startsWith("/api/alerts/")) return Response.json({ error: `${req.method} not allowed on ${path}: POST alerts here` }, { status: 405 });
      return Response.json({ error: `no such endpoint: ${req.method} ${path}` }, { status: 404 });
    },
  });
}

/** Extra routes behind the same door: remote_write posts as source prometheus, anything else reads. */
function guardExtra(routes: Routes, auth: IngestAuth): Routes {
  const door = (path: string, method: string): IngestDoor => (path === "/api/v1/write" ? { post: "prometheus" } : method === "GET" ? "read" : { post: path });
  const out: Routes = {};
  for (const [path, r] of Object.entries(routes)) {
    if (typeof r === "function") {
      out[path] = (req) => (auth.check(req, door(path, req.method)), r(req));
      continue;
    }
    out[path] = Object.fromEntries(Object.entries(r).map(([m, h]) => [m, (req: Request) => (auth.check(req, door(path, m)), h!(req))]));
  }
  return out;
}

/**
 * Answers IngestQuery on <prefix>.rpc.ingest with this instance's refusals. Every instance subscribes without a
 * queue group, so one request reaches them all. A list over one message keeps its newest refusals (the counts stay
 * whole), halving until it fits: the reasons are up to 1000 characters each.
 */
export function serveIngestRpc(deps: { bus: Bus; rejected: RejectedLog; instance: string; log: Logger }): Subscription {
  const enc = new TextEncoder();
  return deps.bus.nc.subscribe(deps.bus.topo.subjects.ingestRpc, {
    callback: (err, msg) => {
      if (err || !msg.reply) return;
      let bytes: Uint8Array;
      try {
        const q = decode(IngestQuery, "ingest.query", msg.data);
        const r: IngestRejected = { ...deps.rejected.list(q.limit), instance: deps.instance };
        bytes = enc.encode(JSON.stringify(r));
        while (bytes.byteLength > MAX_MESSAGE_BYTES && r.alerts.length) {
          r.alerts = r.alerts.slice(Math.ceil(r.alerts.length / 2));
          bytes = enc.encode(JSON.stringify(r));
        }
      } catch (e) {
        deps.log.warn("ingest query refused", { error: String(e) });
        bytes = enc.encode(JSON.stringify({ error: e instanceof Error ? e.message : String(e), instance: deps.instance }));
      }
      msg.respond(bytes);
    },
  });
}
