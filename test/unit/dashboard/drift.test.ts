/**
 * Drift on the map (lib/drift.ts, lib/drift-watch.ts): findings per component, the marks they badge, and the watch's
 * cadence: drift that cannot be read means no badges and no retry storm, instances are read again only when what
 * drifts changes or the registry changed.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { badgedMarks, componentsOfGroup, driftByComponent } from "../../../dashboard/src/lib/drift.ts";
import { DriftWatch, type DriftState, type DriftWatchDeps } from "../../../dashboard/src/lib/drift-watch.ts";
import type { Drift } from "../../../pipelines/contracts/registry.ts";

const drift = (over: Partial<Drift> = {}): Drift => ({
  schema: "registry.drift.v1",
  at: 1,
  topologyRev: 1,
  windowMs: 60_000,
  declaredNotSeen: [],
  seenNotDeclared: [],
  notRunning: [],
  unregistered: [],
  ...over,
});

describe("drift findings and badges", () => {
  test("both ends of a declared-not-seen or seen-not-declared pair drift; not-running and unregistered badge nothing", () => {
    const by = driftByComponent(
      drift({
        declaredNotSeen: [{ from: "web", to: "db" }],
        seenNotDeclared: [{ from: "web", to: "cache", edges: 3 }],
        notRunning: ["batch"],
        unregistered: [{ id: "process:x", name: "x", host: "h" }],
      }),
    );
    expect(Object.fromEntries(by)).toEqual({
      web: ["declares db, never seen", "depends on cache, not declared"],
      db: ["declared by web, never seen"],
      cache: ["used by web, not declared"],
    });
  });

  test("a service mark by its entity's components, a group-by-component group by its names", () => {
    expect(componentsOfGroup("group:component:Orders API, ledger")).toEqual(["orders-api", "ledger"]);
    expect(componentsOfGroup("group:tier:app")).toEqual([]);
    const components = new Map([
      ["orders-api", ["declares ledger, never seen"]],
      ["ledger", ["declared by orders-api, never seen"]],
    ]);
    const instances = new Map([["process:sim-app-1:orders", ["orders-api"]]]);
    const marks = [
      { id: "service:1", entityId: "process:sim-app-1:orders" },
      { id: "service:2", entityId: "process:sim-app-2:other" },
      { id: "group:component:ledger" },
      { id: "group:component:search" },
      { id: "group:tier:app" },
    ];
    expect(Object.fromEntries(badgedMarks(marks, components, instances))).toEqual({
      "service:1": ["orders-api: declares ledger, never seen"],
      "group:component:ledger": ["ledger: declared by orders-api, never seen"],
    });
    expect(badgedMarks(marks, new Map(), instances).size).toBe(0);
  });
});

describe("the drift watch", () => {
  const stops: (() => void)[] = [];
  afterEach(() => {
    for (const s of stops.splice(0)) s();
  });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  function watch(over: Partial<DriftWatchDeps>) {
    const changes: DriftState[] = [];
    const componentReads: string[] = [];
    let fire = () => {};
    const w = new DriftWatch({
      fetchDrift: async () => ({ ok: false, error: "the topology is not available to the registry yet" }),
      fetchComponent: async (id) => {
        componentReads.push(id);
        return { ok: true, data: { instances: [{ id: `process:${id}`, name: id, host: "h", ports: "", rule: 0 }] } };
      },
      registryChanged: (cb) => {
        fire = cb;
        return () => (fire = () => {});
      },
      onChange: (s) => changes.push(s),
      everyMs: 100,
      ...over,
    });
    w.start();
    stops.push(() => w.dispose());
    return { w, changes, componentReads, fire: () => fire() };
  }

  test("drift unavailable: no badges, nothing thrown, one read per interval (no retry storm)", async () => {
    const { w, changes } = watch({});
    await sleep(350);
    expect(changes).toEqual([]);
    expect(w.reads).toBeGreaterThanOrEqual(3);
    expect(w.reads).toBeLessThanOrEqual(5);
    // a gateway that cannot be reached at all is the same
    const thrown = watch({ fetchDrift: () => Promise.reject(new TypeError("Failed to fetch")) });
    await sleep(150);
    expect(thrown.changes).toEqual([]);
    expect(thrown.w.reads).toBeLessThanOrEqual(3);
  });

  test("instances are read when what drifts changes or the registry changed, not on every read; badges go when drift becomes unreadable", async () => {
    let answer: () => Promise<{ ok: true; data: Drift } | { ok: false; error: string }> = async () => ({ ok: true, data: drift({ declaredNotSeen: [{ from: "a", to: "b" }] }) });
    const { w, changes, componentReads, fire } = watch({ fetchDrift: () => answer(), everyMs: 60 });
    await sleep(200);
    expect(w.reads).toBeGreaterThanOrEqual(3);
    expect(componentReads.sort()).toEqual(["a", "b"]);
    expect(changes.at(-1)!.instances.get("process:a")).toEqual(["a"]);
    expect([...changes.at(-1)!.components.keys()].sort()).toEqual(["a", "b"]);

    fire();
    await sleep(30);
    expect(componentReads.length).toBe(4);

    answer = async () => ({ ok: true, data: drift({ seenNotDeclared: [{ from: "a", to: "c", edges: 1 }] }) });
    await sleep(120);
    expect(componentReads.filter((c) => c === "c").length).toBe(1);

    answer = async () => ({ ok: false, error: "unavailable" });
    await sleep(120);
    expect(changes.at(-1)!.components.size).toBe(0);
    const n = w.reads;
    w.stop();
    await sleep(150);
    expect(w.reads).toBe(n);
  });

  test("a map that goes away and comes back: no read before one is due, unless the registry changed meanwhile", async () => {
    const { w, fire } = watch({ everyMs: 1_000 });
    await sleep(30);
    expect(w.reads).toBe(1);
    w.stop();
    w.start();
    await sleep(30);
    expect(w.reads).toBe(1);
    w.stop();
    fire();
    await sleep(30);
    expect(w.reads).toBe(1);
    w.start();
    await sleep(30);
    expect(w.reads).toBe(2);
  });
});
