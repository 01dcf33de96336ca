/**
 * The registry service against a real nats-server (its record of truth is the REGISTRY stream): CRUD with the audit
 * trail, owners and roles, sign-off, concurrent edits (409, also between two registry processes on one stream),
 * imports (dry run, all-or-nothing apply, 10k rows over the chunked request/reply), injection strings kept as plain
 * text, replay of the stream into the same state, and drift with its registry.drift.v1 event. Each test has its
 * own prefix.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import type { Caller, Component, ComponentDetail, Drift, ImportReport, RequirementStatus } from "../../../pipelines/contracts/registry.ts";
import type { TopoEdge, TopoNode } from "../../../pipelines/contracts/topology.ts";
import { callRegistry, RegistryClientError } from "../../../services/registry/client.ts";
import { readXlsx, writeCsv, writeXlsx } from "../../../services/registry/files.ts";
import type { GraphView } from "../../../services/registry/match.ts";
import { Registry } from "../../../services/registry/registry.ts";
import { serveRegistry, watchDrift } from "../../../services/registry/service.ts";
import { startAnnotations } from "../../../services/registry/annotate.ts";
import { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { applyDiscovery, emptyModel } from "../../../pipelines/stages/topology/index.ts";
import { batch, hostSeen, listen, proc } from "../../helpers/discovery.ts";
import { JetStreamRegistryLog } from "../../../services/registry/store.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const log = makeLogger("registry-test", true);
const admin: Caller = { login: "dave", role: "admin", groups: [] };
const viewer: Caller = { login: "bob", role: "viewer", groups: ["cn=orrery-viewers,ou=groups,dc=orrery,dc=test"] };
const expert: Caller = { login: "alice", role: "expert", groups: [] };

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats.stop();
});

interface Node {
  bus: Bus;
  store: JetStreamRegistryLog;
  registry: Registry;
  stop(): Promise<void>;
}
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** a registry process: its own connection, log and server, on `prefix` */
async function startRegistry(prefix: string, graph?: () => GraphView | undefined): Promise<Node> {
  const bus = await connectBus({ url: nats.url, prefix, name: "registry-test" });
  const store = await JetStreamRegistryLog.open(bus, log);
  const registry = new Registry({ log: store, graph });
  const server = serveRegistry(bus, registry, log);
  const node = {
    bus,
    store,
    registry,
    stop: async () => {
      await server.stop();
      await store.close();
      await bus.close();
    },
  };
  cleanups.push(node.stop);
  return node;
}

async function refused(p: Promise<unknown>): Promise<RegistryClientError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RegistryClientError) return e;
    throw e;
  }
  throw new Error("expected the registry to refuse");
}

const call = <T>(bus: Bus, op: string, who: Caller, input: unknown) => callRegistry<T>(bus, op, who, input);

