/**
 * What a job package's module implements. A package is a folder with `job.json` (the manifest, see JobManifest in
 * pipelines/contracts/jobs.ts) and a module exporting `run(ctx)`: an async generator of items. Each item carries the
 * discovery events about one host and/or metric samples, as many as it likes; the worker wraps them into discovery.v1 /
 * metrics.v1 messages cut to fit the bus (results.ts, pipelines/contracts/split.ts; source `job:<name>:<host>`), with
 * message ids derived from the run id, the item key and each part's offset, so a rerun of the same run after a worker
 * died stores nothing twice. An event too large for any message fails the run with its name (JobInputError).
 */
import type { DiscoveryEvent } from "../../pipelines/contracts/discovery.ts";
import type { Sample } from "../../pipelines/contracts/metrics.ts";
import type { Logger } from "../shared/log.ts";

export interface JobContext<P = Record<string, unknown>> {
  runId: string;
  job: string;
  workerId: string;
  /** validated against the manifest's parameter schema */
  params: P;
  /** aborted when the run times out or the worker stops: stop early */
  signal: AbortSignal;
  log: Logger;
}

export interface JobItem {
  /** stable within a run (same params → same keys): result message ids derive from it */
  key: string;
  /** the host the events are about (a hostname or IP) */
  host?: string;
  events?: DiscoveryEvent[];
  /** default true: the events are everything this job knows about `host`; what is not listed is gone */
  full?: boolean;
  samples?: Array<Omit<Sample, "labels"> & { labels?: Record<string, string> }>;
}

export interface JobModule<P = Record<string, unknown>> {
  run(ctx: JobContext<P>): AsyncIterable<JobItem>;
}

/** Typed helper for package authors: `export const { run } = defineJob<MyParams>({ async *run(ctx) { … } })`. */
export function defineJob<P>(m: JobModule<P>): JobModule<P> {
  return m;
}

/** Input a job cannot work with (bad file, bad row): the run is dead-lettered with this reason instead of retried. */
export class JobInputError extends Error {
  override readonly name = "JobInputError";
}

/** Runs `f` over `items` with at most `limit` at a time, stopping early when `signal` aborts. */
export async function mapLimit<T, R>(items: T[], limit: number, signal: AbortSignal, f: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length && !signal.aborted) {
      const i = next++;
      out[i] = await f(items[i]!);
    }
  });
  await Promise.all(lanes);
  return out;
}
