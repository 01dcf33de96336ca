/**
 * One ITSM exporter: a JetStream durable on the TOPOLOGY stream, one on the HEALTH stream (and one on REGISTRY when
 * components are mapped: edits and CSV/XLSX imports alike, services/exporters/registry.ts), feeding a vendor
 * adapter. A first run backfills from a topology snapshot (every mapped node, then every mapped edge) and records its
 * rev; deltas up to that rev are then skipped, later ones exported in rev order. Each stream is handled in order,
 * one message after the other, so an entity's changes reach the vendor in the order they happened. What was sent is
 * remembered (state.ts): a retried batch or a restarted exporter sends nothing twice. A vendor outage (timeouts, 429,
 * 5xx) holds the batch in place and retries it (services/shared/bus.ts failureHandler); a refusal (other 4xx)
 * dead-letters the message with the vendor's answer.
 */
import type { ExporterConfig, ExporterStatus } from "../../pipelines/contracts/exporters.ts";
import { HealthDelta, type HealthEntry, type HealthState } from "../../pipelines/contracts/health.ts";
import { RegistryEvent } from "../../pipelines/contracts/registry.ts";
import { TopologyDelta, type TopoEdge, type TopologySnapshot, type TopoNode } from "../../pipelines/contracts/topology.ts";
import { exporterConsumers } from "../../pipelines/streams.ts";
import { ensureConsumer, PermanentError, rewindToAckFloor, runConsumer, type Bus, type ConsumerHandle, type Decoded } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { VendorAdapter } from "./adapter.ts";
import type { HttpCounters } from "./http.ts";
import { componentEntity, digest, mapComponent, mapEdge, mapIncident, mapNode, wantsIncident, type MappedCi } from "./map.ts";
import { componentChanges, streamReader } from "./registry.ts";
import type { ExportState } from "./state.ts";

export interface ExporterDeps {
  bus: Bus;
  cfg: ExporterConfig;
  adapter: VendorAdapter;
  state: ExportState;
  counters: HttpCounters;
  log: Logger;
  /** the topology snapshot for the first run (services/topology/client.ts fetchSnapshot) */
  snapshot: () => Promise<TopologySnapshot>;
  /**
   * The current health for the first run (services/alerts/client.ts fetchHealthState): incidents are opened for what
   * is unhealthy now and health deltas up to its seq are skipped, instead of replaying a day of opened-and-resolved
   * history into the vendor. null (no alerts service answered): the HEALTH stream is replayed from its start.
   */
  healthState?: () => Promise<HealthState | null>;
}

export class Exporter {
  private phase: ExporterStatus["phase"] = "backfill";
  private rev = 0;
  private floor = 0;
  private healthFloor = 0;
  private exported = 0;
  private deadLettered = 0;
  private lastError: string | null = null;
  private lag: Record<string, number> = { topology: 0, health: 0 };
  private handles: ConsumerHandle[] = [];
  private lagTimer: ReturnType<typeof setInterval> | null = null;
  /** nodes seen (snapshot and deltas): an incident names its entity */
  private readonly nodes = new Map<string, Pick<TopoNode, "id" | "kind" | "name" | "source" | "props">>();

  constructor(private readonly d: ExporterDeps) {}

  get name() {
    return this.d.cfg.name;
  }

