/**
 * The alert book (pure): one entry per fingerprint, events folded into it in the source's order (dedup), state
 * changes damped while an alert flaps, resolved alerts forgotten after a while.
 */
import type { Alert, AlertState, Severity } from "../../contracts/alerts.ts";

export interface FlapConfig {
  /** a fingerprint that changes state `threshold` times within `windowMs` is flapping, and while it flaps at most
   * one change per window is published */
  windowMs: number;
  threshold: number;
  /** resolved alerts are forgotten after this long */
  retainResolvedMs: number;
}
export const DEFAULT_FLAP: FlapConfig = { windowMs: 10 * 60_000, threshold: 5, retainResolvedMs: 60 * 60_000 };

export interface Effective {
  state: AlertState;
  severity: Severity;
}

export interface AlertEntry {
  /** the latest event received for this fingerprint */
  last: Alert;
  /** what is published (health, API): lags `last` only while flapping is damped */
  published: Effective;
  publishedAt: number;
  /** times of state changes within the flap window */
  changes: number[];
  flapping: boolean;
  pending: boolean;
  /** topology entities this alert is mapped to ([] = unmapped) */
  entities: string[];
  /** how the mapping was made, e.g. "rule:postgresql", "port-in-check-name", "host" */
  via: string;
  /**
   * set when a resolve older than the firing it closed was folded (see foldAlert): the firing's time, which a new
   * firing must pass, so a late copy of the old firing does not reopen the alert
   */
  closedAt?: number;
}

/** An event the book did not fold, and why. */
export interface IgnoredEvent {
  fingerprint: string;
  id: string;
  state: AlertState;
  /** the event's time and that of the last event folded for its fingerprint (alert.v1 `at`, the source's clock) */
  at: number;
  lastAt: number;
  lastState: AlertState;
  reason: string;
  /** when the book ignored it (the fold's clock) */
  ignoredAt: number;
}

/** Ignored events kept for inspection; the count covers all of them. */
export const MAX_IGNORED_KEPT = 100;

export interface AlertBook {
  entries: Map<string, AlertEntry>;
  flap: FlapConfig;
  /**
   * fingerprints the clock still has work for: a damped change to publish, changes in the flap window to age out, or
   * a resolved alert to forget. A steadily firing alert is not in it, so a tick costs what is due, not the book's size
   * (at 10k alert events/s the book grows by hundreds of thousands of entries).
   */
  due: Set<string>;
  /**
   * when the clock needs to look at each due fingerprint next: second → fingerprints. A tick visits only the seconds
   * that have come (a fingerprint may sit in more than one; a visit before its time just schedules it again), so a
   * resolved alert waiting an hour to be forgotten costs two visits, not one per second.
   */
  dueAt: Map<number, string[]>;
  /** events not folded because they were older than what the book holds: how many, the latest few */
  ignored: { total: number; recent: IgnoredEvent[] };
  /** told of every ignored event (the service logs them) */
  onIgnored?: (e: IgnoredEvent) => void;
}

export function emptyBook(flap: FlapConfig = DEFAULT_FLAP): AlertBook {
  return { entries: new Map(), flap, due: new Set(), dueAt: new Map(), ignored: { total: 0, recent: [] } };
}

function ignore(book: AlertBook, alert: Alert, e: AlertEntry, now: number, reason: string) {
  const ev: IgnoredEvent = { fingerprint: alert.fingerprint, id: alert.id, state: alert.state, at: alert.at, lastAt: e.last.at, lastState: e.last.state, reason, ignoredAt: now };
  book.ignored.total++;
  book.ignored.recent.push(ev);
  if (book.ignored.recent.length > MAX_IGNORED_KEPT) book.ignored.recent.shift();
  book.onIgnored?.(ev);
}

const dueSecond = (t: number) => Math.floor(t / 1000);
function scheduleDue(book: AlertBook, fp: string, at: number) {
  const k = dueSecond(at);
  const list = book.dueAt.get(k);
  if (list) list.push(fp);
  else book.dueAt.set(k, [fp]);
}

/** The earliest time tickBook could change something for this entry (no later than its condition comes true). */
function nextDue(e: AlertEntry, flap: FlapConfig, now: number): number {
  let at = Infinity;
  if (e.changes.length) at = e.changes[0]! + flap.windowMs;
  if (e.pending) at = Math.min(at, e.flapping ? e.publishedAt + flap.windowMs : now);
  else if (e.published.state === "resolved") at = Math.min(at, e.publishedAt + flap.retainResolvedMs);
  return at;
}

export type FoldOutcome = "new" | "changed" | "duplicate" | "stale" | "damped";

const sameEffective = (a: Effective, b: Effective) => a.state === b.state && a.severity === b.severity;

