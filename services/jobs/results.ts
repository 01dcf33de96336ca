/** A job item → discovery.v1 and metrics.v1 messages with deterministic message ids (pure). */
import { MAX_DISCOVERY_EVENTS, type DiscoveryBatch } from "../../pipelines/contracts/discovery.ts";
import { MAX_SAMPLES_PER_BATCH, type MetricBatch } from "../../pipelines/contracts/metrics.ts";
import type { JobRun } from "../../pipelines/contracts/jobs.ts";
import type { JobItem } from "./sdk.ts";

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
  if (item.events?.length || (item.host && item.full !== false)) {
    if (!item.host) throw new Error(`job ${run.job}: item "${item.key}" has events but no host`);
    const events = item.events ?? [];
    const parts = Math.max(1, Math.ceil(events.length / MAX_DISCOVERY_EVENTS));
    for (let part = 0; part < parts; part++)
      out.discovery.push({
        host: item.host,
        msgId: `${base}:d${part}`,
        batch: {
          schema: "discovery.v1",
          source: jobSource(run.job, item.host),
          host: item.host,
          // the run's request time: the same for every redelivery of this run, new for the next run
          scanId: run.requestedAt,
          part,
          parts,
          full: item.full !== false,
          at,
          // a run every 5 min is judged by 5 min, not by the agents' seconds (at least the contract's 1 s)
          intervalMs: Math.max(1000, Math.min(run.everyMs ?? ADHOC_INTERVAL_MS, 31 * 86_400_000)),
          events: events.slice(part * MAX_DISCOVERY_EVENTS, (part + 1) * MAX_DISCOVERY_EVENTS),
        },
      });
  }
  const samples = item.samples ?? [];
  for (let i = 0; i < samples.length; i += MAX_SAMPLES_PER_BATCH) {
    const msgId = `${base}:m${i}`;
    out.metrics.push({
      msgId,
      batch: { schema: "metrics.v1", source: `job:${run.job}`, batchId: msgId, samples: samples.slice(i, i + MAX_SAMPLES_PER_BATCH).map((s) => ({ ...s, labels: s.labels ?? {} })) },
    });
  }
  return out;
}