  async start(): Promise<void> {
    const { bus, cfg, state, log } = this.d;
    const specs = exporterConsumers(bus.topo, cfg.name);
    // the durables first: deltas published during the backfill wait in them
    await ensureConsumer(bus.jsm, specs.topology);
    await ensureConsumer(bus.jsm, specs.health);
    const done = await state.backfilledRev();
    if (done === undefined) {
      const snap = await this.d.snapshot();
      log.info("exporter backfill", { exporter: cfg.name, rev: snap.rev, nodes: snap.nodes.length, edges: snap.edges.length });
      await this.each(snap.nodes, (n) => this.upsertNode(n));
      await this.each(snap.edges, (e) => this.upsertEdge(e));
      const hs = (await this.d.healthState?.().catch(() => null)) ?? null;
      if (hs) {
        await this.each(hs.entities, (h) => this.applyHealth(h));
        await state.setMeta("health", hs.seq);
      } else if (this.d.healthState) log.warn("no health state for the backfill; replaying the HEALTH stream", { exporter: cfg.name });
      await state.setBackfilledRev(snap.rev);
      this.floor = snap.rev;
    } else this.floor = done;
    this.healthFloor = (await state.meta("health")) ?? 0;
    this.rev = this.floor;
    this.phase = "following";
    // a predecessor that died left messages taken and not acked: replayed now and in stream order, not after ack_wait
    await rewindToAckFloor(bus.jsm, specs.topology);
    await rewindToAckFloor(bus.jsm, specs.health);
    const onError = (e: unknown) => {
      this.lastError = e instanceof Error ? e.message : String(e);
    };
    this.handles.push(await runConsumer(bus, specs.topology, TopologyDelta, "topology.delta.v1", (b) => this.onTopology(b), { maxBatch: 50, onError }));
    this.handles.push(await runConsumer(bus, specs.health, HealthDelta, "health.delta.v1", (b) => this.onHealth(b), { maxBatch: 50, onError }));
    if (cfg.components) {
      await ensureConsumer(bus.jsm, specs.registry);
      await rewindToAckFloor(bus.jsm, specs.registry);
      this.lag.registry = 0;
      // registry events are few but an import's parts are up to ~900 KiB each: a small window keeps them out of memory
      this.handles.push(await runConsumer(bus, specs.registry, RegistryEvent, "registry.v1", (b) => this.onRegistry(b), { maxBatch: 20, queued: 20, pullWindow: 20, onError }));
    }
    const poll = async () => {
      // what the vendor refused, counted where it went: the dead-letter subjects of this exporter's durables
      let dead = 0;
      for (const s of [specs.topology, specs.health, specs.registry]) {
        const subj = bus.topo.subjects.dlq(s.durable);
        const i = await bus.jsm.streams.info(bus.topo.streams.dlq.name, { subjects_filter: subj }).catch(() => null);
        dead += i?.state.subjects?.[subj] ?? 0;
      }
      this.deadLettered = dead;
      for (const [k, s] of [["topology", specs.topology], ["health", specs.health], ...(cfg.components ? [["registry", specs.registry] as const] : [])] as const) {
        const i = await bus.jsm.consumers.info(s.stream, s.durable).catch(() => null);
        if (i) this.lag[k] = i.num_pending + i.num_ack_pending;
      }
    };
    await poll();
    this.lagTimer = setInterval(() => void poll(), 1000);
  }

  async stop(): Promise<void> {
    if (this.lagTimer) clearInterval(this.lagTimer);
    for (const h of this.handles) await h.stop();
    this.phase = "stopped";
  }

  status(): ExporterStatus {
    const c = this.d.counters;
    return {
      name: this.d.cfg.name,
      vendor: this.d.cfg.vendor,
      phase: this.phase,
      rev: this.rev,
      lag: { ...this.lag },
      requests: c.requests,
      retries: c.retries,
      errors: c.errors,
      deadLettered: this.deadLettered,
      exported: this.exported,
      lastError: this.lastError,
    };
  }

  private async onTopology(batch: Decoded<TopologyDelta>[]): Promise<void> {
    for (const { value: d } of batch) {
      if (d.rev <= this.floor) continue;
      // the items of one delta are distinct entities: sent side by side (each entity's changes stay in delta order)
      await this.each(d.nodesUpserted, (n) => this.upsertNode(n));
      await this.each(d.edgesUpserted, (e) => this.upsertEdge(e));
      await this.each(d.edgesRemoved, (id) => this.removeEdge(id));
      await this.each(d.nodesRemoved, (id) => this.removeNode(id));
      this.rev = Math.max(this.rev, d.rev);
    }
  }