describe("components", () => {
  test("create, read, change at a revision, delete; every change in the audit trail with who, when, old → new", async () => {
    const { bus } = await startRegistry(uniquePrefix("reg"));
    const created = await call<Component>(bus, "components.create", admin, { name: "Orders API", category: "service", owners: ["user:bob"], tags: ["payments", "core"] });
    expect(created.id).toBe("orders-api");
    expect(created.rev).toBeGreaterThan(0);
    const db = await call<Component>(bus, "components.create", admin, { name: "orders-db", category: "database" });
    const changed = await call<Component>(bus, "components.patch", admin, { id: "orders-api", body: { rev: created.rev, description: "takes orders", dependsOn: [db.id] } });
    expect(changed.description).toBe("takes orders");
    expect(changed.rev).toBeGreaterThan(created.rev);

    const detail = await call<ComponentDetail>(bus, "components.get", viewer, { id: "orders-api" });
    expect(detail.component.dependsOn).toEqual(["orders-db"]);
    expect((await call<ComponentDetail>(bus, "components.get", viewer, { id: "orders-db" })).dependents).toEqual(["orders-api"]);

    const audit = await call<{ entries: { by: { login: string }; at: number; type: string; changes: { field: string; old: unknown; new: unknown }[] }[] }>(bus, "audit", viewer, { component: "orders-api" });
    expect(audit.entries.map((e) => e.type)).toEqual(["component.put", "component.put"]);
    expect(audit.entries[0]!.by.login).toBe("dave");
    expect(audit.entries[0]!.changes).toContainEqual({ field: "description", old: "", new: "takes orders" });
    expect(audit.entries[0]!.changes).toContainEqual({ field: "dependsOn", old: [], new: ["orders-db"] });
    expect(audit.entries[1]!.changes).toContainEqual({ field: "name", old: null, new: "Orders API" });

    // a dependency of another component cannot go; a stale revision is a conflict
    expect((await refused(call(bus, "components.delete", admin, { id: "orders-db", rev: db.rev }))).code).toBe("conflict");
    expect((await refused(call(bus, "components.delete", admin, { id: "orders-api", rev: created.rev }))).code).toBe("conflict");
    expect(await call(bus, "components.delete", admin, { id: "orders-api", rev: changed.rev })).toEqual({ deleted: "orders-api" });
    expect((await refused(call(bus, "components.get", viewer, { id: "orders-api" }))).code).toBe("not_found");
    const estate = await call<{ entries: { type: string; target: string }[] }>(bus, "audit", viewer, {});
    expect(estate.entries.map((e) => `${e.type} ${e.target}`)).toEqual(["component.deleted orders-api", "component.put orders-api", "component.put orders-db", "component.put orders-api"]);
  });

  test("search by text and by tags", async () => {
    const { bus } = await startRegistry(uniquePrefix("reg"));
    await call(bus, "components.create", admin, { name: "orders", description: "Takes customer orders", tags: ["payments", "core"] });
    await call(bus, "components.create", admin, { name: "billing", tags: ["payments"] });
    await call(bus, "components.create", admin, { name: "search", tags: ["core"] });
    const ids = async (q: unknown) => (await call<{ components: Component[] }>(bus, "components.list", viewer, q)).components.map((c) => c.id);
    expect(await ids({ q: "customer" })).toEqual(["orders"]);
    expect(await ids({ tag: ["payments"] })).toEqual(["billing", "orders"]);
    expect(await ids({ tag: ["payments", "core"] })).toEqual(["orders"]);
    expect(await ids({ q: "nothing-like-this" })).toEqual([]);
  });

  test("bad input is refused with what is wrong: an unknown category, a missing dependency, a malformed owner", async () => {
    const { bus } = await startRegistry(uniquePrefix("reg"));
    const e1 = await refused(call(bus, "components.create", admin, { name: "x", category: "spaceship" }));
    expect(e1.code).toBe("bad_request");
    expect(e1.message).toContain('"spaceship" is not in the category list');
    expect((await refused(call(bus, "components.create", admin, { name: "x", dependsOn: ["nope"] }))).message).toContain('no component "nope"');
    expect((await refused(call(bus, "components.create", admin, { name: "x", owners: ["bob"] }))).message).toContain("user:<login> or group:");
    expect((await refused(call(bus, "components.create", admin, { name: "x", match: [{}] }))).message).toContain("at least one of");
    expect((await refused(call(bus, "components.create", admin, { name: "a\u0000b" }))).message).toContain("control characters");
  });

  test("LDAP, Cypher and formula injection strings are stored and returned as plain text", async () => {
    const { bus } = await startRegistry(uniquePrefix("reg"));
    const nasty = ["*)(uid=*))(|(uid=*", "'}) MATCH (n) DETACH DELETE n //", '=HYPERLINK("http://evil","x")', "+1+1", "@SUM(A1)", "<script>alert(1)</script>", "Robert'); DROP TABLE x;--"];
    const c = await call<Component>(bus, "components.create", admin, {
      name: "evil",
      description: nasty.join("\n"),
      language: nasty[0],
      framework: nasty[1],
      tags: nasty,
      owners: nasty.map((n) => `user:${n}`),
      links: { docs: nasty[2], repo: nasty[3], runbook: nasty[4] },
      match: [{ fingerprint: nasty[1], host: nasty[0], label: { key: "team", value: nasty[2]! } }],
    });
    const back = (await call<ComponentDetail>(bus, "components.get", viewer, { id: c.id })).component;
    expect(back.tags).toEqual(nasty);
    expect(back.description).toBe(nasty.join("\n"));
    expect(back.owners).toEqual(nasty.map((n) => `user:${n}`));
    expect(back.match[0]!.fingerprint).toBe(nasty[1]!);
    // a search for an LDAP or Cypher metacharacter string finds it literally, and only it
    expect((await call<{ components: Component[] }>(bus, "components.list", viewer, { q: "(uid=*" })).components.map((x) => x.id)).toEqual(["evil"]);
    // exported CSV keeps formulas from running (a leading apostrophe) and imports back to the same text
    const csv = Buffer.from((await call<{ base64: string }>(bus, "export", viewer, { format: "csv" })).base64, "base64").toString();
    expect(csv).toContain(`"'=HYPERLINK(""http://evil"",""x"")"`);
    const r = await call<ImportReport>(bus, "import", admin, { format: "csv", base64: Buffer.from(csv).toString("base64"), dryRun: false });
    expect(r.problems).toEqual([]);
    expect(r.unchanged).toBe(1);
    expect((await call<ComponentDetail>(bus, "components.get", viewer, { id: c.id })).component).toEqual(back);
  });
});

