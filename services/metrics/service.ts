/** Metrics service: metric batches from JetStream → SeriesStore; each batch acked once ClickHouse has it. */
import { MetricBatch } from "../../pipelines/contracts/metrics.ts";
import { runConsumer, type Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { SeriesStore } from "./port.ts";

export async function startMetricsService(deps: { bus: Bus; store: SeriesStore; log: Logger }) {
  await deps.store.init();
  let written = 0;
  const consumer = await runConsumer(
    deps.bus,
    deps.bus.topo.consumers.metrics,
    MetricBatch,
    "metrics.v1",
    async (batch) => {
      // One insert per message keeps ClickHouse's dedup token meaningful for redeliveries.
      await Promise.all(batch.map(({ value }) => deps.store.insert(value.samples, value.batchId)));
      written += batch.reduce((n, b) => n + b.value.samples.length, 0);
    },
    { maxBatch: 64, onError: (e) => deps.log.warn("metric batch failed; will be redelivered", { error: String(e) }) },
  );
  return { written: () => written, stop: () => consumer.stop() };
}
