/**
 * Keeps the map's drift badges current: reads GET /api/registry/drift every `everyMs` (30 s) while a map shows, and
 * at once when the registry changed (an edit or an import made from this page, `registryChanged`), never two reads at
 * once, a burst of changes coalesced into one read. A map that comes back (from the registry pages) reads again only
 * when the last read is `everyMs` old or the registry changed meanwhile. The instances of the drifting components
 * (GET /api/registry/components/:id) are read again only when the set of drifting components changes, on a registry
 * change, or when older than `instancesMs`.
 *
 * Drift that cannot be read (no registry service, no topology behind it, signed out, the gateway restarting) means no
 * badges, silently: badges are a hint on the map, and the registry's own pages report its errors.
 */
import type { ComponentDetail, Drift } from "../../../pipelines/contracts/registry.ts";
import { driftByComponent, driftComponentsKey } from "./drift.ts";

type Answer<T> = { ok: true; data: T } | { ok: false; error: string };

export interface DriftWatchDeps {
  fetchDrift: () => Promise<Answer<Drift>>;
  fetchComponent: (id: string) => Promise<Answer<Pick<ComponentDetail, "instances">>>;
  /** calls back on a registry change; answers how to stop listening */
  registryChanged: (cb: () => void) => () => void;
  onChange: (s: DriftState) => void;
  now?: () => number;
  everyMs?: number;
  instancesMs?: number;
  /** drifting components whose instances are read (the rest go unbadged: a list, not a map, is the place for more) */
  maxComponents?: number;
}

export interface DriftState {
  /** drifting component id → findings */
  components: ReadonlyMap<string, string[]>;
  /** entity id → drifting component ids it is an instance of */
  instances: ReadonlyMap<string, string[]>;
}

export const EMPTY_DRIFT: DriftState = { components: new Map(), instances: new Map() };

export class DriftWatch {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running = false;
  private again = false;
  private stopped = true;
  /** the registry changed since the last read */
  private dirty = false;
  private lastReadAt = -Infinity;
  private readonly unlisten: () => void;
  private key = "";
  private instancesAt = -Infinity;
  private state: DriftState = EMPTY_DRIFT;
  /** reads of the drift so far (the tests count them) */
  reads = 0;

  constructor(private readonly d: DriftWatchDeps) {
    this.unlisten = d.registryChanged(() => {
      this.dirty = true;
      this.refresh();
    });
  }

  private get now() {
    return (this.d.now ?? Date.now)();
  }
  private get every() {
    return this.d.everyMs ?? 30_000;
  }

  /** Reads while started: now when due (or the registry changed), else when the last read is `everyMs` old. */
  start(): () => void {
    if (!this.stopped) return () => this.stop();
    this.stopped = false;
    const wait = this.lastReadAt + this.every - this.now;
    if (this.dirty || wait <= 0) this.refresh();
    else this.timer = setTimeout(() => this.refresh(), wait);
    return () => this.stop();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Stops for good (no more registry events). */
  dispose(): void {
    this.stop();
    this.unlisten();
  }

  /** Reads now (or right after the read in flight). */
  refresh(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.running = true;
    void this.read().finally(() => {
      this.running = false;
      if (this.stopped) return;
      // started again while this read ran: its timer gives way to this one
      clearTimeout(this.timer);
      if (this.again) {
        this.again = false;
        this.refresh();
      } else this.timer = setTimeout(() => this.refresh(), this.every);
    });
  }

  private async read(): Promise<void> {
    this.reads++;
    this.lastReadAt = this.now;
    // a registry change: the instances behind the findings may have changed too
    if (this.dirty) this.instancesAt = -Infinity;
    this.dirty = false;
    // a read finishes even when the map went away meanwhile: the state is shared, and the next map starts from it
    const r = await this.d.fetchDrift().catch((e: unknown) => ({ ok: false as const, error: String(e) }));
    if (!r.ok) {
      this.key = "";
      return this.set(EMPTY_DRIFT);
    }
    const components = driftByComponent(r.data);
    const key = driftComponentsKey(components);
    let instances = this.state.instances;
    if (key !== this.key || this.now - this.instancesAt >= (this.d.instancesMs ?? 300_000)) {
      instances = await this.readInstances([...components.keys()].sort().slice(0, this.d.maxComponents ?? 200));
      this.key = key;
      this.instancesAt = this.now;
    }
    this.set({ components, instances });
  }

  /** Instances of the components, four reads at a time; a component that cannot be read has none. */
  private async readInstances(ids: string[]): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    let next = 0;
    const worker = async () => {
      while (next < ids.length) {
        const id = ids[next++]!;
        const r = await this.d.fetchComponent(id).catch(() => null);
        if (!r?.ok) continue;
        for (const i of r.data.instances) {
          const l = out.get(i.id);
          if (l) l.push(id);
          else out.set(i.id, [id]);
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    return out;
  }

  private set(s: DriftState): void {
    if (s === this.state || (s.components.size === 0 && this.state.components.size === 0)) return;
    this.state = s;
    this.d.onChange(s);
  }
}
