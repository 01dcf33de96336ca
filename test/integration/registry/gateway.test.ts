/**
 * The registry through the gateway's doors, as people from a real slapd use it: the gateway and the registry service
 * run as child processes (their main.ts, auth on) on a real nats-server. bob and pobrien are viewers (group
 * orrery-viewers), alice an expert (ops-leads), dave an admin (orrery-admins). Owners edit their own components (by
 * user or by directory group), a viewer edits nothing else, an expert signs off; imports (dry run, all-or-nothing,
 * progress as NDJSON), exports, concurrent edits (409), and the OpenAPI document with its reference page.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join, resolve } from "node:path";
import ExcelJS from "exceljs";
import { slapdMissing, startSlapd, type TestSlapd } from "../../helpers/ldap.ts";
import { spawnUntilReady, type ReadyProcess } from "../../helpers/process.ts";
import { tempDir, waitFor } from "../../helpers/tmp.ts";
import { existsSync, writeFileSync } from "node:fs";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import type { TopoNode } from "../../../pipelines/contracts/topology.ts";
import { createToken, ldapEnv, login, startAuthStack, type AuthStack } from "../identity/stack.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const noSlapd = slapdMissing();
let slapd: TestSlapd;
let stack: AuthStack;
let registry: ReadyProcess;
let bus: Bus;
const cookies: Record<string, string> = {};

beforeAll(async () => {
  if (noSlapd) return;
  slapd = await startSlapd();
  stack = await startAuthStack({ env: ldapEnv(slapd) });
  // the topology service's snapshot answer, from the test: one discovered service
  bus = await connectBus({ url: stack.nats.url, prefix: stack.prefix, name: "registry-gateway-test" });
  const svc: TopoNode = { id: "service:web-1:java:orders.jar:8080", kind: "process", name: "java:orders.jar", source: "t", props: { host: "web-1", service: "java:orders.jar", ports: "8080" }, firstSeen: 1, lastSeen: Date.now() };
  bus.nc.subscribe(bus.topo.subjects.snapshotRpc, {
    callback: (_e, m) => {
      m.respond(new TextEncoder().encode(JSON.stringify({ schema: "topology.snapshot.v1", rev: 1, at: Date.now(), nodes: [svc], edges: [], part: 0, parts: 1 })));
    },
  });
  registry = await spawnUntilReady([process.execPath, join(ROOT, "services/registry/main.ts")], {
    cwd: ROOT,
    env: { ...process.env, NATS_URL: stack.nats.url, ORRERY_PREFIX: stack.prefix, ORRERY_LOG_QUIET: "0", ORRERY_REGISTRY_DRIFT_EVERY_S: "0.2" },
    ready: /^(\{"event":"ready".*)\n/m,
    timeoutMs: 60_000,
    name: "the registry",
  });
  for (const who of ["bob", "pobrien", "alice", "dave"]) {
    const r = await login(stack.gateway, who, slapd.users[who]!.password);
    expect(r.res.status).toBe(200);
    cookies[who] = r.cookie!;
  }
}, 120_000);
afterAll(async () => {
  registry?.proc.kill("SIGTERM");
  await registry?.proc.exited;
  await bus?.close();
  await stack?.stop();
  await slapd?.stop();
});

async function api(who: string | null, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${stack.gateway}${path}`, {
    method,
    headers: { ...(who ? { cookie: cookies[who]! } : {}), ...(body !== undefined && typeof body !== "string" ? { "content-type": "application/json" } : {}), ...headers },
    // a string is sent as it is (a CSV file); anything else as JSON
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON (a file, a page)
  }
  return { status: res.status, body: parsed };
}

describe.skipIf(!!noSlapd)(`registry through the gateway${noSlapd ? ` (${noSlapd})` : ""}`, () => {
  test("doors: no credentials 401; a viewer reads but cannot create; an admin creates", async () => {
    expect((await api(null, "GET", "/api/registry/components")).status).toBe(401);
    expect((await api("bob", "GET", "/api/registry/components")).status).toBe(200);
    expect((await api("bob", "POST", "/api/registry/components", { name: "x" })).status).toBe(403);
    expect((await api("alice", "POST", "/api/registry/components", { name: "x" })).status).toBe(403);
    const r = await api("dave", "POST", "/api/registry/components", { name: "Door Test", tags: ["doors"] });
    expect(r.status).toBe(201);
    expect(r.body.id).toBe("door-test");
    expect((await api("bob", "GET", "/api/registry/components?tag=doors")).body.components.map((c: { id: string }) => c.id)).toEqual(["door-test"]);
  });

  test("owners edit their own component (as a user or through a directory group); a viewer cannot edit another's", async () => {
    const byUser = (await api("dave", "POST", "/api/registry/components", { name: "bobs", owners: ["user:bob"] })).body;
    const byGroup = (await api("dave", "POST", "/api/registry/components", { name: "viewers-team", owners: ["group:orrery-viewers"] })).body;
    const other = (await api("dave", "POST", "/api/registry/components", { name: "daves", owners: ["user:dave"] })).body;
    // LDAP filter metacharacters in an owner are a name like any other: they match no one
    const wild = (await api("dave", "POST", "/api/registry/components", { name: "wild", owners: ["group:*", "user:*)(uid=*"] })).body;
    expect((await api("bob", "PATCH", `/api/registry/components/bobs`, { rev: byUser.rev, description: "mine" })).status).toBe(200);
    expect((await api("bob", "PATCH", `/api/registry/components/daves`, { rev: other.rev, description: "not mine" })).status).toBe(403);
    expect((await api("bob", "PATCH", `/api/registry/components/wild`, { rev: wild.rev, description: "x" })).status).toBe(403);
    expect((await api("pobrien", "PATCH", `/api/registry/components/bobs`, { rev: byUser.rev + 1000, description: "x" })).status).toBe(403);
    // the group's members are known once the directory is synced
    const viaGroup = await waitFor(async () => {
      const r = await api("pobrien", "PATCH", `/api/registry/components/viewers-team`, { rev: byGroup.rev, description: "ours" });
      return r.status === 200 ? r : null;
    }, "pobrien to edit through orrery-viewers");
    expect(viaGroup.body.description).toBe("ours");
    expect((await api("bob", "DELETE", `/api/registry/components/bobs?rev=0`)).status).toBe(403);
    const audit = await api("bob", "GET", "/api/registry/components/bobs/audit");
    expect(audit.body.entries[0]).toMatchObject({ by: { login: "bob", role: "viewer" }, changes: [{ field: "description", old: "", new: "mine" }] });
  });

  test("concurrent edits: the second at the same revision is a 409 with the current record", async () => {
    const c = (await api("dave", "POST", "/api/registry/components", { name: "contended" })).body;
    const [a, b] = await Promise.all([api("dave", "PUT", "/api/registry/components/contended", { name: "contended", description: "a", rev: c.rev }), api("dave", "PUT", "/api/registry/components/contended", { name: "contended", description: "b", rev: c.rev })]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    const lost = a.status === 409 ? a : b;
    expect(lost.body.code).toBe("conflict");
    expect(lost.body.detail.current.rev).toBeGreaterThan(c.rev);
  });

  test("sign-off: the owner sets a status, a viewer cannot sign it off, the expert can", async () => {
    expect((await api("dave", "PUT", "/api/registry/requirement-groups/ops", { name: "Operations" })).status).toBe(200);
    expect((await api("alice", "PUT", "/api/registry/requirement-groups/ops", { name: "Operations" })).status).toBe(403);
    expect((await api("dave", "PUT", "/api/registry/requirements/runbook", { group: "ops", name: "Has a runbook", signoff: "expert" })).status).toBe(200);
    await api("dave", "POST", "/api/registry/components", { name: "signed", owners: ["user:bob"] });
    const set = await api("bob", "PUT", "/api/registry/components/signed/requirements/runbook", { status: "yes", notes: "see wiki", links: ["https://wiki/runbook"], rev: 0 });
    expect(set.status).toBe(200);
    expect((await api("bob", "POST", "/api/registry/components/signed/requirements/runbook/signoff", { rev: set.body.rev })).status).toBe(403);
    const ok = await api("alice", "POST", "/api/registry/components/signed/requirements/runbook/signoff", { rev: set.body.rev });
    expect(ok.status).toBe(200);
    expect(ok.body.signedOff).toMatchObject({ by: "alice", role: "expert" });
    const d = await api("bob", "GET", "/api/registry/components/signed");
    expect(d.body.readiness).toMatchObject({ total: 1, yes: 1, signedOff: 1, ready: 1 });
  });

  test("import: a dry run reports every problem by row and column; an apply with a bad row changes nothing; NDJSON progress", async () => {
    const before = (await api("bob", "GET", "/api/registry/audit?limit=1")).body.entries[0].seq;
    const csv = "name,category,owners,depends_on\r\nimp-a,service,user:bob,imp-b\r\nimp-b,database,,\r\nimp-c,spaceship,bob,ghost\r\n";
    const dry = await api("dave", "POST", "/api/registry/import?format=csv&dryRun=true", csv, { "content-type": "text/csv" });
    expect(dry.status).toBe(200);
    expect(dry.body.problems.map((p: { row: number; column: string }) => `${p.row}:${p.column}`)).toEqual(["4:category", "4:depends_on", "4:owners"]);
    const apply = await api("dave", "POST", "/api/registry/import?format=csv&dryRun=false", csv);
    expect(apply.body).toMatchObject({ applied: false, created: 2 });
    expect((await api("bob", "GET", "/api/registry/components/imp-a")).status).toBe(404);
    expect((await api("bob", "GET", "/api/registry/audit?limit=1")).body.entries[0].seq).toBe(before);
    expect((await api("bob", "POST", "/api/registry/import?format=csv", csv)).status).toBe(403);

    const good = csv.split("\r\n").slice(0, 3).join("\r\n") + "\r\n";
    const res = await fetch(`${stack.gateway}/api/registry/import?format=csv&dryRun=false&file=good.csv`, { method: "POST", headers: { cookie: cookies.dave!, accept: "application/x-ndjson" }, body: good });
    expect(res.headers.get("content-type")).toContain("application/x-ndjson");
    const lines = (await res.text()).trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.some((l) => l.progress)).toBe(true);
    expect(lines.at(-1).report).toMatchObject({ applied: true, created: 2, problems: [] });
    expect((await api("bob", "GET", "/api/registry/components/imp-a")).body.component.dependsOn).toEqual(["imp-b"]);
  });

  test("export as CSV and as an XLSX workbook", async () => {
    const csv = await fetch(`${stack.gateway}/api/registry/export?format=csv`, { headers: { cookie: cookies.bob! } });
    expect(csv.headers.get("content-type")).toContain("text/csv");
    expect((await csv.text()).split("\r\n")[0]).toStartWith("name,category,description");
    const x = await fetch(`${stack.gateway}/api/registry/export?format=xlsx`, { headers: { cookie: cookies.bob! } });
    expect(x.status).toBe(200);
    const wb = new ExcelJS.Workbook();
    await wb.xlsx.load(await x.arrayBuffer());
    expect(wb.worksheets.map((w) => w.name)).toEqual(["components", "dependencies"]);
    expect(wb.getWorksheet("components")!.rowCount).toBeGreaterThan(1);
  });

  test("the OpenAPI 3 document comes from the zod schemas; the reference page reads it", async () => {
    const doc = await api("bob", "GET", "/api/registry/openapi.json");
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toStartWith("3.");
    expect(Object.keys(doc.body.paths)).toContain("/api/registry/components/{id}");
    expect(doc.body.components.schemas.Component.properties.owners.type).toBe("array");
    expect(doc.body.components.schemas.MatchRule.properties).toHaveProperty("fingerprint");
    const page = await api("bob", "GET", "/api/registry/reference");
    expect(page.status).toBe(200);
    expect(String(page.body)).toContain("openapi.json");
    expect((await api(null, "GET", "/api/registry/openapi.json")).status).toBe(401);
  });

  test("a discovered service shows its component and owners, the component its instance; drift lists the rest", async () => {
    await api("dave", "POST", "/api/registry/components", { name: "orders-svc", owners: ["group:orrery-viewers"], match: [{ fingerprint: "java:orders.jar" }] });
    const d = await waitFor(async () => {
      const r = await api("bob", "GET", "/api/registry/drift");
      return r.status === 200 ? r : null;
    }, "drift from the registry (after its mirror syncs)", 30_000);
    expect(d.body.schema).toBe("registry.drift.v1");
    expect(d.body.notRunning).toContain("door-test");
    expect(d.body.notRunning).not.toContain("orders-svc");
    expect(d.body.unregistered).toEqual([]);
    const s = await api("bob", "GET", "/api/registry/services?id=service:web-1:java:orders.jar:8080");
    expect(s.body.components).toEqual([{ id: "orders-svc", name: "orders-svc", owners: ["group:orrery-viewers"], maintainers: [], productManager: null }]);
    expect((await api("bob", "GET", "/api/registry/components/orders-svc")).body.instances).toMatchObject([{ id: "service:web-1:java:orders.jar:8080", host: "web-1" }]);
    // the drift event reached the DRIFT stream
    await waitFor(async () => (await bus.jsm.streams.info(bus.topo.streams.drift.name)).state.messages > 0, "a registry.drift.v1 event");
  });

  test("orrery registry import (dry run, then --apply with a progress bar), export and drift", async () => {
    const { token } = await createToken(stack.gateway, { cookie: cookies.dave! }, { name: "registry-cli" });
    const tmp = tempDir("orrery-registry-cli-");
    const cli = async (...args: string[]) => {
      const p = Bun.spawn([process.execPath, join(ROOT, "cli/main.ts"), "registry", ...args, "--url", stack.gateway, "--token", token], { cwd: tmp.dir, stdout: "pipe", stderr: "pipe", env: { ...process.env, ORRERY_CONFIG: join(tmp.dir, "none.json") } });
      const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
      return { code, out, err };
    };
    try {
      writeFileSync(join(tmp.dir, "bad.csv"), "name,category\ncli-a,service\ncli-b,spaceship\n");
      const dry = await cli("import", "bad.csv");
      expect(dry.code).toBe(1);
      expect(dry.out).toContain('row 3, category: "spaceship" is not in the category list');
      writeFileSync(join(tmp.dir, "good.csv"), "name,category\ncli-a,service\ncli-b,database\n");
      const applied = await cli("import", "good.csv", "--apply");
      expect(applied.code).toBe(0);
      expect(applied.out).toContain("imported");
      expect(applied.err).toMatch(/\[#+\] 100% applying 2\/2/);
      expect((await api("bob", "GET", "/api/registry/components/cli-b")).status).toBe(200);
      const x = await cli("export", "--format", "xlsx", "-o", "out.xlsx");
      expect(x.code).toBe(0);
      expect(existsSync(join(tmp.dir, "out.xlsx"))).toBe(true);
      const csv = await cli("export");
      expect(csv.out).toContain("cli-b,database");
      const drift = await cli("drift");
      expect(drift.code).toBe(0);
      expect(drift.out).toContain("components with no running instance:");
      expect((await cli("import", "missing.csv")).code).toBe(2);
    } finally {
      tmp.cleanup();
    }
  }, 60_000);
});
