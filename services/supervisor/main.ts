/** `npm run demo`: the whole platform on its embedded defaults, plus the local host's own agent. */
import { join } from "node:path";
import { z } from "zod";
import { hostname } from "node:os";
import { BusKeys, ClickHouseKeys, DataDirKeys, GatewayKeys, NatsAuthKeys, parseEnv } from "../shared/config.ts";
import { makeLogger } from "../shared/log.ts";
import { topologyLaunchEnv } from "../topology/client.ts";
import { demoNatsAuth } from "./nats-auth.ts";
import { demoBrokerSecretKey } from "../broker/client.ts";
import { natsServerSpec, serviceSpec, Supervisor } from "./supervisor.ts";

const cfg = parseEnv(z.object({ ...DataDirKeys, ...BusKeys, ...ClickHouseKeys, ...GatewayKeys, ...NatsAuthKeys }), process.env);
const log = makeLogger("supervisor");
let stopping = false;
const stop = async (code = 0, why = "") => {
  if (stopping) return;
  stopping = true;
  process.stderr.write(`\n${why ? `${why}: ` : ""}stopping Orrery…\n`);
  const { killed } = await sup.stop();
  // a child that had to be SIGKILLed may have lost work: say so in the exit status
  process.exit(killed.length ? Math.max(code, 1) : code);
};
// A child that dies is restarted; nats-server dying, or a service that keeps dying, stops everything (non-zero).
const sup = new Supervisor(log, (reason) => void stop(1, reason));
process.on("SIGINT", () => void stop());
process.on("SIGTERM", () => void stop());
process.on("SIGHUP", () => void stop());
// If whatever started us dies (a closed terminal, a killed npm), stop the children rather than leave them running.
const parent = process.ppid;
setInterval(() => process.ppid !== parent && void stop(), 1000).unref();

/**
 * The banner's login lines, from the gateway's ready line: the local admin's password when the gateway generated it
 * at this start (the only time it is ever shown: it is stored hashed), else where to find or reset it.
 */
function howToLogIn(gw: Record<string, unknown>): string {
  if (gw.auth === "off") return `  Auth:       OFF (ORRERY_AUTH=off): anyone who reaches these ports can read the estate and post alerts\n`;
  const admin = (gw.admin ?? {}) as { login?: string; password?: string };
  const login = `${String(gw.url)}/login`;
  if (admin.password) return `  Log in:     ${login}  as ${admin.login}, password ${admin.password}\n              (generated now and shown only this once; set ORRERY_ADMIN_PASSWORD to choose your own)\n`;
  return `  Log in:     ${login}  as ${admin.login}, with the password printed when ${cfg.ORRERY_DATA_DIR} was first used\n              (lost it? restart with ORRERY_ADMIN_PASSWORD=<new password>)\n`;
}

