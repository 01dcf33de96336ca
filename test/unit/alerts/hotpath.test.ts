/**
 * The alert hot path's shortcuts say the same as the slow paths they replace: the per-entity health index equals
 * healthOfEntity over a randomized fold/tick/remap history (flapping, acknowledgements, forgetting); the zod-compiled
 * schemas accept and refuse what zod's runtime does, with the same messages; merged health deltas applied in one go
 * equal the deltas applied in order, and the gateway's coalescer sends an idle delta at once and at most one frame
 * per window under load.
 */
import { describe, expect, test } from "bun:test";
import { z } from "zod";
import { ContractError, validate } from "../../../pipelines/codec.ts";
import { Alert, AlertBatch, GenericAlert, GenericEnvelope, GenericWebhook } from "../../../pipelines/contracts/alerts.ts";
import { HealthDelta, type HealthEntry, type HealthState } from "../../../pipelines/contracts/health.ts";
import { emptyBook, foldAlert, tickBook } from "../../../pipelines/stages/alerts/book.ts";
import { EntityHealthIndex, healthOfEntity } from "../../../pipelines/stages/alerts/health.ts";
import { AlertmanagerAlert, AlertmanagerEnvelope, AlertmanagerWebhook } from "../../../pipelines/contracts/vendors/alertmanager.ts";
import { healthFrameCoalescer, HealthDeltaMerge } from "../../../services/gateway/health.ts";

