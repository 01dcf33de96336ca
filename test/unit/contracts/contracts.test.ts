/**
 * Every event contract in pipelines/contracts, without a server: a valid sample of each schema is accepted, and each
 * limit or invalid field is refused with a ContractError whose message names the path of the offending field. The
 * codec's byte limit and JSON check are covered too (decode and encode).
 */
import { describe, expect, test } from "bun:test";
import type { z } from "zod";
import { ContractError, decode, encode, MAX_MESSAGE_BYTES, validate } from "../../../pipelines/codec.ts";
import { EpochMs, Id, Ip, Labels, Port, ProcessIdentity } from "../../../pipelines/contracts/common.ts";
import {
  ConnectionGone,
  ConnectionSeen,
  DiscoveryBatch,
  DiscoveryEvent,
  EntityAnnotated,
  HostSeen,
  ListenerGone,
  ListenerSeen,
  MAX_DISCOVERY_EVENTS,
  NameSeen,
} from "../../../pipelines/contracts/discovery.ts";
import { MAX_SAMPLES_PER_BATCH, MetricBatch, MetricName, Sample } from "../../../pipelines/contracts/metrics.ts";
import { CypherRequest, CypherResponse } from "../../../pipelines/contracts/cypher.ts";
import { TopoEdge, TopologyDelta, TopologySnapshot, TopoNode, WsFrame } from "../../../pipelines/contracts/topology.ts";
import { EdgeHealth, HealthDelta, HealthEntry, HealthState, ImpactEntry, NotReady } from "../../../pipelines/contracts/health.ts";
import {
  Alert,
  AlertBatch,
  AlertsList,
  AlertsQuery,
  AlertView,
  GenericAlert,
  GenericWebhook,
  MAX_ALERTS_PER_MESSAGE,
  MAX_ALERTS_PER_REQUEST,
  SourceName,
  TimeInput,
} from "../../../pipelines/contracts/alerts.ts";
import {
  Duration,
  JobManifest,
  JobRun,
  JobStatus,
  JobTimeout,
  parseDuration,
  PlacementTable,
  ScheduleFile,
  SubmitReply,
  SubmitRequest,
  Token,
  WorkerHeartbeat,
} from "../../../pipelines/contracts/jobs.ts";

type Mutation = [what: string, mutate: (v: any) => unknown, path: string];

