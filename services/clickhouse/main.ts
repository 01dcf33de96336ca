/**
 * The embedded ClickHouse owner process: reads its config once, serves the chDB directory `<data-dir>/clickhouse`
 * over ClickHouse's HTTP interface, prints one ready line on stdout, and closes chDB (flushing it) on SIGINT/SIGTERM.
 *
 *   bun services/clickhouse/main.ts [--data-dir DIR] [--port N] [--host H]
 *   env: ORRERY_DATA_DIR, CLICKHOUSE_OWNER_PORT, CLICKHOUSE_OWNER_HOST, CLICKHOUSE_OWNER_PASSWORD
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { ConfigError, onShutdown, parseEnv } from "../shared/config.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { startObservability } from "../shared/metrics-registry.ts";
import { listenOrExit } from "../shared/ports.ts";
import { startClickHouseOwner } from "./owner.ts";

const OwnerConfig = z.object({
  ORRERY_DATA_DIR: z.string().min(1).default(".orrery-data"),
  CLICKHOUSE_OWNER_PORT: z.coerce.number().int().min(0).max(65535).default(8123),
  CLICKHOUSE_OWNER_HOST: z.string().min(1).default("127.0.0.1"),
  CLICKHOUSE_OWNER_PASSWORD: z.string().optional(),
});

const { values: args } = parseArgs({
  options: { "data-dir": { type: "string" }, port: { type: "string" }, host: { type: "string" }, password: { type: "string" } },
  strict: true,
});
const input: Record<string, string | undefined> = {
  ORRERY_DATA_DIR: args["data-dir"] ?? process.env.ORRERY_DATA_DIR,
  CLICKHOUSE_OWNER_PORT: args.port ?? process.env.CLICKHOUSE_OWNER_PORT,
  CLICKHOUSE_OWNER_HOST: args.host ?? process.env.CLICKHOUSE_OWNER_HOST,
  CLICKHOUSE_OWNER_PASSWORD: args.password ?? process.env.CLICKHOUSE_OWNER_PASSWORD,
};
let cfg: z.output<typeof OwnerConfig>;
try {
  cfg = parseEnv(OwnerConfig, input);
} catch (e) {
  if (!(e instanceof ConfigError)) throw e;
  process.stderr.write(`clickhouse owner: ${e.message}\n`);
  process.exit(2);
}
const dataDir = join(resolve(cfg.ORRERY_DATA_DIR), "clickhouse");
mkdirSync(dataDir, { recursive: true });

const where = { service: "clickhouse", host: cfg.CLICKHOUSE_OWNER_HOST, port: cfg.CLICKHOUSE_OWNER_PORT, setting: "CLICKHOUSE_OWNER_PORT or --port" };
let running;
try {
  running = await listenOrExit(where, () => startClickHouseOwner({ dataDir, host: where.host, port: where.port, password: cfg.CLICKHOUSE_OWNER_PASSWORD }));
} catch (err) {
  process.stderr.write(`clickhouse owner: ${(err as Error).message}\n`);
  process.exit(1);
}
const owner = running;
const obs = startObservability("clickhouse", process.env, makeLogger("clickhouse"));
onShutdown(async () => {
  await owner.stop();
  obs.stop();
});
obs.markReady();
ready("clickhouse", { url: owner.url });