describe("owners, roles and sign-off", () => {
  test("owners and maintainers (by user or directory group) edit their component; others cannot; only admins create", async () => {
    const { bus } = await startRegistry(uniquePrefix("reg"));
    const mine = await call<Component>(bus, "components.create", admin, { name: "mine", owners: ["user:bob"] });
    const groups = await call<Component>(bus, "components.create", admin, { name: "viewers-own-it", maintainers: ["group:orrery-viewers"] });
    const other = await call<Component>(bus, "components.create", admin, { name: "not-mine", owners: ["user:carol"] });
    expect((await call<Component>(bus, "components.patch", viewer, { id: "mine", body: { rev: mine.rev, description: "by bob" } })).description).toBe("by bob");
    expect((await call<Component>(bus, "components.patch", viewer, { id: "viewers-own-it", body: { rev: groups.rev, description: "by group" } })).description).toBe("by group");
    const e = await refused(call(bus, "components.patch", viewer, { id: "not-mine", body: { rev: other.rev, description: "x" } }));
    expect(e.code).toBe("forbidden");
    expect((await refused(call(bus, "components.create", viewer, { name: "new" }))).code).toBe("forbidden");
    expect((await refused(call(bus, "components.delete", viewer, { id: "mine", rev: 0 }))).code).toBe("forbidden");
    expect((await refused(call(bus, "lists.put", expert, { list: "category", values: ["x"] }))).code).toBe("forbidden");
    // an expert who owns nothing cannot edit a component either
    expect((await refused(call(bus, "components.patch", expert, { id: "not-mine", body: { rev: other.rev, description: "x" } }))).code).toBe("forbidden");
  });

  test("requirements are signed off by their role; a change withdraws the sign-off; readiness follows", async () => {
    const { bus } = await startRegistry(uniquePrefix("reg"));
    await call(bus, "components.create", admin, { name: "orders", owners: ["user:bob"] });
    await call(bus, "groups.put", admin, { id: "quality", name: "Quality" });
    await call(bus, "requirements.put", admin, { id: "unit-tests", group: "quality", name: "Has unit tests", signoff: "expert" });
    await call(bus, "requirements.put", admin, { id: "gdpr", group: "quality", name: "GDPR reviewed", signoff: "admin" });
    expect((await refused(call(bus, "requirements.put", admin, { id: "x", group: "nope", name: "x" }))).message).toContain("no requirement group");

    const set = await call<RequirementStatus>(bus, "status.put", viewer, { component: "orders", requirement: "unit-tests", body: { status: "yes", notes: "coverage 80%", links: ["https://ci/orders"], rev: 0 } });
    expect(set.signedOff).toBeNull();
    expect((await refused(call(bus, "status.signoff", viewer, { component: "orders", requirement: "unit-tests", body: { rev: set.rev } }))).code).toBe("forbidden");
    const signed = await call<RequirementStatus>(bus, "status.signoff", expert, { component: "orders", requirement: "unit-tests", body: { rev: set.rev } });
    expect(signed.signedOff).toMatchObject({ by: "alice", role: "expert" });
    // the expert cannot sign off what needs an admin
    await call(bus, "status.put", viewer, { component: "orders", requirement: "gdpr", body: { status: "na", rev: 0 } });
    const gdpr = (await call<ComponentDetail>(bus, "components.get", viewer, { id: "orders" })).statuses.find((s) => s.requirement === "gdpr")!;
    expect((await refused(call(bus, "status.signoff", expert, { component: "orders", requirement: "gdpr", body: { rev: gdpr.rev } }))).message).toContain("needs the admin role");

    let d = await call<ComponentDetail>(bus, "components.get", viewer, { id: "orders" });
    expect(d.readiness).toMatchObject({ total: 2, yes: 1, na: 1, signedOff: 1, ready: 0.5 });
    // the owner changes the notes: the sign-off no longer vouches for them
    const changed = await call<RequirementStatus>(bus, "status.put", viewer, { component: "orders", requirement: "unit-tests", body: { status: "yes", notes: "coverage 60%", rev: signed.rev } });
    expect(changed.signedOff).toBeNull();
    d = await call<ComponentDetail>(bus, "components.get", viewer, { id: "orders" });
    expect(d.readiness.signedOff).toBe(0);
    const audit = await call<{ entries: { requirement?: string; by: { login: string }; changes: { field: string }[] }[] }>(bus, "audit", viewer, { component: "orders" });
    expect(audit.entries.filter((e) => e.requirement === "unit-tests").map((e) => [e.by.login, e.changes.map((c) => c.field).sort().join(",")])).toEqual([
      ["bob", "links,notes,signedOff"],
      ["alice", "signedOff"],
      ["bob", "links,notes,status"],
    ]);
    const estate = await call<{ estate: { total: number } }>(bus, "readiness", viewer, {});
    expect(estate.estate.total).toBe(2);
  });
});

