/**
 * `bun run bench exporters [--deltas N] [--per K] [--vendor servicenow|webhook]` — N topology deltas of K new hosts
 * each (default 2000 × 5 = 10k entities) through one ITSM exporter (durable consumer, KV state, rate limit set out of
 * the way, one request per entity) to a local receiver that checks every request's shape; beside it, in the same run,
 * a raw JetStream consume (decode + ack) of the same messages. Reports entities/s of both and their ratio.
 */
import { parseArgs } from "node:util";
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { decode } from "../pipelines/codec.ts";
import { ExporterConfig } from "../pipelines/contracts/exporters.ts";
import { TopologyDelta } from "../pipelines/contracts/topology.ts";
import { buildAdapter } from "../services/exporters/build.ts";
import { Exporter } from "../services/exporters/exporter.ts";
import { kvState, openBucket } from "../services/exporters/state.ts";
import { connectBus } from "../services/shared/bus.ts";
import { makeLogger } from "../services/shared/log.ts";
import { startReceiver } from "../test/integration/exporters/receivers.ts";
import { startNats } from "../test/helpers/nats.ts";
import { uniquePrefix } from "../test/helpers/tmp.ts";

export async function benchExporters(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { deltas: { type: "string", default: "2000" }, per: { type: "string", default: "5" }, vendor: { type: "string", default: "servicenow" } } });
  const N = Number(values.deltas);
  const K = Number(values.per);
  const vendor = values.vendor === "webhook" ? "webhook" : "servicenow";
  const nats = await startNats();
  const rx = startReceiver(vendor, { secret: "bench" });
  const prefix = uniquePrefix("bex");
  const bus = await connectBus({ url: nats.url, prefix, name: "bench-exporters" });
  try {
    const t = Date.now();
    const pending: Promise<unknown>[] = [];
    for (let r = 1; r <= N; r++) {
      const nodes = Array.from({ length: K }, (_, i) => ({ id: `host:b${r}-${i}`, kind: "host" as const, name: `b${r}-${i}`, source: "bench", props: { os: "linux" }, firstSeen: t, lastSeen: t }));
      const d: TopologyDelta = { schema: "topology.delta.v1", rev: r + 1, at: t, nodesUpserted: nodes, nodesRemoved: [], edgesUpserted: [], edgesRemoved: [] };
      pending.push(bus.js.publish(bus.topo.subjects.topologyDelta, JSON.stringify(d), { msgID: `b${r}` }));
      if (pending.length >= 500) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
    const entities = N * K;

    // raw: a durable consume of the same messages, decoded and acked
    await bus.jsm.consumers.add(bus.topo.streams.topology.name, { durable_name: "raw", ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, filter_subject: bus.topo.subjects.topologyDelta });
    const c = await bus.js.consumers.get(bus.topo.streams.topology.name, "raw");
    const msgs = await c.consume({ max_messages: 1000 });
    let seen = 0;
    const r0 = performance.now();
    for await (const m of msgs) {
      seen += decode(TopologyDelta, "topology.delta.v1", m.data).nodesUpserted.length;
      m.ack();
      if (seen >= entities) break;
    }
    const rawS = (performance.now() - r0) / 1000;
    await msgs.close();

    const cfg = ExporterConfig.parse({
      name: "bench",
      vendor,
      url: vendor === "webhook" ? `${rx.url}/in` : rx.url,
      auth: vendor === "servicenow" ? { type: "basic", user: "orrery", passwordEnv: "PW" } : { type: "none" },
      ratePerSecond: 10_000,
      options: vendor === "webhook" ? { secretEnv: "SECRET" } : {},
      classes: { host: { class: "cmdb_ci_linux_server", attributes: { name: "name", os: "props.os" } } },
    });
    const counters = { requests: 0, retries: 0, errors: 0 };
    const kv = await openBucket(bus.nc, `${prefix.toUpperCase()}_EXPORTERS`);
    const ex = new Exporter({ bus, cfg, adapter: buildAdapter(cfg, { PW: "pw", SECRET: "bench" }, counters, prefix), state: kvState(kv, "bench"), counters, log: makeLogger("bench", true), snapshot: async () => ({ schema: "topology.snapshot.v1", rev: 1, at: t, nodes: [], edges: [] }) });
    const e0 = performance.now();
    await ex.start();
    while (rx.creates.size < entities) await Bun.sleep(20);
    const exS = (performance.now() - e0) / 1000;
    await ex.stop();
    const dup = [...rx.creates.values()].filter((n) => n !== 1).length;
    console.log(
      JSON.stringify({
        bench: "exporters",
        vendor,
        deltas: N,
        entities,
        exporter: { seconds: +exS.toFixed(2), entitiesPerSec: Math.round(entities / exS), requests: counters.requests },
        raw: { seconds: +rawS.toFixed(2), entitiesPerSec: Math.round(entities / rawS) },
        ratio: +(rawS / exS).toFixed(3),
        duplicates: dup,
        violations: rx.violations.length,
      }),
    );
  } finally {
    await bus.close();
    rx.stop();
    await nats.stop();
  }
}
