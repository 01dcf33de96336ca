import { makeClickHouseClient } from "../clickhouse/client.ts";
import { connectBus } from "../shared/bus.ts";
import { z } from "zod";
import { BusKeys, ClickHouseKeys, HistoryTtlKeys, LogKeys, natsOptions, onShutdown, parseEnv } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { natsConnected, startObservability } from "../shared/metrics-registry.ts";
import { ClickHouseHistoryStore } from "./clickhouse.ts";
import { startHistoryService } from "./service.ts";

const cfg = parseEnv(z.object({ ...BusKeys, ...LogKeys, ...ClickHouseKeys, ...HistoryTtlKeys }), process.env);
const log = makeLogger("history", cfg.ORRERY_LOG_QUIET === "1");
const obs = startObservability("history", process.env, log);
const bus = await connectBus(natsOptions(cfg, "orrery-history"));
obs.watchConsumers(bus, [bus.topo.consumers.history]);
obs.watchDlq(bus);
const store = obs.timed(new ClickHouseHistoryStore(
  makeClickHouseClient({ url: cfg.CLICKHOUSE_URL, username: cfg.CLICKHOUSE_USER, password: cfg.CLICKHOUSE_PASSWORD }),
  { database: cfg.CLICKHOUSE_DATABASE, ttlDays: cfg.ORRERY_HISTORY_TTL_DAYS },
), "clickhouse", ["insert", "checkpoint"]);
const svc = await startHistoryService({ bus, store, log });
onShutdown(async () => {
  await svc.stop();
  await store.close();
  await bus.close();
  obs.stop();
});
obs.markReady(natsConnected(bus));
ready("history", { ttlDays: cfg.ORRERY_HISTORY_TTL_DAYS });
