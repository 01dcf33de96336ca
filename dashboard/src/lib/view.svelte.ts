/**
 * The page's view of the estate: it subscribes to a level of detail over the gateway's /ws (`view.subscribe`, see
 * pipelines/contracts/view.ts) and holds only the marks and links it draws — never a topology mirror, so a wallboard
 * on a TV's browser stays small at any estate size.
 *
 * Readers (the map, the wallboard's summary, the header, lists and the drawer):
 * - `view.marks` / `view.links` (plain Maps, replaced in place; depend on `view.version`), `view.summary`,
 *   `view.status`, `view.spec`, `view.dataAgeMs(now)`.
 * - `selection` (module export): the mark the operator picked on the map (a leaf opens the drawer); set it from a
 *   list to select and centre a mark: `selection.pick(markOrId, { focus: true })`.
 * - To change view: `view.setSpec(spec)`; the page's URL follows (App.svelte).
 */
import { z } from "zod";
import { ViewFrame, type Link, type Mark, type ViewSpec, type ViewSummary } from "../../../pipelines/contracts/view.ts";
import { DEFAULT_SPEC, sameSpec } from "./view-url.ts";

/** Generated parser: a 2500-mark snapshot checks several times faster than with zod's interpreter. */
const ViewFrameCompiled = z.compile(ViewFrame);

/** "unauthorized": the gateway asked for a login (the page is sent to /login). */
export type ConnStatus = "connecting" | "live" | "reconnecting" | "closed" | "unauthorized";

export type ViewOutcome = "snapshot" | "applied" | "ignored" | "rejected" | "gap" | "error";

export interface ViewConnectOptions {
  WebSocket?: typeof WebSocket;
  minDelayMs?: number;
  maxDelayMs?: number;
  /** No frame for this long while live: subscribe again, so a quiet feed and a dead one are told apart. */
  quietResubscribeMs?: number;
  /** What to do when the gateway requires a login; default: go to /login?next=<this page>. */
  onUnauthorized?: () => void;
  fetch?: (url: string, init?: RequestInit) => Promise<Response>;
}

export class ViewState {
  /** The view asked for (the URL's); the gateway's answer is `shownSpec`. */
  spec = $state.raw<ViewSpec>(DEFAULT_SPEC);
  shownSpec = $state.raw<ViewSpec | null>(null);
  /** Bumped once per applied frame: read it (or `marks`) to depend on what is drawn. */
  version = $state(0);
  status = $state<ConnStatus>("connecting");
  summary = $state.raw<ViewSummary | null>(null);
  rev = $state(0);
  /** Page clock (epoch ms) when the last view frame arrived. */
  receivedAt = $state<number | null>(null);
  /** Epoch ms of the next reconnect attempt while reconnecting. */
  retryAt = $state<number | null>(null);
  /** A subscribe is on its way and its snapshot has not come yet. */
  pending = $state(false);
  lastError = $state<string | null>(null);
  /** The gateway could not compute the view asked for (view.error.v1); what is drawn is the last view it could. */
  viewError = $state<string | null>(null);
  rejectedFrames = $state(0);

  /** performance.now() of the first socket open, subscribe sent, and snapshot applied (the bench reads them) */
  readonly timeline: { open?: number; subscribed?: number; snapshot?: number; snapshotBytes?: number } = {};

  #marks = new Map<string, Mark>();
  #links = new Map<string, Link>();
  #seq = -1;
  #sub = 0;
  #send: ((spec: ViewSpec) => void) | null = null;

  get marks(): ReadonlyMap<string, Mark> {
    void this.version;
    return this.#marks;
  }

  get links(): ReadonlyMap<string, Link> {
    void this.version;
    return this.#links;
  }

  /** ms the data on screen is behind the feed: the gateway's own age at the last frame plus the time since. */
  dataAgeMs(now: number): number | null {
    if (this.receivedAt === null) return null;
    return (this.summary?.dataAgeMs ?? 0) + Math.max(0, now - this.receivedAt);
  }

  /** Ask for another view (sent now when connected, else on connect). */
  setSpec(spec: ViewSpec): void {
    if (sameSpec(spec, this.spec) && this.shownSpec && sameSpec(spec, this.shownSpec)) return;
    this.spec = spec;
    this.#send?.(spec);
  }

  /** The subscription id frames must carry; numbered per page, so an old subscription's frames are dropped. */
  get subId(): string {
    return `s${this.#sub}`;
  }

