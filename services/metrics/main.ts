import { z } from "zod";
import { makeClickHouseClient } from "../clickhouse/client.ts";
import { connectBus } from "../shared/bus.ts";
import { loadConfig, natsOptions, onShutdown } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { ClickHouseSeriesStore } from "./clickhouse.ts";
import { startMetricsService } from "./service.ts";

const cfg = loadConfig();
// How often the rollups are stepped (ms), and the most samples one insert combines. Read here, with the key's name in
// the error, until they join the shared config.
const ServiceConfig = z.object({
  ORRERY_METRICS_ROLLUP_MS: z.coerce.number().int().min(100).max(3_600_000).default(15_000),
  ORRERY_METRICS_MAX_INSERT_SAMPLES: z.coerce.number().int().min(1).max(1_000_000).default(100_000),
});
const own = ServiceConfig.safeParse({ ORRERY_METRICS_ROLLUP_MS: process.env.ORRERY_METRICS_ROLLUP_MS, ORRERY_METRICS_MAX_INSERT_SAMPLES: process.env.ORRERY_METRICS_MAX_INSERT_SAMPLES });
if (!own.success) {
  const msg = own.error.issues.map((i) => `${i.path.join(".")}: ${i.message} (got ${JSON.stringify(process.env[String(i.path[0])])})`).join("; ");
  process.stderr.write(`metrics: invalid configuration: ${msg}\n`);
  process.exit(2);
}
const log = makeLogger("metrics", cfg.ORRERY_LOG_QUIET === "1");
const bus = await connectBus(natsOptions(cfg, "orrery-metrics"));
const store = new ClickHouseSeriesStore(
  makeClickHouseClient({ url: cfg.CLICKHOUSE_URL, username: cfg.CLICKHOUSE_USER, password: cfg.CLICKHOUSE_PASSWORD }),
  { database: cfg.CLICKHOUSE_DATABASE, ttlDays: cfg.ORRERY_METRICS_TTL_DAYS, rollup1mTtlDays: cfg.ORRERY_METRICS_1M_TTL_DAYS, rollup1hTtlDays: cfg.ORRERY_METRICS_1H_TTL_DAYS },
);
const svc = await startMetricsService({ bus, store, log, options: {
    rollupIntervalMs: own.data.ORRERY_METRICS_ROLLUP_MS,
    maxInsertSamples: own.data.ORRERY_METRICS_MAX_INSERT_SAMPLES,
  } });
onShutdown(async () => {
  await svc.stop();
  await store.close();
  await bus.close();
});
ready("metrics");