/** the sample passes; each mutation of a copy of it is refused with its path in the message */
function contract(name: string, schema: z.ZodType, sample: unknown, mutations: Mutation[]) {
  describe(name, () => {
    test("a valid sample is accepted", () => {
      expect(() => validate(schema, name, sample)).not.toThrow();
    });
    for (const [what, mutate, path] of mutations) {
      test(`refused: ${what}`, () => {
        const v = structuredClone(sample);
        const replaced = mutate(v);
        const input = replaced === undefined ? v : replaced;
        let err: unknown;
        try {
          validate(schema, name, input);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(ContractError);
        expect((err as ContractError).code).toBe("invalid");
        expect((err as ContractError).schema).toBe(name);
        expect((err as ContractError).message).toContain(`${name}: ${path}: `);
      });
    }
  });
}
const long = (n: number) => "x".repeat(n);
const times = <T>(n: number, f: (i: number) => T) => Array.from({ length: n }, (_, i) => f(i));

// --- common --------------------------------------------------------------------------------------------------------

const proc = { pid: 42, exe: "/usr/bin/postgres", comm: "postgres", cmdline: ["postgres", "-D", "/var/lib/pg"], user: "postgres", uid: 105, startTime: 1_700_000_000_000, containerId: null };
contract("id", Id, "host:db1", [
  ["empty", () => "", "(root)"],
  ["over 512 characters", () => long(513), "(root)"],
]);
contract("epoch", EpochMs, 0, [
  ["negative", () => -1, "(root)"],
  ["fractional", () => 1.5, "(root)"],
]);
contract("port", Port, 65535, [
  ["over 65535", () => 65536, "(root)"],
  ["negative", () => -1, "(root)"],
]);
contract("ip", Ip, "10.0.0.1", [["over 64 characters", () => long(65), "(root)"]]);
contract("labels", Labels, { env: "prod" }, [
  ["more than 64 labels", () => Object.fromEntries(times(65, (i) => [`k${i}`, "v"])), "(root)"],
  ["a value over 4096 characters", (v) => void (v.env = long(4097)), "env"],
]);
contract("process", ProcessIdentity, proc, [
  ["pid 0", (v) => void (v.pid = 0), "pid"],
  ["uid below -1", (v) => void (v.uid = -2), "uid"],
  ["more than 256 cmdline arguments", (v) => void (v.cmdline = times(257, () => "a")), "cmdline"],
  ["an argument over 4096 characters", (v) => void (v.cmdline[1] = long(4097)), "cmdline.1"],
  ["a container id over 128 characters", (v) => void (v.containerId = long(129)), "containerId"],
]);

// --- discovery.v1 ---------------------------------------------------------------------------------------------------

const hostSeen = { type: "host.seen", hostname: "db1", os: "Debian 12", kernel: "6.1.0", cpus: 2, memTotalBytes: 8e9, ips: ["10.0.0.5"] };
const listenerSeen = { type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 5432, process: proc };
const connSeen = { type: "connection.seen", proto: "tcp", localIp: "10.0.0.7", localPort: 41000, remoteIp: "10.0.0.5", remotePort: 5432, process: null };
contract("host.seen", HostSeen, hostSeen, [
  ["an empty hostname", (v) => void (v.hostname = ""), "hostname"],
  ["negative cpus", (v) => void (v.cpus = -1), "cpus"],
  ["more than 256 ips", (v) => void (v.ips = times(257, (i) => `10.0.${i >> 8}.${i & 255}`)), "ips"],
]);
contract("listener.seen", ListenerSeen, listenerSeen, [
  ["an unknown proto", (v) => void (v.proto = "sctp"), "proto"],
  ["port over 65535", (v) => void (v.port = 70000), "port"],
  ["a process without pid", (v) => void delete v.process.pid, "process.pid"],
]);
contract("listener.gone", ListenerGone, { type: "listener.gone", proto: "udp", ip: "0.0.0.0", port: 53 }, [["no port", (v) => void delete v.port, "port"]]);
contract("connection.seen", ConnectionSeen, connSeen, [["remote port a string", (v) => void (v.remotePort = "5432"), "remotePort"]]);
contract("connection.gone", ConnectionGone, { type: "connection.gone", proto: "tcp", localIp: "10.0.0.7", localPort: 41000, remoteIp: "10.0.0.5", remotePort: 5432 }, [
  ["no local ip", (v) => void delete v.localIp, "localIp"],
]);
contract("entity.annotated", EntityAnnotated, { type: "entity.annotated", match: { host: "db1", port: 5432 }, props: { owner: "team-db" } }, [
  ["more than 32 props", (v) => void (v.props = Object.fromEntries(times(33, (i) => [`p${i}`, "v"]))), "props"],
  ["an empty prop name", (v) => void (v.props = { "": "x" }), "props."],
  ["a match without host", (v) => void delete v.match.host, "match.host"],
]);
contract("name.seen", NameSeen, { type: "name.seen", ip: "93.184.216.34", name: "example.com" }, [["an empty name", (v) => void (v.name = ""), "name"]]);
contract("discovery event", DiscoveryEvent, connSeen, [["an unknown type", (v) => void (v.type = "socket.seen"), "type"]]);
const discovery = { schema: "discovery.v1", source: "agent:db1", host: "db1", scanId: 7, part: 0, parts: 1, full: true, at: 1_700_000_000_000, events: [hostSeen, listenerSeen, connSeen] };
contract("discovery.v1", DiscoveryBatch, discovery, [
  ["another schema name", (v) => void (v.schema = "discovery.v2"), "schema"],
  ["parts 0", (v) => void (v.parts = 0), "parts"],
  [`more than ${MAX_DISCOVERY_EVENTS} events`, (v) => void (v.events = times(MAX_DISCOVERY_EVENTS + 1, () => hostSeen)), "events"],
  ["a bad event deep inside", (v) => void (v.events[1].port = -5), "events.1.port"],
  ["a source over 512 characters", (v) => void (v.source = long(513)), "source"],
]);

// --- metrics.v1 -----------------------------------------------------------------------------------------------------

const sample = { entity: "host:db1", metric: "host_load1", ts: 1_700_000_000_000, value: 0.42, labels: {} };
contract("metric name", MetricName, "node_cpu_seconds_total", [
  ["starting with a digit", () => "1cpu", "(root)"],
  ["with a dash", () => "cpu-usage", "(root)"],
]);
contract("sample", Sample, sample, [
  ["an infinite value", (v) => void (v.value = Infinity), "value"],
  ["a metric with spaces", (v) => void (v.metric = "load 1"), "metric"],
]);
contract("metrics.v1", MetricBatch, { schema: "metrics.v1", source: "agent:db1", batchId: "b1", samples: [sample] }, [
  ["no samples", (v) => void (v.samples = []), "samples"],
  [`more than ${MAX_SAMPLES_PER_BATCH} samples`, (v) => void (v.samples = times(MAX_SAMPLES_PER_BATCH + 1, () => sample)), "samples"],
  ["a sample without entity", (v) => void delete v.samples[0].entity, "samples.0.entity"],
]);

// --- cypher.v1 ------------------------------------------------------------------------------------------------------

contract("cypher request", CypherRequest, { query: "MATCH (n) RETURN n LIMIT 1", params: { k: "process" }, timeoutMs: 5000, maxRows: 10 }, [
  ["an empty query", (v) => void (v.query = ""), "query"],
  ["a query over 20000 characters", (v) => void (v.query = long(20_001)), "query"],
  ["a timeout over 60 s", (v) => void (v.timeoutMs = 60_001), "timeoutMs"],
  ["maxRows over 100000", (v) => void (v.maxRows = 100_001), "maxRows"],
]);
contract("cypher response", CypherResponse, { ok: true, rows: [{ name: "postgres" }], ms: 3 }, [["ok true without rows", (v) => void delete v.rows, "(root)"]]);

// --- topology.delta.v1 / topology.snapshot.v1 -----------------------------------------------------------------------

const node = { id: "host:db1", kind: "host", name: "db1", source: "agent:db1", props: { os: "Debian", cpus: 2, up: true, ip: null }, firstSeen: 1, lastSeen: 2 };
const edge = { id: "RUNS:host:db1->service:db1:postgres:5432", kind: "RUNS", src: "host:db1", dst: "service:db1:postgres:5432", source: "agent:db1", props: {}, firstSeen: 1, lastSeen: 2 };
contract("node", TopoNode, node, [
  ["an unknown kind", (v) => void (v.kind = "router"), "kind"],
  ["an object as a prop value", (v) => void (v.props.nested = { a: 1 }), "props.nested"],
  ["a prop value over 8192 characters", (v) => void (v.props.os = long(8193)), "props.os"],
]);
contract("edge", TopoEdge, edge, [["an unknown kind", (v) => void (v.kind = "OWNS"), "kind"]]);
contract("topology.delta.v1", TopologyDelta, { schema: "topology.delta.v1", rev: 1, at: 1, nodesUpserted: [node], nodesRemoved: ["host:old"], edgesUpserted: [edge], edgesRemoved: [] }, [
  ["rev 0", (v) => void (v.rev = 0), "rev"],
  ["a node with a negative lastSeen", (v) => void (v.nodesUpserted[0].lastSeen = -1), "nodesUpserted.0.lastSeen"],
  ["an empty removed id", (v) => void (v.nodesRemoved[0] = ""), "nodesRemoved.0"],
]);
contract("topology.snapshot.v1", TopologySnapshot, { schema: "topology.snapshot.v1", rev: 0, at: 1, nodes: [node], edges: [edge] }, [
  ["a negative rev", (v) => void (v.rev = -1), "rev"],
  ["an edge without dst", (v) => void delete v.edges[0].dst, "edges.0.dst"],
]);

// --- health.delta.v1 / health.state.v1 ------------------------------------------------------------------------------

const entry = { id: "listener:db1:tcp:0.0.0.0:5432", health: "critical", alerts: ["icinga2:db1!PostgreSQL"] };
const impact = { id: "service:web1:nginx:80", health: "critical", hops: 2, causes: [{ id: entry.id, health: "critical", hops: 2 }], causesTotal: 1 };
const edgeHealth = { id: "CONNECTS:a->b", src: "a", dst: entry.id, health: "critical", cause: entry.id };
contract("health entry", HealthEntry, entry, [
  ["a health outside the enum", (v) => void (v.health = "red"), "health"],
  ["more than 10000 alerts", (v) => void (v.alerts = times(10_001, (i) => `a${i}`)), "alerts"],
]);
contract("impact entry", ImpactEntry, impact, [
  ["hops 0", (v) => void (v.hops = 0), "hops"],
  ["a cause with hops 0", (v) => void (v.causes[0].hops = 0), "causes.0.hops"],
  ["more than 1000 causes", (v) => void (v.causes = times(1001, () => impact.causes[0])), "causes"],
]);
contract("edge health", EdgeHealth, edgeHealth, [["no cause", (v) => void delete v.cause, "cause"]]);
contract("health.delta.v1", HealthDelta, { schema: "health.delta.v1", seq: 1, at: 1, entities: [entry], edges: [edgeHealth], edgesCleared: [], impact: [impact], impactCleared: [] }, [
  ["seq 0", (v) => void (v.seq = 0), "seq"],
  ["an entity without id", (v) => void delete v.entities[0].id, "entities.0.id"],
]);
contract("health.state.v1", HealthState, { schema: "health.state.v1", seq: 0, at: 1, entities: [entry], edges: [], impact: [] }, [["entities missing", (v) => void delete v.entities, "entities"]]);
contract("not ready", NotReady, { error: "replaying", code: "not_ready" }, [["another code", (v) => void (v.code = "busy"), "code"]]);

describe("WsFrame", () => {
  test("tells the four frame kinds apart by schema, and refuses any other", () => {
    expect(validate(WsFrame, "ws", { schema: "topology.snapshot.v1", rev: 0, at: 1, nodes: [], edges: [] }).schema).toBe("topology.snapshot.v1");
    expect(validate(WsFrame, "ws", { schema: "health.delta.v1", seq: 1, at: 1, entities: [] }).schema).toBe("health.delta.v1");
    expect(() => validate(WsFrame, "ws", { schema: "topology.delta.v2", rev: 1 })).toThrow(/ws: schema: /);
  });
});

// --- alert.v1 and the generic webhook -------------------------------------------------------------------------------

const alert = {
  id: "e1",
  source: "icinga2",
  fingerprint: "icinga2:db1!PostgreSQL",
  severity: "critical",
  state: "firing",
  summary: "CRITICAL - connection refused",
  labels: { host: "db1" },
  target: { host: "db1", service: "PostgreSQL", address: "10.0.0.5", port: 5432 },
  startsAt: 1,
  endsAt: null,
  at: 2,
};
contract("source name", SourceName, "alertmanager", [
  ["upper case", () => "Alertmanager", "(root)"],
  ["a dot (a subject token)", () => "a.b", "(root)"],
  ["over 64 characters", () => long(65), "(root)"],
]);
contract("alert", Alert, alert, [
  ["an unknown severity", (v) => void (v.severity = "fatal"), "severity"],
  ["an unknown state", (v) => void (v.state = "silenced"), "state"],
  ["a summary over 4096 characters", (v) => void (v.summary = long(4097)), "summary"],
  ["a target port over 65535", (v) => void (v.target.port = 65536), "target.port"],
  ["an empty target host", (v) => void (v.target.host = ""), "target.host"],
]);
contract("alert.v1", AlertBatch, { schema: "alert.v1", source: "icinga2", batchId: "b1", alerts: [alert] }, [
  ["no alerts", (v) => void (v.alerts = []), "alerts"],
  [`more than ${MAX_ALERTS_PER_MESSAGE} alerts`, (v) => void (v.alerts = times(MAX_ALERTS_PER_MESSAGE + 1, () => alert)), "alerts"],
  ["an alert of another source", (v) => void (v.alerts[0].source = "nagios"), "(root)"],
  ["a bad alert inside", (v) => void (v.alerts[0].at = -1), "alerts.0.at"],
]);
contract("time", TimeInput, "2026-12-01T10:00:00Z", [["not a time", () => "yesterday", "(root)"]]);
contract("generic alert", GenericAlert, { fingerprint: "x1", severity: "warning", target: { host: "web1" }, at: "2026-12-01T10:00:00+01:00" }, [
  ["nothing to map it by", () => ({ severity: "critical", summary: "?" }), "(root)"],
  ["a bad source", (v) => void (v.source = "My Source"), "source"],
]);
contract("generic webhook", GenericWebhook, { alerts: [{ fingerprint: "x1" }, { target: { service: "disk" } }] }, [
  ["an empty list", () => ({ alerts: [] }), "alerts"],
  [`more than ${MAX_ALERTS_PER_REQUEST} alerts`, () => ({ alerts: times(MAX_ALERTS_PER_REQUEST + 1, (i) => ({ fingerprint: `f${i}` })) }), "alerts"],
  ["a single alert with nothing to map it by", () => ({ severity: "critical" }), "alerts.0"],
]);
describe("generic webhook: one alert on its own", () => {
  test("is read as a list of one", () => {
    expect(validate(GenericWebhook, "generic", { fingerprint: "x1" }).alerts.map((a) => a.fingerprint)).toEqual(["x1"]);
  });
});
const view = { fingerprint: alert.fingerprint, source: "icinga2", state: "firing", severity: "critical", flapping: false, summary: "", labels: {}, target: {}, startsAt: 1, at: 2, entities: [], via: "" };
contract("alert view", AlertView, view, [["flapping missing", (v) => void delete v.flapping, "flapping"]]);
contract("alerts query", AlertsQuery, { op: "list", entity: "host:db1", limit: 10 }, [
  ["an unknown op", () => ({ op: "delete" }), "op"],
  ["a limit over 10000", (v) => void (v.limit = 10_001), "limit"],
  ["alert without fingerprint", () => ({ op: "alert" }), "fingerprint"],
]);
contract("alerts list", AlertsList, { alerts: [view], total: 1 }, [["a negative total", (v) => void (v.total = -1), "total"]]);

// --- jobs -----------------------------------------------------------------------------------------------------------

describe("durations", () => {
  test("parseDuration reads ms, s, m, h, d and nothing else", () => {
    expect([parseDuration("500ms"), parseDuration("30s"), parseDuration("5m"), parseDuration("1h"), parseDuration("2d")]).toEqual([500, 30_000, 300_000, 3_600_000, 172_800_000]);
    expect([parseDuration("5"), parseDuration("1w"), parseDuration("-1s"), parseDuration("1.5s")]).toEqual([null, null, null, null]);
  });
});
contract("duration", Duration, "30s", [
  ["not a duration", () => "soon", "(root)"],
  ["under 1 s", () => "500ms", "(root)"],
  ["over 7 d", () => "8d", "(root)"],
]);
contract("job timeout", JobTimeout, "10m", [["over 30 min", () => "31m", "(root)"]]);
contract("token", Token, "tcp-scan", [["a dot", () => "tcp.scan", "(root)"]]);
const manifest = { name: "tcp-scan", version: "1.0.0", workerType: "net", entry: "job.ts", schedule: { every: "5m", params: {} }, params: { type: "object" }, timeout: "2m" };
contract("job manifest", JobManifest, manifest, [
  ["an unknown key (strict)", (v) => void (v.colour = "blue"), "(root)"],
  ["not a semantic version", (v) => void (v.version = "1.0"), "version"],
  ["an absolute entry", (v) => void (v.entry = "/tmp/job.ts"), "entry"],
  ["a params schema that is not an object schema", (v) => void (v.params = { type: "string" }), "params"],
  ["a bad schedule interval", (v) => void (v.schedule.every = "1w"), "schedule.every"],
  ["a timeout over 30 min", (v) => void (v.timeout = "1h"), "timeout"],
]);
contract("schedule file", ScheduleFile, { schedules: [{ job: "dns", every: "1h", params: { names: ["example.com"] } }] }, [
  ["an unknown key in an entry", (v) => void (v.schedules[0].when = "now"), "schedules.0"],
  ["a bad interval", (v) => void (v.schedules[0].every = "0s"), "schedules.0.every"],
]);
contract("job.submit.v1", SubmitRequest, { schema: "job.submit.v1", job: "dns", params: {} }, [["a job name with spaces", (v) => void (v.job = "d n s"), "job"]]);
contract("job.submitted.v1", SubmitReply, { schema: "job.submitted.v1", ok: true, runs: [{ runId: "r1", job: "dns", workerType: "net", assignee: null }], via: "queue" }, [
  ["ok without runs", (v) => void (v.runs = []), "runs"],
  ["a refusal with an unknown code", () => ({ schema: "job.submitted.v1", ok: false, code: "nope", error: "x" }), "code"],
]);
const run = { schema: "job.run.v1", runId: "tcp-scan@1", job: "tcp-scan", workerType: "net", params: {}, slot: 1, requestedAt: 1, assignee: null };
contract("job.run.v1", JobRun, run, [["a negative slot", (v) => void (v.slot = -1), "slot"]]);
contract("job.status.v1", JobStatus, { schema: "job.status.v1", runId: "r1", job: "dns", workerId: "w1", state: "failed", at: 1, attempt: 1, items: 0, error: "timeout", final: false }, [
  ["attempt 0", (v) => void (v.attempt = 0), "attempt"],
  ["an unknown state", (v) => void (v.state = "lost"), "state"],
  ["an error over 4000 characters", (v) => void (v.error = long(4001)), "error"],
]);
contract("worker.heartbeat.v1", WorkerHeartbeat, { schema: "worker.heartbeat.v1", workerId: "w1", workerTypes: ["net"], pool: "", labels: {}, running: 0, startedAt: 1, at: 2, leaving: false }, [
  ["no worker types", (v) => void (v.workerTypes = []), "workerTypes"],
  ["a pool over 64 characters", (v) => void (v.pool = long(65)), "pool"],
]);
contract("placement.v1", PlacementTable, { schema: "placement.v1", generation: 3, at: 1, workers: ["w1"], placements: [{ job: "dns", workerType: "net", active: ["w1"], standby: [], degraded: null }] }, [
  ["a placement without standby", (v) => void delete v.placements[0].standby, "placements.0.standby"],
]);

// --- the codec ------------------------------------------------------------------------------------------------------

describe("codec", () => {
  const bytes = (s: string) => new TextEncoder().encode(s);
  const codeOf = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return e instanceof ContractError ? [e.code, e.message] : ["not a ContractError", String(e)];
    }
    return ["accepted", ""];
  };
  test("decode accepts a valid message and applies defaults", () => {
    const d = decode(Sample, "sample", bytes(JSON.stringify({ entity: "host:a", metric: "m", ts: 1, value: 2 })));
    expect(d.labels).toEqual({});
  });
  test("not JSON → not_json", () => {
    const [code, msg] = codeOf(() => decode(Sample, "sample", bytes("{nope")));
    expect(code).toBe("not_json");
    expect(msg).toStartWith("sample: not JSON");
  });
  test("over the byte limit → oversized, before parsing", () => {
    const big = bytes(`"${long(MAX_MESSAGE_BYTES)}"`);
    const [code, msg] = codeOf(() => decode(Sample, "sample", big));
    expect(code).toBe("oversized");
    expect(msg).toBe(`sample: message is ${big.byteLength} bytes, limit is ${MAX_MESSAGE_BYTES}`);
    expect(codeOf(() => decode(Sample, "sample", bytes("{}"), 1))[0]).toBe("oversized"); // the limit is a parameter
  });
  test("valid JSON of the wrong shape → invalid, with the path", () => {
    const [code, msg] = codeOf(() => decode(MetricBatch, "metrics.v1", bytes(JSON.stringify({ schema: "metrics.v1", source: "s", batchId: "b", samples: [{ ...sample, value: "high" }] }))));
    expect(code).toBe("invalid");
    expect(msg).toContain("metrics.v1: samples.0.value: ");
  });
  test("encode validates what is published and refuses an oversized message", () => {
    expect(new TextDecoder().decode(encode(Sample, "sample", { entity: "host:a", metric: "m", ts: 1, value: 2 }))).toBe('{"entity":"host:a","metric":"m","ts":1,"value":2,"labels":{}}');
    expect(codeOf(() => encode(Sample, "sample", { entity: "", metric: "m", ts: 1, value: 2 }))[0]).toBe("invalid");
    const many = { schema: "metrics.v1" as const, source: "s", batchId: "b", samples: times(MAX_SAMPLES_PER_BATCH, (i) => ({ ...sample, entity: `host:${long(100)}${i}` })) };
    expect(codeOf(() => encode(MetricBatch, "metrics.v1", many))[0]).toBe("oversized");
  });
});
