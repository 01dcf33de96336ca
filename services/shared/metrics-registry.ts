/**
 * Orrery's own observability, one module for every service: a prom-client registry with the figures an operator
 * watches (consumer lag and redeliveries of the durables a service owns, dead-letter counts, store write latency, plus
 * what a service adds: WebSocket clients, ingest rates), and a small HTTP listener serving `/metrics` (Prometheus text
 * format), `/livez` and `/readyz`.
 *
 * The listener has its own port (ORRERY_<SERVICE>_METRICS_PORT) on every service, the gateway and ingest included:
 * probes and scrapes then never pass the authentication gate, and the public ingress never exposes them. JetStream
 * figures are read when Prometheus scrapes (consumer and stream info, one request each), not on a timer.
 */
import { z } from "zod";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ConsumerSpec } from "../../pipelines/streams.ts";
import type { Bus } from "./bus.ts";
import type { Logger } from "./log.ts";
import { parseEnv } from "./config.ts";

/** The observability port setting of a service (ORRERY_<SERVICE>_METRICS_PORT); 0 = any free port. */
export const metricsPort = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);

/** Each service's usual observability port (distinct, so one machine can run the demo with all of them). */
export const METRICS_PORTS = {
  topology: 9461,
  metrics: 9462,
  history: 9463,
  alerts: 9464,
  registry: 9465,
  ingest: 9466,
  gateway: 9467,
  jobs: 9468,
  agent: 9469,
  simulator: 9470,
  broker: 9471,
  exporters: 9472,
  clickhouse: 9473,
} as const;

export type ObservedService = keyof typeof METRICS_PORTS;
/** what names a durable: its stream and name */
export type ConsumerRef = Pick<ConsumerSpec, "stream" | "durable">;

/** A jobs worker's queue durable (shared by its type, or placed on it when `worker` is given), as pipelines/streams.ts names it. */
export const jobConsumerRef = (bus: Bus, type: string, worker?: string): ConsumerRef => ({
  stream: bus.topo.streams.jobs.name,
  durable: worker === undefined ? bus.topo.jobConsumers.durable.shared(type) : bus.topo.jobConsumers.durable.placed(type, worker),
});

/** Store write latency buckets (seconds): a chDB batch insert takes ms, a Neo4j first write seconds. */
const WRITE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface Observability {
  readonly registry: Registry;
  readonly service: string;
  /** wraps the named async methods of `target` so each call's duration lands in orrery_store_write_seconds{store,op} */
  timed<T extends object>(target: T, store: string, methods: (keyof T & string)[]): T;
  /** consumer lag, ack-pending and redelivered counts of these durables, read at each scrape */
  watchConsumers(bus: Bus, specs: ConsumerRef[] | (() => ConsumerRef[])): void;
  /** messages held in the dead-letter stream, per origin, read at each scrape */
  watchDlq(bus: Bus): void;
  /** a gauge whose value is read at each scrape */
  gauge(name: string, help: string, read: () => number): void;
  counter<L extends string>(name: string, help: string, labelNames: L[]): Counter<L>;
  /** /readyz answers 200 once this is called and while `check` (if given) holds; a string is ready, in that role (e.g. "standby") */
  markReady(check?: () => boolean | string): void;
  /** the listener: /metrics, /livez, /readyz; a port it cannot bind is logged, never fatal (metrics are not the service) */
  serve(opts: { host: string; port: number; log: Logger }): { port: number | null; stop(): void };
}

