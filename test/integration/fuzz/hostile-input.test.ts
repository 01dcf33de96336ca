/**
 * Hostile input through every ingress of a started stack (auth off, as in every stack test), with fast-check: wrong
 * types, huge payloads, deep nesting, bad UTF-8, Cypher/SQL/LDAP injection strings. Every input gets a clear refusal
 * (a 4xx with a JSON error, an error frame, a refusal reply) or lands in the dead-letter stream with a reason; no 5xx
 * but the 503s a port means; every service still alive and answering at the end; nothing of the input in the stores.
 *
 * Seeded (FUZZ_SEED, default 18) and bounded: FUZZ_RUNS inputs per ingress (default 2,000 in CI; 100k for the full
 * run) and at most FUZZ_SECONDS per ingress (default 30). The test prints how many inputs each ingress took.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import fc from "fast-check";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { METRICS_PORTS, metricsPortSetting, type ObservedService } from "../../../services/shared/metrics-registry.ts";
import { startStack, type Stack } from "../../helpers/stack.ts";
import { uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const SEED = Number(process.env.FUZZ_SEED ?? 18);
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 30);
/** every string the fuzzer builds carries it, so a store holding any of it is found by one search */
const MARK = "fzq7";

const SERVICES: ObservedService[] = ["topology", "metrics", "history", "alerts", "registry", "ingest", "gateway", "jobs"];
const freePort = () => {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = s.port;
  s.stop(true);
  return p;
};
const ports = Object.fromEntries(SERVICES.map((s) => [s, freePort()])) as Record<ObservedService, number>;
const prefix = uniquePrefix("fz");
let stack: (Stack & { cleanup: () => void }) | null = null;
let bus: Bus | null = null;
const counts: Record<string, { inputs: number; refused: number; accepted: number; dlq?: number }> = {};

beforeAll(async () => {
  stack = await startStack({ ORRERY_PREFIX: prefix, ORRERY_SIMULATE: "0", ...Object.fromEntries(SERVICES.map((s) => [metricsPortSetting(s), String(ports[s])])) });
  bus = await connectBus({ url: stack.nats, prefix, name: "fuzz" });
  await waitFor(async () => (await fetch(`${stack!.dashboard}/api/snapshot`)).ok, "the gateway's mirror synced", 60_000);
}, 180_000);
afterAll(async () => {
  await bus?.close();
  await stack?.stop();
  stack?.cleanup();
  const rows = Object.entries(counts).map(([k, c]) => `| ${k.padEnd(40)} | ${String(c.inputs).padStart(7)} | ${String(c.refused).padStart(7)} | ${String(c.accepted).padStart(8)} | ${String(c.dlq ?? "").padStart(5)} |`);
  process.stderr.write(`\nhostile input per ingress (seed ${SEED}, up to ${RUNS} inputs / ${SECONDS} s each)\n| ${"ingress".padEnd(40)} |  inputs | refused | accepted |   DLQ |\n|---|---|---|---|---|\n${rows.join("\n")}\n(NATS: accepted = stored by JetStream, then dead-lettered by each durable that read it: the DLQ column)\n`);
});

// ---------------------------------------------------------------------------------------------------------------------
// What hostile input looks like

