import { join } from "node:path";
import { parseArgs } from "node:util";
import { AckPolicy } from "@nats-io/jetstream";
import type { DiscoveryBatch, DiscoveryEvent } from "../pipelines/contracts/discovery.ts";
import { DiscoveryBatch as DiscoveryBatchSchema } from "../pipelines/contracts/discovery.ts";
import { encode } from "../pipelines/codec.ts";
import { KuzuGraphStore } from "../services/graph/kuzu.ts";
import { connectBus, type Bus } from "../services/shared/bus.ts";
import { makeLogger } from "../services/shared/log.ts";
import { startTopologyService } from "../services/topology/service.ts";
import { startNats } from "../test/helpers/nats.ts";
import { tempDir, uniquePrefix } from "../test/helpers/tmp.ts";

/** A synthetic estate: each host runs a few services that listen and call services on other hosts. */
function estate(hosts: number, eventsPerHost: number): DiscoveryBatch[] {
  const out: DiscoveryBatch[] = [];
  for (let h = 0; h < hosts; h++) {
    const ip = `10.${(h >> 16) & 255}.${(h >> 8) & 255}.${h & 255}`;
    const events: DiscoveryEvent[] = [{ type: "host.seen", hostname: `h${h}`, os: "Debian 12", kernel: "6.1", cpus: 4, memTotalBytes: 8e9, ips: [ip] }];
    const listeners = Math.max(1, Math.floor(eventsPerHost / 4));
    for (let l = 0; l < listeners; l++)
      events.push({ type: "listener.seen", proto: "tcp", ip: "0.0.0.0", port: 8000 + l, process: { pid: 100 + l, exe: `/usr/bin/svc${l}`, comm: `svc${l}`, cmdline: [`svc${l}`, "--serve"], user: "app", uid: 1000, startTime: 1, containerId: null } });
    for (let c = events.length; c < eventsPerHost; c++) {
      const peer = (h + 1 + (c % 7)) % hosts;
      events.push({
        type: "connection.seen",
        proto: "tcp",
        localIp: ip,
        localPort: 40000 + c,
        remoteIp: `10.${(peer >> 16) & 255}.${(peer >> 8) & 255}.${peer & 255}`,
        remotePort: 8000 + (c % listeners),
        process: { pid: 100 + (c % listeners), exe: `/usr/bin/svc${c % listeners}`, comm: `svc${c % listeners}`, cmdline: [`svc${c % listeners}`], user: "app", uid: 1000, startTime: 1, containerId: null },
      });
    }
    out.push({ schema: "discovery.v1", source: `agent:h${h}`, host: `h${h}`, scanId: 0, part: 0, parts: 1, full: false, at: Date.now(), events });
  }
  return out;
}

