import { makeClickHouseClient } from "../clickhouse/client.ts";
import { ClickHouseSeriesStore } from "../metrics/clickhouse.ts";
import { connectBus } from "../shared/bus.ts";
import { z } from "zod";
import { AuthKeys, BusKeys, ClickHouseKeys, GatewayKeys, HistoryTtlKeys, IdentityKeys, LogKeys, MetricsTtlKeys, natsOptions, onShutdown, parseEnv } from "../shared/config.ts";
import { authOffRoutes, DirectoryKeys, openGate, startIdentity } from "../identity/client.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { natsConnected, startObservability } from "../shared/metrics-registry.ts";
import { listenOrExit } from "../shared/ports.ts";
import { startGatewayServer } from "./http.ts";
import { startMirror } from "../topology/client.ts";
import { listenerStandIn, metricsRoutes } from "./routes/metrics.ts";
import { alertEntitiesOf } from "../alerts/client.ts";
import { alertRoutes } from "./routes/alerts.ts";
import { startHealthOverlay } from "./health.ts";
import { ClickHouseHistoryStore } from "../history/clickhouse.ts";
import { graphRoutes } from "./routes/graph.ts";
import { viewRoutes } from "./routes/view.ts";
import { ViewHub } from "./views.ts";
import { registryRoutes } from "./routes/registry.ts";
import { exporterRoutes } from "./routes/exporters.ts";
import { asyncApiRoutes } from "./routes/asyncapi.ts";

const cfg = parseEnv(z.object({ ...BusKeys, ...LogKeys, ...ClickHouseKeys, ...GatewayKeys, ...MetricsTtlKeys, ...HistoryTtlKeys, ...AuthKeys, ...IdentityKeys, ...DirectoryKeys }), process.env);
const log = makeLogger("gateway", cfg.ORRERY_LOG_QUIET === "1");
const obs = startObservability("gateway", process.env, log);
const bus = await connectBus(natsOptions(cfg, "orrery-gateway"));
const series = new ClickHouseSeriesStore(
  makeClickHouseClient({ url: cfg.CLICKHOUSE_URL, username: cfg.CLICKHOUSE_USER, password: cfg.CLICKHOUSE_PASSWORD }),
  { database: cfg.CLICKHOUSE_DATABASE, ttlDays: cfg.ORRERY_METRICS_TTL_DAYS },
);
// ORRERY_AUTH=off is a choice said at every start: every door of the gateway is then open to anyone who reaches it
const identity = cfg.ORRERY_AUTH === "on" ? await startIdentity({ bus, log, env: cfg }) : null;
if (!identity) log.warn("ORRERY_AUTH=off: authentication is OFF; anyone who can reach this gateway can read the whole estate (set ORRERY_AUTH=on)");
const mirror = await startMirror(bus, log);
const health = startHealthOverlay(bus, log);
// The history service owns the change-log table; the gateway only reads it.
const history = new ClickHouseHistoryStore(
  makeClickHouseClient({ url: cfg.CLICKHOUSE_URL, username: cfg.CLICKHOUSE_USER, password: cfg.CLICKHOUSE_PASSWORD }),
  { database: cfg.CLICKHOUSE_DATABASE, ttlDays: cfg.ORRERY_HISTORY_TTL_DAYS },
);
// levels of detail for pages that hold only what they draw (view.subscribe over /ws, GET /api/view)
const views = new ViewHub({ mirror, health, history, log });
// a port in use ends the gateway with one line naming ORRERY_GATEWAY_PORT (the demo then picks another)
const server = await listenOrExit({ service: "gateway", host: cfg.ORRERY_GATEWAY_HOST, port: cfg.ORRERY_GATEWAY_PORT, setting: "ORRERY_GATEWAY_PORT" }, () => startGatewayServer({ bus, mirror, log, host: cfg.ORRERY_GATEWAY_HOST, port: cfg.ORRERY_GATEWAY_PORT, dashboardDir: cfg.ORRERY_DASHBOARD_DIR,
  auth: identity?.gate ?? openGate(),
  extraRoutes: { ...(identity?.routes ?? authOffRoutes()), ...metricsRoutes({ series, standIn: listenerStandIn(mirror) }), ...alertRoutes(bus), ...graphRoutes({ mirror, history, log, alertEntities: alertEntitiesOf(bus) }), ...viewRoutes({ views }), ...registryRoutes({ bus, groupsOf: (login) => identity?.identity.store.directory().byLogin.get(login.toLowerCase())?.groups ?? [] }), ...exporterRoutes(bus), ...asyncApiRoutes({ prefix: cfg.ORRERY_PREFIX, gatewayHost: `${cfg.ORRERY_GATEWAY_HOST}:${cfg.ORRERY_GATEWAY_PORT}` }) },
  health,
  views,
}));
onShutdown(async () => {
  await server.stop(true);
  views.stop();
  health.stop();
  await mirror.stop();
  await series.close();
  await history.close();
  await identity?.stop();
  await bus.close();
  obs.stop();
});
obs.gauge("orrery_gateway_websocket_clients", "WebSocket clients connected to the gateway", () => server.pendingWebSockets);
obs.markReady(() => natsConnected(bus)() && mirror.synced());
// the local admin's generated password goes out once, in the ready line (the supervisor prints it; never a log line)
ready("gateway", { url: `http://${cfg.ORRERY_GATEWAY_HOST}:${server.port}`, auth: cfg.ORRERY_AUTH, ...(identity ? { admin: identity.admin } : {}) });
