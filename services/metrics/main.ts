import { makeClickHouseClient } from "../clickhouse/client.ts";
import { connectBus } from "../shared/bus.ts";
import { z } from "zod";
import { BusKeys, ClickHouseKeys, LogKeys, MetricsTtlKeys, natsOptions, onShutdown, parseEnv } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { natsConnected, startObservability } from "../shared/metrics-registry.ts";
import { ClickHouseSeriesStore } from "./clickhouse.ts";
import { startMetricsService } from "./service.ts";

const cfg = parseEnv(
  z.object({
    ...BusKeys,
    ...LogKeys,
    ...ClickHouseKeys,
    ...MetricsTtlKeys,
    ORRERY_METRICS_1M_TTL_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
    ORRERY_METRICS_1H_TTL_DAYS: z.coerce.number().int().min(1).max(36500).default(730),
    /** how often newly inserted samples are folded into the 1m/1h rollups */
    ORRERY_METRICS_ROLLUP_MS: z.coerce.number().int().min(100).max(3_600_000).default(15_000),
    /**
     * how the 1m/1h rollups are kept: `steps` (MergeTree block numbers; several batches per insert), `views`
     * (materialized views, one insert per batch-day deduplicated by its batchId), `auto` (views on replicated tables)
     */
    ORRERY_METRICS_ROLLUPS: z.enum(["auto", "steps", "views"]).default("auto"),
    /** the most samples one ClickHouse insert combines (several metric messages per insert) */
    ORRERY_METRICS_MAX_INSERT_SAMPLES: z.coerce.number().int().min(1).max(1_000_000).default(100_000),
  }),
  process.env,
);
const log = makeLogger("metrics", cfg.ORRERY_LOG_QUIET === "1");
const obs = startObservability("metrics", process.env, log);
const bus = await connectBus(natsOptions(cfg, "orrery-metrics"));
obs.watchConsumers(bus, [bus.topo.consumers.metrics]);
obs.watchDlq(bus);
const store = obs.timed(new ClickHouseSeriesStore(
  makeClickHouseClient({ url: cfg.CLICKHOUSE_URL, username: cfg.CLICKHOUSE_USER, password: cfg.CLICKHOUSE_PASSWORD }),
  { database: cfg.CLICKHOUSE_DATABASE, ttlDays: cfg.ORRERY_METRICS_TTL_DAYS, rollup1mTtlDays: cfg.ORRERY_METRICS_1M_TTL_DAYS, rollup1hTtlDays: cfg.ORRERY_METRICS_1H_TTL_DAYS, rollups: cfg.ORRERY_METRICS_ROLLUPS },
), "clickhouse", ["insert", "insertMany", "rollup"]);
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
  obs.stop();
});
obs.markReady(natsConnected(bus));
ready("metrics");
