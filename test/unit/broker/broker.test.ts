/**
 * The broker's pure parts: the catalog's names and schemas ("Catalog Management"), the version and auth checks
 * ("API Version Header", "Platform to Service Broker Authentication"), tenants, placement and NATS users.
 */
import { describe, expect, test } from "bun:test";
import { fromPublic, fromSeed } from "@nats-io/nkeys";
import { AgentlessProbesParams, HostAgentsParams } from "../../../pipelines/contracts/broker.ts";
import { catalog, CLI_NAME, PLANS } from "../../../services/broker/catalog.ts";
import { checkAuth, checkVersion } from "../../../services/broker/http.ts";
import { authorizationBlock, credentialsFor, natsUserFor, placeTenant, tenantFor, tenantIdOf } from "../../../services/broker/tenant.ts";
import type { Strategy } from "../../../pipelines/strategy/schema.ts";

describe("catalog", () => {
  test("offering and plan names are CLI-friendly, ids unique, every plan has maintenance_info and draft-04 schemas", () => {
    const [svc] = catalog().services as { name: string; id: string; plans: { name: string; id: string; maintenance_info: { version: string }; schemas: any }[] }[];
    expect(svc!.name).toMatch(CLI_NAME);
    const ids = new Set([svc!.id]);
    for (const p of svc!.plans) {
      expect(p.name).toMatch(CLI_NAME);
      ids.add(p.id);
      expect(p.maintenance_info.version).toMatch(/^\d+\.\d+\.\d+$/);
      for (const s of [p.schemas.service_instance.create.parameters, p.schemas.service_instance.update.parameters, p.schemas.service_binding.create.parameters])
        expect(s.$schema).toBe("http://json-schema.org/draft-04/schema#");
    }
    expect(ids.size).toBe(1 + PLANS.length);
  });

  test("the published schema and the validation agree: required targets, no unknown keys, defaults applied", () => {
    const probes = (catalog().services as any[])[0].plans.find((p: { name: string }) => p.name === "agentless-probes");
    expect(probes.schemas.service_instance.create.parameters.required).toEqual(["targets"]);
    expect(probes.schemas.service_instance.create.parameters.additionalProperties).toBe(false);
    expect(AgentlessProbesParams.safeParse({}).success).toBe(false);
    expect(AgentlessProbesParams.parse({ targets: ["a"] }).interval_s).toBe(300);
    expect(HostAgentsParams.safeParse({ unknown: 1 }).success).toBe(false);
    expect(HostAgentsParams.parse({ placement: { redundancy: "+2" } }).placement).toEqual({ pick: "first", redundancy: "+2" });
  });
});

describe("request checks", () => {
  const req = (h: Record<string, string>) => new Request("http://x/v2/catalog", { headers: h });
  test("X-Broker-API-Version: 2.13 … 2.x accepted; missing, older or another major is 412 with a description", async () => {
    for (const v of ["2.13", "2.14", "2.17", "2.99"]) expect(checkVersion(req({ "X-Broker-API-Version": v }))).toBeNull();
    for (const v of ["2.12", "2.0", "1.13", "3.0", "", "2", "2.13.1"]) {
      const r = checkVersion(req({ "X-Broker-API-Version": v }))!;
      expect(r.status).toBe(412);
      expect(((await r.json()) as { description: string }).description).toContain("2.13");
    }
    expect(checkVersion(req({}))!.status).toBe(412);
  });
  test("Basic auth: the right user and password only; 401 with WWW-Authenticate otherwise", () => {
    const basic = (s: string) => ({ Authorization: `Basic ${Buffer.from(s).toString("base64")}` });
    expect(checkAuth(req(basic("u:pw:with:colons")), "u", "pw:with:colons")).toBeNull();
    for (const h of [{}, basic("u:wrong"), basic("x:pw"), basic("u"), { Authorization: "Bearer abc" }]) {
      const r = checkAuth(req(h), "u", "pw")!;
      expect(r.status).toBe(401);
      expect(r.headers.get("WWW-Authenticate")).toContain("Basic");
    }
  });
});

