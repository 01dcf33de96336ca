/**
 * The exporter service: the ITSM exporters of ORRERY_EXPORTERS_CONFIG (pipelines/contracts/exporters.ts), each a
 * JetStream durable feeding a vendor; `/metrics` (Prometheus text) on ORRERY_EXPORTERS_PORT; exporters.status.v1 over
 * <prefix>.rpc.exporters for the gateway's GET /api/exporters.
 */
import { z } from "zod";
import { encode } from "../../pipelines/codec.ts";
import { ExportersStatus } from "../../pipelines/contracts/exporters.ts";
import { connectBus } from "../shared/bus.ts";
import { BusKeys, LogKeys, natsOptions, onShutdown, parseEnv } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { natsConnected, startObservability } from "../shared/metrics-registry.ts";
import { exporterConsumers } from "../../pipelines/streams.ts";
import { listenOrExit } from "../shared/ports.ts";
import { fetchSnapshot } from "../topology/client.ts";
import { fetchHealthState } from "../alerts/client.ts";
import { buildAdapter, loadExportersFile, metricsText } from "./build.ts";
import { Exporter } from "./exporter.ts";
import { kvState, openBucket } from "./state.ts";

const cfg = parseEnv(
  z.object({
    ...BusKeys,
    ...LogKeys,
    ORRERY_EXPORTERS_CONFIG: z.string().min(1, "the path of the exporters' JSON or YAML file"),
    ORRERY_EXPORTERS_HOST: z.string().min(1).default("127.0.0.1"),
    ORRERY_EXPORTERS_PORT: z.coerce.number().int().min(0).max(65535).default(7073),
  }),
  process.env,
);
const log = makeLogger("exporters", cfg.ORRERY_LOG_QUIET === "1");
const file = loadExportersFile(cfg.ORRERY_EXPORTERS_CONFIG);
const obs = startObservability("exporters", process.env, log);
const bus = await connectBus(natsOptions(cfg, "orrery-exporters"));
obs.watchDlq(bus);
obs.watchConsumers(bus, () => file.exporters.flatMap((c) => Object.values(exporterConsumers(bus.topo, c.name))));
const kv = await openBucket(bus.nc, `${bus.topo.prefix.toUpperCase().replace(/-/g, "_")}_EXPORTERS`);
// the alerts service's current health, for a first run (null when it does not answer: the HEALTH stream is replayed)
const healthState = async () => {
  const r = await fetchHealthState(bus, 10_000);
  return "schema" in r ? r : null;
};
const exporters = file.exporters.map((c) => {
  const counters = { requests: 0, retries: 0, errors: 0 };
  return new Exporter({ bus, cfg: c, adapter: buildAdapter(c, process.env, counters, bus.topo.prefix), state: kvState(kv, c.name), counters, log, snapshot: () => fetchSnapshot(bus, 60_000), healthState });
});
for (const e of exporters) await e.start();
const statusNow = () => ({ schema: "exporters.status.v1" as const, at: Date.now(), exporters: exporters.map((e) => e.status()) });
const rpc = bus.nc.subscribe(bus.topo.subjects.exportersRpc, { callback: (_err, m) => void m.respond(encode(ExportersStatus, "exporters.status.v1", statusNow())) });
const server = await listenOrExit({ service: "exporters", host: cfg.ORRERY_EXPORTERS_HOST, port: cfg.ORRERY_EXPORTERS_PORT, setting: "ORRERY_EXPORTERS_PORT" }, () =>
  Bun.serve({
    hostname: cfg.ORRERY_EXPORTERS_HOST,
    port: cfg.ORRERY_EXPORTERS_PORT,
    fetch: (req) => {
      const p = new URL(req.url).pathname;
      if (p === "/metrics") return new Response(metricsText(statusNow().exporters), { headers: { "content-type": "text/plain; version=0.0.4" } });
      if (p === "/status") return Response.json(statusNow());
      return new Response("not found", { status: 404 });
    },
  }),
);
onShutdown(async () => {
  rpc.unsubscribe();
  await server.stop(true);
  for (const e of exporters) await e.stop();
  await bus.close();
  obs.stop();
});
obs.markReady(natsConnected(bus));
ready("exporters", { url: `http://${cfg.ORRERY_EXPORTERS_HOST}:${server.port}`, exporters: exporters.map((e) => e.name) });
