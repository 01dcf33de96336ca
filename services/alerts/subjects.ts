/**
 * Subjects and the durable consumer of the alerts service, declared next to it (the shared pipelines/streams.ts
 * declares the ALERTS stream itself).
 *   <prefix>.alerts.v1.<source>   ALERTS stream (JetStream)   alert.v1, from the ingest service and the Icinga2 consumer
 *   <prefix>.health.v1            core NATS                   health.delta.v1, one per handled batch; `seq` numbers them
 *   <prefix>.rpc.alerts           core NATS request/reply     AlertsQuery → AlertsList | health.state.v1
 * Health deltas are core NATS (lossy by design, like a live feed): a reader that sees a gap in `seq` asks for
 * health.state.v1 over the RPC subject.
 */
import type { ConsumerSpec, Topology } from "../../pipelines/streams.ts";

export interface AlertSubjects {
  health: string;
  rpc: string;
  consumer: ConsumerSpec;
  /** a second durable consumer that writes history: ClickHouse never sits on the health path */
  historyConsumer: ConsumerSpec;
}

export function alertSubjects(topo: Topology): AlertSubjects {
  return {
    health: `${topo.prefix}.health.v1`,
    rpc: `${topo.prefix}.rpc.alerts`,
    consumer: {
      stream: topo.streams.alerts.name,
      durable: "alerts",
      filterSubject: `${topo.prefix}.alerts.v1.>`,
      ackWaitMs: 30_000,
      maxDeliver: 20,
    },
    historyConsumer: {
      stream: topo.streams.alerts.name,
      durable: "alerts-history",
      filterSubject: `${topo.prefix}.alerts.v1.>`,
      ackWaitMs: 60_000,
      maxDeliver: 50,
    },
  };
}
