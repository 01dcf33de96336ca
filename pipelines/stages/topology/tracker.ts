/**
 * Records the state of every id a call touches before it changes, so the call returns net changes only.
 */
import type { TopoEdge, TopoNode } from "../../contracts/topology.ts";
import { type Changes, type Removal, type TopologyModel, sameProps } from "./model.ts";

/** Records the state of every touched id before the batch, to emit net changes only. */
export class Tracker {
  private nodesBefore = new Map<string, TopoNode | undefined>();
  private edgesBefore = new Map<string, TopoEdge | undefined>();
  readonly rejected: string[] = [];
  readonly removals: Removal[] = [];
  /** nodes and edges removed so far in this call (a cause's share is the difference across it) */
  readonly dropped = { nodes: 0, edges: 0 };
  /** ids to emit even though only lastSeen moved */
  private forced = new Set<string>();
  constructor(private m: TopologyModel) {}
  /** the state before this call, for an id touched in it */
  nodeBefore(id: string): TopoNode | undefined {
    return this.nodesBefore.get(id);
  }
  edgeBefore(id: string): TopoEdge | undefined {
    return this.edgesBefore.get(id);
  }
  force(id: string, edge: boolean) {
    if (edge) this.touchEdge(id);
    else this.touchNode(id);
    this.forced.add(id);
  }
  touchNode(id: string) {
    if (!this.nodesBefore.has(id)) this.nodesBefore.set(id, this.m.nodes.get(id));
  }
  touchEdge(id: string) {
    if (!this.edgesBefore.has(id)) this.edgesBefore.set(id, this.m.edges.get(id));
  }
  result(): Changes {
    const c: Changes = { nodesUpserted: [], nodesRemoved: [], edgesUpserted: [], edgesRemoved: [], created: new Set() };
    for (const [id, before] of this.nodesBefore) {
      const now = this.m.nodes.get(id);
      if (!now) {
        if (before) c.nodesRemoved.push(id);
      } else if (!before || !sameNode(before, now) || this.forced.has(id)) {
        c.nodesUpserted.push(now);
        if (!before) c.created!.add(id);
      }
    }
    for (const [id, before] of this.edgesBefore) {
      const now = this.m.edges.get(id);
      if (!now) {
        if (before) c.edgesRemoved.push({ id, kind: before.kind, src: before.src, dst: before.dst });
      } else if (!before || !sameEdge(before, now) || this.forced.has(id)) {
        c.edgesUpserted.push(now);
        if (!before) c.created!.add(id);
      }
    }
    if (this.rejected.length) c.rejected = this.rejected;
    if (this.removals.length) c.removals = this.removals;
    return c;
  }
}

const sameNode = (a: TopoNode, b: TopoNode) => a.name === b.name && a.kind === b.kind && a.source === b.source && sameProps(a.props, b.props);
const sameEdge = (a: TopoEdge, b: TopoEdge) => a.src === b.src && a.dst === b.dst && a.source === b.source && sameProps(a.props, b.props);

export interface Ctx {
  m: TopologyModel;
  t: Tracker;
  source: string;
  host: string;
  now: number;
}
