/**
 * One clock per alert: Alertmanager webhooks from a sender whose clock is 30 s behind or ahead of ours, normalized
 * and folded at our receive times, end resolved; events older than what the book holds are ignored with the reason
 * recorded, never silently; a resolve older than the firing it follows still closes the episode that is open.
 */
import { describe, expect, test } from "bun:test";
import { validate } from "../../../pipelines/codec.ts";
import { Alert } from "../../../pipelines/contracts/alerts.ts";
import { AlertmanagerWebhook } from "../../../pipelines/contracts/vendors/alertmanager.ts";
import { normalizeAlertmanager } from "../../../pipelines/stages/alerts/alertmanager.ts";
import { emptyBook, foldAlert, MAX_IGNORED_KEPT, type IgnoredEvent } from "../../../pipelines/stages/alerts/book.ts";

const OUR_NOW = Date.UTC(2026, 11, 6, 12, 0, 0);
const iso = (t: number) => new Date(t).toISOString();

/** A webhook as Alertmanager sends it for one alert, with the times its sender stamped. */
const webhook = (status: "firing" | "resolved", startsAt: number, endsAt: number | null) =>
  validate(AlertmanagerWebhook, "alertmanager webhook", {
    version: "4",
    groupKey: '{}:{alertname="PostgresDown"}',
    status,
    receiver: "orrery",
    alerts: [
      {
        status,
        labels: { alertname: "PostgresDown", instance: "db1:5432", severity: "critical" },
        annotations: { summary: "pg down" },
        startsAt: iso(startsAt),
        endsAt: endsAt === null ? "0001-01-01T00:00:00Z" : iso(endsAt),
        fingerprint: "bbf630d9c014094b",
      },
    ],
  });

describe.each([
  ["30 s behind", -30_000],
  ["30 s ahead", 30_000],
])("an Alertmanager whose clock is %s of ours", (_name, skew) => {
  test("firing then resolved: the resolve is folded and the alert ends resolved; nothing is ignored", () => {
    const book = emptyBook();
    const ignored: IgnoredEvent[] = [];
    book.onIgnored = (e) => ignored.push(e);
    // it started firing 10 s before we heard of it (by the sender's clock), and ended 5 s after we heard of it
    const senderNow = OUR_NOW + skew;
    const [firing] = normalizeAlertmanager(webhook("firing", senderNow - 10_000, null), OUR_NOW);
    const [resolved] = normalizeAlertmanager(webhook("resolved", senderNow - 10_000, senderNow + 5_000), OUR_NOW + 20_000);
    validate(Alert, "alert.v1", firing);
    expect(firing!.at).toBe(senderNow - 10_000);
    expect(resolved!.at).toBe(senderNow + 5_000);
    if (skew < 0) {
      // the case that was lost: the resolve's endsAt is earlier than the firing's arrival on our clock
      expect(resolved!.at).toBeLessThan(OUR_NOW);
    }
    expect(foldAlert(book, firing!, OUR_NOW)).toBe("new");
    expect(foldAlert(book, resolved!, OUR_NOW + 20_000)).toBe("changed");
    expect(book.entries.get(firing!.fingerprint)!.published.state).toBe("resolved");
    expect(ignored).toEqual([]);
    expect(book.ignored.total).toBe(0);
  });

  test("a late copy of the firing after the resolve is ignored, with the reason, and counted", () => {
    const book = emptyBook();
    const ignored: IgnoredEvent[] = [];
    book.onIgnored = (e) => ignored.push(e);
    const senderNow = OUR_NOW + skew;
    const [firing] = normalizeAlertmanager(webhook("firing", senderNow - 10_000, null), OUR_NOW);
    const [resolved] = normalizeAlertmanager(webhook("resolved", senderNow - 10_000, senderNow + 5_000), OUR_NOW + 20_000);
    foldAlert(book, firing!, OUR_NOW);
    foldAlert(book, resolved!, OUR_NOW + 20_000);
    // Alertmanager retried the first notification and it arrived last
    const [copy] = normalizeAlertmanager(webhook("firing", senderNow - 10_000, null), OUR_NOW + 25_000);
    expect(foldAlert(book, copy!, OUR_NOW + 25_000)).toBe("stale");
    expect(book.entries.get(firing!.fingerprint)!.published.state).toBe("resolved");
    expect(book.ignored.total).toBe(1);
    expect(ignored).toHaveLength(1);
    expect(ignored[0]).toMatchObject({ fingerprint: firing!.fingerprint, id: copy!.id, state: "firing", at: senderNow - 10_000, lastAt: senderNow + 5_000, lastState: "resolved" });
    expect(ignored[0]!.reason).toBe(`firing at ${iso(senderNow - 10_000)} is older than the last event folded (resolved at ${iso(senderNow + 5_000)})`);
    expect(book.ignored.recent).toEqual(ignored);
    // it fires again (Prometheus starts a new alert): a new episode, folded
    const [again] = normalizeAlertmanager(webhook("firing", senderNow + 60_000, null), OUR_NOW + 65_000);
    expect(foldAlert(book, again!, OUR_NOW + 65_000)).toBe("changed");
    expect(book.entries.get(firing!.fingerprint)!.published.state).toBe("firing");
  });
});