try {
  const env: Record<string, string> = { ORRERY_DATA_DIR: cfg.ORRERY_DATA_DIR, ORRERY_PREFIX: cfg.ORRERY_PREFIX };
  if (process.env.NATS_URL) env.NATS_URL = cfg.NATS_URL;
  else {
    const bin = Bun.which("nats-server") ?? Bun.which("nats-server", { PATH: "/usr/sbin:/usr/bin:/usr/local/bin" });
    if (!bin) throw new Error("nats-server not found: `npm run demo` installs it from Debian, or set NATS_URL");
    // NATS credentials (a user per child, limited to its subjects) unless ORRERY_NATS_AUTH=off
    const auth = cfg.ORRERY_NATS_AUTH === "on" ? await demoNatsAuth(cfg.ORRERY_DATA_DIR, cfg.ORRERY_PREFIX, process.env.ORRERY_HOST_ID ?? hostname()) : undefined;
    const r = await sup.startOnPort(Number(process.env.ORRERY_NATS_PORT ?? 4222), (port) => natsServerSpec(cfg.ORRERY_DATA_DIR, port, bin, auth?.block));
    env.NATS_URL = String(r.url);
    if (auth) {
      sup.childEnv = auth.envFor;
      process.stderr.write(`  NATS auth:  on (a user per service and agent; the admin user is in ${auth.credentialsFile})\n`);
    }
  }
  if (process.env.CLICKHOUSE_URL) {
    env.CLICKHOUSE_URL = cfg.CLICKHOUSE_URL;
  } else {
    const r = await sup.startOnPort(Number(process.env.CLICKHOUSE_OWNER_PORT ?? 8123), (port) => serviceSpec("clickhouse", { ...env, CLICKHOUSE_OWNER_PORT: String(port) }));
    env.CLICKHOUSE_URL = String(r.url);
  }
  // JSC is told the topology service's memory budget and glibc how to hand Kuzu's buffers back (see
  // TOPOLOGY_LAUNCH_ENV); the same variable set by the operator wins.
  const topoEnv = topologyLaunchEnv();
  // One name for this supervisor's topology child: it is restarted only after it has exited, so the new one may take
  // its predecessor's lease back at once instead of waiting out the TTL.
  topoEnv.ORRERY_TOPOLOGY_INSTANCE = process.env.ORRERY_TOPOLOGY_INSTANCE || `supervised:${hostname()}:${process.pid}`;
  await sup.start(serviceSpec("topology", { ...env, ...topoEnv }, 120_000));
  await sup.start(serviceSpec("metrics", env));
  await sup.start(serviceSpec("history", env));
  // the alerts service holds a lease the same way (one active instance folds health)
  await sup.start(serviceSpec("alerts", { ...env, ORRERY_ALERTS_INSTANCE: process.env.ORRERY_ALERTS_INSTANCE || `supervised:${hostname()}:${process.pid}` }));
  // the registry (components, requirements, drift); the gateway's /api/registry routes ask it over NATS
  await sup.start(serviceSpec("registry", env));
  // Each listener gets its usual port, or the next free one above it (logged); the banner prints the real addresses.
  const ingest = await sup.startOnPort(Number(process.env.ORRERY_INGEST_PORT ?? 7071), (port) => serviceSpec("ingest", { ...env, ORRERY_INGEST_PORT: String(port) }));
  const dashboardDir = join(process.cwd(), cfg.ORRERY_DASHBOARD_DIR);
  const gw = await sup.startOnPort(cfg.ORRERY_GATEWAY_PORT, (port) => serviceSpec("gateway", { ...env, ORRERY_GATEWAY_PORT: String(port), ORRERY_DASHBOARD_DIR: dashboardDir }));
  await sup.start(serviceSpec("agent", env));
  // Agentless discovery: one worker and the scheduler in one process (scale out by running more workers).
  await sup.start(serviceSpec("jobs", { ...env, ORRERY_WORKER_ID: "local" }));
  // A simulated estate beside the real host, so the demo has something to show (ORRERY_SIMULATE=0 turns it off).
  if (process.env.ORRERY_SIMULATE !== "0") await sup.start(serviceSpec("simulator", env));
  // The Open Service Broker API broker, only when its password is set (the default demo has none); it reads its other
  // ORRERY_BROKER_* settings from the environment it inherits.
  if (process.env.ORRERY_BROKER_PASSWORD) {
    // the key binding credentials are sealed with: the operator's, or one generated into the data dir at first start
    const sealKey: Record<string, string> = process.env.ORRERY_BROKER_SECRET_KEY ? {} : { ORRERY_BROKER_SECRET_KEY: demoBrokerSecretKey(cfg.ORRERY_DATA_DIR).key };
    const broker = await sup.startOnPort(Number(process.env.ORRERY_BROKER_PORT ?? 7074), (port) => serviceSpec("broker", { ...env, ...sealKey, ORRERY_BROKER_PORT: String(port), ORRERY_BROKER_GATEWAY_URL: process.env.ORRERY_BROKER_GATEWAY_URL ?? String(gw.url) }));
    process.stderr.write(`  Service broker (Open Service Broker API): ${String(broker.url)}\n`);
  }
  // ITSM exporters only when a configuration names them (services/exporters; their secrets come from the environment)
  if (process.env.ORRERY_EXPORTERS_CONFIG) await sup.startOnPort(Number(process.env.ORRERY_EXPORTERS_PORT ?? 7073), (port) => serviceSpec("exporters", { ...env, ORRERY_EXPORTERS_PORT: String(port) }));
  process.stdout.write(`${JSON.stringify({ event: "ready", service: "orrery", dashboard: gw.url, nats: env.NATS_URL, clickhouse: env.CLICKHOUSE_URL, ingest: ingest.url, auth: gw.auth })}\n`);
  process.stderr.write(`\n  Orrery is running.\n  Dashboard:  ${gw.url}\n${howToLogIn(gw)}  NATS:       ${env.NATS_URL}\n  ClickHouse: ${env.CLICKHOUSE_URL}\n  Ingest:     ${ingest.url}  (Alertmanager webhook /api/alerts/alertmanager, remote_write /api/v1/write${gw.auth === "off" ? "" : "; each needs an ingest token: orrery token create --kind ingest --source alertmanager"})\n  Data:       ${cfg.ORRERY_DATA_DIR}\n  Ctrl-C stops everything.\n\n`);
} catch (e) {
  log.error("start failed", { error: e instanceof Error ? e.message : String(e) });
  await stop(1);
}
