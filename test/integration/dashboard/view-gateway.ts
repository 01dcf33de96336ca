/**
 * A fake gateway that speaks the view contract (pipelines/contracts/view.ts) for the map's browser tests: static
 * dashboard/dist, /ws answering `view.subscribe` with snapshots and pushing deltas when the test changes the estate,
 * and GET /api/view (and /api/view/search over the same estate). Its aggregation is a small stand-in for the gateway's (tiers of hosts running services, calls
 * lifted to the visible marks), enough to check what the page does with what it is sent; the gateway's own
 * aggregation has its own tests.
 */
import { join, normalize, sep } from "node:path";
import { ClientMessage, specFromParam, type Link, type Mark, type MarkHealth, type ViewSearch, type ViewSnapshot, type ViewSpec, type ViewSummary } from "../../../pipelines/contracts/view.ts";

export const T0 = 1_750_000_000_000;

export interface Svc {
  id: string;
  name: string;
  host: string;
  port: number;
  health: MarkHealth;
  impacted: boolean;
}
export interface Host {
  id: string;
  name: string;
  tier: string;
  site: string;
  health: MarkHealth;
}
export interface Estate {
  hosts: Host[];
  services: Svc[];
  /** service → service calls */
  calls: [string, string][];
}

const TIERS = ["lb", "web", "app", "db"] as const;
const SERVICE_NAMES: Record<(typeof TIERS)[number], string[]> = {
  lb: ["haproxy"],
  web: ["nginx", "frontend"],
  app: ["orders", "payments", "catalog"],
  db: ["postgres", "redis"],
};

/** tiers lb → web → app → db, `perTier` hosts each, services by tier, each calling the next tier round-robin */
export function fixtureEstate(perTier: Record<(typeof TIERS)[number], number> = { lb: 2, web: 6, app: 10, db: 3 }): Estate {
  const hosts: Host[] = [];
  const services: Svc[] = [];
  for (const tier of TIERS) {
    for (let i = 1; i <= perTier[tier]; i++) {
      const name = `sim-${tier}-${i}`;
      hosts.push({ id: `host:${name}`, name, tier, site: i % 2 ? "eu-west" : "us-east", health: "ok" });
      for (const [j, s] of SERVICE_NAMES[tier].entries()) services.push({ id: `service:${name}:${s}`, name: s, host: `host:${name}`, port: 8000 + j, health: "ok", impacted: false });
    }
  }
  const byTier = (t: string) => services.filter((s) => hosts.find((h) => h.id === s.host)!.tier === t);
  const calls: [string, string][] = [];
  for (let t = 0; t < TIERS.length - 1; t++) {
    const from = byTier(TIERS[t]!);
    const to = byTier(TIERS[t + 1]!);
    from.forEach((s, i) => {
      calls.push([s.id, to[i % to.length]!.id]);
      calls.push([s.id, to[(i + 3) % to.length]!.id]);
    });
  }
  return { hosts, services, calls };
}

const RANK: Record<MarkHealth, number> = { ok: 0, unknown: 1, stale: 2, warning: 3, critical: 4 };
const worst = (hs: MarkHealth[]): MarkHealth => hs.reduce<MarkHealth>((w, h) => (RANK[h] > RANK[w] ? h : w), "ok");

