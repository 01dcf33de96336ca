/**
 * The ingest service's HTTP surface (Bun.serve `routes`): webhooks in, JetStream out. An accepted request is answered
 * 2xx only after JetStream has stored every event it carried, so nothing acknowledged is lost across a restart;
 * bad input gets 4xx with the reason, a bus failure 503 (the sender retries; Nats-Msg-Id makes retries idempotent).
 * Handlers throw; the server's `error` hook answers through toHttpError (services/shared/http.ts).
 *   POST /api/alerts/:source   alertmanager | generic (services/ingest/webhooks.ts)
 *   GET  /healthz
 *   + extraRoutes, e.g. { "/api/v1/write": { POST: remoteWrite } }
 */
import type { BunRequest, Server } from "bun";
import { ContractError } from "../../pipelines/codec.ts";
import type { Alert } from "../../pipelines/contracts/alerts.ts";
import { httpErrors, type Routes } from "../shared/http.ts";
import type { Logger } from "../shared/log.ts";
import { alertsFromWebhook, IngestError } from "./webhooks.ts";

export const MAX_ALERT_BODY_BYTES = 4 * 1024 * 1024;

export interface IngestDeps {
  /** resolves once every alert is durable (alertPublisher(bus) from services/alerts/client.ts) */
  publishAlerts: (alerts: Alert[]) => Promise<void>;
  log: Logger;
  host: string;
  port: number;
  extraRoutes?: Routes;
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

export function startIngestServer(deps: IngestDeps): Server<undefined> {
  const now = deps.now ?? Date.now;

  const postAlerts = async (req: BunRequest<"/api/alerts/:source">) => {
    // Bun's router has parsed (and percent-decoded) it already
    const source = req.params.source;
    const body = await readJson(req, MAX_ALERT_BODY_BYTES);
    const alerts = alertsFromWebhook(source, body, now());
    try {
      await deps.publishAlerts(alerts);
    } catch (e) {
      if (e instanceof ContractError) throw new IngestError(400, e.message);
      deps.log.warn("alerts not stored; sender must retry", { source, count: alerts.length, error: String(e) });
      throw new IngestError(503, `alerts not stored (event bus unavailable: ${(e as Error).message}); retry`);
    }
    return Response.json({ accepted: alerts.length, ids: alerts.map((a) => a.id) }, { status: 202 });
  };

  return Bun.serve({
    hostname: deps.host,
    port: deps.port,
    maxRequestBodySize: deps.maxRequestBodyBytes ?? 64 * 1024 * 1024,
    routes: {
      ...deps.extraRoutes,
      "/healthz": () => Response.json({ status: "ok" }),
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
