/**
 * topology.delta.v1 — what changed in the live graph. Deltas are numbered (rev): a reader that holds a snapshot at
 * rev R applies exactly the deltas with rev > R. The same shapes travel over the gateway's WebSocket.
 */
import { z } from "zod";
import { EpochMs, Id } from "./common.ts";
import { HealthDelta, HealthState } from "./health.ts";

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
 * Frames the gateway sends over its WebSocket: a topology snapshot first, then the health state, then topology deltas
 * in rev order and health deltas as they come.
 */
export const WsFrame = z.discriminatedUnion("schema", [TopologySnapshot, TopologyDelta, HealthDelta, HealthState]);
export type WsFrame = z.infer<typeof WsFrame>;
