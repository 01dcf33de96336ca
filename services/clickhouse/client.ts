/** A configured @clickhouse/client for the embedded owner or a real server; built per caller, never a module singleton. */
import { type ClickHouseClient, ClickHouseLogLevel, createClient } from "@clickhouse/client";
import { z } from "zod";
import { formatIssues } from "../../pipelines/issues.ts";

// Reading a TSV answer is part of talking to ClickHouse, so other services take it from here (the owner's protocol module keeps it).
export { unescapeTsv } from "./http-protocol.ts";

export const ClickHouseClientOptions = z.object({
  url: z.url(),
  username: z.string().default("default"),
  password: z.string().default(""),
  database: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "a ClickHouse identifier").optional(),
  /** gzip request bodies (inserts) and ask for gzip responses. */
  compression: z.boolean().default(false),
  requestTimeoutMs: z.number().int().positive().default(60_000),
  /** The client logs every failed request to stderr by default; tests that expect errors turn it off. */
  logErrors: z.boolean().default(true),
});
export type ClickHouseClientOptions = z.input<typeof ClickHouseClientOptions>;

export function makeClickHouseClient(options: ClickHouseClientOptions): ClickHouseClient {
  const r = ClickHouseClientOptions.safeParse(options);
  if (!r.success) {
    const msg = formatIssues(r.error);
    throw new Error(`invalid ClickHouse client options: ${msg}`);
  }
  const o = r.data;
  return createClient({
    url: o.url,
    username: o.username,
    password: o.password,
    database: o.database,
    request_timeout: o.requestTimeoutMs,
    compression: { request: o.compression, response: o.compression },
    log: { level: o.logErrors ? ClickHouseLogLevel.ERROR : ClickHouseLogLevel.OFF },
  });
}
