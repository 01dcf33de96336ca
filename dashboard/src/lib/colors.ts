/**
 * One palette for the map, the lists and the legend, tuned for a dark wallboard seen from across a room.
 *
 * Colour-blind safe: hues from Okabe & Ito's palette (told apart with protanopia, deuteranopia and tritanopia),
 * lightened for a dark background, and health never by colour alone: the map draws critical as a thick ring with a
 * glow, warning as a ring, impacted as a dashed ring, stale as a dotted grey ring over a faded mark.
 */
import type { EdgeKind, NodeKind, TopoNode } from "../../../pipelines/contracts/topology.ts";
import type { LinkKind, MarkKind } from "../../../pipelines/contracts/view.ts";

export type HealthState = "ok" | "warning" | "critical" | "stale" | "unknown";

export const NODE_KINDS: readonly NodeKind[] = ["host", "process", "listener", "external"];
export const EDGE_KINDS: readonly EdgeKind[] = ["RUNS", "LISTENS", "CONNECTS"];
export const HEALTH_STATES: readonly HealthState[] = ["critical", "warning", "stale", "ok", "unknown"];

export const BACKGROUND = "#0b0f17";

export const KIND_COLOR: Record<NodeKind, string> = {
  host: "#56b4e9",
  process: "#3fc29b",
  listener: "#9aa7b8",
  external: "#e69f00",
};

/** The map's marks: a service is the process kind's colour (listeners fold into it). */
export const MARK_KIND_COLOR: Record<MarkKind, string> = {
  group: "#7b8fb0",
  host: KIND_COLOR.host,
  service: KIND_COLOR.process,
  process: "#8fd9c2",
  listener: KIND_COLOR.listener,
  external: KIND_COLOR.external,
};
export const MARK_KINDS: readonly MarkKind[] = ["group", "host", "service", "process", "listener", "external"];

export const LINK_COLOR: Record<LinkKind, string> = {
  calls: "rgba(200, 214, 235, 0.30)",
  depends: "rgba(200, 214, 235, 0.30)",
  runs: "rgba(86, 180, 233, 0.25)",
  listens: "rgba(154, 167, 184, 0.25)",
};

export const EDGE_COLOR: Record<EdgeKind, string> = {
  RUNS: "rgba(86, 180, 233, 0.30)",
  LISTENS: "rgba(154, 167, 184, 0.35)",
  CONNECTS: "rgba(200, 214, 235, 0.30)",
  DEPENDS_ON: "rgba(240, 228, 66, 0.22)",
};

export const HEALTH_COLOR: Record<HealthState, string> = {
  ok: "#009e73",
  warning: "#f0e442",
  critical: "#ff5a36",
  stale: "#8b949e",
  unknown: "#6e7681",
};

/**
 * Impact halo: an entity that depends on an unhealthy one. Reddish purple (Okabe-Ito), a hue no health ring uses and
 * dashed on the map, so "affected" never reads as "failing"; drawn fainter and thinner the further the cause is.
 */
export const IMPACT_COLOR = "#d783c0";
/**
 * Drift badge (the registry's declared vs discovered): a small light diamond at a mark's top right, a shape no health
 * or impact ring has, so it reads as "check the registry" and never as a health state.
 */
export const DRIFT_COLOR = "#eef0ff";
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