const INJECTIONS = [
  "' OR '1'='1",
  "'; DROP TABLE orrery.samples; --",
  "1; SELECT * FROM system.users",
  "{id:String}') UNION ALL SELECT name FROM system.tables --",
  "MATCH (n) DETACH DELETE n",
  "CREATE (n:Host {id:'x'}) RETURN n",
  "CALL dbms.killQueries([])",
  "LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l",
  "}) MERGE (x:Evil) //",
  "*)(uid=*))(|(uid=*",
  "admin)(&(objectClass=*)",
  "cn=*,dc=example,dc=org\\00",
  "../../../../etc/passwd",
  "%00%0d%0aSet-Cookie: x=y",
  "${jndi:ldap://127.0.0.1/a}",
  "<script>alert(1)</script>",
  "\u0000\u0001\u001f\u007f",
  "\ud800\udc00\udfff\ud800",
  "🙂".repeat(50),
  "orrery.discovery.v1.>",
];
const marked = (s: string) => `${MARK}${s}`;
const hostileString = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...INJECTIONS).map(marked) },
  { weight: 3, arbitrary: fc.string({ unit: "binary", maxLength: 200 }).map(marked) },
  { weight: 1, arbitrary: fc.integer({ min: 10_000, max: 300_000 }).map((n) => marked("A".repeat(n))) },
);
/** deep nesting: `[[[[…]]]]` or `{"a":{"a":…}}` past any sane depth */
const deepJson = fc.integer({ min: 200, max: 50_000 }).chain((d) => fc.constantFrom(`${"[".repeat(d)}${"]".repeat(d)}`, `${'{"a":'.repeat(d)}1${"}".repeat(d)}`, "[".repeat(d)));
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  hostileString,
  fc.array(hostileString, { maxLength: 5 }),
  fc.dictionary(fc.oneof(hostileString, fc.constantFrom("schema", "host", "id", "query", "type", "__proto__", "constructor")), fc.oneof(hostileString, fc.jsonValue({ maxDepth: 2 })), { maxKeys: 6 }),
);
/** a body: JSON of a hostile value, deep nesting, raw bytes (bad UTF-8 among them), or nothing */
const bodyOf = (deep: boolean): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    { weight: 4, arbitrary: hostileValue.map((v) => new TextEncoder().encode(JSON.stringify(v) ?? "null")) },
    { weight: deep ? 1 : 0, arbitrary: deepJson.map((s) => new TextEncoder().encode(s)) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 4096 }) },
    { weight: 1, arbitrary: fc.constantFrom(new Uint8Array([0xff, 0xfe, 0xfd]), new Uint8Array([0xc3, 0x28]), new Uint8Array([0xed, 0xa0, 0x80]), new Uint8Array(0)) },
  );
const hostileBody = bodyOf(true);
/** the same without deep nesting: for the registry's JSON routes, whose deep-nesting finding has its own test below */
const shallowBody = bodyOf(false);
/** a shape that is close to right, with fields of the wrong type */
const wrongTypes = (fields: string[]) => fc.record(Object.fromEntries(fields.map((f) => [f, fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 3 }), fc.object({ maxDepth: 1 }), hostileString)])));

// ---------------------------------------------------------------------------------------------------------------------
// Running one ingress

async function fuzz<T>(name: string, arb: fc.Arbitrary<T>, send: (x: T) => Promise<"refused" | "accepted">): Promise<void> {
  const c = (counts[name] = { inputs: 0, refused: 0, accepted: 0 });
  try {
    await fc.assert(
      fc.asyncProperty(arb, async (x) => {
        c.inputs++;
        c[await send(x)]++;
      }),
      { numRuns: RUNS, seed: SEED, interruptAfterTimeLimit: SECONDS * 1000, markInterruptAsFailure: false, endOnFailure: true },
    );
  } catch (e) {
    // fast-check's report quotes the whole counterexample (up to megabytes): the reason and its start are enough
    const cause = e instanceof Error && e.cause instanceof Error ? `\ncause: ${e.cause.message.slice(0, 1500)}` : "";
    const msg = `${e instanceof Error ? e.message : String(e)}${cause}`;
    throw new Error(`${name}: ${msg.length > 2400 ? `${msg.slice(0, 600)} … ${msg.slice(-1800)}` : msg}`, { cause: e });
  }
  expect(c.inputs).toBeGreaterThan(0);
}

/** A clear answer: 2xx (accepted), or a 4xx/503 with a JSON error that says why (refused); never a 500 or a crash. */
async function httpOutcome(r: Response, what: string): Promise<"refused" | "accepted"> {
  const text = await r.text();
  if (r.status >= 200 && r.status < 300) return "accepted";
  // refused by the HTTP server itself before any route ran (URI or headers too long, body too large): clear enough
  if (r.status === 413 || r.status === 414 || r.status === 431) return "refused";
  if (r.status === 500 || r.status > 503) throw new Error(`${what}: ${r.status} ${text.slice(0, 300)}`);
  let body: { error?: unknown };
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`${what}: ${r.status} without a JSON error: ${text.slice(0, 300)}`);
  }
  if (typeof body.error !== "string" || !body.error) throw new Error(`${what}: ${r.status} without a reason: ${text.slice(0, 300)}`);
  return "refused";
}
/** fast-check's byte arrays are typed over ArrayBufferLike; fetch and WebSocket want an ArrayBuffer view */
const bytes = (b: Uint8Array) => b as Uint8Array<ArrayBuffer>;
const post = (url: string, body: Uint8Array, type = "application/json") => fetch(url, { method: "POST", body: bytes(body), headers: { "content-type": type } });
/** percent-encoded UTF-8 (a lone surrogate becomes U+FFFD, as a browser would send it) */
const q = (s: string) => Array.from(new TextEncoder().encode(s.slice(0, 2000)), (b) => `%${b.toString(16).padStart(2, "0")}`).join("");

