/** One palette for the canvas, the list and the legend, tuned for a dark wallboard seen from across a room. */
import type { EdgeKind, NodeKind, TopoNode } from "../../../pipelines/contracts/topology.ts";

export type HealthState = "ok" | "warning" | "critical" | "stale" | "unknown";

export const NODE_KINDS: readonly NodeKind[] = ["host", "process", "listener", "external"];
export const EDGE_KINDS: readonly EdgeKind[] = ["RUNS", "LISTENS", "CONNECTS"];
export const HEALTH_STATES: readonly HealthState[] = ["critical", "warning", "stale", "ok", "unknown"];

export const BACKGROUND = "#0b0f17";

export const KIND_COLOR: Record<NodeKind, string> = {
  host: "#4c9aff",
  process: "#a78bfa",
  listener: "#2dd4bf",
  external: "#f472b6",
};

export const EDGE_COLOR: Record<EdgeKind, string> = {
  RUNS: "rgba(76, 154, 255, 0.30)",
  LISTENS: "rgba(45, 212, 191, 0.35)",
  CONNECTS: "rgba(244, 114, 182, 0.28)",
  DEPENDS_ON: "rgba(250, 204, 21, 0.22)",
};

export const HEALTH_COLOR: Record<HealthState, string> = {
  ok: "#3fb950",
  warning: "#f5b83d",
  critical: "#ff4d4f",
  stale: "#8b949e",
  unknown: "#6e7681",
};

/**
 * Impact halo: an entity that depends on an unhealthy one. Orange, a hue no health ring uses, so "affected" never
 * reads as "failing"; drawn fainter and thinner the further the cause is.
 */
export const IMPACT_COLOR = "#ff7a1a";
export const impactAlpha = (hops: number): number => (hops <= 2 ? 1 : hops <= 4 ? 0.7 : 0.45);
export const impactWidth = (hops: number): number => (hops <= 1 ? 3 : hops <= 3 ? 2.5 : 2);

/** Lower sorts first: what a NOC needs to see comes to the top of lists. */
export const HEALTH_RANK: Record<HealthState, number> = { critical: 0, warning: 1, stale: 2, unknown: 3, ok: 4 };
export const KIND_RANK: Record<NodeKind, number> = { host: 0, process: 1, listener: 2, external: 3 };

const HEALTHS = new Set<string>(HEALTH_STATES);

/** `props.health` when it is one of the known states, else null (no health reported). */
export function healthOf(n: Pick<TopoNode, "props">): HealthState | null {
  // Alert health (from health frames) wins over what discovery says (e.g. stale).
  const h = n.props.alertHealth ?? n.props.health;
  return typeof h === "string" && HEALTHS.has(h) ? (h as HealthState) : null;
}
