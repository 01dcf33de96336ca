/**
 * The subscriber contract: an AsyncAPI 3.0 document generated from the zod contracts and the declaration of subjects
 * and streams (pipelines/streams.ts) — every subject a third party may read (and the ones Orrery's producers write),
 * its stream, payload, headers and an example that the payload's own schema accepts (test/unit/exporters checks each
 * one, and validates the whole document with @asyncapi/parser). Served by the gateway at /api/asyncapi.json.
 * Payload schemas are JSON Schema draft-07 (z.toJSONSchema), which AsyncAPI's default schema format accepts.
 */
import { z } from "zod";
import { topologyFor } from "../streams.ts";
import { AlertBatch } from "./alerts.ts";
import { DiscoveryBatch } from "./discovery.ts";
import { ExportersStatus } from "./exporters.ts";
import { HealthDelta, HealthState } from "./health.ts";
import { MetricBatch } from "./metrics.ts";
import { Drift, RegistryEvent } from "./registry.ts";
import { TopologyDelta, TopologySnapshot, WsFrame } from "./topology.ts";

const t0 = 1_767_225_600_000;
const node = { id: "host:web-1", kind: "host", name: "web-1", source: "agent:web-1", props: { os: "linux" }, firstSeen: t0, lastSeen: t0 };
const proc = { id: "proc:web-1:nginx", kind: "process", name: "nginx", source: "agent:web-1", props: {}, firstSeen: t0, lastSeen: t0 };
const edge = { id: "RUNS:host:web-1>proc:web-1:nginx", kind: "RUNS", src: "host:web-1", dst: "proc:web-1:nginx", source: "agent:web-1", props: {}, firstSeen: t0, lastSeen: t0 };
const topologyDelta = { schema: "topology.delta.v1", rev: 42, at: t0, nodesUpserted: [node, proc], nodesRemoved: [], edgesUpserted: [edge], edgesRemoved: [] };
const healthDelta = { schema: "health.delta.v1", seq: 7, at: t0, entities: [{ id: "proc:web-1:nginx", health: "critical", alerts: ["am:1f2e"] }], edges: [], edgesCleared: [], impact: [], impactCleared: [] };

/** The documented messages: schema, example, and the headers a publisher sets. */
export const MESSAGES = {
  TopologyDelta: { schema: TopologyDelta, title: "topology.delta.v1", summary: "What changed in the live graph; rev numbers deltas without gaps.", example: topologyDelta, msgId: "the rev" },
  HealthDelta: { schema: HealthDelta, title: "health.delta.v1", summary: "Entity health, edge states and impact; seq numbers deltas (a gap: ask for health.state.v1).", example: healthDelta, msgId: "the seq" },
  AlertBatch: {
    schema: AlertBatch,
    title: "alert.v1",
    summary: "Normalized alert events of one source.",
    example: { schema: "alert.v1", source: "alertmanager", batchId: "b-1", alerts: [{ id: "e-1", source: "alertmanager", fingerprint: "am:1f2e", severity: "critical", state: "firing", summary: "nginx down", labels: {}, target: { host: "web-1", service: "nginx" }, startsAt: t0, endsAt: null, at: t0 }] },
    msgId: "batchId",
  },
  DiscoveryBatch: {
    schema: DiscoveryBatch,
    title: "discovery.v1",
    summary: "What an agent, collector or job saw on one host.",
    example: { schema: "discovery.v1", source: "agent:web-1", host: "host:web-1", scanId: 1, part: 0, parts: 1, full: true, at: t0, events: [{ type: "host.seen", hostname: "web-1", os: "linux", kernel: "6.1", cpus: 2, memTotalBytes: 4e9, ips: ["10.0.0.5"] }] },
    msgId: "source, scan and part",
  },
  MetricBatch: { schema: MetricBatch, title: "metrics.v1", summary: "Samples of one source.", example: { schema: "metrics.v1", source: "agent:web-1", batchId: "m-1", samples: [{ entity: "host:web-1", metric: "cpu_usage", ts: t0, value: 0.25, labels: {} }] }, msgId: "batchId" },
  RegistryEvent: {
    schema: RegistryEvent,
    title: "registry.v1",
    summary: "Every change of the component registry (kept forever).",
    example: { schema: "registry.v1", at: t0, by: { login: "admin", role: "admin" }, type: "group.deleted", id: "security" },
    msgId: "the event",
  },
  Drift: { schema: Drift, title: "registry.drift.v1", summary: "Declared vs discovered dependencies, when it changes.", example: { schema: "registry.drift.v1", at: t0, topologyRev: 42, windowMs: 3_600_000, declaredNotSeen: [], seenNotDeclared: [], notRunning: [], unregistered: [] }, msgId: "the change" },
  TopologySnapshot: { schema: TopologySnapshot, title: "topology.snapshot.v1", summary: "The whole graph at rev (answer of the snapshot request; large ones in parts with part/parts).", example: { schema: "topology.snapshot.v1", rev: 42, at: t0, nodes: [node, proc], edges: [edge] }, msgId: null },
  HealthState: { schema: HealthState, title: "health.state.v1", summary: "The whole current health at seq.", example: { schema: "health.state.v1", seq: 7, at: t0, entities: healthDelta.entities, edges: [], impact: [] }, msgId: null },
  WsFrame: { schema: WsFrame, title: "gateway WebSocket frame", summary: "Frames of GET /ws: a snapshot (or begin/chunks/end), the health state, then deltas.", example: topologyDelta, msgId: null },
  ExportersStatus: { schema: ExportersStatus, title: "exporters.status.v1", summary: "The ITSM exporters' phase, lag and error counts.", example: { schema: "exporters.status.v1", at: t0, exporters: [] }, msgId: null },
  DeadLetter: { schema: z.unknown(), title: "dead letter", summary: "The original bytes of a message a consumer could not handle (a vendor's refusal, a bad payload), with why in headers.", example: topologyDelta, msgId: "dlq:<consumer>:<subject>:<seq>" },
} as const;

