/**
 * The alerts service. Its health fold needs every alert in stream order and one numbering of health deltas, so one
 * instance is active and any others stand by: a lease in JetStream KV (the topology writer's, services/topology/
 * lease.ts) says which. A standby takes over when the active stops renewing it, rebuilding its state from the stream
 * as a restart does; an active that loses the lease publishes nothing more and exits (its supervisor starts it again,
 * as a standby).
 */
import { hostname } from "node:os";
import { makeClickHouseClient } from "../clickhouse/client.ts";
import { acquireLease, LeaseStopped, leaseTiming, startMirror, type HeldLease } from "../topology/client.ts";
import { connectBus, rewindToAckFloor } from "../shared/bus.ts";
import { z } from "zod";
import { BusKeys, ClickHouseKeys, LogKeys, natsOptions, onShutdown, parseEnv } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { natsConnected, startObservability } from "../shared/metrics-registry.ts";
import { loadAlertsConfig } from "./config.ts";
import { ClickHouseAlertHistory } from "./history.ts";
import { startIcinga2Consumer } from "./icinga2.ts";
import { alertPublisher } from "./publish.ts";
import { loadAlertRules } from "./rules.ts";
import { mirrorView, startAlertsService } from "./service.ts";

const cfg = parseEnv(z.object({ ...BusKeys, ...LogKeys, ...ClickHouseKeys }), process.env);
const acfg = loadAlertsConfig(process.env);
const log = makeLogger("alerts", cfg.ORRERY_LOG_QUIET === "1");
const rules = await loadAlertRules(acfg.rulesPath);
const obs = startObservability("alerts", process.env, log);
const bus = await connectBus(natsOptions(cfg, "orrery-alerts"));
obs.watchConsumers(bus, [bus.topo.consumers.alerts, bus.topo.consumers.alertsHistory]);
obs.watchDlq(bus);
const history = obs.timed(new ClickHouseAlertHistory(
  makeClickHouseClient({ url: cfg.CLICKHOUSE_URL, username: cfg.CLICKHOUSE_USER, password: cfg.CLICKHOUSE_PASSWORD }),
  { database: cfg.CLICKHOUSE_DATABASE, ttlDays: acfg.ttlDays },
), "clickhouse", ["insert"]);
const holder = acfg.lease.instance ?? `${hostname()}:${process.pid}:${crypto.randomUUID().slice(0, 8)}`;
let role: "standby" | "active" = "standby";
const stopping = new AbortController();
let stop: () => Promise<void> = async () => {
  stopping.abort();
  await history.close();
  await bus.close();
  obs.stop();
};
onShutdown(() => stop());
// a standby is ready too (standing by is its job), and /readyz says which it is
obs.markReady(() => natsConnected(bus)() && (role === "active" || "standby"));
let announced = false;
let lease: HeldLease;
try {
  lease = await acquireLease({
    bus,
    key: "alerts",
    holder,
    timing: leaseTiming(acfg.lease.ttlMs),
    log,
    signal: stopping.signal,
    onWaiting: (active) => {
      if (announced) return;
      announced = true;
      // supervisors wait for "ready": a standby says so on its own line
      process.stdout.write(JSON.stringify({ event: "standby", service: "alerts", instance: holder, ...(active ? { active } : {}) }) + "\n");
    },
  });
} catch (e) {
  // stopped while standing by: the shutdown hook is closing the rest
  if (e instanceof LeaseStopped) await new Promise(() => {});
  throw e;
}
lease.lost.addEventListener("abort", () => {
  // another instance may be active now: publish nothing more, hand what is in flight back to JetStream by exiting
  log.error("alerts lease lost; exiting so that this instance starts again as a standby", { instance: holder });
  process.exit(1);
});
role = "active";
// The only consumer of both durables now: a dead predecessor's unacked events come back at once and in stream order,
// not after ack_wait behind newer ones.
for (const c of [bus.topo.consumers.alerts, bus.topo.consumers.alertsHistory]) await rewindToAckFloor(bus.jsm, c);
const mirror = await startMirror(bus, log);
const svc = await startAlertsService({ bus, topology: mirrorView(mirror), rules, history, log, flap: acfg.flap, impact: acfg.impact, stillActive: () => lease.check() });
// events older than what the book holds are not folded; say which and why (a resolve most of all)
svc.book().onIgnored = (e) => log[e.state === "resolved" ? "warn" : "info"]("alert event ignored", { ...e });
const icinga = acfg.icinga2
  ? startIcinga2Consumer({ ...acfg.icinga2, queue: acfg.icinga2.queue ?? `orrery-${cfg.ORRERY_PREFIX}` }, { publish: alertPublisher(bus), log })
  : null;
stop = async () => {
  await icinga?.stop();
  await svc.stop();
  await mirror.stop();
  await lease.release();
  await history.close();
  await bus.close();
  obs.stop();
};
ready("alerts", { icinga2: acfg.icinga2 ? acfg.icinga2.url : null, instance: holder });