describe("concurrency and durability", () => {
  test("two edits at the same revision: one wins, the other is a conflict carrying the current record", async () => {
    const { bus } = await startRegistry(uniquePrefix("reg"));
    const c = await call<Component>(bus, "components.create", admin, { name: "orders" });
    const results = await Promise.allSettled([
      call<Component>(bus, "components.patch", admin, { id: "orders", body: { rev: c.rev, description: "one" } }),
      call<Component>(bus, "components.patch", admin, { id: "orders", body: { rev: c.rev, description: "two" } }),
    ]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const lost = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(lost.reason).toBeInstanceOf(RegistryClientError);
    expect((lost.reason as RegistryClientError).code).toBe("conflict");
    expect(((lost.reason as RegistryClientError).detail as { current: Component }).current.rev).toBeGreaterThan(c.rev);
  });

  test("two registry processes on one stream: the log's expected sequence keeps their writes from crossing", async () => {
    const prefix = uniquePrefix("reg");
    const a = await startRegistry(prefix);
    const b = await startRegistry(prefix);
    const c = await a.registry.create(admin, { name: "orders" });
    await b.store.catchUp();
    const r = await Promise.allSettled([a.registry.update(admin, { id: "orders", body: { rev: c.rev, description: "a" } }, "patch"), b.registry.update(admin, { id: "orders", body: { rev: c.rev, description: "b" } }, "patch")]);
    expect(r.filter((x) => x.status === "fulfilled")).toHaveLength(1);
    expect(r.filter((x) => x.status === "rejected").map((x) => (x as PromiseRejectedResult).reason.code)).toEqual(["conflict"]);
    await a.store.catchUp();
    await b.store.catchUp();
    expect(a.store.state.components.get("orders")).toEqual(b.store.state.components.get("orders")!);
  });

  test("the stream is the record of truth: a new process replays it into the same state and audit trail", async () => {
    const prefix = uniquePrefix("reg");
    const a = await startRegistry(prefix);
    await a.registry.create(admin, { name: "orders", tags: ["x"] });
    await a.registry.putGroup(admin, { id: "q", name: "Q" });
    await a.registry.putRequirement(admin, { id: "r", group: "q", name: "R" });
    await a.registry.setStatus(admin, { component: "orders", requirement: "r", body: { status: "no", rev: 0 } });
    await a.registry.setList(admin, { list: "lifecycle", values: ["new", "mature", "legacy", "retired", "sunset"] });
    await a.stop();
    const b = await startRegistry(prefix);
    expect([...b.store.state.components.values()]).toEqual([...a.store.state.components.values()]);
    expect([...b.store.state.statuses.values()]).toEqual([...a.store.state.statuses.values()]);
    expect(b.store.state.lists.lifecycle).toContain("sunset");
    expect(b.store.state.audit).toEqual(a.store.state.audit);
  });
});

function csvOf(rows: string[][]): string {
  return writeCsv(rows);
}
const HEADER = ["name", "category", "owners", "depends_on", "match", "tags"];

describe("import and export", () => {
  test("a dry run reports every problem by row and column; an apply with one bad row changes nothing", async () => {
    const { bus, store } = await startRegistry(uniquePrefix("reg"));
    const csv = csvOf([
      HEADER,
      ["orders", "service", "user:bob", "orders-db", "fingerprint=java:orders.jar", "core"],
      ["orders-db", "database", "group:dba", "", "port=5432&host=db-*", ""],
      ["bad-cat", "spaceship", "", "", "", ""],
      ["bad-owner", "service", "bob", "ghost", "port=x", ""],
      ["orders", "service", "", "", "", ""],
    ]);
    const base64 = Buffer.from(csv).toString("base64");
    const dry = await call<ImportReport>(bus, "import", admin, { format: "csv", base64, dryRun: true });
    expect(dry.applied).toBe(false);
    expect(dry.problems.map((p) => `${p.row}:${p.column}`)).toEqual(["4:category", "5:depends_on", "5:match", "5:owners", "6:name"]);
    expect(dry.problems.find((p) => p.column === "depends_on")!.message).toContain('no component "ghost"');
    const seqBefore = store.state.seq;
    const applied = await call<ImportReport>(bus, "import", admin, { format: "csv", base64, dryRun: false });
    expect(applied.applied).toBe(false);
    expect(applied.problems.length).toBe(5);
    await store.catchUp();
    expect(store.state.seq).toBe(seqBefore);
    expect(store.state.components.size).toBe(0);

    // the good rows alone go in, all at once
    const good = csvOf([HEADER, ["orders", "service", "user:bob", "orders-db", "fingerprint=java:orders.jar", "core"], ["orders-db", "database", "group:dba", "", "port=5432&host=db-*", ""]]);
    const ok = await call<ImportReport>(bus, "import", admin, { format: "csv", base64: Buffer.from(good).toString("base64"), dryRun: false, file: "good.csv" });
    expect(ok).toMatchObject({ applied: true, created: 2, updated: 0, problems: [] });
    expect(store.state.components.get("orders")!.match).toEqual([{ fingerprint: "java:orders.jar" }]);
    expect(store.state.components.get("orders-db")!.match).toEqual([{ port: 5432, host: "db-*" }]);
    const audit = await call<{ entries: { importId?: string }[] }>(bus, "audit", viewer, { component: "orders" });
    expect(audit.entries[0]!.importId).toBe(ok.importId!);
    // non-admins cannot import
    expect((await refused(call(bus, "import", viewer, { format: "csv", base64, dryRun: true }))).code).toBe("forbidden");
  });

  test("XLSX: export, then import the workbook (components and dependencies sheets) back unchanged; a dependencies sheet adds edges", async () => {
    const { bus, store } = await startRegistry(uniquePrefix("reg"));
    await call(bus, "components.create", admin, { name: "db", category: "database" });
    await call(bus, "components.create", admin, { name: "api", category: "service", dependsOn: ["db"], owners: ["group:payments"], links: { repo: "https://git/api" }, match: [{ name: "api*", port: 8080 }] });
    const x = Buffer.from((await call<{ base64: string }>(bus, "export", viewer, { format: "xlsx" })).base64, "base64");
    const sheets = await readXlsx(x);
    expect(sheets.map((s) => s.name)).toEqual(["components", "dependencies"]);
    expect(sheets[1]!.rows).toEqual([["from", "to"], ["api", "db"]]);
    const same = await call<ImportReport>(bus, "import", admin, { format: "xlsx", base64: x.toString("base64"), dryRun: false });
    expect(same).toMatchObject({ problems: [], created: 0, updated: 0, unchanged: 2, applied: false });
    // a workbook with only a dependencies sheet
    await call(bus, "components.create", admin, { name: "cache" });
    const deps = await writeXlsx([{ name: "dependencies", rows: [["from", "to"], ["api", "cache"], ["api", "ghost"]] }]);
    const bad = await call<ImportReport>(bus, "import", admin, { format: "xlsx", base64: Buffer.from(deps).toString("base64"), dryRun: true });
    expect(bad.problems).toEqual([{ sheet: "dependencies", row: 3, column: "to", message: 'no component "ghost" in the file or the registry' }]);
    const depsOk = await writeXlsx([{ name: "dependencies", rows: [["from", "to"], ["api", "cache"]] }]);
    const r = await call<ImportReport>(bus, "import", admin, { format: "xlsx", base64: Buffer.from(depsOk).toString("base64"), dryRun: false });
    expect(r).toMatchObject({ applied: true, updated: 1 });
    expect(store.state.components.get("api")!.dependsOn).toEqual(["db", "cache"]);
  });

  test("a file that is not CSV or XLSX is a clear error", async () => {
    const { bus } = await startRegistry(uniquePrefix("reg"));
    expect((await refused(call(bus, "import", admin, { format: "xlsx", base64: Buffer.from("not a zip").toString("base64") }))).message).toContain("XLSX: not a readable workbook");
    expect((await refused(call(bus, "import", admin, { format: "csv", base64: Buffer.from('name\n"open').toString("base64") }))).message).toContain("never closed");
    const noName = await call<ImportReport>(bus, "import", admin, { format: "csv", base64: Buffer.from("title\nx\n").toString("base64") });
    expect(noName.problems[0]).toMatchObject({ row: 1, column: "name" });
  });

  test("10k rows (over several request chunks) import in seconds, with progress, all or nothing", async () => {
    const { bus, store } = await startRegistry(uniquePrefix("reg"));
    const rows = [HEADER];
    for (let i = 0; i < 10_000; i++) rows.push([`svc-${i}`, "service", `user:u${i % 50};group:team-${i % 20}`, i > 0 ? `svc-${i - 1}` : "", `fingerprint=java:svc-${i}.jar`, `t${i % 7};all`]);
    const base64 = Buffer.from(csvOf(rows)).toString("base64");
    expect(base64.length).toBeGreaterThan(512 * 1024);
    const phases = new Set<string>();
    const t0 = performance.now();
    const r = await callRegistry<ImportReport>(bus, "import", admin, { format: "csv", base64, dryRun: false }, { onProgress: (p) => phases.add(p.phase) });
    const ms = performance.now() - t0;
    expect(r).toMatchObject({ applied: true, created: 10_000, problems: [] });
    expect(store.state.components.size).toBe(10_000);
    expect([...phases]).toEqual(expect.arrayContaining(["parse", "validate", "apply"]));
    // generous: five engineers share two cores here (bench/registry.ts measures it)
    expect(ms).toBeLessThan(30_000);
    // the export is larger than one NATS message too
    const csv = Buffer.from((await call<{ base64: string }>(bus, "export", viewer, { format: "csv" })).base64, "base64").toString();
    expect(csv.split("\r\n").length).toBe(10_002);
  }, 60_000);
});

describe("discovery", () => {
  const node = (id: string, kind: TopoNode["kind"], name: string, props: TopoNode["props"]): TopoNode => ({ id, kind, name, source: "t", props, firstSeen: 1, lastSeen: Date.now() });
  const edge = (src: string, dst: string): TopoEdge => ({ id: `DEPENDS_ON:${src}->${dst}`, kind: "DEPENDS_ON", src, dst, source: "t", props: {}, firstSeen: 1, lastSeen: Date.now() });

  test("services match components both ways; drift is computed and published as registry.drift.v1 when it changes", async () => {
    const prefix = uniquePrefix("reg");
    const nodes = new Map<string, TopoNode>();
    const edges = new Map<string, TopoEdge>();
    for (const n of [
      node("host:web-1", "host", "web-1", { hostname: "web-1", team: "shop" }),
      node("host:db-1", "host", "db-1", { hostname: "db-1" }),
      node("service:web-1:java:orders.jar:8080", "process", "java:orders.jar", { host: "web-1", service: "java:orders.jar", ports: "8080" }),
      node("service:db-1:postgres:5432", "process", "postgres", { host: "db-1", service: "postgres", ports: "5432" }),
      node("service:web-1:redis-server:6379", "process", "redis-server", { host: "web-1", service: "redis-server", ports: "6379" }),
      node("service:web-1:sshd:22", "process", "sshd", { host: "web-1", service: "sshd", ports: "22" }),
    ])
      nodes.set(n.id, n);
    for (const e of [edge("service:web-1:java:orders.jar:8080", "service:db-1:postgres:5432"), edge("service:web-1:java:orders.jar:8080", "service:web-1:redis-server:6379")]) edges.set(e.id, e);
    let rev = 1;
    const graph = () => ({ rev, nodes, edges });
    const { bus, registry } = await startRegistry(prefix, graph);
    await call(bus, "components.create", admin, { name: "postgres", match: [{ port: 5432, host: "db-*" }] });
    await call(bus, "components.create", admin, { name: "cache", match: [{ name: "redis*" }] });
    await call(bus, "components.create", admin, { name: "kafka", match: [{ fingerprint: "java:kafka.jar" }] });
    await call(bus, "components.create", admin, { name: "orders", owners: ["group:shop"], dependsOn: ["postgres", "kafka"], match: [{ fingerprint: "java:orders.jar", label: { key: "team", value: "shop" } }] });
    const drifts = await bus.jsm.streams.info(bus.topo.streams.drift.name);
    expect(drifts.state.messages).toBe(0);
    const watcher = await watchDrift(bus, registry, log, { everyMs: 50, windowMs: 3_600_000 });
    cleanups.push(async () => watcher.stop());

    const orders = await call<ComponentDetail>(bus, "components.get", viewer, { id: "orders" });
    expect(orders.instances.map((i) => i.id)).toEqual(["service:web-1:java:orders.jar:8080"]);
    const svc = await call<{ components: { id: string; owners: string[] }[] }>(bus, "service", viewer, { id: "service:web-1:java:orders.jar:8080" });
    expect(svc.components).toEqual([{ id: "orders", name: "orders", owners: ["group:shop"], maintainers: [], productManager: null }] as never);

    const d = await call<Drift>(bus, "drift", viewer, {});
    // orders → kafka is declared but kafka runs nowhere (reported as not running, not as unseen)
    expect(d.declaredNotSeen).toEqual([]);
    expect(d.seenNotDeclared).toEqual([{ from: "orders", to: "cache", edges: 1 }]);
    expect(d.notRunning).toEqual(["kafka"]);
    expect(d.unregistered.map((u) => u.name)).toEqual(["sshd"]);

    const first = await waitFor(async () => (await bus.jsm.streams.info(bus.topo.streams.drift.name)).state.messages === 1, "the first drift event");
    expect(first).toBe(true);
    // the orders → postgres dependency disappears from discovery: a new drift event says so
    edges.delete("DEPENDS_ON:service:web-1:java:orders.jar:8080->service:db-1:postgres:5432");
    rev++;
    await waitFor(async () => (await bus.jsm.streams.info(bus.topo.streams.drift.name)).state.messages === 2, "a second drift event");
    const last = await bus.jsm.streams.getMessage(bus.topo.streams.drift.name, { last_by_subj: bus.topo.subjects.drift });
    expect((last!.json() as Drift).declaredNotSeen).toEqual([{ from: "orders", to: "postgres" }]);
    // nothing changes: no new event
    rev++;
    await Bun.sleep(300);
    expect((await bus.jsm.streams.info(bus.topo.streams.drift.name)).state.messages).toBe(2);
  });

  test("owners and teams reach the map: matched services get component/owner/team annotations the topology stage lays on them", async () => {
    const prefix = uniquePrefix("reg");
    // the topology stage's model stands in for the topology service: discovery in, nodes out
    const model = emptyModel({ confirmScans: 1 });
    const orders = proc(10, "java", { exe: "/usr/bin/java", cmdline: ["java", "-jar", "/opt/orders.jar"] });
    applyDiscovery(model, batch([hostSeen(["10.0.0.5"], "web-1"), listen(8080, orders)], { host: "web-1" }), 1);
    const svc = [...model.nodes.values()].find((n) => n.kind === "process")!;
    expect(svc.name).toBe("java:orders.jar");
    let rev = 1;
    const { bus, registry } = await startRegistry(prefix, () => ({ rev, nodes: model.nodes, edges: model.edges }));
    const c = await call<Component>(bus, "components.create", admin, { name: "Orders", owners: ["group:payments", "user:bob"], match: [{ fingerprint: "java:orders.jar" }] });
    const ann = await startAnnotations(bus, registry, log, { everyMs: 50 });
    cleanups.push(async () => ann.stop());
    const stream = bus.topo.streams.discovery.name;
    const subject = bus.topo.subjects.discovery("web-1");
    const nextBatch = async (after: number) => {
      const m = await waitFor(async () => {
        const x = await bus.jsm.streams.getMessage(stream, { last_by_subj: subject }).catch(() => null);
        return x && x.seq > after ? x : null;
      }, "a registry discovery batch");
      return { seq: m.seq, batch: DiscoveryBatch.parse(m.json()) };
    };
    const first = await nextBatch(0);
    expect(first.batch).toMatchObject({ source: "registry:web-1", host: "web-1", full: true });
    applyDiscovery(model, first.batch, 2);
    expect(model.nodes.get(svc.id)!.props).toMatchObject({ component: "Orders", owner: "payments, bob", team: "payments" });

    // the owners change: the service's props follow
    await call(bus, "components.patch", admin, { id: c.id, body: { rev: c.rev, owners: ["group:checkout"] } });
    const second = await nextBatch(first.seq);
    applyDiscovery(model, second.batch, 3);
    expect(model.nodes.get(svc.id)!.props).toMatchObject({ owner: "checkout", team: "checkout" });

    // the component goes: an empty full batch takes its props off the service
    const cur = (await call<ComponentDetail>(bus, "components.get", admin, { id: c.id })).component;
    await call(bus, "components.delete", admin, { id: c.id, rev: cur.rev });
    rev++;
    const third = await nextBatch(second.seq);
    expect(third.batch.events).toEqual([]);
    applyDiscovery(model, third.batch, 4);
    expect(model.nodes.get(svc.id)!.props.component).toBeUndefined();
  });
});
