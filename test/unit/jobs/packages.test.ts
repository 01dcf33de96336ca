/** Job packages: manifest and parameter-schema errors with paths, package loading, inventory CSV, result message ids. */
import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUILTIN_PACKAGES, checkManifest, loadPackages } from "../../../services/jobs/packages.ts";
import { inventoryEvents, parseInventory } from "../../../services/jobs/inventory.ts";
import { DiscoveryEvent } from "../../../pipelines/contracts/discovery.ts";
import { MAX_JOB_ACK_WAIT_MS, MAX_JOB_TIMEOUT_MS } from "../../../pipelines/contracts/jobs.ts";
import { topologyFor } from "../../../pipelines/streams.ts";
import { loadJobsConfig } from "../../../services/jobs/config.ts";
import { expandPorts, expandTargets } from "../../../services/jobs/net.ts";
import { itemToMessages } from "../../../services/jobs/results.ts";
import { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { JobInputError } from "../../../services/jobs/sdk.ts";
import { tempDir } from "../../helpers/tmp.ts";

const good = { name: "ok-job", version: "1.0.0", workerType: "net", schedule: { every: "30s", params: { n: 1 } }, params: { type: "object", properties: { n: { type: "integer" } } } };
const errorsOf = (m: unknown) => {
  const r = checkManifest(m);
  return r.ok ? [] : r.errors;
};

describe("job manifests", () => {
  test("a good manifest passes, with defaults", () => {
    const r = checkManifest(good);
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.manifest.entry).toBe("job.ts");
      expect(r.manifest.timeout).toBe("5m");
      expect(r.validateParams({ n: 2 })).toEqual([]);
      expect(r.validateParams({ n: "x" })).toEqual(["params/n: must be integer"]);
    }
  });

  test("missing fields are named", () => {
    expect(errorsOf({ name: "x", params: { type: "object" } })).toEqual(["version: Invalid input: expected string, received undefined", "workerType: Invalid input: expected string, received undefined"]);
  });

  test("bad names, versions, unknown keys", () => {
    const e = errorsOf({ ...good, name: "has.dot", version: "v1", color: "red" });
    expect(e).toContain("name: letters, digits, _ and - only (it becomes a NATS subject token)");
    expect(e).toContain("version: a semantic version, e.g. 1.0.0");
    expect(e.find((x) => x.includes("color"))).toBeDefined();
  });

  test("bad schedules", () => {
    expect(errorsOf({ ...good, schedule: { every: "often" } })).toEqual(['schedule.every: "often" is not a duration: use a number with ms, s, m, h or d, e.g. "30s"']);
    expect(errorsOf({ ...good, schedule: { every: "10ms" } })).toEqual(['schedule.every: "10ms" is out of range: between 1s and 7d']);
    expect(errorsOf({ ...good, schedule: "5m" })[0]).toStartWith("schedule: ");
    // schedule params are checked against the parameter schema
    expect(errorsOf({ ...good, schedule: { every: "1m", params: { n: "one" } } })).toEqual(["schedule.params/n: must be integer"]);
  });

  test("bad parameter schemas", () => {
    expect(errorsOf({ ...good, params: { type: "array" } })).toEqual(['params: the parameter schema must be a JSON Schema with "type": "object"']);
    const typo = errorsOf({ ...good, schedule: null, params: { type: "object", properties: { n: { type: "integr" } } } });
    expect(typo.length).toBe(1);
    expect(typo[0]).toStartWith("params: not a valid JSON Schema:");
    const unknownKeyword = errorsOf({ ...good, schedule: null, params: { type: "object", requird: ["n"] } });
    expect(unknownKeyword[0]).toContain('unknown keyword: "requird"');
  });
});

