/** A configured @clickhouse/client for the embedded owner or a real server; built per caller, never a module singleton. */
import { type ClickHouseClient, ClickHouseError, ClickHouseLogLevel, createClient } from "@clickhouse/client";
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

/**
 * What a failed ClickHouse request means for the data it carried. `unavailable`: the server could not be reached, timed
 * out, or is refusing work for its own reasons (overloaded, out of memory or parts, shutting down) — the data must
 * wait. `bad_input`: the server refused the data itself (it does not parse or fit its column). `failed`: anything else
 * (a query of ours it rejects, a table someone dropped): not the data's fault, but not known to pass either.
 */
export type ClickHouseFailure = "unavailable" | "bad_input" | "failed";

/** Socket-level failures (Node's and Bun's codes for the same things): the server is not there. */
const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENETDOWN", "EAI_AGAIN", "ENOTFOUND", "ConnectionRefused", "ConnectionClosed", "FailedToOpenSocket"]);

/** ClickHouse server error codes (system.errors) that say the server cannot take work now, whatever the request. */
const UNAVAILABLE_CODES = new Set([
  159, // TIMEOUT_EXCEEDED
  164, // READONLY
  202, // TOO_MANY_SIMULTANEOUS_QUERIES
  203, // NO_FREE_CONNECTION
  209, // SOCKET_TIMEOUT
  210, // NETWORK_ERROR
  236, // ABORTED
  75, // CANNOT_WRITE_TO_FILE_DESCRIPTOR (a write the disk refused)
  173, // CANNOT_ALLOCATE_MEMORY
  241, // MEMORY_LIMIT_EXCEEDED
  242, // TABLE_IS_READ_ONLY
  243, // NOT_ENOUGH_SPACE (a full disk: the data waits for space, it is not at fault)
  252, // TOO_MANY_PARTS
  290, // LIMIT_EXCEEDED
  319, // UNKNOWN_STATUS_OF_INSERT
  394, // QUERY_WAS_CANCELLED
  425, // SYSTEM_ERROR
  439, // CANNOT_SCHEDULE_TASK
  516, // AUTHENTICATION_FAILED (the data waits for the operator to fix the credentials)
  999, // KEEPER_EXCEPTION
]);

/** Codes that say the data does not parse or does not fit its column. */
const BAD_INPUT_CODES = new Set([
  6, // CANNOT_PARSE_TEXT
  25, // CANNOT_PARSE_ESCAPE_SEQUENCE (a lone UTF-16 surrogate, e.g. from a string cut in the middle of a pair)
  26, // CANNOT_PARSE_QUOTED_STRING
  27, // CANNOT_PARSE_INPUT_ASSERTION_FAILED
  38, // CANNOT_PARSE_DATE
  41, // CANNOT_PARSE_DATETIME
  53, // TYPE_MISMATCH
  69, // ARGUMENT_OUT_OF_BOUND
  70, // CANNOT_CONVERT_TYPE
  72, // CANNOT_PARSE_NUMBER
  117, // INCORRECT_DATA
  131, // TOO_LARGE_STRING_SIZE
  321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
]);

export function clickHouseFailure(e: unknown): ClickHouseFailure {
  if (e instanceof ClickHouseError) {
    const code = Number(e.code);
    if (UNAVAILABLE_CODES.has(code)) return "unavailable";
    if (BAD_INPUT_CODES.has(code)) return "bad_input";
    // a file system error from inside the server (std::exception, code 1001) when the disk is full
    if (/No space left on device|ENOSPC/i.test(e.message)) return "unavailable";
    return "failed";
  }
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === "string" && NETWORK_CODES.has(code)) return "unavailable";
  // @clickhouse/client's request timeout is a plain Error with this message and no code (socket_pool.ts).
  if (e instanceof Error && e.message === "Timeout error.") return "unavailable";
  return "failed";
}