/** The view of the estate for a spec: groups by tier or site; open groups show hosts; open hosts show services. */
export function computeView(e: Estate, spec: ViewSpec): { marks: Mark[]; links: Link[]; summary: ViewSummary } {
  const by = spec.groupBy === "site" ? "site" : "tier";
  const layerOf = (tier: string) => Math.max(0, TIERS.indexOf(tier as (typeof TIERS)[number]));
  const open = new Set(spec.open);
  const q = spec.filters.q?.toLowerCase();
  const hf = spec.filters.health;
  const keepSvc = (s: Svc) =>
    (!q || s.name.includes(q) || s.host.includes(q) || s.id.includes(q)) && (!hf || hf.some((h) => (h === "impacted" ? s.impacted : s.health === h)));
  const services = e.services.filter(keepSvc);
  const hostIds = new Set(services.map((s) => s.host));
  const hosts = e.hosts.filter((h) => hostIds.has(h.id));
  const marks: Mark[] = [];
  /** the visible mark each service is drawn as */
  const shownAs = new Map<string, string>();
  const hc = (list: Svc[]) => ({
    critical: list.filter((s) => s.health === "critical").length,
    warning: list.filter((s) => s.health === "warning").length,
    stale: list.filter((s) => s.health === "stale").length,
    impacted: list.filter((s) => s.impacted).length,
  });
  const svcMark = (s: Svc, parent: string | undefined, layer: number): Mark => ({
    id: s.id,
    kind: "service",
    label: s.name,
    sublabel: `on ${s.host.slice(5)}`,
    parent,
    count: 1,
    counts: { process: 1 },
    health: s.health,
    healthCounts: hc([s]),
    impacted: s.impacted,
    layer,
    ports: [s.port],
    lastSeen: T0,
    entityId: s.id,
  });
  const hostMark = (h: Host, parent: string | undefined): Mark => {
    const svcs = services.filter((s) => s.host === h.id);
    return {
      id: h.id,
      kind: "host",
      label: h.name,
      sublabel: `${svcs.length} service${svcs.length === 1 ? "" : "s"}`,
      parent,
      count: svcs.length,
      counts: { host: 1, process: svcs.length },
      health: worst([h.health, ...svcs.map((s) => s.health)]),
      healthCounts: hc(svcs),
      impacted: svcs.some((s) => s.impacted),
      layer: layerOf(h.tier),
      lastSeen: T0,
      entityId: h.id,
    };
  };
  const addHost = (h: Host, parent: string | undefined) => {
    const inside = open.has(h.id) || spec.level === "services";
    marks.push({ ...hostMark(h, parent), open: inside || undefined });
    for (const s of services.filter((x) => x.host === h.id)) {
      if (inside) marks.push(svcMark(s, h.id, 0));
      shownAs.set(s.id, inside ? s.id : h.id);
    }
  };
  if (spec.level === "groups") {
    const keys = [...new Set(hosts.map((h) => h[by]))].sort();
    for (const k of keys) {
      const id = `group:${by}:${k}`;
      const inside = hosts.filter((h) => h[by] === k);
      const svcs = services.filter((s) => inside.some((h) => h.id === s.host));
      marks.push({
        id,
        kind: "group",
        label: k,
        sublabel: "hosts",
        count: inside.length,
        counts: { host: inside.length, process: svcs.length },
        health: worst([...inside.map((h) => h.health), ...svcs.map((s) => s.health)]),
        healthCounts: hc(svcs),
        impacted: svcs.some((s) => s.impacted),
        layer: by === "tier" ? layerOf(k) : 0,
        lastSeen: T0,
        open: open.has(id) || undefined,
      });
      if (open.has(id)) for (const h of inside) addHost(h, id);
      else for (const s of svcs) shownAs.set(s.id, id);
    }
  } else for (const h of hosts) addHost(h, undefined);
  const links = new Map<string, Link>();
  for (const [a, b] of e.calls) {
    const sa = shownAs.get(a);
    const sb = shownAs.get(b);
    if (!sa || !sb || sa === sb) continue;
    const id = `calls:${sa}->${sb}`;
    const h = e.services.find((s) => s.id === b)!.health;
    const prev = links.get(id);
    links.set(id, { id, src: sa, dst: sb, kind: "calls", count: (prev?.count ?? 0) + 1, health: prev ? worst([prev.health, h]) : h });
  }
  const all = e.services;
  const summary: ViewSummary = {
    worst: worst([...all.map((s) => s.health), ...e.hosts.map((h) => h.health)]),
    criticals: all.filter((s) => s.health === "critical").length,
    warnings: all.filter((s) => s.health === "warning").length,
    impactedServices: all.filter((s) => s.impacted).length,
    stale: all.filter((s) => s.health === "stale").length,
    hosts: e.hosts.length,
    services: all.length,
    listeners: 0,
    externals: 0,
    nodes: e.hosts.length + all.length,
    edges: e.calls.length + all.length,
    dataAgeMs: 0,
    marks: marks.length,
    links: links.size,
    linksDropped: 0,
    healthKnown: true,
  };
  return { marks, links: [...links.values()], summary };
}

interface Sock {
  sub?: string;
  spec?: ViewSpec;
  seq: number;
  marks: Map<string, string>;
  links: Map<string, string>;
}

export interface FakeViewGateway {
  url: string;
  port: number;
  estate: Estate;
  /** every spec a page subscribed with, in order */
  subscribed: ViewSpec[];
  readonly connections: number;
  /** recompute every socket's view and send what changed as a view.delta.v1 */
  push(): void;
  stop(): void;
}

