import { makeClickHouseClient } from "../clickhouse/client.ts";
import { startMirror } from "../topology/client.ts";
import { connectBus } from "../shared/bus.ts";
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
const mirror = await startMirror(bus, log);
const svc = await startAlertsService({ bus, topology: mirrorView(mirror), rules, history, log, flap: acfg.flap, impact: acfg.impact });
// events older than what the book holds are not folded; say which and why (a resolve most of all)
svc.book().onIgnored = (e) => log[e.state === "resolved" ? "warn" : "info"]("alert event ignored", { ...e });
const icinga = acfg.icinga2
  ? startIcinga2Consumer({ ...acfg.icinga2, queue: acfg.icinga2.queue ?? `orrery-${cfg.ORRERY_PREFIX}` }, { publish: alertPublisher(bus), log })
  : null;
onShutdown(async () => {
  await icinga?.stop();
  await svc.stop();
  await mirror.stop();
  await history.close();
  await bus.close();
  obs.stop();
});
obs.markReady(natsConnected(bus));
ready("alerts", { icinga2: acfg.icinga2 ? acfg.icinga2.url : null });
