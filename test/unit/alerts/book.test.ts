/** The alert book (dedup, flap damping, the clock) and entity health from it. */
import { describe, expect, test } from "bun:test";
import { validate } from "../../../pipelines/codec.ts";
import { Alert } from "../../../pipelines/contracts/alerts.ts";
import { emptyBook, foldAlert, tickBook } from "../../../pipelines/stages/alerts/book.ts";
import { healthMap, healthOfEntity } from "../../../pipelines/stages/alerts/health.ts";

describe("dedup, flap damping, health", () => {
  const mk = (state: Alert["state"], severity: Alert["severity"], at: number, fp = "fp1"): Alert =>
    validate(Alert, "alert.v1", { id: `${fp}:${at}`, source: "generic", fingerprint: fp, severity, state, target: { host: "db1" }, startsAt: at, at });

  test("repeats are duplicates, older events are stale", () => {
    const book = emptyBook();
    expect(foldAlert(book, mk("firing", "critical", 10), 10)).toBe("new");
    expect(foldAlert(book, mk("firing", "critical", 20), 20)).toBe("duplicate");
    expect(foldAlert(book, mk("resolved", "ok", 5), 30)).toBe("stale");
    expect(foldAlert(book, mk("resolved", "ok", 40), 40)).toBe("changed");
    // a downtime event without a check state keeps the known severity
    expect(foldAlert(book, mk("firing", "warning", 50), 50)).toBe("changed");
    expect(foldAlert(book, mk("downtime", "unknown", 60), 60)).toBe("changed");
    expect(book.entries.get("fp1")!.published).toEqual({ state: "downtime", severity: "warning" });
  });

  test("N changes within the window: flapping, at most one published change per window, the last state wins", () => {
    const book = emptyBook({ windowMs: 1000, threshold: 4, retainResolvedMs: 60_000 });
    const outcomes = [0, 10, 20, 30, 40, 50, 60].map((t, i) => foldAlert(book, mk(i % 2 ? "resolved" : "firing", i % 2 ? "ok" : "critical", t), t));
    expect(outcomes).toEqual(["new", "changed", "changed", "changed", "damped", "damped", "damped"]);
    const e = book.entries.get("fp1")!;
    expect(e.flapping).toBe(true);
    expect(e.published.state).toBe("resolved"); // what was published at t=30
    expect(tickBook(book, 500).changed).toEqual([]);
    // one window after the last publish the pending state (firing, from t=60) goes out
    expect(tickBook(book, 1031).changed).toEqual(["fp1"]);
    expect(e.published).toEqual({ state: "firing", severity: "critical" });
    // settled: changes age out, flapping ends; a resolved alert is forgotten after retention
    expect(foldAlert(book, mk("resolved", "ok", 3000), 3000)).toBe("changed");
    expect(book.entries.get("fp1")!.flapping).toBe(false);
    expect(tickBook(book, 70_000).forgotten).toEqual(["fp1"]);
  });

  test("the clock visits only what is due: steadily firing alerts leave book.due, a change brings them back", () => {
    const book = emptyBook({ windowMs: 1000, threshold: 4, retainResolvedMs: 60_000 });
    for (let i = 0; i < 1000; i++) foldAlert(book, mk("firing", "critical", 1, `steady-${i}`), 1);
    foldAlert(book, mk("firing", "critical", 1, "gone"), 1);
    foldAlert(book, mk("resolved", "ok", 2, "gone"), 2);
    expect(book.due.size).toBe(1001);
    tickBook(book, 5000); // the change of "gone" aged out of the window; firing ones have nothing to wait for
    expect([...book.due]).toEqual(["gone"]); // resolved: waits to be forgotten
    const t = tickBook(book, 70_000);
    expect(t.forgotten).toEqual(["gone"]);
    expect(t.forgottenEntities.get("gone")).toEqual([]);
    expect(book.due.size).toBe(0);
    expect(book.entries.size).toBe(1000);
    // a steady alert that changes is due again, and its damped change still goes out
    expect(foldAlert(book, mk("resolved", "ok", 80_000, "steady-7"), 80_000)).toBe("changed");
    expect([...book.due]).toEqual(["steady-7"]);
  });

  test("health: worst firing severity; acknowledged counts as listed, not as colour; resolved drops out", () => {
    const book = emptyBook();
    foldAlert(book, mk("firing", "warning", 1, "a"), 1);
    foldAlert(book, mk("firing", "critical", 1, "b"), 1);
    foldAlert(book, mk("acknowledged", "critical", 1, "c"), 1);
    for (const fp of ["a", "b", "c"]) book.entries.get(fp)!.entities = ["host:db1"];
    expect(healthOfEntity(book, "host:db1", ["a", "b", "c"])).toEqual({ id: "host:db1", health: "critical", alerts: ["a", "b", "c"] });
    foldAlert(book, mk("resolved", "ok", 2, "b"), 2);
    expect(healthMap(book).get("host:db1")).toEqual({ id: "host:db1", health: "warning", alerts: ["a", "c"] });
  });
});