/** A small deterministic PRNG, so a failure reproduces. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("EntityHealthIndex", () => {
  test("equals healthOfEntity over the mapped fingerprints after every step of a random history", () => {
    const r = rng(7);
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
    const book = emptyBook({ windowMs: 1000, threshold: 3, retainResolvedMs: 5000 });
    const ix = new EntityHealthIndex();
    const entities = ["host:a", "host:b", "listener:a:5432", "process:a:1"];
    const fps = Array.from({ length: 40 }, (_, i) => `fp${i}`);
    const states = ["firing", "resolved", "acknowledged", "downtime"] as const;
    const severities = ["critical", "warning", "info", "ok", "unknown"] as const;
    const check = () => {
      for (const id of entities) {
        const mapped = [...book.entries].filter(([, e]) => e.entities.includes(id)).map(([fp]) => fp);
        expect(ix.health(id)).toEqual(healthOfEntity(book, id, mapped));
      }
    };
    let now = 1;
    for (let step = 0; step < 3000; step++) {
      now += Math.floor(r() * 200);
      const roll = r();
      if (roll < 0.75) {
        const fp = pick(fps);
        const a = validate(Alert, "alert.v1", { id: `${fp}:${step}`, source: "generic", fingerprint: fp, severity: pick(severities), state: pick(states), startsAt: now, at: now });
        const outcome = foldAlert(book, a, now);
        const e = book.entries.get(fp)!;
        if (outcome === "new") e.entities = r() < 0.2 ? [] : [pick(entities), ...(r() < 0.3 ? [pick(entities)] : [])];
        if (outcome === "new" || outcome === "changed") ix.update(fp, e);
      } else if (roll < 0.85) {
        // re-mapped (the topology moved on)
        const fp = pick(fps);
        const e = book.entries.get(fp);
        if (e) {
          e.entities = r() < 0.3 ? [] : [pick(entities)];
          ix.update(fp, e);
        }
      } else {
        const t = tickBook(book, now);
        for (const fp of t.changed) ix.update(fp, book.entries.get(fp));
        for (const fp of t.forgotten) ix.update(fp, undefined);
      }
      if (step % 10 === 0) check();
    }
    check();
  });

  test("an entity's alerts are sorted, counted once however often it is listed, and gone when nothing counts", () => {
    const book = emptyBook();
    const ix = new EntityHealthIndex();
    const add = (fp: string, state: Alert["state"], severity: Alert["severity"], entities: string[]) => {
      foldAlert(book, validate(Alert, "alert.v1", { id: `${fp}:${state}`, source: "generic", fingerprint: fp, severity, state, startsAt: 1, at: 1 }), 1);
      const e = book.entries.get(fp)!;
      e.entities = entities;
      ix.update(fp, e);
    };
    add("b", "firing", "warning", ["host:x", "host:x"]);
    add("a", "acknowledged", "critical", ["host:x"]);
    expect(ix.health("host:x")).toEqual({ id: "host:x", health: "warning", alerts: ["a", "b"] });
    foldAlert(book, validate(Alert, "alert.v1", { id: "b:r", source: "generic", fingerprint: "b", severity: "ok", state: "resolved", startsAt: 1, at: 2 }), 2);
    ix.update("b", book.entries.get("b"));
    expect(ix.health("host:x")).toEqual({ id: "host:x", health: "ok", alerts: ["a"] });
    ix.update("a", undefined);
    expect(ix.health("host:x")).toEqual({ id: "host:x", health: "ok", alerts: [] });
  });
});

describe("tickBook by due second", () => {
  /** the clock as it was: every due fingerprint visited on every tick */
  function tickEveryDue(book: ReturnType<typeof emptyBook>, now: number) {
    const changed: string[] = [];
    const forgotten: string[] = [];
    const w = book.flap.windowMs;
    for (const fp of book.due) {
      const e = book.entries.get(fp);
      if (!e) {
        book.due.delete(fp);
        continue;
      }
      if (e.changes.length && now - e.changes[0]! >= w) {
        e.changes = e.changes.filter((t) => now - t < w);
        e.flapping = e.changes.length >= book.flap.threshold;
      }
      if (e.pending) {
        if (!e.flapping || now - e.publishedAt >= w) {
          e.published = { state: e.last.state, severity: e.last.severity };
          e.publishedAt = now;
          e.pending = false;
          changed.push(fp);
        }
      } else if (e.published.state === "resolved" && now - e.publishedAt > book.flap.retainResolvedMs) {
        book.entries.delete(fp);
        book.due.delete(fp);
        forgotten.push(fp);
        continue;
      }
      if (!e.pending && !e.changes.length && e.published.state !== "resolved") book.due.delete(fp);
    }
    return { changed, forgotten };
  }

  test("publishes and forgets exactly what visiting every due alert on every tick did (random flapping histories)", () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const r = rng(seed);
      const flap = { windowMs: 1500 + Math.floor(r() * 3000), threshold: 3, retainResolvedMs: 4000 + Math.floor(r() * 4000) };
      const a = emptyBook(flap);
      const b = emptyBook(flap);
      const fps = Array.from({ length: 12 }, (_, i) => `fp${i}`);
      const states = ["firing", "resolved", "acknowledged"] as const;
      let now = 1000;
      for (let step = 0; step < 4000; step++) {
        now += Math.floor(r() * 400);
        if (r() < 0.6) {
          const fp = fps[Math.floor(r() * fps.length)]!;
          const st = states[Math.floor(r() * states.length)]!;
          const ev = validate(Alert, "alert.v1", { id: `${fp}:${step}`, source: "generic", fingerprint: fp, severity: st === "resolved" ? "ok" : "critical", state: st, startsAt: now, at: now });
          expect(foldAlert(a, ev, now)).toBe(foldAlert(b, ev, now));
        } else {
          const ta = tickBook(a, now);
          const tb = tickEveryDue(b, now);
          expect([ta.changed.sort(), ta.forgotten.sort()]).toEqual([tb.changed.sort(), tb.forgotten.sort()]);
          expect([...a.due].sort()).toEqual([...b.due].sort());
        }
      }
      expect([...a.entries.keys()].sort()).toEqual([...b.entries.keys()].sort());
    }
  });
});

