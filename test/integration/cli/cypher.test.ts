/**
 * `orrery cypher`: the real command run as a process (citty parsing, exit codes, stdout/stderr) against a small
 * Bun.serve stand-in for the gateway's /api/cypher that validates requests with the cypher.v1 schema. The real
 * endpoint is covered by the e2e test.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { formatTable, parseParams, UsageError } from "../../../cli/commands/cypher.ts";
import { CypherRequest, type CypherResponse } from "../../../pipelines/contracts/cypher.ts";
import { BYPASSES, NOC_QUERIES, nocEstate } from "../../../services/graph/contract.ts";
import { KuzuGraphStore } from "../../../services/graph/kuzu.ts";
import { answerCypher } from "../../../services/topology/service.ts";
import { tempDir } from "../../helpers/tmp.ts";

const ROOT = join(import.meta.dir, "../../..");
const ROWS = [
  { client: "process:h1:10:1", port: 5432, tags: ["a", "b"], note: null },
  { client: "p2", port: 80, tags: [], note: "two\nlines" },
];

let server: ReturnType<typeof Bun.serve>;
const received: CypherRequest[] = [];

beforeAll(() => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    routes: {
      "/api/cypher": {
        POST: async (req) => {
          const parsed = CypherRequest.safeParse(await req.json().catch(() => null));
          if (!parsed.success) return Response.json({ error: parsed.error.message }, { status: 400 });
          received.push(parsed.data);
          const q = parsed.data.query;
          if (/DELETE/.test(q)) return Response.json({ ok: false, code: "read_only", error: 'read-only queries only: "DELETE" is a write or admin clause' } satisfies CypherResponse, { status: 400 });
          if (/UNAVAILABLE/.test(q)) return Response.json({ error: "graph store unavailable: no responders" }, { status: 503 });
          if (/NOTJSON/.test(q)) return new Response("<html>proxy error</html>", { status: 502 });
          if (/EMPTY/.test(q)) return Response.json({ ok: true, rows: [], ms: 0.5 } satisfies CypherResponse);
          return Response.json({ ok: true, rows: ROWS, ms: 1.25 } satisfies CypherResponse);
        },
      },
    },
  });
});
afterAll(() => server.stop(true));

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn([process.execPath, "cli/commands/cypher.ts", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe", env: { ...process.env, NO_COLOR: "1" } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}
const base = () => `http://127.0.0.1:${server.port}`;

describe("orrery cypher", () => {
  test("prints rows as an aligned table, numbers right-aligned, with a row count", async () => {
    const r = await cli("MATCH (c)-[:CONNECTS]->(l) RETURN c.id AS client", "--url", base());
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out.split("\n")).toEqual([
      "client           port  tags       note",
      "---------------  ----  ---------  ----------",
      'process:h1:10:1  5432  ["a","b"]  null',
      "p2                 80  []         two\\nlines",
      "2 rows (1.3 ms)",
      "",
    ]);
  });

  test("--json prints the rows as JSON", async () => {
    const r = await cli("MATCH (n) RETURN n", "--json", "--url", base());
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual(ROWS);
  });

  test("sends a valid cypher.v1 request: repeated --param parsed as JSON when it parses, else strings", async () => {
    const before = received.length;
    const r = await cli(
      "MATCH (n:Entity) WHERE n.port = $port RETURN n",
      "--param", "port=5432",
      "--param", "name=web-1",
      "-p", 'ids=["a",1]',
      "--param", 's="5432"',
      "--param=flag=true",
      "--param", "expr=a=b",
      "--param", "empty=",
      "--timeout-ms", "2500",
      "--max-rows", "50",
      "--url", base() + "/",
    );
    expect(r.code).toBe(0);
    expect(received.length).toBe(before + 1);
    expect(received.at(-1)).toEqual({
      query: "MATCH (n:Entity) WHERE n.port = $port RETURN n",
      params: { port: 5432, name: "web-1", ids: ["a", 1], s: "5432", flag: true, expr: "a=b", empty: "" },
      timeoutMs: 2500,
      maxRows: 50,
    });
  });

  test("an error answer exits 1 with its code and message on stderr, nothing on stdout", async () => {
    const r = await cli("MATCH (n) DETACH DELETE n", "--url", base());
    expect(r.code).toBe(1);
    expect(r.out).toBe("");
    expect(r.err).toBe('error [read_only]: read-only queries only: "DELETE" is a write or admin clause (HTTP 400)\n');
    const u = await cli("RETURN UNAVAILABLE", "--url", base());
    expect(u.code).toBe(1);
    expect(u.err).toBe("error: graph store unavailable: no responders (HTTP 503)\n");
    const h = await cli("RETURN NOTJSON", "--url", base());
    expect(h.code).toBe(1);
    expect(h.err).toContain("HTTP 502 with a body that is not JSON: <html>proxy error</html>");
  });

  test("an unreachable gateway exits 1 and says where it tried", async () => {
    const dead = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const url = `http://127.0.0.1:${dead.port}`;
    dead.stop(true);
    const r = await cli("RETURN 1", "--url", url);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`cannot reach the gateway at ${url}/api/cypher`);
  });

  test("bad arguments exit 2 before any request", async () => {
    const before = received.length;
    const noEq = await cli("RETURN $x", "--param", "x", "--url", base());
    expect(noEq.code).toBe(2);
    expect(noEq.err).toContain('bad --param "x"');
    const badTimeout = await cli("RETURN 1", "--timeout-ms", "soon", "--url", base());
    expect(badTimeout.code).toBe(2);
    expect(badTimeout.err).toContain("--timeout-ms must be a positive integer");
    const tooLong = await cli("RETURN 1", "--timeout-ms", "600000", "--url", base());
    expect(tooLong.code).toBe(2);
    expect(tooLong.err).toContain("timeoutMs");
    expect(received.length).toBe(before);
  });

  test("an empty answer says so", async () => {
    const r = await cli("RETURN EMPTY", "--url", base());
    expect(r.code).toBe(0);
    expect(r.out).toBe("(no rows)\n0 rows (0.5 ms)\n");
  });
});

describe("pure parts", () => {
  test("parseParams stops at --, and names must be Cypher parameter names", () => {
    expect(parseParams(["q", "-p", "a=1", "--", "--param", "b=2"])).toEqual({ a: 1 });
    expect(() => parseParams(["--param", "1x=2"])).toThrow(UsageError);
    expect(() => parseParams(["--param"])).toThrow("needs a value");
  });

  test("formatTable takes the union of columns in first-seen order", () => {
    expect(formatTable([{ a: 1 }, { b: "x", a: 22 }])).toBe([" a  b", "--  -", " 1", "22  x", ""].join("\n"));
  });
});

/** The Cypher RPC behind POST /api/cypher (services/topology/service.ts answerCypher) on a real Kuzu store. */
describe("cypher.v1 RPC on a real Kuzu store", () => {
  const enc = (req: unknown) => new TextEncoder().encode(JSON.stringify(req));
  let store: KuzuGraphStore;
  let tmp: { dir: string; cleanup: () => void };
  beforeAll(async () => {
    tmp = tempDir("orrery-cypher-rpc-");
    store = new KuzuGraphStore(join(tmp.dir, "db"));
    await store.init();
    const e = nocEstate();
    await store.apply({ nodesUpserted: e.nodes, nodesRemoved: [], edgesUpserted: e.edges, edgesRemoved: [] }, 1);
  });
  afterAll(async () => {
    await store.close();
    tmp.cleanup();
  });

  test("every bypass string is answered read_only and the graph is unchanged", async () => {
    const before = await store.load();
    for (const query of BYPASSES) {
      const r = await answerCypher(store, enc({ query, params: {} }));
      expect([query, r.ok ? "ok" : r.code]).toEqual([query, "read_only"]);
    }
    expect(await store.load()).toEqual(before);
  });

  test("questions are answered with bound parameters; limits and bad requests are coded values", async () => {
    const ok = await answerCypher(store, enc({ query: NOC_QUERIES.servicesWithoutOwner, params: {} }));
    expect(ok.ok && ok.rows).toEqual([
      { host: "app1", service: "cron" },
      { host: "app1", service: "java:orders.jar" },
    ]);
    const evil = await answerCypher(store, enc({ query: "MATCH (n:Entity) WHERE n.name = $x RETURN n.id AS id", params: { x: "' OR 1=1 DETACH DELETE n //" } }));
    expect(evil.ok && evil.rows).toEqual([]);
    const many = await answerCypher(store, enc({ query: "MATCH (n:Entity) RETURN n.id AS id", maxRows: 3 }));
    expect(!many.ok && many.code).toBe("too_many_rows");
    const slow = await answerCypher(store, enc({ query: "UNWIND range(1, 8000) AS i UNWIND range(1, 8000) AS j WITH i, j WHERE (i * j) % 7 = 3 RETURN i ORDER BY i * j LIMIT 1", timeoutMs: 50 }));
    expect(!slow.ok && slow.code).toBe("timeout");
    const bad = await answerCypher(store, enc({ query: "" }));
    expect(!bad.ok && bad.code).toBe("bad_request");
    expect((await store.load()).nodes.length).toBe(nocEstate().nodes.length);
  });
});