  /**
   * Registry components as CIs: component.put upserts, component.deleted retires, and an import's commit does both for
   * every component its parts carry (registry.ts reads them back from the stream). The same path as a node's: the
   * digest skips what did not change, the pending mark guards a create lost in a crash. Declared dependencies become
   * relations of the DEPENDS_ON type when the file maps one, once every component of the event is at the vendor.
   */
  private async onRegistry(batch: Decoded<RegistryEvent>[]): Promise<void> {
    const { bus } = this.d;
    const read = streamReader((seq) => bus.jsm.streams.getMessage(bus.topo.streams.registry.name, { seq }));
    // an import of thousands of components can take longer than ack_wait at the vendor's rate: the batch says it is
    // still being worked on, or JetStream would hand it out again behind later changes and undo them
    const keepAlive = setInterval(() => {
      for (const { msg } of batch) msg.working();
    }, 20_000);
    try {
      for (const { msg, value: ev } of batch) {
        const changes = await componentChanges(ev, msg.seq, read);
        if (ev.type === "import.commit" && !changes.length && ev.parts > 0) this.d.log.warn("registry import without all its parts: not exported (the registry ignores it too)", { exporter: this.name, importId: ev.importId, seq: msg.seq });
        await this.each(changes, (c) => (c.after ? this.upsertComponent(c.id, c.after as Record<string, unknown>) : this.removeComponent(c.id)));
        await this.each(changes, async (c) => {
          if (c.after) await this.relateComponent(c.id, c.after.dependsOn);
        });
      }
    } finally {
      clearInterval(keepAlive);
    }
  }

  private async upsertComponent(id: string, after: Record<string, unknown>): Promise<void> {
    const { state, adapter } = this.d;
    const ci = mapComponent(this.d.cfg, componentEntity(id, after));
    if (!ci) return;
    const h = digest(ci);
    const had = await state.get("ci", ci.ref);
    if (had?.x && had.h === h) return;
    let known = had?.x ?? undefined;
    if (had && !had.x && adapter.findCi) known = await adapter.findCi(ci);
    if (!known && adapter.findCi) await state.put("ci", ci.ref, { x: null, h, ci, deps: had?.deps });
    const x = await adapter.upsertCi(ci, known);
    await state.put("ci", ci.ref, { x, h, ci, deps: had?.deps });
    this.exported++;
  }

  /** The component's declared dependencies as relations: those no longer declared removed, the others made. */
  private async relateComponent(id: string, dependsOn: string[]): Promise<void> {
    const { state, cfg } = this.d;
    const ref = `component:${id}`;
    const had = await state.get("ci", ref);
    if (!had?.x) return;
    const want = cfg.relations.DEPENDS_ON ? [...new Set(dependsOn)].filter((d) => d !== id).sort() : [];
    const old = had.deps ?? [];
    if (old.length === want.length && old.every((d, i) => d === want[i])) return;
    for (const d of old) if (!want.includes(d)) await this.removeEdge(dependencyRef(id, d));
    const made: string[] = [];
    for (const d of want) {
      // a dependency not at the vendor (refused and dead-lettered): its relation is tried again at the next change
      if (!(await state.get("ci", `component:${d}`))?.x) continue;
      await this.upsertEdge({ id: dependencyRef(id, d), kind: "DEPENDS_ON", src: ref, dst: `component:${d}`, source: "registry", props: {}, firstSeen: 0, lastSeen: 0 });
      made.push(d);
    }
    await state.put("ci", ref, { ...had, deps: made });
  }

  private async removeComponent(id: string): Promise<void> {
    const had = await this.d.state.get("ci", `component:${id}`);
    for (const d of had?.deps ?? []) await this.removeEdge(dependencyRef(id, d));
    await this.removeNode(`component:${id}`);
  }

  private async onHealth(batch: Decoded<HealthDelta>[]): Promise<void> {
    const { adapter, cfg } = this.d;
    if (!adapter.openIncident || !adapter.resolveIncident || !cfg.incidents.enabled) return;
    for (const { value: d } of batch) {
      if (d.seq <= this.healthFloor) continue;
      await this.each(d.entities, (h) => this.applyHealth(h));
    }
  }

  /** opens the entity's incident when its health calls for one, resolves it when it no longer does */
  private async applyHealth(h: HealthEntry): Promise<void> {
    const { adapter, cfg, state } = this.d;
    if (!adapter.openIncident || !adapter.resolveIncident || !cfg.incidents.enabled) return;
    const open = await state.get("inc", h.id);
    const known = this.nodes.get(h.id);
    const ci = await state.get("ci", h.id);
    const entity = known ?? { id: h.id, kind: (ci?.ci?.kind ?? "external") as TopoNode["kind"], name: ci?.ci?.name ?? h.id, source: "", props: {} };
    const inc = mapIncident(cfg, entity, h.health, h.alerts);
    if (wantsIncident(cfg, h.health)) {
      if (open?.x) return;
      await state.put("inc", h.id, { x: null, h: digest(inc) });
      const id = await adapter.openIncident(inc, ci?.x ?? undefined);
      await state.put("inc", h.id, { x: id, h: digest(inc) });
      this.exported++;
    } else if (open) {
      if (open.x) await adapter.resolveIncident(inc, open.x);
      await state.remove("inc", h.id);
      this.exported++;
    }
  }