describe("package loading", () => {
  test("the built-in packages load", async () => {
    const r = await loadPackages([BUILTIN_PACKAGES]);
    expect(r.problems).toEqual([]);
    expect([...r.packages.keys()].sort()).toEqual(["dns", "http-probe", "inventory-csv", "tcp-scan"]);
    expect(r.packages.get("tcp-scan")!.validateParams({ targets: ["127.0.0.1"], ports: [22, "8000-8010"] })).toEqual([]);
    expect(r.packages.get("tcp-scan")!.validateParams({ ports: [0] })).toEqual(["params/targets: is required", "params/ports/0: must be >= 1", "params/ports/0: must be string", "params/ports/0: must match a schema in anyOf"]);
  });

  test("bad packages are reported with the file and path; good ones beside them still load", async () => {
    const t = tempDir();
    try {
      const mk = (name: string, manifest: unknown, module?: string) => {
        mkdirSync(join(t.dir, name));
        writeFileSync(join(t.dir, name, "job.json"), typeof manifest === "string" ? manifest : JSON.stringify(manifest));
        if (module !== undefined) writeFileSync(join(t.dir, name, "job.ts"), module);
      };
      mk("a-good", { ...good, name: "extra" }, "export async function* run() {}");
      mk("b-no-entry", { ...good, name: "noentry" });
      mk("c-no-run", { ...good, name: "norun" }, "export const x = 1;");
      mk("d-not-json", "{ name: ");
      mk("e-dup", { ...good, name: "tcp-scan" }, "export async function* run() {}");
      mk("f-bad-schedule", { ...good, name: "badsched", schedule: { every: "0s" } }, "export async function* run() {}");
      mk("g-long-timeout", { ...good, name: "longrun", timeout: "45m" }, "export async function* run() {}");
      const r = await loadPackages([BUILTIN_PACKAGES, t.dir, join(t.dir, "missing")]);
      expect(r.packages.has("extra")).toBe(true);
      const byFile = Object.fromEntries(r.problems.map((p) => [p.file.replace(t.dir, "T"), p.errors]));
      expect(byFile["T/b-no-entry/job.json"]).toEqual([`entry: job.ts does not exist in ${join(t.dir, "b-no-entry")}`]);
      expect(byFile["T/c-no-run/job.ts"]).toEqual(["(module): must export a function `run(ctx)` (an async generator of items)"]);
      expect(byFile["T/d-not-json/job.json"]![0]).toStartWith("(root): cannot read JSON:");
      expect(byFile["T/e-dup/job.json"]).toEqual([`name: job "tcp-scan" is already defined by ${join(BUILTIN_PACKAGES, "tcp-scan")}`]);
      expect(byFile["T/f-bad-schedule/job.json"]).toEqual(['schedule.every: "0s" is out of range: between 1s and 7d']);
      expect(byFile["T/g-long-timeout/job.json"]).toEqual([
        'timeout: "45m" is over the 30m maximum: a redelivered run\'s results are deduplicated only within the streams\' duplicate window (timeout + ack_wait must fit in it)',
      ]);
      expect(r.packages.has("longrun")).toBe(false);
      expect(byFile["T/missing"]).toEqual(["(dir): not a directory"]);
    } finally {
      t.cleanup();
    }
  });
});