/**
 * Folds one alert event into the book. "new"/"changed" mean the published state changed (health may follow);
 * "stale" means it was older than what the book holds and was ignored (recorded in `book.ignored` when it said
 * something else than the book holds).
 *
 * Events of one fingerprint are ordered by alert.v1 `at`, the source's own clock (normalizers never mix it with
 * the receive time), so a sender whose clock is off orders its own events right. A resolve older than the firing it
 * follows is still folded when it belongs to the episode that is open (its startsAt is not before the episode's):
 * where a source did mix clocks, dropping it would leave the alert firing for good.
 */
export function foldAlert(book: AlertBook, alert: Alert, now: number): FoldOutcome {
  const e = book.entries.get(alert.fingerprint);
  book.due.add(alert.fingerprint); // tickBook drops it again when there is nothing to wait for
  scheduleDue(book, alert.fingerprint, now);
  if (!e) {
    book.entries.set(alert.fingerprint, {
      last: alert,
      published: { state: alert.state, severity: alert.severity },
      publishedAt: now,
      changes: [],
      flapping: false,
      pending: false,
      entities: [],
      via: "",
    });
    return "new";
  }
  // Downtime/acknowledgement events may not carry the check state: keep the last known severity.
  const severity = alert.severity === "unknown" && (alert.state === "downtime" || alert.state === "acknowledged") ? e.last.severity : alert.severity;
  const reopensClosed = alert.state !== "resolved" && e.closedAt !== undefined && alert.at <= e.closedAt;
  if (alert.at < e.last.at || reopensClosed) {
    const closesOpen = alert.state === "resolved" && e.last.state !== "resolved" && alert.startsAt >= e.last.startsAt;
    // an older event that says what the book holds changes nothing (Icinga2 stamps the events of one change a
    // millisecond apart, not always in the order it sends them): not worth a log line
    if (!closesOpen && alert.state === e.last.state && severity === e.last.severity) return "stale";
    if (!closesOpen) {
      const iso = (t: number) => new Date(t).toISOString();
      const than = reopensClosed ? `the firing its last resolve closed (${iso(e.closedAt!)})` : `the last event folded (${e.last.state} at ${iso(e.last.at)})`;
      ignore(book, alert, e, now, `${alert.state} at ${iso(alert.at)} is older than ${than}`);
      return "stale";
    }
    e.closedAt = Math.max(e.last.at, e.closedAt ?? -Infinity);
  } else if (e.closedAt !== undefined && alert.state !== "resolved") {
    e.closedAt = undefined;
  }
  const incoming: Effective = { state: alert.state, severity };
  const current: Effective = e.pending ? { state: e.last.state, severity: e.last.severity } : e.published;
  e.last = { ...alert, severity, startsAt: alert.state === e.last.state ? Math.min(e.last.startsAt, alert.startsAt) : alert.startsAt };
  if (sameEffective(incoming, current)) return e.pending ? "damped" : "duplicate";
  e.changes = e.changes.filter((t) => now - t < book.flap.windowMs);
  e.changes.push(now);
  e.flapping = e.changes.length >= book.flap.threshold;
  if (e.flapping && now - e.publishedAt < book.flap.windowMs) {
    e.pending = !sameEffective(incoming, e.published);
    return "damped";
  }
  e.published = incoming;
  e.publishedAt = now;
  e.pending = false;
  return "changed";
}

/**
 * Time passes: publishes damped changes whose window has passed (or that stopped flapping) and forgets resolved
 * alerts past retention. Returns the fingerprints whose published state changed, and those forgotten.
 */
export function tickBook(book: AlertBook, now: number): { changed: string[]; forgotten: string[]; forgottenEntities: Map<string, string[]> } {
  const changed: string[] = [];
  const forgotten: string[] = [];
  const forgottenEntities = new Map<string, string[]>();
  const w = book.flap.windowMs;
  // runs every second over the alerts something is due for by now (book.dueAt), not the whole book
  const upTo = dueSecond(now);
  const seconds = [...book.dueAt.keys()].filter((k) => k <= upTo);
  const visited = new Set<string>();
  const again: [string, number][] = [];
  for (const k of seconds) {
    const list = book.dueAt.get(k)!;
    book.dueAt.delete(k);
    for (const fp of list) {
      if (visited.has(fp) || !book.due.has(fp)) continue;
      visited.add(fp);
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
        forgottenEntities.set(fp, e.entities);
        continue;
      }
      if (!e.pending && !e.changes.length && e.published.state !== "resolved") book.due.delete(fp);
      // a visit before its time (the second has come, the millisecond not yet) lands in this second again: next tick
      else again.push([fp, Math.max(nextDue(e, book.flap, now), now)]);
    }
  }
  // after the visits: a second still to be visited in this tick must not get (and then skip) a fingerprint already seen
  for (const [fp, at] of again) scheduleDue(book, fp, at);
  return { changed, forgotten, forgottenEntities };
}