async function publishAll(bus: Bus, subject: (i: number) => string, payloads: Uint8Array[], inFlight = 1000): Promise<void> {
  let i = 0;
  const worker = async () => {
    while (i < payloads.length) {
      const k = i++;
      await bus.js.publish(subject(k), payloads[k]!, { msgID: `m${k}` });
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

export async function benchPipeline(argv: string[]) {
  const { values } = parseArgs({ args: argv, options: { hosts: { type: "string", default: "2000" }, events: { type: "string", default: "40" } } });
  const hosts = Number(values.hosts);
  const perHost = Number(values.events);
  const nats = await startNats();
  const tmp = tempDir("orrery-bench-");
  const log = makeLogger("bench", true);
  try {
    const batches = estate(hosts, perHost);
    const payloads = batches.map((b) => encode(DiscoveryBatchSchema, "discovery.v1", b));
    const totalEvents = batches.reduce((n, b) => n + b.events.length, 0);
    const avgBytes = Math.round(payloads.reduce((n, p) => n + p.byteLength, 0) / payloads.length);

    // Raw: the same messages through JetStream alone (pipelined publish, then a durable pull consumer acking each).
    const raw = await connectBus({ url: nats.url, prefix: uniquePrefix("raw"), name: "bench-raw" });
    let t = performance.now();
    await publishAll(raw, (k) => raw.topo.subjects.discovery(`h${k}`), payloads);
    const rawPubS = (performance.now() - t) / 1000;
    await raw.jsm.consumers.add(raw.topo.streams.discovery.name, { durable_name: "rawbench", ack_policy: AckPolicy.Explicit });
    const c = await raw.js.consumers.get(raw.topo.streams.discovery.name, "rawbench");
    t = performance.now();
    let got = 0;
    const msgs = await c.consume({ max_messages: 1000 });
    for await (const m of msgs) {
      m.ack();
      if (++got === payloads.length) break;
    }
    const rawConS = (performance.now() - t) / 1000;
    await raw.close();

    // Pipeline: publish → topology service (validate, stage, Kuzu write, delta publish) → acked.
    const bus = await connectBus({ url: nats.url, prefix: uniquePrefix("pipe"), name: "bench" });
    const store = new KuzuGraphStore(join(tmp.dir, "kuzu"));
    const svc = await startTopologyService({ bus, store, log });
    t = performance.now();
    await publishAll(bus, (k) => bus.topo.subjects.discovery(`h${k}`), payloads);
    const spec = bus.topo.consumers.topology;
    while (true) {
      const info = await bus.jsm.consumers.info(spec.stream, spec.durable);
      if (info.num_pending === 0 && info.num_ack_pending === 0) break;
      await Bun.sleep(20);
    }
    const pipeS = (performance.now() - t) / 1000;
    const model = svc.model();
    const deltaInfo = await bus.jsm.streams.info(bus.topo.streams.topology.name);
    await svc.stop();
    await store.close();
    await bus.close();

    // Raw graph store: the same final nodes and edges bulk-written in one transaction, the store's best case.
    const rawStore = new KuzuGraphStore(join(tmp.dir, "kuzu-raw"));
    await rawStore.init();
    const nodes = [...model.nodes.values()];
    const edges = [...model.edges.values()];
    t = performance.now();
    await rawStore.apply({ nodesUpserted: nodes, edgesUpserted: edges, nodesRemoved: [], edgesRemoved: [], created: new Set([...nodes.map((n) => n.id), ...edges.map((e) => e.id)]) }, 1);
    const rawGraphS = (performance.now() - t) / 1000;
    await rawStore.close();

    const rawMsgs = payloads.length / (rawPubS + rawConS);
    // The stages run in series on 2 cores, so the composite limit is the sum of each raw part's time.
    const compositeS = rawPubS + rawConS + rawGraphS;
    const pipeMsgs = payloads.length / pipeS;
    const report = {
      bench: "pipeline",
      messages: payloads.length,
      events: totalEvents,
      avgMessageBytes: avgBytes,
      raw: { publishMsgsPerS: Math.round(payloads.length / rawPubS), consumeMsgsPerS: Math.round(payloads.length / rawConS), publishThenConsumeMsgsPerS: Math.round(rawMsgs), eventsPerS: Math.round(rawMsgs * (totalEvents / payloads.length)) },
      pipeline: { seconds: +pipeS.toFixed(2), msgsPerS: Math.round(pipeMsgs), eventsPerS: Math.round(totalEvents / pipeS), deltas: deltaInfo.state.messages, nodes: model.nodes.size, edges: model.edges.size },
      rawGraph: { seconds: +rawGraphS.toFixed(2), itemsPerS: Math.round((nodes.length + edges.length) / rawGraphS) },
      ratioToRawJetStream: +(pipeMsgs / rawMsgs).toFixed(3),
      ratioToComposite: +(compositeS / pipeS).toFixed(3),
    };
    console.log(JSON.stringify(report, null, 2));
    console.log(
      `\npipeline: ${report.pipeline.eventsPerS} discovery events/s (${report.pipeline.msgsPerS} msg/s) in ${report.pipeline.seconds} s` +
        `\nraw JetStream publish+consume of the same messages: ${report.raw.publishThenConsumeMsgsPerS} msg/s → ratio ${report.ratioToRawJetStream}` +
        `\nraw Kuzu bulk write of the resulting graph: ${report.rawGraph.itemsPerS} items/s (${report.rawGraph.seconds} s)` +
        `\npipeline time vs raw JetStream + raw graph write of the same work: ratio ${report.ratioToComposite}`,
    );
  } finally {
    await nats.stop();
    tmp.cleanup();
  }
}
