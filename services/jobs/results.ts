/** A job item → discovery.v1 and metrics.v1 messages that fit the bus (contracts/split.ts), with deterministic message ids (pure). */
import type { DiscoveryBatch } from "../../pipelines/contracts/discovery.ts";
import type { MetricBatch } from "../../pipelines/contracts/metrics.ts";
import type { JobRun } from "../../pipelines/contracts/jobs.ts";
import { discoveryBatches, metricBatches, OversizedItemError } from "../../pipelines/contracts/split.ts";
import { JobInputError, type JobItem } from "./sdk.ts";

export interface ResultMessages {
  discovery: { host: string; msgId: string; batch: DiscoveryBatch }[];
  metrics: { msgId: string; batch: MetricBatch }[];
}

/** Scoped cleanup is per source, so each host a job reports on is its own source: job:<name>:<host>. */
export const jobSource = (job: string, host: string) => `job:${job}:${host}`;

/**
 * How long an on-demand run's results count as current: they declare this interval, so aging marks them stale after
 * 3 h and removes them after 12 h without a new run (schedule a job to keep its results).
 */
export const ADHOC_INTERVAL_MS = 3_600_000;

export function itemToMessages(run: Pick<JobRun, "job" | "runId" | "requestedAt" | "everyMs">, item: JobItem, at: number): ResultMessages {
  const out: ResultMessages = { discovery: [], metrics: [] };
  const base = `${run.runId}:${item.key}`;
  try {
    if (item.events?.length || (item.host && item.full !== false)) {
      if (!item.host) throw new Error(`job ${run.job}: item "${item.key}" has events but no host`);
      const scan: DiscoveryBatch = {
        schema: "discovery.v1",
        source: jobSource(run.job, item.host),
        host: item.host,
        // the run's request time: the same for every redelivery of this run, new for the next run
        scanId: run.requestedAt,
        part: 0,
        parts: 1,
        full: item.full !== false,
        at,
        // a run every 5 min is judged by 5 min, not by the agents' seconds (at least the contract's 1 s)
        intervalMs: Math.max(1000, Math.min(run.everyMs ?? ADHOC_INTERVAL_MS, 31 * 86_400_000)),
        events: item.events ?? [],
      };
      for (const batch of discoveryBatches([scan])) out.discovery.push({ host: item.host, msgId: `${base}:d${batch.part}`, batch });
    }
    const samples = (item.samples ?? []).map((s) => ({ ...s, labels: s.labels ?? {} }));
    for (const m of metricBatches(samples, { source: `job:${run.job}`, idBase: base, idOf: (i) => `${base}:m${i}` })) out.metrics.push({ msgId: m.msgId, batch: m.batch });
  } catch (e) {
    // an item nothing can publish fails the run with its name, instead of being retried until maxDeliver
    if (e instanceof OversizedItemError) throw new JobInputError(`job ${run.job}: item "${item.key}": ${e.message}`, { cause: e });
    throw e;
  }
  return out;
}
