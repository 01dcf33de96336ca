/**
 * Alerts the ingest refused while storing the rest of their payload: counted per source since start, the latest
 * kept (bounded) and served at GET /api/alerts/rejected, so a refusal the sender never retries stays visible.
 */
import type { RejectedAlert, RejectedAlerts } from "../../pipelines/contracts/alerts.ts";

export const MAX_REJECTED_KEPT = 1000;
const MAX_REASON = 1000;

export class RejectedLog {
  #recent: RejectedAlert[] = [];
  #total = 0;
  #bySource: Record<string, number> = {};

  constructor(readonly keep = MAX_REJECTED_KEPT) {}

  record(source: string, at: number, refusals: readonly { index: number; alert: string; reason: string }[]) {
    for (const r of refusals) {
      this.#recent.push({ at, source, index: r.index, alert: r.alert, reason: r.reason.length > MAX_REASON ? `${r.reason.slice(0, MAX_REASON)}...` : r.reason });
      this.#total++;
      this.#bySource[source] = (this.#bySource[source] ?? 0) + 1;
    }
    if (this.#recent.length > this.keep) this.#recent.splice(0, this.#recent.length - this.keep);
  }

  /** The counts and the latest `limit` refusals, newest last. */
  list(limit = this.keep): RejectedAlerts {
    return { total: this.#total, bySource: { ...this.#bySource }, alerts: limit > 0 ? this.#recent.slice(-limit) : [] };
  }
}
