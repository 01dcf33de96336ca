/**
 * Time travel for the wallboard: a second TopologyState (`past`) holds the graph as it was at a chosen time, loaded
 * from the gateway's history API (GET /api/topology/at) and moved forward by replaying change rows
 * (GET /api/topology/replay) at a chosen speed. The live TopologyState keeps its WebSocket and folds every delta in
 * the background meanwhile, so going back to LIVE is a swap of what is shown, with nothing missed and no reload.
 *
 * With `graph: false` (a page that shows the gateway's views, which computes a view at `at` from history itself) no
 * graph is loaded into the page: seeking sets `at`, and a replay moves `at` forward at the chosen speed. A page that
 * holds only what it draws must not download a 10k-host estate's past (a ~130 MB snapshot) to show a view of it.
 *
 * Failed or malformed answers become `error` (shown by TimeSlider) and leave the graph on screen as it was.
 */
import { z } from "zod";
import type { TopologyDelta } from "../../../pipelines/contracts/topology.ts";
import { ChangeRow } from "../../../pipelines/stages/history.ts";
import { cutPage, deltaOfRows, groupByRev } from "./replay.ts";
import { TopologyState } from "./topology.svelte.ts";

export type TimeMode = "live" | "history";

/** Replay speeds, in seconds of history per second of wall time. */
export const SPEEDS = [1, 10, 60, 600, 3600] as const;

export const HistoryRange = z.object({ earliest: z.number().nullable(), latest: z.number().nullable(), now: z.number() });
export type HistoryRange = z.infer<typeof HistoryRange>;
export const ReplayPage = z.object({ from: z.number(), to: z.number(), changes: z.array(ChangeRow), truncated: z.boolean() });
export type ReplayPage = z.infer<typeof ReplayPage>;

type Result<T> = { ok: true; data: T } | { ok: false; error: string };

type Fetch = (url: string, init?: RequestInit) => Promise<Response>;

export interface TimeTravelOptions {
  fetch?: Fetch;
  now?: () => number;
  /** replay tick, ms */
  tickMs?: number;
  /** change rows per replay request */
  pageLimit?: number;
  /** range shown when the history API cannot say (its error is shown too) */
  fallbackSpanMs?: number;
  /** load the past graph into `past` (default true); false: only `at` moves (see the header) */
  graph?: boolean;
}

/** `03:00:12` today, `2026-11-30 03:00:12` on another day (local time). */
export function formatTime(t: number, now = Date.now()): string {
  const d = new Date(t);
  const p = (n: number) => String(n).padStart(2, "0");
  const time = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  return d.toDateString() === new Date(now).toDateString() ? time : `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${time}`;
}

export class TimeTravel {
  readonly live: TopologyState;
  /** The graph at `at`; its frames are validated by the same ingest as the live socket's. */
  readonly past = new TopologyState();

  mode = $state<TimeMode>("live");
  /** The time the past graph shows (null: none loaded). */
  at = $state<number | null>(null);
  /** Where the slider was put, while its state is loading. */
  target = $state<number | null>(null);
  loading = $state(false);
  playing = $state(false);
  speed = $state<number>(60);
  error = $state<string | null>(null);
  /** Oldest retained change (the slider's start); null until the API answered. */
  earliest = $state<number | null>(null);
  rangeError = $state<string | null>(null);
  now = $state(Date.now());

  #fetch: Fetch;
  #clock: () => number;
  #tickMs: number;
  #pageLimit: number;
  #fallbackSpan: number;
  #graph: boolean;
  /** whether the past graph is loaded here (`past`), or only `at` moves */
  get loadsGraph(): boolean {
    return this.#graph;
  }
  /** Bumped by every seek / LIVE, so a late answer of an older request is dropped. */
  #seq = 0;
  #abort: AbortController | null = null;
  /** Replay: every row with ts ≤ #fetchedTo is either applied or in #queue (rows in rev order). */
  #fetchedTo = 0;
  #queue: ChangeRow[] = [];
  #fetching = false;
  #ticking = false;
  /** Bumped by every play(), so a page asked for before a pause is dropped when it lands after the next play. */
  #playGen = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #lastTick = 0;