  /** The subscribe message for `spec` (a new subscription id each time). */
  subscribeMessage(spec: ViewSpec): string {
    this.#sub++;
    this.pending = true;
    return JSON.stringify({ type: "view.subscribe", id: this.subId, spec });
  }

  /**
   * Folds one frame (text or parsed JSON). Raw topology/health frames the gateway may send before our subscribe
   * lands are ignored; a view frame that fails the contract is counted and dropped; a delta that skips a seq
   * says "gap" (the socket handler subscribes again for a fresh snapshot).
   */
  ingest(data: unknown): ViewOutcome {
    let json: unknown = data;
    if (typeof data === "string") {
      // a raw frame: not ours to parse (a few hundred bytes of prefix tell)
      if (!data.slice(0, 200).includes('"view.')) return "ignored";
      try {
        json = JSON.parse(data);
      } catch {
        return this.#reject("frame is not JSON");
      }
    }
    const schema = (json as { schema?: unknown } | null)?.schema;
    if (typeof schema !== "string" || !schema.startsWith("view.")) return "ignored";
    const parsed = ViewFrameCompiled.safeParse(json);
    if (!parsed.success) {
      const i = parsed.error.issues[0];
      return this.#reject(`invalid view frame: ${i ? `${i.path.join(".")} ${i.message}` : "unknown"}`);
    }
    const f = parsed.data;
    if (f.sub !== undefined && f.sub !== this.subId) return "ignored";
    switch (f.schema) {
      case "view.error.v1":
        this.pending = false;
        this.lastError = `${f.code}: ${f.error}`;
        this.viewError = `this view is unavailable (${f.code}): ${f.error}`;
        return "error";
      case "view.snapshot.v1":
        this.#marks = new Map(f.marks.map((m) => [m.id, m]));
        this.#links = new Map(f.links.map((l) => [l.id, l]));
        this.#seq = f.seq;
        this.rev = f.rev;
        this.summary = f.summary;
        this.shownSpec = f.spec;
        this.timeline.snapshot ??= performance.now();
        if (this.timeline.snapshotBytes === undefined && typeof data === "string") this.timeline.snapshotBytes = data.length;
        this.pending = false;
        this.lastError = null;
        this.viewError = null;
        this.#touch();
        return "snapshot";
      case "view.delta.v1":
        if (this.#seq < 0 || this.pending) return "ignored";
        if (f.seq <= this.#seq) return "ignored";
        if (f.seq !== this.#seq + 1) return "gap";
        this.#seq = f.seq;
        for (const id of f.marksRemoved) this.#marks.delete(id);
        for (const m of f.marksUpserted) this.#marks.set(m.id, m);
        for (const id of f.linksRemoved) this.#links.delete(id);
        for (const l of f.linksUpserted) this.#links.set(l.id, l);
        this.rev = f.rev;
        if (f.summary) this.summary = f.summary;
        // a summary-only delta (the gateway's heartbeat of a quiet view) changes nothing drawn: no new layout or draw
        if (f.marksUpserted.length || f.marksRemoved.length || f.linksUpserted.length || f.linksRemoved.length) this.#touch();
        else this.receivedAt = Date.now();
        return "applied";
    }
  }

  #touch(): void {
    this.receivedAt = Date.now();
    this.version++;
  }

  #reject(reason: string): ViewOutcome {
    this.rejectedFrames++;
    this.lastError = reason;
    return "rejected";
  }

  /**
   * Keeps a socket to the gateway forever: subscribes on every (re)connection, reconnects with capped, jittered
   * exponential backoff. A socket refused before it opened is checked over HTTP: a 401 means log in. Returns stop.
   */
  connect(url: string, opts: ViewConnectOptions = {}): () => void {
    const WS = opts.WebSocket ?? WebSocket;
    const minDelay = opts.minDelayMs ?? 500;
    const maxDelay = opts.maxDelayMs ?? 15_000;
    const quietMs = opts.quietResubscribeMs ?? 30_000;
    const doFetch = opts.fetch ?? ((u: string, i?: RequestInit) => fetch(u, i));
    const onUnauthorized =
      opts.onUnauthorized ?? (() => location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search + location.hash)}`));
    let attempt = 0;
    let stopped = false;
    let socket: WebSocket | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let quiet: ReturnType<typeof setInterval> | undefined;
    let lastSentAt = 0;

    const send = (ws: WebSocket, spec: ViewSpec) => {
      if (ws.readyState !== WS.OPEN) return;
      lastSentAt = Date.now();
      this.timeline.subscribed ??= performance.now();
      ws.send(this.subscribeMessage(spec));
    };

    const retry = () => {
      if (stopped) return;
      this.status = "reconnecting";
      const ceiling = Math.min(maxDelay, minDelay * 2 ** Math.min(attempt++, 20));
      const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
      this.retryAt = Date.now() + delay;
      timer = setTimeout(open, delay);
    };

    /** A WebSocket refused at upgrade tells the page nothing; the same origin's HTTP answer does. */
    const checkAuth = async (): Promise<boolean> => {
      try {
        const r = await doFetch(`/api/view?spec=${encodeURIComponent(JSON.stringify({ level: "groups" }))}`, { headers: { accept: "application/json" } });
        return r.status === 401;
      } catch {
        return false;
      }
    };

    const open = () => {
      timer = undefined;
      this.retryAt = null;
      let opened = false;
      const ws = new WS(url);
      socket = ws;
      this.#send = (spec) => send(ws, spec);
      ws.onopen = () => {
        if (socket !== ws) return;
        opened = true;
        this.timeline.open ??= performance.now();
        send(ws, this.spec);
      };
      ws.onmessage = (ev: MessageEvent) => {
        if (socket !== ws) return;
        const out = this.ingest(ev.data);
        if (out === "snapshot") {
          attempt = 0;
          this.status = "live";
        } else if (out === "gap") send(ws, this.spec);
      };
      ws.onerror = () => {
        if (socket === ws) this.lastError = "WebSocket error";
      };
      ws.onclose = () => {
        if (socket !== ws) return;
        socket = null;
        this.#send = null;
        if (stopped) return;
        if (!opened) {
          void checkAuth().then((unauthorized) => {
            if (stopped) return;
            if (unauthorized) {
              this.status = "unauthorized";
              onUnauthorized();
            } else retry();
          });
          return;
        }
        retry();
      };
    };

    // A quiet feed sends nothing; a fresh snapshot's summary says how old the gateway's data really is.
    quiet = setInterval(() => {
      const ws = socket;
      if (!ws || this.status !== "live" || this.pending) return;
      const last = Math.max(this.receivedAt ?? 0, lastSentAt);
      if (Date.now() - last >= quietMs) send(ws, this.spec);
    }, Math.min(quietMs, 5000));

    this.status = "connecting";
    open();
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      clearInterval(quiet);
      socket?.close();
      socket = null;
      this.#send = null;
      this.status = "closed";
      this.retryAt = null;
    };
  }
}

/** What the operator picked on the map or in a list; the drawer shows `entityId` (a leaf's topology node). */
export class SelectionState {
  /** the mark id (a group id or a leaf's topology node id) */
  id = $state<string | null>(null);
  /** the leaf's topology node id (null for a group): what the drawer and the entity APIs take */
  entityId = $state<string | null>(null);
  /** the mark as it was when picked (label, kind, health) — the live one is `view.marks.get(id)` */
  mark = $state.raw<Mark | null>(null);
  /** Asks the map to centre on `id` (a new object per request, so asking twice re-centres). */
  focusRequest = $state.raw<{ id: string; seq: number } | null>(null);
  #seq = 0;

  pick(m: Mark | string | null, opts: { focus?: boolean } = {}): void {
    if (m === null) {
      this.id = null;
      this.entityId = null;
      this.mark = null;
      return;
    }
    const mark = typeof m === "string" ? null : m;
    this.id = typeof m === "string" ? m : m.id;
    this.entityId = mark ? (mark.kind === "group" ? null : (mark.entityId ?? mark.id)) : this.id;
    this.mark = mark;
    if (opts.focus) this.focusRequest = { id: this.id, seq: ++this.#seq };
  }
}

/** The page's one selection, shared by the map and the drawer. */
export const selection = new SelectionState();

/**
 * The gateway's WebSocket on the page's own origin, as a view socket (`?view`): the gateway starts it on no raw stream,
 * so a page never receives a slice of a 10k-host snapshot before its subscribe lands.
 */
export function gatewaySocketUrl(loc: Pick<Location, "protocol" | "host">): string {
  return `${loc.protocol === "https:" ? "wss:" : "ws:"}//${loc.host}/ws?view`;
}

