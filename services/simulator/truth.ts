/**
 * The ground truth of a simulated estate: how many nodes and edges of each kind the topology graph holds once it has
 * converged on it, computed from the estate's definition (estate.ts: its hosts, their processes, ports and planned
 * calls), never by running the pipeline. `bench estate`, the simulator's start line and the estate-truth test compare
 * the graph against it.
 *
 * It is the estate without churn: with churn the graph moves around it (restarts, crashes, deploys, crons), and
 * counts near it within a small margin are what "converged" means.
 */
import { makeEstate, NO_CHURN, type Estate } from "./estate.ts";

/** Inputs, as the simulator takes them (SimConfig.hosts and .seed; estate.ts's default fanout). */
export interface EstateTruthOptions {
  hosts: number;
  seed: number;
  /** EstateOptions.fanout (default 1, what the simulator runs) */
  fanout?: number;
}

/**
 * Expected graph counts by kind, as the topology stage models the estate (pipelines/stages/topology):
 * - nodes.host: one per simulated host;
 * - nodes.process: one service node per (host, service): each host's main service, sshd, node_exporter and chronyd
 *   (they listen), and its log shipper when it has somewhere to ship (a client-only process is a node only through
 *   its connections);
 * - nodes.listener: one per listening socket (TCP and UDP), all on the wildcard address;
 * - nodes.external: one per distinct third-party ip:port the apps call (no address of the estate is ever external);
 * - edges.RUNS: host → each of its service nodes;  edges.LISTENS: service → each of its listeners;
 * - edges.CONNECTS: caller service → the listener (or external) it calls, one per planned call;
 * - edges.DEPENDS_ON: caller service → served service, one per planned call to a host of the estate.
 */
export interface EstateTruth {
  hosts: number;
  seed: number;
  nodes: { host: number; process: number; listener: number; external: number };
  edges: { RUNS: number; LISTENS: number; CONNECTS: number; DEPENDS_ON: number };
  /** the ip of every simulated host: an external node at one of these is a phantom */
  ips: Set<string>;
}

/** The ground truth of the estate the simulator builds from these inputs (without churn). */
export function estateTruth(opts: EstateTruthOptions): EstateTruth {
  return truthOf(makeEstate(opts.hosts, { seed: opts.seed, fanout: opts.fanout ?? 1, churn: NO_CHURN }), opts.seed);
}

/** The ground truth of an estate as built (before its first tick's churn). */
export function truthOf(e: Estate, seed = e.opts.seed): EstateTruth {
  const nodes = { host: 0, process: 0, listener: 0, external: 0 };
  const edges = { RUNS: 0, LISTENS: 0, CONNECTS: 0, DEPENDS_ON: 0 };
  const externals = new Set<string>();
  for (const h of e.hosts) {
    nodes.host++;
    const callers = new Set(h.calls.map((c) => c.from));
    for (const [i, p] of h.procs.entries()) {
      const listens = p.ports.length + (p.udp?.length ?? 0);
      nodes.listener += listens;
      if (listens || callers.has(i)) nodes.process++;
    }
    for (const c of h.calls) {
      edges.CONNECTS++;
      if (c.slot < 0) externals.add(`${c.ip}:${c.port}`);
      else edges.DEPENDS_ON++;
    }
  }
  nodes.external = externals.size;
  edges.RUNS = nodes.process;
  edges.LISTENS = nodes.listener;
  return { hosts: e.hosts.length, seed, nodes, edges, ips: new Set(e.hosts.map((h) => h.ip)) };
}