  constructor(live: TopologyState, opts: TimeTravelOptions = {}) {
    this.live = live;
    this.#fetch = opts.fetch ?? ((url, init) => fetch(url, init));
    this.#clock = opts.now ?? Date.now;
    this.#tickMs = opts.tickMs ?? 200;
    this.#pageLimit = opts.pageLimit ?? 5000;
    this.#fallbackSpan = opts.fallbackSpanMs ?? 24 * 3600_000;
    this.#graph = opts.graph ?? true;
    this.now = this.#clock();
  }

  /** What the wallboard draws: the past graph once one is loaded, else the live one. */
  get view(): TopologyState {
    return this.#graph && this.mode === "history" && this.at !== null ? this.past : this.live;
  }

  /** Slider bounds: the oldest retained change (or the fallback span when unknown) to now. */
  get min(): number {
    return Math.min(this.earliest ?? this.now - this.#fallbackSpan, this.now - 1000);
  }

  /** Keeps `now` and the range fresh; returns the stop function (TimeSlider calls it from onMount). */
  start(): () => void {
    void this.loadRange();
    let n = 0;
    const clock = setInterval(() => {
      this.now = this.#clock();
      // The range is refetched every minute, or every 10 s while it could not be loaded.
      if (++n % (this.rangeError !== null ? 10 : 60) === 0) void this.loadRange();
    }, 1000);
    return () => {
      clearInterval(clock);
      this.pause();
    };
  }

  async loadRange(): Promise<boolean> {
    const r = await this.#get("/api/topology/range", HistoryRange);
    if (!r.ok) {
      this.rangeError = `history range unavailable: ${r.error}`;
      return false;
    }
    this.rangeError = null;
    this.earliest = r.data.earliest;
    return true;
  }

  /** Shows the graph as it was at t (pauses a replay). Resolves false when it could not (see `error`). */
  async seek(t: number): Promise<boolean> {
    // The slider's right end is now: that is the live graph.
    if (t >= this.#clock() - 1000) {
      this.goLive();
      return true;
    }
    this.pause();
    const seq = ++this.#seq;
    t = Math.round(t);
    if (!this.#graph) {
      this.mode = "history";
      this.at = t;
      this.target = null;
      this.loading = false;
      this.error = null;
      return true;
    }
    if (this.mode === "live") this.past.selectedId = this.live.selectedId;
    this.mode = "history";
    this.target = t;
    this.loading = true;
    const ok = await this.#load(t, seq);
    if (seq !== this.#seq) return false;
    this.loading = false;
    this.target = null;
    // Nothing of the past to show: stay on the live graph, with the error on the bar.
    if (!ok && this.at === null) this.mode = "live";
    return ok;
  }

  /** Back to the live graph, which kept folding deltas meanwhile. */
  goLive(): void {
    this.pause();
    this.#seq++;
    this.#abort?.abort();
    this.#abort = null;
    if (this.#graph && this.mode === "history" && this.past.selectedId !== null && this.live.mirror.nodes.has(this.past.selectedId)) this.live.selectedId = this.past.selectedId;
    this.mode = "live";
    this.at = null;
    this.target = null;
    this.loading = false;
    this.error = null;
  }

  /** Replays the changes after `at` at `speed`; reaching now goes LIVE. */
  play(): void {
    if (this.mode !== "history" || this.at === null || this.playing || this.loading) return;
    this.playing = true;
    this.#playGen++;
    this.#fetchedTo = this.at;
    this.#queue = [];
    this.#lastTick = this.#clock();
    this.#timer = setInterval(() => {
      if (this.#ticking) return;
      this.#ticking = true;
      void this.#tick().finally(() => (this.#ticking = false));
    }, this.#tickMs);
  }

  pause(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.playing = false;
    this.#queue = [];
  }

  setSpeed(s: number): void {
    if (s > 0 && Number.isFinite(s)) this.speed = s;
  }

  /** Loads state at t into `past`; false with `error` set when the answer failed or was malformed. */
  async #load(t: number, seq: number): Promise<boolean> {
    this.#abort?.abort();
    const ac = new AbortController();
    this.#abort = ac;
    const r = await this.#get(`/api/topology/at?t=${t}`, z.unknown(), ac.signal);
    if (seq !== this.#seq) return false;
    if (!r.ok) {
      this.error = `could not load the topology at ${formatTime(t, this.now)}: ${r.error}`;
      return false;
    }
    const outcome = this.past.ingest(r.data);
    if (outcome !== "snapshot") {
      this.error = `bad topology for ${formatTime(t, this.now)}: ${this.past.lastError ?? "not a snapshot"}`;
      return false;
    }
    this.past.status = "history";
    this.at = t;
    this.error = null;
    return true;
  }

  async #tick(): Promise<void> {
    const seq = this.#seq;
    const wall = this.#clock();
    const dt = (wall - this.#lastTick) * this.speed;
    this.#lastTick = wall;
    this.now = wall;
    const at = this.at;
    if (at === null) return this.pause();
    // no graph here: the time moves, the gateway computes the view at it
    if (!this.#graph) {
      this.at = Math.min(wall, at + dt);
      if (this.at >= wall - 1000) this.goLive();
      return;
    }
    // Fetch ahead of the cursor (about two seconds of playback), one request at a time.
    if (!this.#fetching && this.#fetchedTo < Math.min(wall, at + dt + 2000 * this.speed)) void this.#fetchPage(seq, Math.min(wall, this.#fetchedTo + Math.max(4000 * this.speed, 1000)));
    // The cursor never passes what has been fetched: the graph shown is exactly the state at `at`.
    const cursor = Math.min(at + dt, this.#fetchedTo);
    let applied = 0;
    for (const rows of groupByRev(this.#queue)) {
      if (rows[0]!.ts > cursor) break;
      applied += rows.length;
      let delta: TopologyDelta;
      try {
        delta = deltaOfRows(rows);
      } catch (e) {
        return this.#fail(`bad replay rows at rev ${rows[0]!.rev}: ${(e as Error).message}`);
      }
      const outcome = this.past.ingest(delta);
      if (outcome === "rejected") return this.#fail(`bad replay rows at rev ${delta.rev}: ${this.past.lastError}`);
      // Revs restarted (a graph store rebuilt from scratch): take the state at this change instead.
      if (outcome === "stale" && !(await this.#load(delta.at, seq))) return this.pause();
      if (seq !== this.#seq) return;
    }
    // Pages are only appended meanwhile, so the applied rows are still the queue's first ones.
    this.#queue = this.#queue.slice(applied);
    this.at = Math.max(at, cursor);
    if (this.at >= wall - 1000 && this.#fetchedTo >= wall - 1000 && !this.#queue.length) this.goLive();
  }

  async #fetchPage(seq: number, to: number): Promise<void> {
    const from = this.#fetchedTo;
    const gen = this.#playGen;
    if (to <= from) return;
    this.#fetching = true;
    try {
      const r = await this.#get(`/api/topology/replay?from=${from}&to=${Math.floor(to)}&limit=${this.#pageLimit}`, ReplayPage);
      if (seq !== this.#seq || gen !== this.#playGen || !this.playing) return;
      if (!r.ok) return this.#fail(`replay failed: ${r.error}`);
      const cut = cutPage(r.data, Math.floor(to));
      if ("rows" in cut) {
        this.#queue.push(...cut.rows);
        this.#fetchedTo = cut.fetchedTo;
        return;
      }
      // More changes in one millisecond than a page holds: jump to the state just after them.
      this.#queue = [];
      if (await this.#load(cut.jumpTo, seq)) this.#fetchedTo = cut.jumpTo;
      else this.pause();
    } finally {
      this.#fetching = false;
    }
  }

  #fail(message: string): void {
    this.error = message;
    this.pause();
  }

  async #get<T>(url: string, schema: z.ZodType<T>, signal?: AbortSignal): Promise<Result<T>> {
    let res: Response;
    try {
      res = await this.#fetch(url, { signal, headers: { accept: "application/json" } });
    } catch (e) {
      return { ok: false, error: e instanceof Error ? e.message : String(e) };
    }
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      return { ok: false, error: `HTTP ${res.status}, response is not JSON` };
    }
    if (!res.ok) {
      const reason = typeof body === "object" && body !== null && typeof (body as { error?: unknown }).error === "string" ? (body as { error: string }).error : "";
      return { ok: false, error: `HTTP ${res.status}${reason ? `: ${reason}` : ""}` };
    }
    const parsed = schema.safeParse(body);
    if (!parsed.success) {
      const i = parsed.error.issues[0];
      return { ok: false, error: `unexpected response: ${i ? `${i.path.join(".")} ${i.message}` : "invalid"}` };
    }
    return { ok: true, data: parsed.data };
  }
}