describe("compiled schemas", () => {
  const alert = { id: "e1", source: "generic", fingerprint: "f1", severity: "critical", state: "firing", summary: "", labels: {}, target: { host: "h1" }, startsAt: 1, endsAt: null, at: 1 };
  const cases: [string, z.ZodType, unknown][] = [
    ["good batch", AlertBatch, { schema: "alert.v1", source: "generic", batchId: "b1", alerts: [alert] }],
    ["batch of another source (refinement)", AlertBatch, { schema: "alert.v1", source: "other", batchId: "b1", alerts: [alert] }],
    ["batch with a bad alert deep inside", AlertBatch, { schema: "alert.v1", source: "generic", batchId: "b1", alerts: [alert, { ...alert, severity: "dire", at: -1 }] }],
    ["batch missing defaults (filled by zod)", AlertBatch, { schema: "alert.v1", source: "generic", batchId: "b1", alerts: [{ id: "e1", source: "generic", fingerprint: "f1", severity: "critical", state: "firing", startsAt: 1, at: 1 }] }],
    ["batch with unknown keys (stripped)", AlertBatch, { schema: "alert.v1", source: "generic", batchId: "b1", extra: 1, alerts: [{ ...alert, extra: 2 }] }],
    ["too many labels (refinement)", Alert, { ...alert, labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`l${i}`, "v"])) }],
    ["a 513-character id", Alert, { ...alert, id: "x".repeat(513) }],
    ["good delta", HealthDelta, { schema: "health.delta.v1", seq: 3, at: 5, entities: [{ id: "host:a", health: "critical", alerts: ["f1"] }] }],
    ["delta with a bad entity", HealthDelta, { schema: "health.delta.v1", seq: 0, at: 5, entities: [{ id: "", health: "red", alerts: [1] }] }],
    ["generic: one alert", GenericWebhook, { fingerprint: "f", target: { host: "h" } }],
    ["generic: nothing to map by (refinement)", GenericWebhook, { alerts: [{ severity: "warning" }] }],
    ["generic: bad time", GenericWebhook, { fingerprint: "f", at: "yesterday" }],
    ["alertmanager: wrong version", AlertmanagerWebhook, { version: "3", groupKey: "g", status: "firing", receiver: "r", alerts: [] }],
    // what the ingest compiles to validate a payload's envelope, then each alert alone
    ["generic envelope: one alert", GenericEnvelope, { fingerprint: "f", target: { host: "h" } }],
    ["generic envelope: no alerts", GenericEnvelope, { alerts: [] }],
    ["generic alert: nothing to map by (refinement)", GenericAlert, { severity: "warning" }],
    ["alertmanager envelope: alerts left unread", AlertmanagerEnvelope, { version: "4", groupKey: "g", status: "firing", receiver: "r", alerts: [{ status: "odd" }, 1] }],
    ["alertmanager envelope: no groupKey", AlertmanagerEnvelope, { version: "4", status: "firing", receiver: "r", alerts: [] }],
    ["alertmanager alert: bad status, labels not strings", AlertmanagerAlert, { status: "odd", labels: { a: 1 }, startsAt: "x" }],
  ];
  for (const [name, schema, value] of cases) {
    test(`${name}: same result and same message`, () => {
      const compiled = z.compile(schema, { strict: true }); // it really compiles (no silent fallback to the runtime)
      const run = (s: z.ZodType) => {
        try {
          return { ok: validate(s, "x", structuredClone(value)) };
        } catch (e) {
          expect(e).toBeInstanceOf(ContractError);
          return { error: (e as Error).message };
        }
      };
      expect(run(compiled)).toEqual(run(schema));
    });
  }
});