/**
 * A payload's JSON Schema. Named schemas (`.meta({ id })`) come out as local definitions; they are moved to
 * components.schemas (shared by every message) and their references rewritten to point there.
 */
const jsonSchema = (s: z.ZodType, shared: Record<string, unknown>) => {
  const j = z.toJSONSchema(s, { target: "draft-7", io: "output", unrepresentable: "any" }) as Record<string, unknown>;
  delete j.$schema;
  const defs = (j.definitions ?? {}) as Record<string, unknown>;
  delete j.definitions;
  const fix = (v: unknown): unknown => JSON.parse(JSON.stringify(v).replace(/"#\/definitions\//g, '"#/components/schemas/'));
  for (const [k, d] of Object.entries(defs)) shared[k] = fix(d);
  return fix(j) as Record<string, unknown>;
};

const DLQ_HEADERS = {
  "Orrery-Reason": { type: "string", description: "why the consumer gave the message up (for an exporter: the vendor's answer)" },
  "Orrery-Original-Subject": { type: "string" },
  "Orrery-Original-Seq": { type: "string", description: "stream sequence of the original message" },
  "Orrery-Consumer": { type: "string", description: "the durable that gave it up" },
};

export function asyncApiDocument(o: { prefix?: string; natsHost?: string; gatewayHost?: string } = {}): Record<string, unknown> {
  const topo = topologyFor(o.prefix ?? "orrery");
  const P = o.prefix ?? "orrery";
  const messages: Record<string, unknown> = {};
  const schemas: Record<string, unknown> = {};
  for (const [k, m] of Object.entries(MESSAGES)) {
    const headers: Record<string, unknown> = m.msgId ? { "Nats-Msg-Id": { type: "string", description: `JetStream deduplication id: ${m.msgId}` } } : {};
    if (k === "DeadLetter") Object.assign(headers, DLQ_HEADERS);
    messages[k] = {
      name: k,
      title: m.title,
      summary: m.summary,
      contentType: "application/json",
      payload: jsonSchema(m.schema, schemas),
      ...(Object.keys(headers).length ? { headers: { type: "object", properties: headers } } : {}),
      examples: [{ name: `${k}-example`, payload: m.example }],
    };
  }
  const param = { prefix: { description: "the install's subject prefix (ORRERY_PREFIX)", default: P } };
  type Ch = { address: string; message: keyof typeof MESSAGES; stream?: string; description: string; params?: Record<string, { description: string }>; server?: "nats" | "gateway"; action: "receive" | "send" };
  const chans: Record<string, Ch> = {
    topologyDelta: { address: "{prefix}.topology.delta.v1", message: "TopologyDelta", stream: topo.streams.topology.name, description: "topology deltas in rev order", action: "receive" },
    health: { address: "{prefix}.health.v1", message: "HealthDelta", stream: topo.streams.health.name, description: "health deltas in seq order", action: "receive" },
    alerts: { address: "{prefix}.alerts.v1.{source}", message: "AlertBatch", stream: topo.streams.alerts.name, description: "alert events by source", params: { source: { description: "the alert source" } }, action: "receive" },
    discovery: { address: "{prefix}.discovery.v1.{host}", message: "DiscoveryBatch", stream: topo.streams.discovery.name, description: "discovery batches by host (agents, collectors and jobs publish here)", params: { host: { description: "the host, as a subject token" } }, action: "send" },
    metrics: { address: "{prefix}.metrics.v1.{source}", message: "MetricBatch", stream: topo.streams.metrics.name, description: "metric batches by source", params: { source: { description: "the source, as a subject token" } }, action: "send" },
    registry: { address: "{prefix}.registry.v1.{type}", message: "RegistryEvent", stream: topo.streams.registry.name, description: "registry changes by event type", params: { type: { description: "the event type, e.g. component.put (dots as _)" } }, action: "receive" },
    drift: { address: "{prefix}.registry.drift.v1", message: "Drift", stream: topo.streams.drift.name, description: "registry drift", action: "receive" },
    deadLetters: { address: "{prefix}.dlq.{origin}", message: "DeadLetter", stream: topo.streams.dlq.name, description: "what a consumer could not handle", params: { origin: { description: "the consumer's durable name" } }, action: "receive" },
    snapshotRpc: { address: "{prefix}.rpc.topology.snapshot", message: "TopologySnapshot", description: "request/reply (core NATS, empty request): the topology service answers with the snapshot, in parts", action: "send" },
    exportersRpc: { address: "{prefix}.rpc.exporters", message: "ExportersStatus", description: "request/reply (core NATS, empty request): the exporter service's status", action: "send" },
    websocket: { address: "/ws", message: "WsFrame", description: "the gateway's WebSocket feed (Authorization: Bearer <token>); snapshot first, then deltas", server: "gateway", action: "receive" },
  };
  const channels: Record<string, unknown> = {};
  const operations: Record<string, unknown> = {};
  for (const [k, c] of Object.entries(chans)) {
    const parameters = c.server === "gateway" ? undefined : { ...param, ...(c.params ?? {}) };
    channels[k] = {
      address: c.address,
      description: c.stream ? `${c.description}. JetStream stream ${c.stream} (name is <PREFIX>_…).` : c.description,
      servers: [{ $ref: `#/servers/${c.server ?? "nats"}` }],
      messages: { [c.message]: { $ref: `#/components/messages/${c.message}` } },
      ...(parameters ? { parameters } : {}),
    };
    operations[`${c.action}${k[0]!.toUpperCase()}${k.slice(1)}`] = {
      action: c.action,
      channel: { $ref: `#/channels/${k}` },
      summary: c.description,
      messages: [{ $ref: `#/channels/${k}/messages/${c.message}` }],
    };
  }
  return {
    asyncapi: "3.0.0",
    info: {
      title: "Orrery events",
      version: "1.0.0",
      description:
        "Orrery's event contract: the JetStream subjects and streams a subscriber reads (topology and health deltas, alerts, the registry), and the gateway's WebSocket feed. Follow the topology by applying deltas whose rev is exactly one past the last one applied; on a gap, fetch a snapshot (the RPC, or reconnect the WebSocket) and continue from its rev.",
    },
    defaultContentType: "application/json",
    servers: {
      nats: { host: o.natsHost ?? "localhost:4222", protocol: "nats", description: "NATS with JetStream" },
      gateway: { host: o.gatewayHost ?? "localhost:7070", protocol: "ws", description: "the Orrery gateway" },
    },
    channels,
    operations,
    components: { messages, schemas },
  };
}
