/**
 * ClickHouse for a test: the embedded owner (chDB over ClickHouse's HTTP protocol) as a child process — chDB allows
 * one data directory per process and `bun test` runs every file in one process — or, when `CLICKHOUSE_URL` is set
 * (with `CLICKHOUSE_USER` / `CLICKHOUSE_PASSWORD`), a real ClickHouse server. Tests isolate themselves by database
 * name, so the same tests prove the code against both.
 */
import { join } from "node:path";
import type { ClickHouseClient } from "@clickhouse/client";
import type { Subprocess } from "bun";
import { makeClickHouseClient, type ClickHouseClientOptions } from "../../services/clickhouse/client.ts";
import { spawnUntilReady } from "./process.ts";

export interface TestClickHouse {
  url: string;
  /** "owner" (embedded chDB, started here) or "server" (CLICKHOUSE_URL) */
  kind: "owner" | "server";
  proc: Subprocess<"ignore", "pipe", "pipe"> | null;
  client(opts?: Omit<ClickHouseClientOptions, "url">): ClickHouseClient;
  /** Stops the owner (exit code); a real server is left alone (0). */
  stop(): Promise<number>;
}

/**
 * `port` fixes the owner's port (a test that kills and restarts it); `embedded` always starts the owner, for tests
 * of the owner itself or of an outage of it.
 */
export async function startClickHouse(dataDir: string, opts: { env?: Record<string, string>; port?: number; embedded?: boolean } = {}): Promise<TestClickHouse> {
  const external = opts.embedded ? undefined : process.env.CLICKHOUSE_URL;
  if (external) {
    const creds = { username: process.env.CLICKHOUSE_USER ?? "default", password: process.env.CLICKHOUSE_PASSWORD ?? "" };
    return { url: external, kind: "server", proc: null, client: (o = {}) => makeClickHouseClient({ ...creds, ...o, url: external }), stop: async () => 0 };
  }
  // its first line is the ready line: {"url": …}
  const { proc, match } = await spawnUntilReady([process.execPath, "services/clickhouse/main.ts", "--data-dir", dataDir, "--port", String(opts.port ?? 0)], {
    cwd: join(import.meta.dir, "../.."),
    env: { ...process.env, ...opts.env },
    ready: /^(.*)\n/,
    timeoutMs: 30_000,
    name: "the ClickHouse owner",
  });
  const url = (JSON.parse(match[1]!) as { url: string }).url;
  return {
    url,
    kind: "owner",
    proc,
    client: (o = {}) => makeClickHouseClient({ ...o, url }),
    stop: async () => {
      proc.kill("SIGTERM");
      return await proc.exited;
    },
  };
}