export function startViewGateway(dist: string, opts: { port?: number; estate?: Estate; auth?: boolean } = {}): FakeViewGateway {
  const estate = opts.estate ?? fixtureEstate();
  const sockets = new Set<Bun.ServerWebSocket<Sock>>();
  const subscribed: ViewSpec[] = [];
  let rev = 10;
  const send = (ws: Bun.ServerWebSocket<Sock>) => {
    const spec = ws.data.spec!;
    const v = computeView(estate, spec);
    ws.data.seq++;
    ws.data.marks = new Map(v.marks.map((m) => [m.id, JSON.stringify(m)]));
    ws.data.links = new Map(v.links.map((l) => [l.id, JSON.stringify(l)]));
    const snap: ViewSnapshot = { schema: "view.snapshot.v1", sub: ws.data.sub, seq: ws.data.seq, rev, at: Date.now(), spec, ...v };
    ws.send(JSON.stringify(snap));
  };
  const server = Bun.serve<Sock, never>({
    hostname: "127.0.0.1",
    port: opts.port ?? 0,
    async fetch(req, srv) {
      const url = new URL(req.url);
      if (opts.auth && (url.pathname === "/ws" || url.pathname.startsWith("/api/"))) return Response.json({ error: "login required" }, { status: 401 });
      if (url.pathname === "/login") return new Response(`<!doctype html><title>login</title><p id="login">login page</p>`, { headers: { "content-type": "text/html" } });
      if (url.pathname === "/ws") {
        return srv.upgrade(req, { data: { seq: -1, marks: new Map(), links: new Map() } }) ? undefined : new Response("upgrade failed", { status: 400 });
      }
      if (url.pathname === "/api/view") {
        const p = specFromParam(url.searchParams.get("spec"));
        if (!p.ok) return Response.json({ error: p.error }, { status: 400 });
        return Response.json({ schema: "view.snapshot.v1", seq: 0, rev, at: Date.now(), spec: p.spec, ...computeView(estate, p.spec) } satisfies ViewSnapshot);
      }
      if (url.pathname === "/api/view/search") {
        const q = (url.searchParams.get("q") ?? "").toLowerCase();
        const items = [
          ...estate.hosts.map((h) => ({ id: h.id, kind: "host" as const, label: h.name, health: h.health, impacted: false })),
          ...estate.services.map((x) => ({ id: x.id, kind: "service" as const, label: x.name, sublabel: `on ${x.host.slice(5)}`, health: x.health, impacted: x.impacted })),
        ].filter((it) => it.id.includes(q) || it.label.includes(q));
        return Response.json({ q, total: items.length, items: items.slice(0, Number(url.searchParams.get("limit") ?? 50)) } satisfies ViewSearch);
      }
      if (url.pathname === "/api/topology/range") return Response.json({ earliest: null, latest: null, now: Date.now() });
      if (url.pathname.startsWith("/api/")) return Response.json({ error: "not here" }, { status: 404 });
      const rel = normalize(decodeURIComponent(url.pathname === "/" ? "/index.html" : url.pathname)).replace(/^[/\\]+/, "");
      const path = join(dist, rel);
      if (!path.startsWith(dist + sep)) return new Response("forbidden", { status: 403 });
      const file = Bun.file(path);
      return (await file.exists()) ? new Response(file) : new Response("not found", { status: 404 });
    },
    websocket: {
      open(ws) {
        sockets.add(ws);
      },
      close(ws) {
        sockets.delete(ws);
      },
      message(ws, raw) {
        const m = ClientMessage.safeParse(JSON.parse(String(raw)));
        if (!m.success || m.data.type !== "view.subscribe") return;
        ws.data.sub = m.data.id;
        ws.data.spec = m.data.spec;
        subscribed.push(m.data.spec);
        send(ws);
      },
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}/`,
    port: server.port!,
    estate,
    subscribed,
    get connections() {
      return sockets.size;
    },
    push() {
      rev++;
      for (const ws of sockets) {
        if (!ws.data.spec) continue;
        const v = computeView(estate, ws.data.spec);
        const marks = new Map(v.marks.map((m) => [m.id, JSON.stringify(m)]));
        const links = new Map(v.links.map((l) => [l.id, JSON.stringify(l)]));
        const up = v.marks.filter((m) => ws.data.marks.get(m.id) !== marks.get(m.id));
        const lup = v.links.filter((l) => ws.data.links.get(l.id) !== links.get(l.id));
        const gone = [...ws.data.marks.keys()].filter((id) => !marks.has(id));
        const lgone = [...ws.data.links.keys()].filter((id) => !links.has(id));
        ws.data.marks = marks;
        ws.data.links = links;
        ws.data.seq++;
        ws.send(
          JSON.stringify({ schema: "view.delta.v1", sub: ws.data.sub, seq: ws.data.seq, rev, at: Date.now(), marksUpserted: up, marksRemoved: gone, linksUpserted: lup, linksRemoved: lgone, summary: v.summary }),
        );
      }
    },
    stop: () => server.stop(true),
  };
}