export function makeObservability(service: string): Observability {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  const storeWrite = new Histogram({ name: "orrery_store_write_seconds", help: "Duration of a write to a store (graph, ClickHouse), by store and operation", labelNames: ["store", "op", "outcome"], buckets: WRITE_BUCKETS, registers: [registry] });
  new Gauge({
    name: "orrery_process_resident_memory_bytes",
    help: "Resident set size of the service process",
    registers: [registry],
    collect() {
      this.set(process.memoryUsage().rss);
    },
  });
  const started = Date.now() / 1000;
  new Gauge({
    name: "orrery_process_start_time_seconds",
    help: "Start time of the service process since the Unix epoch",
    registers: [registry],
    collect() {
      this.set(started);
    },
  });

  let readyCheck: (() => boolean | string) | null = null;
  const consumerLists: (() => ConsumerRef[])[] = [];
  let consumerBus: Bus | null = null;

  const consumerGauge = (name: string, help: string, collect?: () => Promise<void>) => new Gauge({ name, help, labelNames: ["stream", "durable"], registers: [registry], collect });
  let consumerGauges: { pending: Gauge<"stream" | "durable">; ackPending: Gauge<"stream" | "durable">; redelivered: Gauge<"stream" | "durable">; up: Gauge<"stream" | "durable"> } | null = null;

  const collectConsumers = async () => {
    if (!consumerBus || !consumerGauges) return;
    const g = consumerGauges;
    const specs = consumerLists.flatMap((f) => f());
    await Promise.all(
      specs.map(async (s) => {
        const labels = { stream: s.stream, durable: s.durable };
        try {
          const info = await consumerBus!.jsm.consumers.info(s.stream, s.durable);
          g.pending.set(labels, info.num_pending);
          g.ackPending.set(labels, info.num_ack_pending);
          g.redelivered.set(labels, info.num_redelivered);
          g.up.set(labels, 1);
        } catch {
          // not created yet, or NATS unreachable: say so rather than repeat the last figures
          g.up.set(labels, 0);
        }
      }),
    );
  };

  return {
    registry,
    service,
    timed(target, store, methods) {
      const wrapped = new Set<string>(methods);
      return new Proxy(target, {
        get(t, prop, recv) {
          const v = Reflect.get(t, prop, recv);
          if (typeof prop !== "string" || !wrapped.has(prop) || typeof v !== "function") return v;
          return async (...args: unknown[]) => {
            const end = storeWrite.startTimer({ store, op: prop });
            try {
              const r = await (v as (...a: unknown[]) => unknown).apply(t, args);
              end({ outcome: "ok" });
              return r;
            } catch (e) {
              end({ outcome: "error" });
              throw e;
            }
          };
        },
      });
    },
    watchConsumers(bus, specs) {
      consumerBus = bus;
      consumerLists.push(typeof specs === "function" ? specs : () => specs);
      if (consumerGauges) return;
      // the four gauges are collected concurrently within a scrape: they share one read of every consumer's info
      let inflight: Promise<void> | null = null;
      const refresh = () => (inflight ??= collectConsumers().finally(() => (inflight = null)));
      consumerGauges = {
        pending: consumerGauge("orrery_consumer_pending_messages", "Messages of the stream not yet delivered to the durable consumer (its lag)", refresh),
        ackPending: consumerGauge("orrery_consumer_ack_pending_messages", "Messages delivered to the durable consumer and not yet acknowledged", refresh),
        redelivered: consumerGauge("orrery_consumer_redelivered_messages", "Messages of the durable consumer delivered more than once and not yet acknowledged", refresh),
        up: consumerGauge("orrery_consumer_info_up", "1 when the durable consumer's info was read at this scrape, 0 when it could not be", refresh),
      };
    },
    watchDlq(bus) {
      const dlq = bus.topo.streams.dlq;
      const prefix = `${bus.topo.prefix}.dlq.`;
      new Gauge({
        name: "orrery_dlq_messages",
        help: "Messages held in the dead-letter stream, by the origin that gave them up",
        labelNames: ["origin"],
        registers: [registry],
        async collect() {
          try {
            const info = await bus.jsm.streams.info(dlq.name, { subjects_filter: ">" });
            this.reset();
            for (const [subject, n] of Object.entries(info.state.subjects ?? {})) this.set({ origin: subject.startsWith(prefix) ? subject.slice(prefix.length) : subject }, n);
          } catch {
            // NATS unreachable: the consumer gauges say so; no DLQ figure is better than a stale one
            this.reset();
          }
        },
      });
    },
    gauge(name, help, read) {
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read());
        },
      });
    },
    counter(name, help, labelNames) {
      return new Counter({ name, help, labelNames, registers: [registry] });
    },
    markReady(check) {
      readyCheck = check ?? (() => true);
    },
    serve({ host, port, log }) {
      try {
        const server = Bun.serve({
          hostname: host,
          port,
          routes: {
            "/livez": () => new Response("ok\n"),
            "/readyz": () => {
              const r = readyCheck?.() ?? false;
              return r ? new Response(`${r === true ? "ready" : r}\n`) : new Response("not ready\n", { status: 503 });
            },
            "/metrics": async () => new Response(await registry.metrics(), { headers: { "content-type": registry.contentType } }),
          },
          fetch: (req) => new Response(`no such endpoint: ${new URL(req.url).pathname} (try /metrics, /livez, /readyz)\n`, { status: 404 }),
        });
        return { port: server.port ?? null, stop: () => void server.stop(true) };
      } catch (e) {
        log.warn("observability listener not started: /metrics, /livez and /readyz are unavailable", { host, port, setting: `ORRERY_${service.toUpperCase()}_METRICS_PORT`, error: String(e) });
        return { port: null, stop: () => {} };
      }
    },
  };
}

/** The NATS connection is open (a reconnect in progress still counts: JetStream holds the backlog meanwhile). */
export const natsConnected = (bus: Bus) => () => !bus.nc.isClosed();

/** ORRERY_METRICS_HOST: where every observability listener binds (0.0.0.0 in a container, so probes reach it). */
export const MetricsHostKey = { ORRERY_METRICS_HOST: z.string().min(1).default("127.0.0.1") };
export const metricsPortSetting = (service: ObservedService) => `ORRERY_${service.toUpperCase()}_METRICS_PORT`;

/**
 * The registry and its listener for `service`, from its two settings (ORRERY_METRICS_HOST and
 * ORRERY_<SERVICE>_METRICS_PORT, validated with their names); main.ts passes its environment.
 */
export function startObservability(service: ObservedService, env: Record<string, string | undefined>, log: Logger): Observability & { port: number | null; stop(): void } {
  const key = metricsPortSetting(service);
  const cfg = parseEnv(z.object({ ...MetricsHostKey, [key]: metricsPort(METRICS_PORTS[service]) }), env) as { ORRERY_METRICS_HOST: string } & Record<string, number>;
  const obs = makeObservability(service);
  const listener = obs.serve({ host: cfg.ORRERY_METRICS_HOST, port: cfg[key]!, log });
  return Object.assign(obs, listener);
}
