import { describe, expect, test } from "bun:test";
import { Parser } from "@asyncapi/parser";
import { asyncApiDocument, MESSAGES } from "../../../pipelines/contracts/asyncapi.ts";
import { loadExportersFile, metricsText } from "../../../services/exporters/build.ts";
import { retryAfterMs, RateLimiter } from "../../../services/exporters/http.ts";
import { mapEdge, mapNode, wantsIncident } from "../../../services/exporters/map.ts";
import { sign, verifyWebhook } from "../../../services/exporters/vendors/webhook.ts";
import { ConfigError } from "../../../services/shared/config.ts";

const cfgText = JSON.stringify({
  exporters: [
    {
      name: "snow",
      vendor: "servicenow",
      url: "http://127.0.0.1:1",
      classes: { host: { class: "cmdb_ci_linux_server", attributes: { name: "name", os: "props.os", discovery_source: "=Orrery" }, keys: ["name"] } },
      relations: { RUNS: "Runs on::Runs" },
    },
  ],
});

describe("exporter configuration", () => {
  test("a valid file maps nodes and edges by configuration", () => {
    const f = loadExportersFile("x.json", cfgText);
    const c = f.exporters[0]!;
    const ci = mapNode(c, { id: "host:a", kind: "host", name: "a", source: "agent", props: { os: "linux" } });
    expect(ci).toEqual({ ref: "host:a", kind: "host", class: "cmdb_ci_linux_server", name: "a", values: { name: "a", os: "linux", discovery_source: "Orrery" }, keys: { name: "a" } });
    expect(mapNode(c, { id: "p", kind: "process", name: "p", source: "s", props: {} })).toBeNull();
    expect(mapEdge(c, { id: "e", kind: "RUNS", src: "a", dst: "b" })).toEqual({ ref: "e", type: "Runs on::Runs", src: "a", dst: "b" });
    expect(mapEdge(c, { id: "e", kind: "CONNECTS", src: "a", dst: "b" })).toBeNull();
    expect(wantsIncident(c, "critical")).toBe(true);
    expect(wantsIncident(c, "warning")).toBe(false);
  });
  test("YAML is read by its extension", () => {
    const f = loadExportersFile("x.yaml", "exporters:\n  - name: hook\n    vendor: webhook\n    url: http://127.0.0.1:9/in\n    options: { secretEnv: HOOK_SECRET }\n");
    expect(f.exporters[0]!.vendor).toBe("webhook");
  });
  test("a bad file is a ConfigError naming the field", () => {
    expect(() => loadExportersFile("x.json", JSON.stringify({ exporters: [{ name: "Bad Name", vendor: "x", url: "nope" }] }))).toThrow(ConfigError);
    expect(() => loadExportersFile("x.json", JSON.stringify({ exporters: [{ name: "a", vendor: "webhook", url: "http://x", classes: { host: { class: "c", attributes: { n: "nonsense" } } } }] }))).toThrow(/props\.<key>/);
    expect(() => loadExportersFile("x.json", "{")).toThrow(/not JSON/);
  });
});

describe("vendor HTTP rules", () => {
  test("Retry-After as seconds or an HTTP date", () => {
    expect(retryAfterMs("3")).toBe(3000);
    expect(retryAfterMs(new Date(10_000 + 5000).toUTCString(), 10_000)).toBe(5000);
    expect(retryAfterMs(null)).toBeUndefined();
    expect(retryAfterMs("soon")).toBeUndefined();
  });
  test("the rate limit spaces requests", async () => {
    const r = new RateLimiter(20);
    const t = performance.now();
    for (let i = 0; i < 30; i++) await r.take();
    // 20 saved up at once, the 10 others at 50 ms each
    expect(performance.now() - t).toBeGreaterThan(400);
  });
});

describe("webhook signatures", () => {
  test("valid, tampered, stale", () => {
    const body = '{"id":"x"}';
    const ts = Math.floor(Date.now() / 1000);
    const h = new Headers({ "webhook-id": "x", "webhook-timestamp": String(ts), "webhook-signature": sign("s3cret", "x", ts, body) });
    expect(verifyWebhook("s3cret", h, body)).toEqual({ ok: true, id: "x" });
    expect(verifyWebhook("s3cret", h, '{"id":"y"}').ok).toBe(false);
    expect(verifyWebhook("other", h, body).ok).toBe(false);
    expect(verifyWebhook("s3cret", h, body, { now: Date.now() + 3600_000 })).toEqual({ ok: false, reason: "timestamp outside the tolerance window" });
  });
});

describe("metrics text", () => {
  test("one line per exporter and stream", () => {
    const t = metricsText([{ name: "snow", vendor: "servicenow", phase: "following", rev: 3, lag: { topology: 2, health: 0 }, requests: 5, retries: 1, errors: 1, deadLettered: 0, exported: 4, lastError: null }]);
    expect(t).toContain('orrery_exporter_lag_messages{exporter="snow",vendor="servicenow",stream="topology"} 2');
    expect(t).toContain('orrery_exporter_requests_total{exporter="snow",vendor="servicenow"} 5');
  });
});

describe("AsyncAPI document", () => {
  test("every example is accepted by its own schema", () => {
    for (const [k, m] of Object.entries(MESSAGES)) {
      const r = m.schema.safeParse(m.example);
      expect({ k, ok: r.success, err: r.success ? null : r.error.message }).toEqual({ k, ok: true, err: null });
    }
  });
  test("valid AsyncAPI 3 per @asyncapi/parser, with every stream's subject", async () => {
    const doc = asyncApiDocument({ prefix: "orrery" });
    const { document, diagnostics } = await new Parser().parse(JSON.stringify(doc));
    const errors = diagnostics.filter((d) => d.severity === 0);
    expect(errors.map((e) => `${e.path.join(".")}: ${e.message}`)).toEqual([]);
    expect(document).toBeDefined();
    const addresses = document!.channels().all().map((c) => c.address());
    for (const a of ["{prefix}.topology.delta.v1", "{prefix}.health.v1", "{prefix}.alerts.v1.{source}", "{prefix}.registry.v1.{type}", "{prefix}.dlq.{origin}", "/ws"]) expect(addresses).toContain(a);
    expect(document!.components().messages().all().length).toBe(Object.keys(MESSAGES).length);
  });
});
