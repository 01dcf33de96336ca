// One mapping from errors to HTTP (services/shared/http.ts), through Bun.serve's error hook as the gateway and the
// ingest use it: typed errors keep their status and reason; anything else is logged with an id and answered with it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import { ContractError } from "../../../pipelines/codec.ts";
import { AlertsClientError } from "../../../services/alerts/client.ts";
import { HistoryStoreError } from "../../../services/history/port.ts";
import { HttpError, httpErrors, jsonDepth, MAX_JSON_DEPTH, parseBody, parseQuery, readJsonBody, type Routes } from "../../../services/shared/http.ts";
import type { Logger } from "../../../services/shared/log.ts";

const logged: { msg: string; fields?: Record<string, unknown> }[] = [];
const log: Logger = { info: () => undefined, warn: () => undefined, error: (msg, fields) => void logged.push({ msg, fields }) };
const thrower = (e: unknown) => () => {
  throw e;
};
const routes: Routes = {
  "/http": thrower(new HttpError(409, "already there", { "x-why": "test" })),
  "/contract": thrower(new ContractError("invalid", "thing.v1", "thing.v1: name: too long")),
  "/history/down": thrower(new HistoryStoreError("query_failed", "history query failed: connection refused")),
  "/history/bad-row": thrower(new HistoryStoreError("bad_row", "row 7: ts is not a number")),
  "/alerts/replaying": thrower(new AlertsClientError("not_ready", "replaying")),
  "/bug": { GET: async () => Promise.reject(new TypeError("cannot read secret_table.password of undefined")) },
  "/query": { GET: (req) => Response.json(parseQuery(z.object({ n: z.coerce.number().int().min(1) }), req)) },
  "/body": { POST: async (req) => Response.json(await parseBody(z.object({ name: z.string() }), req, '{"name": "…"}')) },
};
let server: ReturnType<typeof Bun.serve>;
const get = async (path: string, init?: RequestInit) => {
  const r = await fetch(`http://127.0.0.1:${server.port}${path}`, init);
  return { status: r.status, body: (await r.json()) as Record<string, unknown>, headers: r.headers };
};

beforeAll(() => {
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, routes, error: httpErrors(log), fetch: () => new Response("not found", { status: 404 }) });
});
afterAll(() => server.stop(true));

test("typed errors keep their status, reason and code", async () => {
  const http = await get("/http");
  expect([http.status, http.body, http.headers.get("x-why")]).toEqual([409, { error: "already there" }, "test"]);
  expect(await get("/contract")).toMatchObject({ status: 400, body: { error: "thing.v1: name: too long", code: "invalid" } });
  expect(await get("/history/down")).toMatchObject({ status: 503, body: { error: "history query failed: connection refused", code: "query_failed" } });
  const replaying = await get("/alerts/replaying");
  expect([replaying.status, replaying.body, replaying.headers.get("retry-after")]).toEqual([503, { error: "replaying", code: "not_ready" }, "1"]);
  expect(logged).toEqual([]);
});

test("an unexpected error is logged with an id and answered with that id only", async () => {
  for (const path of ["/bug", "/history/bad-row"]) {
    logged.length = 0;
    const r = await get(path);
    expect(r.status).toBe(500);
    expect(Object.keys(r.body).sort()).toEqual(["error", "id"]);
    expect(r.body.error).toBe("internal error");
    expect(JSON.stringify(r.body)).not.toMatch(/secret_table|row 7/);
    expect(logged).toHaveLength(1);
    expect(logged[0]!.fields!.id).toBe(r.body.id);
    expect(String(logged[0]!.fields!.error)).toMatch(/secret_table|row 7/);
  }
});

test("query strings and bodies are validated with the same wording", async () => {
  expect(await get("/query?n=3")).toMatchObject({ status: 200, body: { n: 3 } });
  expect(await get("/query?n=0")).toMatchObject({ status: 400, body: { error: "n: Too small: expected number to be >=1" } });
  expect(await get("/body", { method: "POST", body: "{nope" })).toMatchObject({ status: 400, body: { error: 'body must be JSON: {"name": "…"}' } });
  expect(await get("/body", { method: "POST", body: "[]" })).toMatchObject({ status: 400, body: { error: "body: Invalid input: expected object, received array" } });
});

describe("readJsonBody", () => {
  const req = (body: string) => new Request("http://x/", { method: "POST", body });
  const nested = (depth: number) => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;

  test("answers the parsed body up to MAX_JSON_DEPTH levels", async () => {
    expect(jsonDepth(await readJsonBody(req(nested(MAX_JSON_DEPTH - 1))))).toBe(MAX_JSON_DEPTH - 1);
    expect(await readJsonBody(req('[1,{"b":[2]}]'))).toEqual([1, { b: [2] }]);
  });

  test("refuses deeper bodies and non-JSON with a 400 that says why", async () => {
    for (const depth of [MAX_JSON_DEPTH + 1, 50_000]) {
      const e = (await readJsonBody(req(nested(depth))).catch((x: unknown) => x)) as HttpError;
      expect(e).toBeInstanceOf(HttpError);
      expect(e.status).toBe(400);
      expect(e.message).toContain("nests deeper");
    }
    const e = (await readJsonBody(req("{nope"), "a hint").catch((x: unknown) => x)) as HttpError;
    expect(e.status).toBe(400);
    expect(e.message).toBe("body must be JSON: a hint");
  });
});
