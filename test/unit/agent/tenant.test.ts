/** The agent's tenant settings (ORRERY_TENANT, the nkey seed) and the annotations that mark its entities. */
import { expect, test } from "bun:test";
import { createUser } from "@nats-io/nkeys";
import { tenantAnnotations } from "../../../services/agent/agent.ts";
import { AgentConfigError, resolveAgentConfig } from "../../../services/agent/config.ts";
import { topologyFor } from "../../../pipelines/streams.ts";

const SEED = new TextDecoder().decode(createUser().getSeed());
const noFile = (p: string): string => {
  throw new Error(`ENOENT: ${p}`);
};
const config = (env: Record<string, string>, argv: string[] = [], readFile = noFile) => {
  const r = resolveAgentConfig(argv, env, readFile);
  if (r.help) throw new Error("unexpected help");
  return r.config;
};

test("ORRERY_TENANT takes the tenant id or the binding's graph_source; --tenant overrides it", () => {
  expect(config({ ORRERY_TENANT: "t0123456789ab" }).tenant).toBe("t0123456789ab");
  expect(config({ ORRERY_TENANT: "tenant:t0123456789ab" }).tenant).toBe("t0123456789ab");
  expect(config({ ORRERY_TENANT: "tenant:t0123456789ab" }, ["--tenant", "tother"]).tenant).toBe("tother");
  expect(config({}).tenant).toBeUndefined();
});

test("a tenant that is not one subject token is refused, naming the variable", () => {
  expect(() => config({ ORRERY_TENANT: "a.b" })).toThrow(/environment variable ORRERY_TENANT: a tenant id/);
  expect(() => config({ ORRERY_TENANT: "a>" })).toThrow(AgentConfigError);
});

test("the seed comes from NATS_NKEY_SEED or a seed file (trimmed; the file wins); a bad one is named, never echoed", () => {
  expect(config({ NATS_NKEY_SEED: SEED }).natsNkeySeed).toBe(SEED);
  const other = new TextDecoder().decode(createUser().getSeed());
  expect(config({ NATS_NKEY_SEED: SEED, NATS_NKEY_SEED_FILE: "/s" }, [], () => `${other}\n`).natsNkeySeed).toBe(other);
  expect(config({}, ["--nats-nkey-seed-file", "/s"], () => ` ${SEED} `).natsNkeySeed).toBe(SEED);
  expect(() => config({ NATS_NKEY_SEED_FILE: "/missing" })).toThrow(/cannot read the nkey seed file \/missing/);
  let msg = "";
  try {
    config({ NATS_NKEY_SEED: "SAnotauserseed" });
  } catch (e) {
    msg = (e as Error).message;
  }
  expect(msg).toContain("environment variable NATS_NKEY_SEED: an nkey user seed");
  expect(msg).not.toContain("SAnotauserseed");
});

test("tenant subjects keep the tenant a token of its own", () => {
  const t = topologyFor("orrery");
  expect(t.subjects.tenantDiscovery("t0123456789ab", "web.01")).toBe("orrery.discovery.v1.t0123456789ab.web_01");
  expect(t.subjects.tenantMetrics("t0123456789ab", "agent:web01")).toBe("orrery.metrics.v1.t0123456789ab.agent:web01");
  expect(t.subjects.tenantDiscovery("a.b", "h").split(".")).toHaveLength(5);
});

test("the tenant's annotations: the host, and each listening service once (whatever addresses it listens on)", () => {
  const l = (proto: "tcp" | "udp", port: number) => ({ proto, port });
  expect(tenantAnnotations("t1", "h", [l("tcp", 80), l("tcp", 80), l("udp", 53), l("tcp", 53)])).toEqual([
    { type: "entity.annotated", match: { host: "h" }, props: { tenant: "t1" } },
    { type: "entity.annotated", match: { host: "h", port: 80, proto: "tcp" }, props: { tenant: "t1" } },
    { type: "entity.annotated", match: { host: "h", port: 53, proto: "udp" }, props: { tenant: "t1" } },
    { type: "entity.annotated", match: { host: "h", port: 53, proto: "tcp" }, props: { tenant: "t1" } },
  ]);
});
