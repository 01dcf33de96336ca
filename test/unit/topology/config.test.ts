// The topology service's settings (aging, lastSeen persistence, Kuzu's buffer pool): read once, validated with the key's name.
import { expect, test } from "bun:test";
import { z } from "zod";
import { ConfigError, parseEnv } from "../../../services/shared/config.ts";
import { loadTopologyConfig } from "../../../services/topology/config.ts";

test("defaults: stale after 3 intervals, removed after 12, lastSeen persisted hourly", () => {
  const c = loadTopologyConfig({});
  expect([c.ORRERY_AGING_STALE_AFTER, c.ORRERY_AGING_REMOVE_AFTER, c.ORRERY_LASTSEEN_PERSIST_S]).toEqual([3, 12, 3600]);
  const d = loadTopologyConfig({ ORRERY_AGING_STALE_AFTER: "5", ORRERY_AGING_REMOVE_AFTER: "60", ORRERY_LASTSEEN_PERSIST_S: "0" });
  expect([d.ORRERY_AGING_STALE_AFTER, d.ORRERY_AGING_REMOVE_AFTER, d.ORRERY_LASTSEEN_PERSIST_S]).toEqual([5, 60, 0]);
});

test("Kuzu's buffer pool is 512 MiB unless set (half the topology service's 1 GiB budget); below 64 MiB is refused", () => {
  expect(loadTopologyConfig({}).ORRERY_KUZU_BUFFER_MIB).toBe(512);
  expect(loadTopologyConfig({ ORRERY_KUZU_BUFFER_MIB: "2048" }).ORRERY_KUZU_BUFFER_MIB).toBe(2048);
  expect(() => loadTopologyConfig({ ORRERY_KUZU_BUFFER_MIB: "32" })).toThrow(/ORRERY_KUZU_BUFFER_MIB/);
});

const refusal = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error("accepted");
};

test("bad values name the key and what was given", () => {
  const bad = (env: Record<string, string>) => refusal(() => loadTopologyConfig(env));
  expect(bad({ ORRERY_AGING_STALE_AFTER: "2.5" })).toContain('ORRERY_AGING_STALE_AFTER: Invalid input: expected int, received number (got "2.5")');
  expect(bad({ ORRERY_AGING_REMOVE_AFTER: "soon" })).toContain("ORRERY_AGING_REMOVE_AFTER");
  expect(bad({ ORRERY_LASTSEEN_PERSIST_S: "-1" })).toContain("ORRERY_LASTSEEN_PERSIST_S");
  expect(bad({ ORRERY_AGING_STALE_AFTER: "12", ORRERY_AGING_REMOVE_AFTER: "12" })).toBe(
    "invalid configuration: ORRERY_AGING_REMOVE_AFTER: must be more than ORRERY_AGING_STALE_AFTER (got 12 and 12)",
  );
  expect(bad({ ORRERY_AGING_STALE_AFTER: "20" })).toContain("must be more than ORRERY_AGING_STALE_AFTER (got 12 and 20)");
  expect(bad({ ORRERY_GRAPH: "neo4j" })).toBe("invalid configuration: NEO4J_URL: required when ORRERY_GRAPH=neo4j");
});

test("a service validates only the keys it declares: another service's bad setting is not its concern", () => {
  const env = { NATS_URL: "nats://10.0.0.1:4222", ORRERY_KUZU_BUFFER_MIB: "32", CLICKHOUSE_URL: "not a url" };
  // e.g. the history service, which reads no graph settings
  const Keys = z.object({ NATS_URL: z.string(), ORRERY_HISTORY_TTL_DAYS: z.coerce.number().int().min(1).default(90) });
  expect(parseEnv(Keys, env)).toEqual({ NATS_URL: "nats://10.0.0.1:4222", ORRERY_HISTORY_TTL_DAYS: 90 });
  expect(refusal(() => parseEnv(Keys, { ORRERY_HISTORY_TTL_DAYS: "0" }))).toBe(
    'invalid configuration: NATS_URL: Invalid input: expected string, received undefined (got undefined); ORRERY_HISTORY_TTL_DAYS: Too small: expected number to be >=1 (got "0")',
  );
});
