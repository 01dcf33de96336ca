/**
 * topology.delta.v1 — what changed in the live graph. Deltas are numbered (rev): a reader that holds a snapshot at
 * rev R applies exactly the deltas with rev > R. The same shapes travel over the gateway's WebSocket.
 */
import { z } from "zod";
import { EpochMs, Id } from "./common.ts";
import { HealthDelta, HealthState, HealthStateBegin, HealthStateChunk, HealthStateEnd } from "./health.ts";

export const NodeKind = z.enum(["host", "process", "listener", "external"]);
export type NodeKind = z.infer<typeof NodeKind>;
/**
 * RUNS host → process, LISTENS process → listener, CONNECTS process → listener it calls (or → external).
 * DEPENDS_ON process → process is derived from CONNECTS (caller → the service listening there), so dependency chains
 * are one directed variable-length pattern: `(lb)-[:DEPENDS_ON*1..6]->(db)`.
 */
export const EdgeKind = z.enum(["RUNS", "LISTENS", "CONNECTS", "DEPENDS_ON"]);
export type EdgeKind = z.infer<typeof EdgeKind>;
export const Health = z.enum(["ok", "warning", "critical", "unknown", "stale"]);

export const PropValue = z.union([z.string().max(8192), z.number(), z.boolean(), z.null()]);
export const Props = z.record(z.string().max(128), PropValue);
export type Props = z.infer<typeof Props>;

export const TopoNode = z.object({
  id: Id,
  kind: NodeKind,
  name: z.string().max(512),
  /** Source that owns the node (scoped cleanup). */
  source: Id,
  props: Props,
  firstSeen: EpochMs,
  lastSeen: EpochMs,
});
export type TopoNode = z.infer<typeof TopoNode>;

export const TopoEdge = z.object({
  id: Id,
  kind: EdgeKind,
  src: Id,
  dst: Id,
  source: Id,
  props: Props,
  firstSeen: EpochMs,
  lastSeen: EpochMs,
});
export type TopoEdge = z.infer<typeof TopoEdge>;

export const TopologyDelta = z.object({
  schema: z.literal("topology.delta.v1"),
  rev: z.number().int().positive(),
  at: EpochMs,
  nodesUpserted: z.array(TopoNode),
  nodesRemoved: z.array(Id),
  edgesUpserted: z.array(TopoEdge),
  edgesRemoved: z.array(Id),
});
export type TopologyDelta = z.infer<typeof TopologyDelta>;

export const TopologySnapshot = z.object({
  schema: z.literal("topology.snapshot.v1"),
  rev: z.number().int().nonnegative(),
  at: EpochMs,
  nodes: z.array(TopoNode),
  edges: z.array(TopoEdge),
});
export type TopologySnapshot = z.infer<typeof TopologySnapshot>;

/**
 * A snapshot too large for one WebSocket frame travels as begin (the rev and the totals), chunks of nodes and edges
 * (each under the gateway's frame limit), end. Topology deltas keep flowing meanwhile: a reader holds them and, at
 * `end`, applies those with a rev past the snapshot's, so none is lost or applied twice. A new `begin` abandons a
 * snapshot still being received (the gateway resynced).
 */
export const TopologySnapshotBegin = z.object({
  schema: z.literal("topology.snapshot.begin.v1"),
  rev: z.number().int().nonnegative(),
  at: EpochMs,
  /** totals across the chunks that follow */
  nodes: z.number().int().nonnegative(),
  edges: z.number().int().nonnegative(),
});
export type TopologySnapshotBegin = z.infer<typeof TopologySnapshotBegin>;

export const TopologySnapshotChunk = z.object({
  schema: z.literal("topology.snapshot.chunk.v1"),
  rev: z.number().int().nonnegative(),
  nodes: z.array(TopoNode).default([]),
  edges: z.array(TopoEdge).default([]),
});
export type TopologySnapshotChunk = z.infer<typeof TopologySnapshotChunk>;

export const TopologySnapshotEnd = z.object({
  schema: z.literal("topology.snapshot.end.v1"),
  rev: z.number().int().nonnegative(),
  /** how many chunks were sent: a reader that counted fewer lost frames and reconnects */
  chunks: z.number().int().nonnegative(),
});
export type TopologySnapshotEnd = z.infer<typeof TopologySnapshotEnd>;

/**
 * Frames the gateway sends over its WebSocket: a topology snapshot first (one frame, or begin/chunks/end when it is
 * larger than the gateway's frame limit), then the health state (likewise), then topology deltas in rev order and
 * health deltas as they come.
 */
export const WsFrame = z.discriminatedUnion("schema", [
  TopologySnapshot,
  TopologyDelta,
  HealthDelta,
  HealthState,
  TopologySnapshotBegin,
  TopologySnapshotChunk,
  TopologySnapshotEnd,
  HealthStateBegin,
  HealthStateChunk,
  HealthStateEnd,
]);
export type WsFrame = z.infer<typeof WsFrame>;
