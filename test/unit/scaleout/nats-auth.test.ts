/** The NATS permission model (services/shared/nats-auth.ts) and the production cluster config (deploy/nats). */
import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { topologyFor } from "../../../pipelines/streams.ts";
import { agentPermissions, generateCredentials, renderAuthorization, SERVICES, servicePermissions, usersOf } from "../../../services/shared/nats-auth.ts";

const topo = topologyFor("orr");
const ROOT = resolve(import.meta.dir, "../../..");
const natsServer = Bun.which("nats-server") ?? Bun.which("nats-server", { PATH: "/usr/sbin:/usr/bin:/usr/local/bin" });

test("an agent may publish its own host's discovery and metrics subjects, and read only its own inbox", () => {
  const p = agentPermissions(topo, "web.01");
  expect(p.publish).toEqual(["orr.discovery.v1.web_01", "orr.metrics.v1.agent:web_01"]);
  expect(p.subscribe).toEqual(["_INBOX_agent_web_01.>"]);
  expect(p.allowResponses).toBe(false);
  // no wildcard that reaches another host, no JetStream API
  expect(p.publish.some((s) => s.includes("*") || s.includes(">") || s.startsWith("$JS"))).toBe(false);
});

test("services publish the stream subjects they write and no others", () => {
  const pub = (s: (typeof SERVICES)[number]) => servicePermissions(topo, s).publish;
  expect(pub("metrics")).not.toContain("orr.discovery.v1.>");
  expect(pub("metrics")).not.toContain(topo.subjects.topologyDelta);
  expect(pub("topology")).toContain(topo.subjects.topologyDelta);
  expect(pub("topology")).not.toContain("orr.metrics.v1.>");
  expect(pub("alerts")).toContain(topo.subjects.health);
  // its own lease key, not the topology writer's
  expect(pub("alerts")).toContain(`$KV.${topo.buckets.leases}.alerts`);
  expect(pub("alerts").some((s) => s.startsWith(`$KV.${topo.buckets.leases}.`) && !s.endsWith(".alerts"))).toBe(false);
  expect(pub("history")).not.toContain(topo.subjects.health);
  // the registry's record, its drift and its part of the graph (the topology service follows the last)
  expect(pub("registry")).toEqual(expect.arrayContaining(["orr.registry.v1.>", topo.subjects.drift, topo.subjects.registryGraph, "orr.discovery.v1.>"]));
  expect(pub("ingest")).toEqual(expect.arrayContaining(["orr.discovery.v1.>", "orr.metrics.v1.>", "orr.alerts.v1.>"]));
  expect(servicePermissions(topo, "clickhouse").publish).toEqual([]);
});

test("the authorization block holds hashes, never passwords, and every user", async () => {
  const creds = generateCredentials(["h1"]);
  const block = renderAuthorization(await usersOf(topo, creds));
  for (const c of [creds.admin, ...Object.values(creds.services), ...Object.values(creds.agents)]) {
    expect(block).toContain(`user: "${c.user}"`);
    expect(block).not.toContain(c.password);
  }
  expect(block).toMatch(/password: "\$2[aby]\$10\$/);
});

test.skipIf(!natsServer)("deploy/nats: the cluster config with a rendered authorization block passes nats-server's config check (needs nats-server)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "orrery-deploy-nats-"));
  try {
    const hosts = join(dir, "hosts.txt");
    writeFileSync(hosts, "web-01\n# a comment\ndb-01\n");
    const r = Bun.spawnSync([process.execPath, join(ROOT, "deploy/nats/render-authorization.ts"), "--out", dir, "--hosts", hosts]);
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.stdout.toString()).agents).toBe(2);
    expect(statSync(join(dir, "credentials.json")).mode & 0o777).toBe(0o600);
    const first = JSON.parse(readFileSync(join(dir, "credentials.json"), "utf8"));
    // a second run keeps the passwords it gave
    expect(Bun.spawnSync([process.execPath, join(ROOT, "deploy/nats/render-authorization.ts"), "--out", dir, "--hosts", hosts]).exitCode).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, "credentials.json"), "utf8"))).toEqual(first);
    writeFileSync(join(dir, "nats.conf"), readFileSync(join(ROOT, "deploy/nats/nats.conf"), "utf8").replace("/data/jetstream", join(dir, "js")));
    const check = Bun.spawnSync([natsServer!, "-t", "-c", join(dir, "nats.conf")], { env: { ...process.env, NATS_SERVER_NAME: "nats-0" } });
    expect(`${check.stdout}${check.stderr}`).toContain("configuration file");
    expect(check.exitCode).toBe(0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
