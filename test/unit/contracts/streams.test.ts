/** The one declaration of subjects, streams and consumers (pipelines/streams.ts) is consistent: no server needed. */
import { describe, expect, test } from "bun:test";
import { topologyFor, type ConsumerSpec, type Topology } from "../../../pipelines/streams.ts";

/** Whether some subject matches both patterns (NATS wildcards: `*` one token, `>` one or more trailing tokens). */
function overlap(a: string, b: string): boolean {
  const x = a.split(".");
  const y = b.split(".");
  for (let i = 0; ; i++) {
    if (x[i] === ">" || y[i] === ">") return i < x.length && i < y.length;
    if (i === x.length || i === y.length) return x.length === y.length;
    if (x[i] !== "*" && y[i] !== "*" && x[i] !== y[i]) return false;
  }
}

const jobOpts = { ackWaitMs: 30_000, maxAttempts: 5 };
/** the static durables and one of each job consumer factory, as a worker of type "net" named "w1" makes them */
const allConsumers = (t: Topology): ConsumerSpec[] => [...Object.values(t.consumers), t.jobConsumers.shared("net", jobOpts), t.jobConsumers.placed("net", "w1", jobOpts)];
/** concrete subjects of every kind, published on the streams and on core NATS */
const streamSubjects = (t: Topology) => [t.subjects.discovery("h1"), t.subjects.metrics("m"), t.subjects.alerts("am"), t.subjects.topologyDelta, t.subjects.health, t.subjects.dlq("topology"), t.subjects.jobs.queue("net"), t.subjects.jobs.placed("net", "w1")];
const coreSubjects = (t: Topology) => [
  t.subjects.snapshotRpc,
  t.subjects.cypherRpc,
  t.subjects.alertsRpc,
  t.subjects.jobs.heartbeat("w1"),
  t.subjects.jobs.heartbeats,
  t.subjects.jobs.status("tcp-scan"),
  t.subjects.jobs.statuses,
  t.subjects.jobs.placements,
  t.subjects.jobs.placementsRpc,
  t.subjects.jobs.submitRpc,
];

describe("subject matching used by these checks", () => {
  test("wildcards", () => {
    expect(overlap("o.a.>", "o.a.b")).toBe(true);
    expect(overlap("o.a.>", "o.a")).toBe(false);
    expect(overlap("o.*.b", "o.a.b")).toBe(true);
    expect(overlap("o.*", "o.a.b")).toBe(false);
    expect(overlap("o.jobs.v1.>", "o.jobs.status.v1.*")).toBe(false);
    expect(overlap("o.a.b", "o.a.b")).toBe(true);
  });
});

describe("pipelines/streams.ts", () => {
  const t = topologyFor("orrery");
  const streams = Object.values(t.streams);

  test("stream names are unique, and no subject falls under two streams", () => {
    expect(new Set(streams.map((s) => s.name)).size).toBe(streams.length);
    const all = streams.flatMap((s) => s.subjects.map((subject) => ({ stream: s.name, subject })));
    const clashes = all.flatMap((a, i) => all.slice(i + 1).filter((b) => overlap(a.subject, b.subject)).map((b) => `${a.stream} ${a.subject} ~ ${b.stream} ${b.subject}`));
    expect(clashes).toEqual([]);
  });

  test("every stream subject is stored by exactly one stream; no core NATS subject is stored by any", () => {
    for (const s of streamSubjects(t)) expect([s, streams.filter((x) => x.subjects.some((p) => overlap(p, s))).length]).toEqual([s, 1]);
    for (const s of coreSubjects(t)) expect([s, streams.filter((x) => x.subjects.some((p) => overlap(p, s))).map((x) => x.name)]).toEqual([s, []]);
  });

  test("every consumer reads a declared stream, under its subjects, with a durable name unique in that stream", () => {
    const consumers = allConsumers(t);
    for (const c of consumers) {
      const s = streams.find((x) => x.name === c.stream);
      expect(s?.name).toBe(c.stream);
      expect(s!.subjects.some((p) => overlap(p, c.filterSubject))).toBe(true);
      expect(c.durable).toMatch(/^[A-Za-z0-9_-]+$/);
    }
    const keys = consumers.map((c) => `${c.stream}/${c.durable}`);
    expect(new Set(keys).size).toBe(keys.length);
  });

  test("the work-queue stream's consumers never share a subject (JetStream refuses overlapping filters there)", () => {
    const queue = streams.filter((s) => s.retention === "workqueue").map((s) => s.name);
    expect(queue).toEqual([t.streams.jobs.name]);
    const onQueue = allConsumers(t).filter((c) => queue.includes(c.stream));
    // a second worker type and a second worker: still apart
    onQueue.push(t.jobConsumers.shared("import", jobOpts), t.jobConsumers.placed("net", "w2", jobOpts), t.jobConsumers.placed("import", "w1", jobOpts));
    for (const [i, a] of onQueue.entries()) for (const b of onQueue.slice(i + 1)) expect([a.durable, b.durable, overlap(a.filterSubject, b.filterSubject)]).toEqual([a.durable, b.durable, false]);
  });

  test("two prefixes share nothing", () => {
    const u = topologyFor("other");
    const names = new Set(streams.map((s) => s.name));
    expect(Object.values(u.streams).filter((s) => names.has(s.name))).toEqual([]);
    const mine = [...streams.flatMap((s) => s.subjects), ...coreSubjects(t)];
    const theirs = [...Object.values(u.streams).flatMap((s) => s.subjects), ...coreSubjects(u)];
    expect(mine.flatMap((a) => theirs.filter((b) => overlap(a, b)))).toEqual([]);
  });
});
