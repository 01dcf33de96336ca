/**
 * The ingest service: HTTP webhooks in (Alertmanager, generic JSON, `orrery notify`) and Prometheus remote_write
 * (POST /api/v1/write) → JetStream.
 *   env ORRERY_INGEST_HOST (127.0.0.1), ORRERY_INGEST_PORT (7071, 0 = any free port), ORRERY_AUTH (on: per-source
 *   ingest tokens required), plus the usual NATS_*.
 */
import { z } from "zod";
import { alertPublisher } from "../alerts/client.ts";
import { connectBus } from "../shared/bus.ts";
import { AuthKeys, BusKeys, LogKeys, natsOptions, onShutdown, parseEnv } from "../shared/config.ts";
import { ingestAuthOff, IngestTokens } from "../identity/client.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { natsConnected, startObservability } from "../shared/metrics-registry.ts";
import { listenOrExit } from "../shared/ports.ts";
import { RejectedLog } from "./rejected.ts";
import { serveIngestRpc, startIngestServer } from "./server.ts";
import { jetStreamPublisher, remoteWriteHandler } from "./remote-write.ts";

const cfg = parseEnv(
  z.object({
    ...BusKeys,
    ...LogKeys,
    ...AuthKeys,
    ORRERY_INGEST_HOST: z.string().min(1).default("127.0.0.1"),
    ORRERY_INGEST_PORT: z.coerce.number().int().min(0).max(65535).default(7071),
  }),
  process.env,
);
const log = makeLogger("ingest", cfg.ORRERY_LOG_QUIET === "1");
const obs = startObservability("ingest", process.env, log);
const ingested = obs.counter("orrery_ingest_published_total", "What the ingest service published to JetStream: alerts (stored or refused), remote_write batches and samples", ["kind"]);
const bus = await connectBus(natsOptions(cfg, "orrery-ingest"));
// per-source ingest tokens from the identity bucket (created at the gateway: POST /api/tokens, or `orrery token create`)
const auth = cfg.ORRERY_AUTH === "on" ? await IngestTokens.open(bus, log) : ingestAuthOff();
if (auth.mode === "off") log.warn("ORRERY_AUTH=off: authentication is OFF; anyone who can reach the ingest can post alerts and samples (set ORRERY_AUTH=on)");
// Prometheus remote_write lands here too: everything that pushes into Orrery comes through one ingest endpoint.
const remoteWrite = remoteWriteHandler({
  publish: async (batch, bytes) => {
    await jetStreamPublisher(bus)(batch, bytes);
    ingested.inc({ kind: "metric_batches" });
    ingested.inc({ kind: "samples" }, batch.samples.length);
  },
  source: "prometheus",
  onResult: (r) => {
    if (r.firstInvalid) log.warn("remote write: invalid series skipped", { ...r.skipped, first: r.firstInvalid });
  },
  onError: (e) => log.warn("remote write publish failed", { error: String(e) }),
});
const rejected = new RejectedLog();
const publishAlerts = alertPublisher(bus);
const server = await listenOrExit({ service: "ingest", host: cfg.ORRERY_INGEST_HOST, port: cfg.ORRERY_INGEST_PORT, setting: "ORRERY_INGEST_PORT" }, () => startIngestServer({
  publishAlerts: async (alerts) => {
    const r = await publishAlerts(alerts);
    ingested.inc({ kind: "alerts_stored" }, r.stored.length);
    ingested.inc({ kind: "alerts_refused" }, r.refused.length);
    return r;
  },
  rejected,
  auth,
  log,
  host: cfg.ORRERY_INGEST_HOST,
  port: cfg.ORRERY_INGEST_PORT,
  extraRoutes: { "/api/v1/write": { POST: remoteWrite } },
}));
// the gateway gathers every instance's refusals over NATS (GET /api/alerts/rejected there)
const rpc = serveIngestRpc({ bus, rejected, instance: `${cfg.ORRERY_INGEST_HOST}:${server.port}`, log });
onShutdown(async () => {
  rpc.unsubscribe();
  await server.stop(true);
  await auth.close();
  await bus.close();
  obs.stop();
});
obs.markReady(natsConnected(bus));
ready("ingest", { url: `http://${cfg.ORRERY_INGEST_HOST}:${server.port}` });
