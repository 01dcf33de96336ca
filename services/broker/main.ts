/**
 * The Open Service Broker API broker: platforms provision Orrery tenants for their services (services/broker/).
 *   env ORRERY_BROKER_PASSWORD (required: the Basic auth password platforms register the broker with),
 *   ORRERY_BROKER_USER (orrery-broker), ORRERY_BROKER_HOST (127.0.0.1), ORRERY_BROKER_PORT (7074, 0 = any free port),
 *   ORRERY_BROKER_GATEWAY_URL (the dashboard's public URL, for dashboard and kiosk links), ORRERY_BROKER_NATS_URL (the
 *   NATS URL agents are given; default NATS_URL), ORRERY_STRATEGY (the placement strategy file the jobs service reads),
 *   ORRERY_BROKER_STEP_DELAY_MS (0: pause before each step of an asynchronous operation), plus the usual NATS_*.
 *   ORRERY_BROKER_SECRET_KEY (required: 32 bytes as base64, `openssl rand -base64 32`; binding credentials are sealed
 *   with it in KV, seal.ts; the demo supervisor generates one into <data dir>/broker/secret-key at first start).
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { checkStrategyText } from "../../pipelines/strategy/schema.ts";
import { requestRun } from "../jobs/client.ts";
import { connectBus } from "../shared/bus.ts";
import { BusKeys, ConfigError, LogKeys, natsOptions, onShutdown, parseEnv } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { natsConnected, startObservability } from "../shared/metrics-registry.ts";
import { listenOrExit } from "../shared/ports.ts";
import { Broker } from "./broker.ts";
import { startBrokerServer } from "./http.ts";
import { openKioskTokens } from "./kiosk.ts";
import { parseSecretKey, secretBox, SecretKeyFormatError } from "./seal.ts";
import { BrokerStore } from "./store.ts";
import { DEFAULT_STRATEGY } from "./tenant.ts";
import { purgeTenant } from "./tenant-data.ts";

const cfg = parseEnv(
  z.object({
    ...BusKeys,
    ...LogKeys,
    ORRERY_BROKER_USER: z.string().regex(/^[^:]{1,64}$/, "1 to 64 characters, no ':'").default("orrery-broker"),
    ORRERY_BROKER_PASSWORD: z.string().min(12, "at least 12 characters"),
    ORRERY_BROKER_HOST: z.string().min(1).default("127.0.0.1"),
    ORRERY_BROKER_PORT: z.coerce.number().int().min(0).max(65535).default(7074),
    ORRERY_BROKER_GATEWAY_URL: z.url().default("http://127.0.0.1:7070"),
    ORRERY_BROKER_NATS_URL: z.string().optional(),
    ORRERY_STRATEGY: z.string().optional(),
    ORRERY_BROKER_STEP_DELAY_MS: z.coerce.number().int().min(0).max(60_000).default(0),
    ORRERY_BROKER_SECRET_KEY: z.string({ error: "required: 32 bytes as base64 (openssl rand -base64 32), the key binding credentials are sealed with" }).min(1, "32 bytes as base64 (openssl rand -base64 32)"),
  }),
  process.env,
);
const log = makeLogger("broker", cfg.ORRERY_LOG_QUIET === "1");
let strategy = DEFAULT_STRATEGY;
if (cfg.ORRERY_STRATEGY) {
  const r = checkStrategyText(readFileSync(cfg.ORRERY_STRATEGY, "utf8"));
  if (!r.ok) throw new ConfigError(`ORRERY_STRATEGY ${cfg.ORRERY_STRATEGY}: ${r.errors.map((e) => `${e.path || "/"}: ${e.message}`).join("; ")}`);
  strategy = r.strategy;
}
const obs = startObservability("broker", process.env, log);
const bus = await connectBus(natsOptions(cfg, "orrery-broker"));
const box = (() => {
  try {
    return secretBox(parseSecretKey(cfg.ORRERY_BROKER_SECRET_KEY));
  } catch (e) {
    throw e instanceof SecretKeyFormatError ? new ConfigError(e.message) : e;
  }
})();
const store = await BrokerStore.open(bus, box);
await store.checkKey();
const sealed = await store.sealLegacy();
if (sealed) log.info("sealed binding credentials left in the clear by an earlier broker", { count: sealed, key: box.kid });
const kiosk = await openKioskTokens(bus, cfg.ORRERY_BROKER_GATEWAY_URL);
if (!kiosk) log.warn("no identity bucket (no gateway with ORRERY_AUTH=on has run on this NATS yet): bindings get no kiosk URL");
const broker = new Broker({
  store,
  log,
  prefix: cfg.ORRERY_PREFIX,
  natsUrl: cfg.ORRERY_BROKER_NATS_URL ?? cfg.NATS_URL,
  gatewayUrl: cfg.ORRERY_BROKER_GATEWAY_URL,
  strategy,
  purgeTenant: (t) => purgeTenant(bus, t),
  kiosk: kiosk ?? undefined,
  // agentless probes: a run asked of the jobs service's scheduler (placed per its strategy like any other run)
  submitRun: async (r) => {
    const res = await requestRun(bus, { schema: "job.submit.v1", job: r.job, params: r.params, runId: r.runId });
    if (res.kind === "no_scheduler") return { ok: false, error: `no jobs scheduler answers on ${res.subject} (is the jobs service running?)` };
    return res.reply.ok ? { ok: true, runs: res.reply.runs.length } : { ok: false, error: `${res.reply.code}: ${res.reply.error}` };
  },
  stepDelayMs: cfg.ORRERY_BROKER_STEP_DELAY_MS,
});
const resumed = await broker.resume();
if (resumed) log.info("resumed operations left in progress", { count: resumed });
const server = await listenOrExit({ service: "broker", host: cfg.ORRERY_BROKER_HOST, port: cfg.ORRERY_BROKER_PORT, setting: "ORRERY_BROKER_PORT" }, () =>
  startBrokerServer({ broker, log, user: cfg.ORRERY_BROKER_USER, password: cfg.ORRERY_BROKER_PASSWORD, host: cfg.ORRERY_BROKER_HOST, port: cfg.ORRERY_BROKER_PORT }),
);
onShutdown(async () => {
  await server.stop(true);
  await broker.stop();
  await bus.close();
  obs.stop();
});
obs.markReady(natsConnected(bus));
ready("broker", { url: `http://${cfg.ORRERY_BROKER_HOST}:${server.port}`, kiosk: kiosk !== null });
