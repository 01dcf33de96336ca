import { makeClickHouseClient } from "../clickhouse/client.ts";
import { connectBus } from "../shared/bus.ts";
import { loadConfig, natsOptions, onShutdown } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { ClickHouseSeriesStore } from "./clickhouse.ts";
import { startMetricsService } from "./service.ts";

const cfg = loadConfig();
const log = makeLogger("metrics", cfg.ORRERY_LOG_QUIET === "1");
const bus = await connectBus(natsOptions(cfg, "orrery-metrics"));
const store = new ClickHouseSeriesStore(
  makeClickHouseClient({ url: cfg.CLICKHOUSE_URL, username: cfg.CLICKHOUSE_USER, password: cfg.CLICKHOUSE_PASSWORD }),
  { database: cfg.CLICKHOUSE_DATABASE, ttlDays: cfg.ORRERY_METRICS_TTL_DAYS, rollup1mTtlDays: cfg.ORRERY_METRICS_1M_TTL_DAYS, rollup1hTtlDays: cfg.ORRERY_METRICS_1H_TTL_DAYS },
);
const svc = await startMetricsService({
  bus,
  store,
  log,
  options: { rollupIntervalMs: cfg.ORRERY_METRICS_ROLLUP_MS, maxInsertSamples: cfg.ORRERY_METRICS_MAX_INSERT_SAMPLES },
});
onShutdown(async () => {
  await svc.stop();
  await store.close();
  await bus.close();
});
ready("metrics");