describe("inventory CSV (d3-dsv, RFC 4180)", () => {
  test("quoted fields, embedded commas/quotes/newlines, CRLF, repeated hosts merge", () => {
    const csv = 'host,ips,os,ports\r\ndb-1,10.0.0.5;10.0.0.6,"Debian 12, ""bookworm""",5432;22/tcp\r\n"web-1",10.0.0.7,"multi\nline",80;443;53/udp\r\ndb-1,,,9100\r\n';
    expect(parseInventory(csv)).toEqual([
      { host: "db-1", os: 'Debian 12, "bookworm"', ips: ["10.0.0.5", "10.0.0.6"], owner: "", team: "", ports: [{ proto: "tcp", port: 5432, owner: "" }, { proto: "tcp", port: 22, owner: "" }, { proto: "tcp", port: 9100, owner: "" }] },
      { host: "web-1", os: "multi\nline", ips: ["10.0.0.7"], owner: "", team: "", ports: [{ proto: "tcp", port: 80, owner: "" }, { proto: "tcp", port: 443, owner: "" }, { proto: "udp", port: 53, owner: "" }] },
    ]);
  });

  test("bad rows are reported with their record number; nothing is imported", () => {
    expect(() => parseInventory("name,ip\nx,1.2.3.4\n")).toThrow('csv line 1: no "host" column (columns: name, ip)');
    let err: unknown;
    try {
      parseInventory("host,ports\na,22\n,80\nb,http\nc,70000\n");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(JobInputError);
    expect((err as Error).message).toBe('csv record 3: host is empty; csv record 4, ports: "http" is not a port like 443, 53/udp or 5432@owner; csv record 5, ports: "70000" is not a port like 443, 53/udp or 5432@owner');
    expect(() => parseInventory("host,ports\na,5432@\n")).toThrow('csv record 2, ports: "5432@": the owner after @ must be 1-1024 characters');
  });

  test("owner and team columns annotate the host; port@owner annotates the service on that port; addresses are named", () => {
    const [db, web] = parseInventory("host,ips,owner,team,ports\ndb-1,10.0.0.5;10.0.0.6,alice,payments,22;5432@dba-team;53/udp@netops\nweb-1,,,,80\n");
    expect(db).toMatchObject({ owner: "alice", team: "payments", ports: [{ port: 22, owner: "" }, { port: 5432, owner: "dba-team" }, { port: 53, proto: "udp", owner: "netops" }] });
    expect(inventoryEvents(db!, false).filter((e) => e.type !== "listener.seen")).toEqual([
      { type: "host.seen", hostname: "db-1", os: "", kernel: "", cpus: 0, memTotalBytes: 0, ips: ["10.0.0.5", "10.0.0.6"] },
      { type: "entity.annotated", match: { host: "db-1" }, props: { owner: "alice", team: "payments" } },
      { type: "entity.annotated", match: { host: "db-1", port: 5432, proto: "tcp" }, props: { owner: "dba-team" } },
      { type: "entity.annotated", match: { host: "db-1", port: 53, proto: "udp" }, props: { owner: "netops" } },
      { type: "name.seen", ip: "10.0.0.5", name: "db-1" },
      { type: "name.seen", ip: "10.0.0.6", name: "db-1" },
    ]);
    // annotateOnly: the hosts are the agents' to report; the inventory adds ownership and names only
    expect(inventoryEvents(db!, true).map((e) => e.type)).toEqual(["entity.annotated", "entity.annotated", "entity.annotated", "name.seen", "name.seen"]);
    // no owner, no team, no addresses: nothing but what it introduces
    expect(inventoryEvents(web!, false).map((e) => e.type)).toEqual(["host.seen", "listener.seen"]);
    for (const e of inventoryEvents(db!, false)) expect(DiscoveryEvent.safeParse(e).success).toBe(true);
  });
});

describe("the result streams' dedup window covers a redelivered run", () => {
  test("discovery and metrics streams keep message ids for the longest timeout + the longest ack_wait", async () => {
    const t = topologyFor("x");
    for (const s of [t.streams.discovery, t.streams.metrics]) expect(s.duplicateWindowMs).toBeGreaterThanOrEqual(MAX_JOB_TIMEOUT_MS + MAX_JOB_ACK_WAIT_MS);
    // every built-in package fits, and ORRERY_JOB_ACK_WAIT_MS is capped at the maximum
    for (const p of (await loadPackages([BUILTIN_PACKAGES])).packages.values()) expect(p.timeoutMs).toBeLessThanOrEqual(MAX_JOB_TIMEOUT_MS);
    expect(() => loadJobsConfig({ ORRERY_JOB_ACK_WAIT_MS: String(MAX_JOB_ACK_WAIT_MS + 1) })).toThrow("ORRERY_JOB_ACK_WAIT_MS: Too big");
  });
});

describe("targets, ports, result ids", () => {
  test("CIDRs and port ranges expand; limits are enforced", () => {
    expect(expandTargets(["127.0.0.0/30", "localhost", "127.0.0.1"], 10)).toEqual(["127.0.0.1", "127.0.0.2", "localhost"]);
    expect(expandTargets(["10.0.0.9/32"], 10)).toEqual(["10.0.0.9"]);
    expect(() => expandTargets(["10.0.0.0/16"], 1024)).toThrow("over maxHosts 1024");
    expect(() => expandTargets(["fe80::/64"], 10)).toThrow("only IPv4 CIDRs");
    expect(expandPorts([443, "20-22", 22])).toEqual([20, 21, 22, 443]);
    expect(() => expandPorts(["9-1"])).toThrow("outside 1-65535");
  });

  test("message ids derive from run id + item key: a rerun of the same run yields the same ids", () => {
    const run = { job: "tcp-scan", runId: "tcp-scan@42", requestedAt: 1000 };
    const item = { key: "10.0.0.1", host: "10.0.0.1", events: [{ type: "listener.seen" as const, proto: "tcp" as const, ip: "10.0.0.1", port: 22, process: null }], samples: [{ entity: "x", metric: "m", ts: 1, value: 1 }] };
    const a = itemToMessages(run, item, 5);
    const b = itemToMessages(run, item, 999);
    expect(a.discovery.map((d) => d.msgId)).toEqual(["tcp-scan@42:10.0.0.1:d0"]);
    expect(b.discovery.map((d) => d.msgId)).toEqual(a.discovery.map((d) => d.msgId));
    expect(a.metrics.map((m) => m.msgId)).toEqual(["tcp-scan@42:10.0.0.1:m0"]);
    expect(a.discovery[0]!.batch).toMatchObject({ source: "job:tcp-scan:10.0.0.1", host: "10.0.0.1", scanId: 1000, full: true, part: 0, parts: 1 });
    expect(a.metrics[0]!.batch.source).toBe("job:tcp-scan");
    // a full item with no events still reports (everything this job knew about the host is gone)
    expect(itemToMessages(run, { key: "h", host: "h" }, 5).discovery[0]!.batch.events).toEqual([]);
  });

  test("results declare the run's interval, so aging waits for the next run (on demand: an hour)", () => {
    const item = { key: "10.0.0.1", host: "10.0.0.1", events: [] };
    const scheduled = itemToMessages({ job: "tcp-scan", runId: "tcp-scan@42", requestedAt: 1000, everyMs: 300_000 }, item, 5);
    expect(scheduled.discovery[0]!.batch.intervalMs).toBe(300_000);
    const adhoc = itemToMessages({ job: "tcp-scan", runId: "tcp-scan@adhoc-1", requestedAt: 1000 }, item, 5);
    expect(adhoc.discovery[0]!.batch.intervalMs).toBe(3_600_000);
    expect(DiscoveryBatch.safeParse(scheduled.discovery[0]!.batch).success).toBe(true);
  });
});
