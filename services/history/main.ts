import { makeClickHouseClient } from "../clickhouse/client.ts";
import { connectBus } from "../shared/bus.ts";
import { z } from "zod";
import { BusKeys, ClickHouseKeys, HistoryTtlKeys, LogKeys, natsOptions, onShutdown, parseEnv } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { ClickHouseHistoryStore } from "./clickhouse.ts";
import { startHistoryService } from "./service.ts";

const cfg = parseEnv(z.object({ ...BusKeys, ...LogKeys, ...ClickHouseKeys, ...HistoryTtlKeys }), process.env);
const log = makeLogger("history", cfg.ORRERY_LOG_QUIET === "1");
const bus = await connectBus(natsOptions(cfg, "orrery-history"));
const store = new ClickHouseHistoryStore(
  makeClickHouseClient({ url: cfg.CLICKHOUSE_URL, username: cfg.CLICKHOUSE_USER, password: cfg.CLICKHOUSE_PASSWORD }),
  { database: cfg.CLICKHOUSE_DATABASE, ttlDays: cfg.ORRERY_HISTORY_TTL_DAYS },
);
const svc = await startHistoryService({ bus, store, log });
onShutdown(async () => {
  await svc.stop();
  await store.close();
  await bus.close();
});
ready("history", { ttlDays: cfg.ORRERY_HISTORY_TTL_DAYS });