describe("health deltas coalesced", () => {
  type Frame = { schema: "health.delta.v1"; seq: number; at: number; entities: HealthEntry[]; edges: HealthDelta["edges"]; edgesCleared: string[]; impact: HealthDelta["impact"]; impactCleared: string[] };
  const delta = (seq: number, p: Partial<Frame>): HealthDelta => ({ schema: "health.delta.v1", seq, at: seq, entities: [], edges: [], edgesCleared: [], impact: [], impactCleared: [], ...p });
  /** a reader, as the dashboard applies frames */
  const apply = (state: { health: Map<string, HealthEntry>; edges: Map<string, string>; impact: Map<string, number> }, d: HealthDelta) => {
    for (const id of d.impactCleared) state.impact.delete(id);
    for (const id of d.edgesCleared) state.edges.delete(id);
    for (const e of d.entities) (e.health === "ok" && !e.alerts.length ? state.health.delete(e.id) : state.health.set(e.id, e));
    for (const e of d.impact) state.impact.set(e.id, e.hops);
    for (const e of d.edges) state.edges.set(e.id, e.health);
  };
  const empty = () => ({ health: new Map<string, HealthEntry>(), edges: new Map<string, string>(), impact: new Map<string, number>() });

  test("a merge applied once equals its deltas applied in order (random sequences)", () => {
    const r = rng(11);
    const ids = ["a", "b", "c", "d"];
    const pick = () => ids[Math.floor(r() * ids.length)]!;
    const healths = ["ok", "warning", "critical"] as const;
    for (let round = 0; round < 200; round++) {
      const deltas: HealthDelta[] = [];
      for (let i = 0; i < 1 + Math.floor(r() * 6); i++) {
        const h = healths[Math.floor(r() * 3)]!;
        deltas.push(
          delta(i + 1, {
            entities: r() < 0.7 ? [{ id: pick(), health: h, alerts: h === "ok" ? [] : ["f"] }] : [],
            edges: r() < 0.5 ? [{ id: `e${pick()}`, src: "x", dst: "y", health: "critical", cause: "z" }] : [],
            edgesCleared: r() < 0.5 ? [`e${pick()}`] : [],
            impact: r() < 0.5 ? [{ id: pick(), health: "critical", hops: 1 + Math.floor(r() * 3), causes: [{ id: "z", health: "critical", hops: 1 }], causesTotal: 1 }] : [],
            impactCleared: r() < 0.5 ? [pick()] : [],
          }),
        );
      }
      const inOrder = empty();
      const merged = empty();
      const m = new HealthDeltaMerge();
      for (const d of deltas) {
        apply(inOrder, d);
        m.add(d);
      }
      const one = m.take()!;
      expect(one.seq).toBe(deltas.at(-1)!.seq);
      apply(merged, one);
      expect(merged).toEqual(inOrder);
      expect(m.take()).toBeNull();
    }
  });

  test("idle: a delta goes out at once, as it came; under load one merged frame per window; a state supersedes", async () => {
    const sent: (HealthDelta | HealthState)[] = [];
    let clock = 0; // the coalescer's clock, moved by hand (timers are real)
    const c = healthFrameCoalescer((f) => sent.push(f), { windowMs: 40, now: () => clock });
    const d1 = delta(1, { entities: [{ id: "a", health: "critical", alerts: ["f1"] }] });
    c.push(d1);
    expect(sent).toEqual([d1]);
    clock = 1;
    c.push(delta(2, { entities: [{ id: "a", health: "critical", alerts: ["f1", "f2"] }] }));
    c.push(delta(3, { entities: [{ id: "b", health: "warning", alerts: ["f3"] }] }));
    expect(sent.length).toBe(1);
    for (let i = 0; i < 100 && sent.length < 2; i++) await Bun.sleep(10);
    expect(sent.length).toBe(2);
    expect(sent[1]).toMatchObject({ seq: 3, entities: [{ id: "a", alerts: ["f1", "f2"] }, { id: "b", alerts: ["f3"] }] });
    // pending deltas are dropped when a full state comes: it already holds them
    clock = 100;
    const d4 = delta(4, { entities: [{ id: "c", health: "critical", alerts: ["f4"] }] });
    c.push(d4); // idle again: at once
    clock = 101;
    c.push(delta(5, { entities: [{ id: "c", health: "ok", alerts: [] }] })); // within the window: pending
    const state: HealthState = { schema: "health.state.v1", seq: 5, at: 5, entities: [], edges: [], impact: [] };
    c.push(state);
    await Bun.sleep(80);
    expect(sent.slice(2)).toEqual([d4, state]);
    c.stop();
  });
});
