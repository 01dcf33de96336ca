/** metrics.v1 — many samples per message (one message per sample caps JetStream near 45k/s, LIMITS.md). */
import { z } from "zod";
import { EpochMs, Id, Labels } from "./common.ts";

export const MetricName = z.string().regex(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/, "metric names are [a-zA-Z_:][a-zA-Z0-9_:]*").max(200);

export const Sample = z.object({
  /** Topology entity the sample belongs to (node id), e.g. host:web-1 */
  entity: Id,
  metric: MetricName,
  ts: EpochMs,
  value: z.number().refine(Number.isFinite, "value must be finite"),
  labels: Labels.default({}),
});
export type Sample = z.infer<typeof Sample>;

export const MAX_SAMPLES_PER_BATCH = 10_000;

export const MetricBatch = z.object({
  schema: z.literal("metrics.v1"),
  source: Id,
  batchId: Id,
  samples: z.array(Sample).min(1).max(MAX_SAMPLES_PER_BATCH),
});
export type MetricBatch = z.infer<typeof MetricBatch>;