describe("mixed clocks (a source that stamps some events with our receive time)", () => {
  const mk = (o: Partial<Alert> & Pick<Alert, "state" | "at">): Alert =>
    validate(Alert, "alert.v1", { id: `${o.state}:${o.at}`, source: "generic", fingerprint: "fp1", severity: o.state === "resolved" ? "ok" : "critical", target: { host: "db1" }, startsAt: o.at, ...o });

  test("a resolve older than the firing it follows closes the open episode; a late copy of that firing does not reopen it", () => {
    const book = emptyBook();
    // firing stamped on receipt (our clock); the resolve with endsAt from a sender 30 s behind, same episode
    expect(foldAlert(book, mk({ state: "firing", at: OUR_NOW, startsAt: OUR_NOW - 40_000 }), OUR_NOW)).toBe("new");
    expect(foldAlert(book, mk({ state: "resolved", at: OUR_NOW - 20_000, startsAt: OUR_NOW - 40_000 }), OUR_NOW + 10_000)).toBe("changed");
    expect(book.entries.get("fp1")!.published.state).toBe("resolved");
    expect(foldAlert(book, mk({ state: "firing", at: OUR_NOW, startsAt: OUR_NOW - 40_000 }), OUR_NOW + 11_000)).toBe("stale");
    expect(book.ignored.recent.at(-1)!.reason).toContain("older than the firing its last resolve closed");
    expect(book.entries.get("fp1")!.published.state).toBe("resolved");
    // a later firing opens a new episode
    expect(foldAlert(book, mk({ state: "firing", at: OUR_NOW + 30_000 }), OUR_NOW + 30_000)).toBe("changed");
  });

  test("a resolve of an earlier episode does not close the one open now", () => {
    const book = emptyBook();
    foldAlert(book, mk({ state: "firing", at: 1000, startsAt: 1000 }), 1000);
    foldAlert(book, mk({ state: "resolved", at: 2000, startsAt: 1000 }), 2000);
    foldAlert(book, mk({ state: "firing", at: 3000, startsAt: 3000 }), 3000);
    // the first resolve, redelivered after the second firing
    expect(foldAlert(book, mk({ state: "resolved", at: 2000, startsAt: 1000 }), 4000)).toBe("stale");
    expect(book.entries.get("fp1")!.published.state).toBe("firing");
    expect(book.ignored.total).toBe(1);
  });

  test("an older event that says what the book holds is not recorded as ignored", () => {
    const book = emptyBook();
    foldAlert(book, mk({ state: "downtime", at: 2002 }), 0);
    expect(foldAlert(book, mk({ state: "downtime", at: 2001 }), 1)).toBe("stale");
    expect(book.ignored.total).toBe(0);
    expect(foldAlert(book, mk({ state: "firing", at: 2000 }), 2)).toBe("stale");
    expect(book.ignored.total).toBe(1);
  });

  test("the ignored list is bounded; the count is not", () => {
    const book = emptyBook();
    foldAlert(book, mk({ state: "resolved", at: 1_000_000 }), 0);
    for (let i = 0; i < MAX_IGNORED_KEPT + 20; i++) foldAlert(book, mk({ state: "firing", at: i, id: `old-${i}` }), i);
    expect(book.ignored.total).toBe(MAX_IGNORED_KEPT + 20);
    expect(book.ignored.recent).toHaveLength(MAX_IGNORED_KEPT);
    expect(book.ignored.recent.at(-1)!.id).toBe(`old-${MAX_IGNORED_KEPT + 19}`);
  });
});
