/** clickHouseFailure: what a failed ClickHouse request means for the data it carried (no server: errors made here). */
import { describe, expect, test } from "bun:test";
import { ClickHouseError } from "@clickhouse/client";
import { clickHouseFailure, makeClickHouseClient } from "../../../services/clickhouse/client.ts";

const serverError = (code: string, type: string) => new ClickHouseError({ message: `Code: ${code}. DB::Exception: … (${type})`, code, type });

describe("clickHouseFailure", () => {
  test("a server that refuses work for its own reasons is unavailable; data it cannot parse is bad_input; the rest failed", () => {
    expect(clickHouseFailure(serverError("241", "MEMORY_LIMIT_EXCEEDED"))).toBe("unavailable");
    expect(clickHouseFailure(serverError("252", "TOO_MANY_PARTS"))).toBe("unavailable");
    expect(clickHouseFailure(serverError("202", "TOO_MANY_SIMULTANEOUS_QUERIES"))).toBe("unavailable");
    // a full disk: the data waits for space
    expect(clickHouseFailure(serverError("243", "NOT_ENOUGH_SPACE"))).toBe("unavailable");
    expect(clickHouseFailure(new ClickHouseError({ message: "Code: 1001. DB::Exception: std::__1::__fs::filesystem::filesystem_error: filesystem error: in create_directories: No space left on device", code: "1001", type: "STD_EXCEPTION" }))).toBe("unavailable");
    expect(clickHouseFailure(serverError("27", "CANNOT_PARSE_INPUT_ASSERTION_FAILED"))).toBe("bad_input");
    expect(clickHouseFailure(serverError("53", "TYPE_MISMATCH"))).toBe("bad_input");
    expect(clickHouseFailure(serverError("62", "SYNTAX_ERROR"))).toBe("failed");
    expect(clickHouseFailure(serverError("60", "UNKNOWN_TABLE"))).toBe("failed");
    expect(clickHouseFailure(new Error("boom"))).toBe("failed");
    expect(clickHouseFailure(undefined)).toBe("failed");
  });

  test("a server nobody listens on, or one that closes the connection or never answers, is unavailable", async () => {
    const refused = makeClickHouseClient({ url: "http://127.0.0.1:1", logErrors: false });
    const e1 = await refused.insert({ table: "t", values: [[1]], format: "JSONCompactEachRow" }).catch((e) => e);
    expect(clickHouseFailure(e1)).toBe("unavailable");
    await refused.close();

    const hangUp = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (s) => void s.end() } });
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: () => undefined } });
    try {
      const c2 = makeClickHouseClient({ url: `http://127.0.0.1:${hangUp.port}`, logErrors: false, requestTimeoutMs: 2000 });
      expect(clickHouseFailure(await c2.query({ query: "SELECT 1", format: "JSONEachRow" }).catch((e) => e))).toBe("unavailable");
      await c2.close();
      const c3 = makeClickHouseClient({ url: `http://127.0.0.1:${silent.port}`, logErrors: false, requestTimeoutMs: 300 });
      expect(clickHouseFailure(await c3.query({ query: "SELECT 1", format: "JSONEachRow" }).catch((e) => e))).toBe("unavailable");
      await c3.close();
    } finally {
      hangUp.stop(true);
      silent.stop(true);
    }
  });
});
