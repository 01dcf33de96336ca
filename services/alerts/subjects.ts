/**
 * Subjects, the HEALTH stream and the durable consumers of the alerts service, declared next to it (the shared
 * pipelines/streams.ts declares the ALERTS stream itself).
 *   <prefix>.alerts.v1.<source>   ALERTS stream (JetStream)   alert.v1, from the ingest service and the Icinga2 consumer
 *   <prefix>.health.v1            HEALTH stream (JetStream)   health.delta.v1 (entity health, edge state, impact);
 *                                                             `seq` numbers them — subscribe here to feed an ITSM tool
 *   <prefix>.rpc.alerts           core NATS request/reply     AlertsQuery → AlertsList | health.state.v1 | not_ready
 * A reader that sees a gap in `seq` (it started late, lost a message, or the alerts service restarted) asks for
 * health.state.v1 over the RPC subject; the gateway does.
 */
import type { ConsumerSpec, StreamSpec, Topology } from "../../pipelines/streams.ts";

export interface AlertSubjects {
  health: string;
  rpc: string;
  healthStream: StreamSpec;
  consumer: ConsumerSpec;
  /** a second durable consumer that writes history: ClickHouse never sits on the health path */
  historyConsumer: ConsumerSpec;
}

export function alertSubjects(topo: Topology): AlertSubjects {
  const health = `${topo.prefix}.health.v1`;
  return {
    health,
    rpc: `${topo.prefix}.rpc.alerts`,
    healthStream: {
      name: topo.streams.alerts.name.replace(/_ALERTS$/, "_HEALTH"),
      subjects: [health],
      maxAgeMs: 24 * 3600 * 1000,
      maxBytes: 1024 ** 3,
      duplicateWindowMs: 2 * 60 * 1000,
    },
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
      // History must survive a ClickHouse outage of any length: the service retries a failed insert in place with
      // capped backoff (keeping the messages in progress), and the durable never gives a message up (-1 = unlimited),
      // so nothing is dropped or dead-lettered for being delivered too often.
      maxDeliver: -1,
    },
  };
}
