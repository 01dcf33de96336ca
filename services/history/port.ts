/**
 * HistoryStore: the topology change log and its time-travel questions. The ClickHouse adapter is the only one today;
 * the history service writes it, the gateway reads it.
 */
import type { TopologyDelta, TopologySnapshot } from "../../pipelines/contracts/topology.ts";
import type { ChangeRow, TopologyDiff } from "../../pipelines/stages/history.ts";
import { PortError, type FailureKind } from "../shared/errors.ts";

export interface Replay {
  from: number;
  to: number;
  /** change rows with from < ts ≤ to, ordered by rev then position in the delta */
  changes: ChangeRow[];
  /** more rows exist past `limit`: ask again from the last row's ts */
  truncated: boolean;
}

export interface HistoryStore {
  /** Creates the database and table idempotently and applies the configured retention. */
  init(): Promise<void>;
  /** Appends the change rows of these deltas; a delta inserted twice (redelivery) is stored once. Returns rows sent. */
  insert(deltas: TopologyDelta[]): Promise<number>;
  /** The graph as it was at `t` (ms epoch); `rev` is the last rev at or before t (0 = nothing yet). */
  stateAt(t: number): Promise<TopologySnapshot>;
  diff(from: number, to: number): Promise<TopologyDiff>;
  replay(from: number, to: number, limit: number): Promise<Replay>;
  /** ts of the oldest and newest retained row (null: the log is empty); the time slider's range starts at `earliest`. */
  bounds(): Promise<{ earliest: number | null; latest: number | null }>;
  /**
   * Re-stamps every entity alive at `at` with ts = at, so "state at T ≥ at" no longer needs rows older than `at` and
   * retention (TTL) can drop them. Idempotent per `at`. Returns the checkpoint's row count.
   */
  checkpoint(at: number): Promise<number>;
  /** ts of the newest checkpoint, or null */
  lastCheckpoint(): Promise<number | null>;
  close(): Promise<void>;
}

/**
 * `unavailable`: a write the store could not take for now (down, unreachable, overloaded; a consumer waits it out);
 * `bad_input`: a write the store refused for its content (dead-lettered); `bad_row`: a row read back does not fit
 * the schema; `write_failed` / `query_failed`: anything else.
 */
export class HistoryStoreError extends PortError<"write_failed" | "query_failed" | "bad_row" | "unavailable" | "bad_input"> {
  override readonly name = "HistoryStoreError";
  get kind(): FailureKind {
    if (this.code === "unavailable") return "transient";
    if (this.code === "bad_input") return "permanent";
    return "unknown";
  }
}
