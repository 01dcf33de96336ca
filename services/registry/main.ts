/**
 * The registry service: components, requirements and sign-off (record of truth: the REGISTRY stream), matched
 * against the live topology (its mirror) for instances and drift; answers the gateway over NATS request/reply.
 */
import { z } from "zod";
import { connectBus } from "../shared/bus.ts";
import { BusKeys, LogKeys, natsOptions, onShutdown, parseEnv } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { natsConnected, startObservability } from "../shared/metrics-registry.ts";
import { startMirror } from "../topology/client.ts";
import { Registry } from "./registry.ts";
import { serveRegistry, watchDrift } from "./service.ts";
import { startAnnotations } from "./annotate.ts";
import { publishRegistryGraph } from "./graph.ts";
import { JetStreamRegistryLog } from "./store.ts";

const cfg = parseEnv(
  z.object({
    ...BusKeys,
    ...LogKeys,
    /** a declared dependency counts as seen when a DEPENDS_ON between instances was seen this recently */
    ORRERY_REGISTRY_DRIFT_WINDOW_S: z.coerce.number().int().min(1).default(7 * 86_400),
    /** how often drift is recomputed (when anything changed) */
    ORRERY_REGISTRY_DRIFT_EVERY_S: z.coerce.number().min(0.1).default(5),
    /** on: matched services get component/owner/team annotations (a discovery source per host, registry:<host>) */
    ORRERY_REGISTRY_ANNOTATE: z.enum(["on", "off"]).default("on"),
  }),
  process.env,
);
const log = makeLogger("registry", cfg.ORRERY_LOG_QUIET === "1");
const obs = startObservability("registry", process.env, log);
const bus = await connectBus(natsOptions(cfg, "orrery-registry"));
const t0 = performance.now();
const store = await JetStreamRegistryLog.open(bus, log);
log.info("registry loaded", { components: store.state.components.size, events: store.state.seq, ms: Math.round(performance.now() - t0) });
const mirror = await startMirror(bus, log);
const registry = new Registry({ log: store, graph: () => (mirror.synced() ? mirror.mirror() : undefined) });
const server = serveRegistry(bus, registry, log);
const drift = await watchDrift(bus, registry, log, { everyMs: cfg.ORRERY_REGISTRY_DRIFT_EVERY_S * 1000, windowMs: cfg.ORRERY_REGISTRY_DRIFT_WINDOW_S * 1000 });
// components, matches and declared dependencies into the graph (written there by the topology service)
const graphOut = await publishRegistryGraph(bus, registry, log, { everyMs: cfg.ORRERY_REGISTRY_DRIFT_EVERY_S * 1000 });
const annotations = cfg.ORRERY_REGISTRY_ANNOTATE === "on" ? await startAnnotations(bus, registry, log, { everyMs: cfg.ORRERY_REGISTRY_DRIFT_EVERY_S * 1000 }) : null;
onShutdown(async () => {
  annotations?.stop();
  graphOut.stop();
  drift.stop();
  await server.stop();
  await mirror.stop();
  await store.close();
  await bus.close();
  obs.stop();
});
obs.markReady(natsConnected(bus));
ready("registry", { components: store.state.components.size });