/** messages in the dead-letter stream per subject (<prefix>.dlq.<origin>) */
async function dlqBySubject(): Promise<Record<string, number>> {
  const info = await bus!.jsm.streams.info(bus!.topo.streams.dlq.name, { subjects_filter: ">" });
  return info.state.subjects ?? {};
}
async function caughtUp(durables: string[][]): Promise<void> {
  let state = "";
  let said = Date.now();
  try {
    await waitFor(
      async () => {
        const infos = await Promise.all(durables.map(([stream, durable]) => bus!.jsm.consumers.info(stream!, durable!)));
        state = infos.map((i) => `${i.name}: pending ${i.num_pending}, unacked ${i.num_ack_pending}, redelivered ${i.num_redelivered}`).join("; ");
        if (Date.now() - said > 15_000) {
          said = Date.now();
          process.stderr.write(`waiting for the consumers: ${state}\n`);
        }
        return infos.every((i) => i.num_pending === 0 && i.num_ack_pending === 0);
      },
      `${durables.map((d) => d[1]).join(", ")} caught up`,
      // Each consumer keeps up with the fuzzer, so what is left to drain here takes seconds (under 15 s measured);
      // the rest is room for a loaded machine.
      60_000,
      250,
    );
  } catch (e) {
    // which consumer is behind, and whether it is retrying, is what a failure here needs to say
    throw new Error(`${(e as Error).message} (${state})`);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// HTTP: gateway and ingest

test("gateway: Cypher, views, registry and CSV/XLSX imports refuse hostile input clearly", async () => {
  const gw = stack!.dashboard;
  await fuzz("gateway POST /api/cypher", fc.oneof(hostileBody, fc.tuple(hostileString, hostileValue).map(([query, params]) => new TextEncoder().encode(JSON.stringify({ query, params })))), async (b) =>
    httpOutcome(await post(`${gw}/api/cypher`, b), "cypher"),
  );
  await fuzz("gateway GET /api/view*", fc.tuple(fc.constantFrom("/api/view", "/api/view/entity", "/api/view/search"), fc.dictionary(fc.constantFrom("q", "id", "group", "level", "spec", "focus", "limit"), hostileString, { maxKeys: 3 })), async ([path, params]) =>
    httpOutcome(await fetch(`${gw}${path}?${Object.entries(params).map(([k, v]) => `${k}=${q(v)}`).join("&")}`), path),
  );
  await fuzz("gateway /api/registry (JSON)", fc.oneof(shallowBody, wrongTypes(["id", "name", "owner", "team", "match", "requirements"]).map((o) => new TextEncoder().encode(JSON.stringify(o)))), async (b) =>
    httpOutcome(await post(`${gw}/api/registry/components`, b), "registry components"),
  );
  const csv = fc.array(fc.array(fc.oneof(hostileString, fc.constantFrom("id", "name", "owner", "=cmd|' /C calc'!A0", '"', '""', ",,,", "\r\n")), { maxLength: 8 }), { maxLength: 20 }).map((rows) => rows.map((r) => r.join(",")).join("\n"));
  let applied = 0;
  await fuzz("gateway /api/registry/import (CSV, XLSX)", fc.tuple(fc.constantFrom("csv", "xlsx"), fc.oneof(csv.map((s) => new TextEncoder().encode(s)), hostileBody, fc.uint8Array({ minLength: 4, maxLength: 2048 }).map((b) => new Uint8Array([0x50, 0x4b, 0x03, 0x04, ...b])))), async ([format, b]) => {
    const r = await post(`${gw}/api/registry/import?format=${format}&dryRun=false`, b, format === "csv" ? "text/csv" : "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
    if (!r.ok) return httpOutcome(r, `import ${format}`);
    // a 200 report that says applied: false refused the file, row by row
    const report = (await r.json()) as { applied?: boolean };
    if (report.applied === true) applied++;
    return report.applied === true ? "accepted" : "refused";
  });
  // the graph holds nothing of it, and Cypher's writes never ran
  const snap = await (await fetch(`${gw}/api/snapshot`)).text();
  expect(snap).not.toContain(MARK);
  expect((JSON.parse(snap) as { nodes: unknown[] }).nodes.length).toBeGreaterThan(0);
  const components = await (await fetch(`${gw}/api/registry/components`)).text();
  if (counts["gateway /api/registry (JSON)"]!.accepted + applied === 0) expect(components).not.toContain(MARK);
}, 600_000);

// Found by this suite: a deeply nested JSON body was parsed by the gateway and then could not be re-encoded for the
// registry's NATS request (the stack ran out), a 500; bodies now nest at most MAX_JSON_DEPTH (services/shared/http.ts).
test("gateway /api/registry: deeply nested JSON is refused with a 400", async () => {
  const outcomes: string[] = [];
  for (const depth of [300, 1000, 3000, 10_000, 50_000]) {
    const r = await post(`${stack!.dashboard}/api/registry/components`, new TextEncoder().encode(`${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`));
    outcomes.push(`${depth}: ${r.status}`);
    await r.text();
  }
  process.stderr.write(`registry components, nested JSON: ${outcomes.join(", ")}\n`);
  expect(outcomes.filter((o) => !/: 4\d\d$/.test(o))).toEqual([]);
});

test("ingest: webhooks and remote_write refuse hostile input clearly", async () => {
  const ing = stack!.ingest;
  await fuzz("ingest POST /api/alerts/:source", fc.tuple(fc.oneof(fc.constantFrom("alertmanager", "generic"), hostileString), fc.oneof(hostileBody, wrongTypes(["alerts", "status", "labels", "annotations", "startsAt", "fingerprint"]).map((o) => new TextEncoder().encode(JSON.stringify(o))))), async ([source, b]) =>
    httpOutcome(await post(`${ing}/api/alerts/${q(source)}`, b), "alerts webhook"),
  );
  await fuzz("ingest POST /api/v1/write", fc.oneof(fc.uint8Array({ maxLength: 8192 }), hostileBody), async (b) =>
    httpOutcome(await fetch(`${ing}/api/v1/write`, { method: "POST", body: bytes(b), headers: { "content-type": "application/x-protobuf", "content-encoding": "snappy", "x-prometheus-remote-write-version": "0.1.0" } }), "remote_write"),
  );
  // an accepted webhook stores only alerts that passed alert.v1; none of the fuzzer's refused ones reached the book
  const alerts = await (await fetch(`${stack!.dashboard}/api/alerts`)).text();
  if (counts["ingest POST /api/alerts/:source"]!.accepted === 0) expect(alerts).not.toContain(MARK);
}, 600_000);

// ---------------------------------------------------------------------------------------------------------------------
// WebSocket frames

test("gateway /ws: every hostile frame gets an error frame (or the socket is closed with a reason)", async () => {
  const ws = new WebSocket(`${stack!.dashboard.replace(/^http/, "ws")}/ws?view`);
  const inbox: string[] = [];
  let waiting: (() => void) | null = null;
  let closed: { code: number; reason: string } | null = null;
  ws.onmessage = (e) => {
    inbox.push(typeof e.data === "string" ? e.data : "(binary)");
    waiting?.();
  };
  ws.onclose = (e) => {
    closed = { code: e.code, reason: e.reason };
    waiting?.();
  };
  await new Promise<void>((r, j) => ((ws.onopen = () => r()), (ws.onerror = () => j(new Error("ws did not open")))));
  await Bun.sleep(500);
  inbox.length = 0;
  const frame = fc.oneof(hostileBody.map((b) => ({ binary: true, b })), hostileValue.map((v) => ({ binary: false, b: new TextEncoder().encode(JSON.stringify({ type: "view.subscribe", spec: v })) })));
  await fuzz("gateway WebSocket frames", frame, async (f) => {
    if (closed) throw new Error(`socket closed: ${JSON.stringify(closed)}`);
    const before = inbox.length;
    ws.send(f.binary ? bytes(f.b) : new TextDecoder().decode(f.b));
    const deadline = Date.now() + 5000;
    while (inbox.length === before && !closed && Date.now() < deadline) await new Promise<void>((r) => ((waiting = r), setTimeout(r, 100)));
    const answer = inbox.slice(before).join("\n");
    if (closed) return "refused";
    if (!answer) throw new Error("no answer to a frame within 5 s");
    return /"error"|bad_request/.test(answer) ? "refused" : "accepted";
  });
  const c = closed as { code: number; reason: string } | null;
  if (c) expect(c.code === 1006 ? "abnormal close" : "closed with a code").toBe("closed with a code");
  ws.close();
}, 600_000);

// ---------------------------------------------------------------------------------------------------------------------
// NATS subjects: discovery, metrics, alerts (JetStream → the dead-letter stream), job submissions (request/reply)

test("NATS: hostile discovery, metrics and alerts messages land in the DLQ with a reason; hostile job submissions are refused", async () => {
  const t = bus!.topo;
  const before = await dlqBySubject();
  const published: Record<string, number> = {};
  for (const [name, subject] of [
    ["NATS discovery.v1", (h: string) => t.subjects.discovery(h)],
    ["NATS metrics.v1", (h: string) => t.subjects.metrics(h)],
    ["NATS alerts.v1", (h: string) => t.subjects.alerts(h)],
  ] as const) {
    const payload = fc.oneof(hostileBody, wrongTypes(["schema", "host", "batchId", "samples", "nodes", "edges", "alerts", "at", "seq"]).map((o) => new TextEncoder().encode(JSON.stringify({ ...o, schema: `${name.split(" ")[1]}` }))));
    await fuzz(name, fc.tuple(fc.oneof(fc.constant(`${MARK}host`), hostileString), payload), async ([host, b]) => {
      try {
        await bus!.js.publish(subject(host.slice(0, 200)), b, { timeout: 10_000 });
      } catch (e) {
        // nats-server's own refusal (a payload above max_payload): clear, and nothing stored
        if (/payload|MAX_PAYLOAD|too large/i.test(String(e))) return "refused";
        throw e;
      }
      published[name] = (published[name] ?? 0) + 1;
      return "accepted";
    });
  }
  // every consumer of those streams took each message and dead-lettered it
  await caughtUp([
    [t.streams.discovery.name, t.consumers.topology.durable],
    [t.streams.metrics.name, t.consumers.metrics.durable],
    [t.streams.alerts.name, t.consumers.alerts.durable],
    [t.streams.alerts.name, t.consumers.alertsHistory.durable],
  ]);
  const after = await dlqBySubject();
  const added = (origin: string) => (after[t.subjects.dlq(origin)] ?? 0) - (before[t.subjects.dlq(origin)] ?? 0);
  // each durable dead-letters what it cannot read, under its own origin; alerts have two (the book and the history)
  for (const [name, origins] of [
    ["NATS discovery.v1", [t.consumers.topology.durable]],
    ["NATS metrics.v1", [t.consumers.metrics.durable]],
    ["NATS alerts.v1", [t.consumers.alerts.durable, t.consumers.alertsHistory.durable]],
  ] as const) {
    counts[name]!.dlq = origins.reduce((n, o) => n + added(o), 0);
    for (const o of origins) expect(`${o}: ${added(o)}`).toBe(`${o}: ${published[name] ?? 0}`);
  }
  const last = await bus!.jsm.streams.getMessage(t.streams.dlq.name, { last_by_subj: `${prefix}.dlq.>` }).catch(() => null);
  const reason = last?.header?.get("Orrery-Reason") || last?.header?.get("Orrery-Error") || [...(last?.header?.keys() ?? [])].join(",");
  expect(reason).toBeTruthy();

  await fuzz("NATS rpc jobs.submit", hostileBody, async (b) => {
    const m = await bus!.nc.request(t.subjects.jobs.submitRpc, b, { timeout: 10_000 });
    const reply = JSON.parse(new TextDecoder().decode(m.data)) as { ok: boolean; error?: string };
    if (reply.ok) return "accepted";
    expect(reply.error).toBeTruthy();
    return "refused";
  });
  // nothing of it reached the graph
  expect(await (await fetch(`${stack!.dashboard}/api/snapshot`)).text()).not.toContain(MARK);
}, 900_000);

// ---------------------------------------------------------------------------------------------------------------------

test("every service is still alive and answering", async () => {
  for (const s of SERVICES) {
    const r = await fetch(`http://127.0.0.1:${ports[s]}/readyz`);
    expect(`${s} ${r.status}`).toBe(`${s} 200`);
  }
  expect((await fetch(`${stack!.dashboard}/api/snapshot`)).status).toBe(200);
  expect((await fetch(`${stack!.ingest}/healthz`)).status).toBe(200);
  expect(stack!.logs()).not.toMatch(/restarting|exited with|died/i);
  expect(Object.keys(METRICS_PORTS)).toContain("gateway");
}, 60_000);