  /** f over items, at most cfg.concurrency at a time; the first failure is thrown once all have settled */
  private async each<T>(items: T[], f: (x: T) => Promise<void>): Promise<void> {
    let next = 0;
    let failed: { e: unknown } | null = null;
    const worker = async () => {
      while (next < items.length) {
        const x = items[next++]!;
        try {
          await f(x);
        } catch (e) {
          failed ??= { e };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.d.cfg.concurrency, items.length) }, worker));
    if (failed) throw (failed as { e: unknown }).e;
  }

  private async upsertNode(n: TopoNode): Promise<void> {
    this.nodes.set(n.id, { id: n.id, kind: n.kind, name: n.name, source: n.source, props: n.props });
    const ci = mapNode(this.d.cfg, n);
    if (!ci) return;
    const { state, adapter } = this.d;
    const h = digest(ci);
    const had = await state.get("ci", n.id);
    if (had?.x && had.h === h) return;
    let known = had?.x ?? undefined;
    // a create that may have reached the vendor before a crash: look for it before creating again
    if (had && !had.x && adapter.findCi) known = await adapter.findCi(ci);
    // the pending mark costs a KV round trip: only worth it where a lost create can be looked up (findCi); IRE and the
    // webhook are idempotent at the vendor (identification rules, event ids)
    if (!known && adapter.findCi) await state.put("ci", n.id, { x: null, h, ci });
    const id = await adapter.upsertCi(ci, known);
    await state.put("ci", n.id, { x: id, h, ci });
    this.exported++;
  }

  private async upsertEdge(e: TopoEdge): Promise<void> {
    const rel = mapEdge(this.d.cfg, e);
    if (!rel) return;
    const { state, adapter } = this.d;
    const h = digest(rel);
    const had = await state.get("rel", e.id);
    if (had?.x && had.h === h) return;
    const [src, dst] = [await state.get("ci", e.src), await state.get("ci", e.dst)];
    // an end of an unmapped kind: the relation has nothing to point at (not an error)
    if (!src || !dst) {
      if (mapNode(this.d.cfg, { id: e.src, kind: this.nodes.get(e.src)?.kind ?? "external", name: "", source: "", props: {} }) === null) return;
      if (mapNode(this.d.cfg, { id: e.dst, kind: this.nodes.get(e.dst)?.kind ?? "external", name: "", source: "", props: {} }) === null) return;
      throw new PermanentError(`relation ${e.id}: an end was never exported (${!src ? e.src : e.dst}); see the dead-lettered item`);
    }
    if (!src.x || !dst.x) throw new PermanentError(`relation ${e.id}: an end has no external id yet`);
    const id = await adapter.relate(rel, { src: { id: src.x, ci: src.ci ?? null }, dst: { id: dst.x, ci: dst.ci ?? null } }, had?.x ?? undefined);
    await state.put("rel", e.id, { x: id, h, rel: { type: rel.type, src: src.x, dst: dst.x } });
    this.exported++;
  }

  private async removeEdge(id: string): Promise<void> {
    const { state, adapter } = this.d;
    const had = await state.get("rel", id);
    if (!had) return;
    if (had.x && had.rel) await adapter.unrelate({ ref: id, type: had.rel.type, externalId: had.x, src: had.rel.src, dst: had.rel.dst });
    await state.remove("rel", id);
    this.exported++;
  }

  private async removeNode(id: string): Promise<void> {
    const { state, adapter } = this.d;
    this.nodes.delete(id);
    const had = await state.get("ci", id);
    if (!had) return;
    if (had.x && had.ci) await adapter.retireCi({ ref: id, class: had.ci.class, externalId: had.x });
    await state.remove("ci", id);
    this.exported++;
  }
}

/** the relation id of a declared dependency between two registry components */
const dependencyRef = (src: string, dst: string) => `declared:component:${src}->component:${dst}`;

export type { MappedCi };
