/**
 * The registry into the graph: whenever the registry or its matches change, the whole registry part of the graph
 * (components, what each matches, what each declares) goes out as one registry.graph.v1 event. The topology service,
 * the graph store's only writer, makes the store's registry part equal to the last one; the matches stay computed
 * here alone (match.ts), from the same mirror the instances and drift come from.
 */
import { encode } from "../../pipelines/codec.ts";
import { RegistryGraph, type Component } from "../../pipelines/contracts/registry.ts";
import type { Bus } from "../shared/bus.ts";
import { lastRegistryGraph, registryGraphParts } from "./client.ts";
import type { Logger } from "../shared/log.ts";
import type { Matches } from "./match.ts";
import type { Registry } from "./registry.ts";

const bare = (p: string) => p.replace(/^(user|group):/, "");

/** The registry part of the graph at this state and these matches (in a stable order, so equal states compare equal). */
export function registryGraphOf(components: ReadonlyMap<string, Component>, m: Matches, seq: number, at: number): RegistryGraph {
  const ids = [...components.keys()].sort();
  return {
    schema: "registry.graph.v1",
    at,
    seq,
    topologyRev: m.rev,
    components: ids.map((id) => {
      const c = components.get(id)!;
      const team = c.owners.find((o) => o.startsWith("group:"));
      return {
        id,
        name: c.name,
        category: c.category,
        lifecycle: c.lifecycle,
        privacy: c.privacy,
        location: c.location,
        language: c.language,
        framework: c.framework,
        team: team ? bare(team) : "",
        owners: c.owners,
        maintainers: c.maintainers,
        tags: c.tags,
        rev: c.rev,
      };
    }),
    matches: ids.flatMap((id) => [...new Set((m.byComponent.get(id) ?? []).map((i) => i.id))].sort().map((entity) => ({ component: id, entity }))),
    declares: ids.flatMap((id) => [...new Set(components.get(id)!.dependsOn)].filter((d) => d !== id && components.has(d)).sort().map((dst) => ({ src: id, dst }))),
  };
}

/** What two events compare by (everything but when and at which revisions they were made). */
export const registryGraphKey = (g: RegistryGraph): string => JSON.stringify([g.components, g.matches, g.declares]);

/**
 * Publishes registry.graph.v1 when the registry's part of the graph differs from the last one published (the
 * REGISTRY_GRAPH stream's last message, so a restart does not repeat it). Nothing goes out before the topology mirror
 * has synced: matches against an empty mirror would wipe every MATCHES edge.
 */
export async function publishRegistryGraph(bus: Bus, registry: Registry, log: Logger, o: { everyMs: number; now?: () => number }): Promise<{ stop(): void; tick(): Promise<void> }> {
  const now = o.now ?? Date.now;
  let lastKey: string | undefined;
  try {
    const last = await lastRegistryGraph(bus);
    if (last) lastKey = registryGraphKey(last.graph);
  } catch (e) {
    log.warn("could not read the last registry.graph.v1 event", { error: String(e) });
  }
  // the server's limit less room for headers; a larger registry goes out in parts
  const maxBytes = Math.max(64 * 1024, (bus.nc.info?.max_payload ?? 1024 * 1024) - 4096);
  let seen = "";
  const tick = async () => {
    const m = registry.matches();
    if (!m) return;
    const state = `${registry.state.seq}/${m.rev}`;
    if (state === seen) return;
    const g = registryGraphOf(registry.state.components, m, registry.state.seq, now());
    const key = registryGraphKey(g);
    if (key !== lastKey) {
      const parts = await publishParts(bus, g, maxBytes);
      lastKey = key;
      log.info("registry graph published", { components: g.components.length, matches: g.matches.length, declares: g.declares.length, parts });
    }
    seen = state;
  };
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    tick()
      .catch((e) => log.warn("registry graph publish failed; retried at the next tick", { error: String(e) }))
      .finally(() => (busy = false));
  }, o.everyMs);
  return { stop: () => clearInterval(timer), tick };
}

/**
 * Publishes a state's parts back to back: each after the first expects the previous one as the stream's last
 * message, so another publisher's parts never interleave (the state is then published again, whole).
 */
export async function publishParts(bus: Bus, g: RegistryGraph, maxBytes: number): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const parts = registryGraphParts(g, maxBytes, `${g.seq}.${g.topologyRev}.${g.at}.${attempt}`);
    let prev: number | undefined;
    try {
      for (const p of parts) {
        const bytes = encode(RegistryGraph, "registry.graph.v1", p, maxBytes);
        const ack = await bus.js.publish(bus.topo.subjects.registryGraph, bytes, { timeout: 30_000, ...(prev === undefined ? {} : { expect: { lastSequence: prev } }) });
        prev = ack.seq;
      }
      return parts.length;
    } catch (e) {
      if (attempt >= 3 || prev === undefined) throw e;
    }
  }
}
