// Aging and lastSeen-persistence settings of the topology service: read once, validated with the key's name.
import { expect, test } from "bun:test";
import { ConfigError, loadConfig } from "../../../services/shared/config.ts";

test("defaults: stale after 3 intervals, removed after 12, lastSeen persisted hourly", () => {
  const c = loadConfig({});
  expect([c.ORRERY_AGING_STALE_AFTER, c.ORRERY_AGING_REMOVE_AFTER, c.ORRERY_LASTSEEN_PERSIST_S]).toEqual([3, 12, 3600]);
  const d = loadConfig({ ORRERY_AGING_STALE_AFTER: "5", ORRERY_AGING_REMOVE_AFTER: "60", ORRERY_LASTSEEN_PERSIST_S: "0" });
  expect([d.ORRERY_AGING_STALE_AFTER, d.ORRERY_AGING_REMOVE_AFTER, d.ORRERY_LASTSEEN_PERSIST_S]).toEqual([5, 60, 0]);
});

test("Kuzu's buffer pool is 512 MiB unless set (half the topology service's 1 GiB budget); below 64 MiB is refused", () => {
  expect(loadConfig({}).ORRERY_KUZU_BUFFER_MIB).toBe(512);
  expect(loadConfig({ ORRERY_KUZU_BUFFER_MIB: "2048" }).ORRERY_KUZU_BUFFER_MIB).toBe(2048);
  expect(() => loadConfig({ ORRERY_KUZU_BUFFER_MIB: "32" })).toThrow(/ORRERY_KUZU_BUFFER_MIB/);
});

test("bad values name the key and what was given", () => {
  const bad = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as Error).message;
    }
    throw new Error(`accepted ${JSON.stringify(env)}`);
  };
  expect(bad({ ORRERY_AGING_STALE_AFTER: "2.5" })).toContain('ORRERY_AGING_STALE_AFTER: Invalid input: expected int, received number (got "2.5")');
  expect(bad({ ORRERY_AGING_REMOVE_AFTER: "soon" })).toContain("ORRERY_AGING_REMOVE_AFTER");
  expect(bad({ ORRERY_LASTSEEN_PERSIST_S: "-1" })).toContain("ORRERY_LASTSEEN_PERSIST_S");
  expect(bad({ ORRERY_AGING_STALE_AFTER: "12", ORRERY_AGING_REMOVE_AFTER: "12" })).toBe(
    "invalid configuration: ORRERY_AGING_REMOVE_AFTER: must be more than ORRERY_AGING_STALE_AFTER (got 12 and 12)",
  );
  expect(bad({ ORRERY_AGING_STALE_AFTER: "20" })).toContain("must be more than ORRERY_AGING_STALE_AFTER (got 12 and 20)");
});
