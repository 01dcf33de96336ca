/**
 * Directory sync: takes a complete snapshot from the directory port, on a schedule and on demand, and hands it to a
 * sink (the identity service stores users and groups). A snapshot is all or nothing — the port never returns a partial
 * one — so a sync that fails halfway never reaches the sink: the previous users and groups stay, the failure is logged
 * with its cause, and the next interval tries again. Runs never overlap: an on-demand run during a scheduled one
 * joins it.
 */
import { failureKind, type FailureKind } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import type { DirectoryPort, DirectorySnapshot } from "./port.ts";

export type SyncOutcome =
  | { ok: true; at: number; ms: number; users: number; groups: number }
  | { ok: false; at: number; ms: number; error: string; kind: FailureKind; stage: "snapshot" | "sink" | "check" };

export type SnapshotSink = (s: DirectorySnapshot) => Promise<void>;

export interface DirectorySyncOptions {
  directory: Pick<DirectoryPort, "snapshot">;
  sink: SnapshotSink;
  /** between the end of one run and the start of the next; 0 = on demand only */
  intervalMs: number;
  log: Logger;
  /** run once right away (default true) */
  runAtStart?: boolean;
}

export interface DirectorySync {
  /** A sync now, or the one already running; resolves with its outcome (a failure is a value, not a throw). */
  runNow(): Promise<SyncOutcome>;
  /** The last outcome, or null before the first run ends. */
  last(): SyncOutcome | null;
  /** No further runs; waits for the one running. */
  stop(): Promise<void>;
}

/** The message of an error and of each cause under it, for one log field. */
function describe(err: unknown): string {
  const parts: string[] = [];
  for (let e = err, depth = 0; e !== undefined && depth < 5; depth++) {
    // one line: some transports put the OS error on a line of its own
    parts.push((e instanceof Error ? `${e.name}: ${e.message}` : String(e)).replace(/\s*\n\s*/g, ": "));
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(" ← ");
}

export function startDirectorySync(opts: DirectorySyncOptions): DirectorySync {
  let running: Promise<SyncOutcome> | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  let last: SyncOutcome | null = null;
  /** users in the last snapshot the sink took, to tell an emptied directory from a misconfigured search */
  let delivered: number | null = null;

  const once = async (): Promise<SyncOutcome> => {
    const at = Date.now();
    const fail = (stage: "snapshot" | "sink" | "check", err: unknown): SyncOutcome => {
      const outcome: SyncOutcome = { ok: false, at, ms: Date.now() - at, error: describe(err), kind: failureKind(err), stage };
      opts.log.error("directory sync failed; the previous users and groups stay", {
        stage,
        error: outcome.error,
        kind: outcome.kind,
        retryInMs: opts.intervalMs > 0 && !stopped ? opts.intervalMs : undefined,
      });
      return outcome;
    };
    let snap: DirectorySnapshot;
    try {
      snap = await opts.directory.snapshot();
    } catch (err) {
      return fail("snapshot", err);
    }
    // A search that suddenly finds nobody is far more often a changed base DN, filter or permission than an emptied
    // directory; replacing everyone with no one would lock every person out at once.
    if (snap.users.length === 0 && delivered !== null && delivered > 0)
      return fail("check", new Error(`the directory returned no users (the last sync had ${delivered}); check the user base, filter and the service account's rights`));
    try {
      await opts.sink(snap);
    } catch (err) {
      return fail("sink", err);
    }
    delivered = snap.users.length;
    const outcome: SyncOutcome = { ok: true, at, ms: Date.now() - at, users: snap.users.length, groups: snap.groups.length };
    opts.log.info("directory synced", { users: outcome.users, groups: outcome.groups, ms: outcome.ms });
    return outcome;
  };

  const schedule = () => {
    if (stopped || opts.intervalMs <= 0) return;
    clearTimeout(timer);
    timer = setTimeout(() => void runNow(), opts.intervalMs);
  };

  const runNow = (): Promise<SyncOutcome> => {
    if (running) return running;
    clearTimeout(timer);
    running = once().then((o) => {
      last = o;
      running = null;
      schedule();
      return o;
    });
    return running;
  };

  if (opts.runAtStart ?? true) void runNow();
  else schedule();

  return {
    runNow,
    last: () => last,
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      if (running) await running;
    },
  };
}
