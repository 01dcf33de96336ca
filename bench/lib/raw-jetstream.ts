/**
 * Raw JetStream: a set of messages published pipelined to a stream of their own, then consumed by a durable pull
 * consumer acking each — the bus's own limit for those bytes, the reference a pipeline over it is judged by.
 */
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";

export interface RawJetStream {
  messages: number;
  bytes: number;
  publishMsgsPerS: number;
  consumeMsgsPerS: number;
  /** messages / (publish seconds + consume seconds) */
  publishThenConsumeMsgsPerS: number;
}

export async function rawJetStream(url: string, messages: readonly Uint8Array[], o: { inFlight?: number; name?: string } = {}): Promise<RawJetStream> {
  const nc = await connect({ servers: url, name: "bench-raw-jetstream" });
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const stream = o.name ?? `RAW_${Date.now().toString(36).toUpperCase()}`;
  const subject = `${stream.toLowerCase()}.m`;
  try {
    await jsm.streams.add({ name: stream, subjects: [subject], max_msg_size: 8 * 1024 * 1024 });
    let i = 0;
    let t = performance.now();
    const worker = async () => {
      while (i < messages.length) {
        const k = i++;
        await js.publish(subject, messages[k]!, { msgID: String(k), timeout: 60_000 });
      }
    };
    await Promise.all(Array.from({ length: o.inFlight ?? 1000 }, worker));
    const pubS = (performance.now() - t) / 1000;
    await jsm.consumers.add(stream, { durable_name: "raw", ack_policy: AckPolicy.Explicit });
    const c = await js.consumers.get(stream, "raw");
    t = performance.now();
    let got = 0;
    if (messages.length)
      for await (const m of await c.consume({ max_messages: 1000 })) {
        m.ack();
        if (++got === messages.length) break;
      }
    const conS = (performance.now() - t) / 1000;
    const n = messages.length;
    return {
      messages: n,
      bytes: messages.reduce((s, m) => s + m.byteLength, 0),
      publishMsgsPerS: Math.round(n / pubS),
      consumeMsgsPerS: Math.round(n / conS),
      publishThenConsumeMsgsPerS: Math.round(n / (pubS + conS)),
    };
  } finally {
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
  }
}