describe("tenants", () => {
  test("a tenant's id, subjects, source and dashboard URL follow from the instance id", () => {
    const t = tenantFor({ instanceId: "abc", plan: "wallboard", params: { group_by: "site", level: "hosts" }, prefix: "orrery", gatewayUrl: "https://orrery.example/" });
    expect(t.id).toBe(tenantIdOf("abc"));
    expect(t.id).toMatch(/^t[a-f0-9]{12}$/);
    expect(t.subjects).toEqual({ discovery: `orrery.discovery.v1.${t.id}`, metrics: `orrery.metrics.v1.${t.id}` });
    expect(t.view).toMatchObject({ level: "hosts", groupBy: "site", filters: { tag: `tenant=${t.id}` } });
    const u = new URL(t.dashboardUrl);
    expect(u.origin).toBe("https://orrery.example");
    expect(Object.fromEntries(u.searchParams)).toEqual({ level: "hosts", group: "site", tag: `tenant=${t.id}` });
  });

  test("a NATS user: a real nkey pair, publish limited to the tenant's subjects; the authorization block names it", () => {
    const t = tenantFor({ instanceId: "i1", plan: "host-agents", params: {}, prefix: "orrery", gatewayUrl: "http://g" });
    const u = natsUserFor(t, "nats://n:4222");
    const kp = fromSeed(new TextEncoder().encode(u.seed));
    expect(kp.getPublicKey()).toBe(u.nkey);
    const sig = kp.sign(new TextEncoder().encode("nonce"));
    expect(fromPublic(u.nkey).verify(new TextEncoder().encode("nonce"), sig)).toBe(true);
    expect(u.permissions.publish.allow).toEqual([`orrery.discovery.v1.${t.id}.>`, `orrery.metrics.v1.${t.id}.>`]);
    const block = authorizationBlock([u]);
    expect(block).toStartWith("authorization {");
    expect(block).toContain(u.nkey);
    expect(block).not.toContain(u.seed);
    expect(credentialsFor({ ...t }, u).subject_prefix).toBe("orrery");
  });

  test("placement over the strategy's pools: pick modes, redundancy, capacity and stickiness", () => {
    const strategy: Strategy = {
      version: 1,
      pools: [
        { name: "a", site: "s1", provider: "p", cost: 3, capacity: 1 },
        { name: "b", site: "s2", provider: "p", cost: 1, capacity: 2 },
        { name: "c", site: "s3", provider: "p", cost: 2, capacity: 2 },
      ],
    };
    expect(placeTenant({ strategy, tenant: "t1", pick: "first", redundancy: "+0", existing: [] }).active).toEqual(["a"]);
    expect(placeTenant({ strategy, tenant: "t1", pick: "cheapest", redundancy: "+0", existing: [] }).active).toEqual(["b"]);
    const r11 = placeTenant({ strategy, tenant: "t1", pick: "cheapest", redundancy: "1:1", existing: [] });
    expect(r11.active).toEqual(["b"]);
    expect(r11.standby.length).toBe(1);
    expect(r11.standby[0]).not.toBe("b");
    expect(placeTenant({ strategy, tenant: "t1", pick: "first", redundancy: "+2", existing: [] }).standby.length).toBe(2);
    // pool a is full with t0: first goes to the next pool with room
    const existing = [{ tenant: "t0", placement: { active: ["a"], standby: [], degraded: null }, pick: "first" as const, redundancy: "+0" as const }];
    expect(placeTenant({ strategy, tenant: "t1", pick: "first", redundancy: "+0", existing }).active).toEqual(["b"]);
    // random: a seeded source decides
    const seen = new Set([0.01, 0.5, 0.99].map((x) => placeTenant({ strategy, tenant: "t1", pick: "random", redundancy: "+0", existing: [], random: () => x }).active[0]));
    expect(seen.size).toBeGreaterThan(1);
    // nowhere to go: no active, with the reason
    const full = { version: 1 as const, pools: [{ name: "a", site: "s", provider: "p", cost: 1, capacity: 1 }] };
    const none = placeTenant({ strategy: full, tenant: "t1", pick: "first", redundancy: "+0", existing });
    expect(none.active).toEqual([]);
    expect(none.degraded).toBeTruthy();
  });
});
