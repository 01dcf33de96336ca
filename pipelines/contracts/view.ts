/**
 * view.*.v1 — levels of detail computed on the gateway, so a page (a wallboard on a TV's browser) holds only what it
 * draws, never a 100k-node mirror.
 *
 * A client sends `view.subscribe` with a ViewSpec over the gateway's `/ws` (again to change view); from then on that
 * socket gets `view.snapshot.v1`, then `view.delta.v1` frames coalesced to a few per second, and no raw topology or
 * health frame. A socket that never subscribes keeps the raw stream. A page that only wants views opens `/ws?view`:
 * the gateway then never starts the raw stream on it (a 10k-host topology snapshot is 134 MB), even before its
 * subscribe arrives. `GET /api/view?spec=<url-encoded JSON>` answers
 * the same snapshot (with `spec.at`: computed from topology history at that time).
 *
 * Marks are what a renderer draws: groups (by tier, team, owner, site, component or host), hosts, services,
 * processes, listeners and externals. Every mark id is stable (a group's is `group:<by>:<key>`, externals' group is
 * `group:external`, an open service's process mark is `processes-of:<service id>`, any other mark's is its topology
 * node id), so a delta upserts and removes marks by id. Marks come parents first, children in id order; links in id
 * order. `open` lists mark ids expanded in place: a group opens
 * into its hosts or services, a host into its services, a service into its processes and listeners. The number of
 * marks stays under VIEW_MAX_MARKS whatever the estate: a mark that cannot open within it stays closed and says why
 * (`note`).
 */
import { z } from "zod";
import { EpochMs, Id, Port } from "./common.ts";

/** Marks in one view at most (the page draws them all): an open that would pass it is refused, with a note. */
export const VIEW_MAX_MARKS = 2500;
/** Links in one view at most: past it the ones with the fewest underlying edges (healthy first) are left out. */
export const VIEW_MAX_LINKS = 10_000;

export const ViewLevel = z.enum(["groups", "hosts", "services", "detail"]);
export type ViewLevel = z.infer<typeof ViewLevel>;
/** tier, site and host group hosts (with their services inside); team, owner and component group services. */
export const GroupBy = z.enum(["tier", "team", "owner", "site", "component", "host"]);
export type GroupBy = z.infer<typeof GroupBy>;
export const FocusDir = z.enum(["up", "down", "both"]);
export type FocusDir = z.infer<typeof FocusDir>;

export const MarkKind = z.enum(["group", "host", "service", "process", "listener", "external"]);
export type MarkKind = z.infer<typeof MarkKind>;
/** Worst first: critical > warning > stale > unknown > ok (see HEALTH_RANK). */
export const MarkHealth = z.enum(["ok", "warning", "critical", "unknown", "stale"]);
export type MarkHealth = z.infer<typeof MarkHealth>;
export const HEALTH_RANK: Readonly<Record<MarkHealth, number>> = { ok: 0, unknown: 1, stale: 2, warning: 3, critical: 4 };

export const ViewFocus = z.object({
  /** a mark id: a topology node id, or a group id (`group:tier:app`) */
  id: Id,
  hops: z.number().int().min(1).max(6).default(2),
  /** up: what depends on it (callers); down: what it depends on; both */
  dir: FocusDir.default("both"),
});
export type ViewFocus = z.infer<typeof ViewFocus>;

/**
 * Filters keep the entities that match every filter given, and what contains them (a host with a critical service
 * stays when filtering on critical); groups count only what is kept. `kinds` are entity kinds: "service" and
 * "process" both mean a service (topology kind "process").
 */
export const ViewFilters = z.object({
  kinds: z.array(z.enum(["host", "service", "process", "listener", "external"])).max(5).optional(),
  health: z.array(z.union([MarkHealth, z.literal("impacted")])).max(6).optional(),
  /** team or owner (an `entity.annotated` prop), exact */
  team: z.string().min(1).max(256).optional(),
  /** `key` (the prop is set) or `key=value` on any prop, exact */
  tag: z.string().min(1).max(512).optional(),
  /** a listening port of the service, or an external's port */
  port: Port.optional(),
  /** case-insensitive substring of the short name, host name, node id or DNS name */
  q: z.string().min(1).max(256).optional(),
});
export type ViewFilters = z.infer<typeof ViewFilters>;

export const ViewSpec = z.object({
  level: ViewLevel.default("groups"),
  groupBy: GroupBy.default("tier"),
  /** mark ids expanded in place */
  open: z.array(Id).max(200).default([]),
  focus: ViewFocus.optional(),
  filters: ViewFilters.default({}),
  /** time travel: the view of the graph as it was at this time (epoch ms) */
  at: EpochMs.optional(),
});
export type ViewSpec = z.infer<typeof ViewSpec>;
export type ViewSpecInput = z.input<typeof ViewSpec>;

/** Health inside a mark, by entity (a group with 3 critical services says critical: 3). */
export const HealthCounts = z.object({
  critical: z.number().int().nonnegative(),
  warning: z.number().int().nonnegative(),
  stale: z.number().int().nonnegative(),
  impacted: z.number().int().nonnegative(),
});
export type HealthCounts = z.infer<typeof HealthCounts>;

export const Mark = z.object({
  id: Id,
  kind: MarkKind,
  /** a name people use: `orders`, `sim-app-3`, `api.stripe.com:443`, `app` */
  label: z.string().max(512),
  /** e.g. `on sim-app-3` for a service, `tcp/8080` for a listener, `tier` for a group */
  sublabel: z.string().max(512).optional(),
  /** the mark it is drawn inside (an open group, host or service) */
  parent: Id.optional(),
  /** entities inside (hosts, services, listeners, externals); 1 for a leaf */
  count: z.number().int().nonnegative(),
  /** entities inside by topology kind (host, process, listener, external) */
  counts: z.record(z.string().max(32), z.number().int().nonnegative()),
  health: MarkHealth,
  healthCounts: HealthCounts,
  impacted: z.boolean(),
  /** DEPENDS_ON depth among the view's marks: callers at 0 (left), what they depend on to the right */
  layer: z.number().int().nonnegative(),
  /** listening ports folded into a service; a listener's or an external's port */
  ports: z.array(Port).max(64).optional(),
  team: z.string().max(256).optional(),
  owner: z.string().max(256).optional(),
  /** newest lastSeen inside, to the minute (so the store's lastSeen trickle does not rewrite every mark) */
  lastSeen: EpochMs,
  /** the topology node id it stands for (host, service, listener, external; a groupBy-host group: its host) */
  entityId: Id.optional(),
  /** shown expanded (its children are marks with parent = its id) */
  open: z.boolean().optional(),
  /** why it is not open although asked, e.g. "1,204 hosts: too many to open here (filter or focus)" */
  note: z.string().max(512).optional(),
});
export type Mark = z.infer<typeof Mark>;

export const LinkKind = z.enum(["calls", "runs", "listens", "depends"]);
export type LinkKind = z.infer<typeof LinkKind>;

export const Link = z.object({
  /** `<kind>:<src>-><dst>` */
  id: Id,
  src: Id,
  dst: Id,
  kind: LinkKind,
  /** underlying topology edges */
  count: z.number().int().positive(),
  /** worst health among them: an unhealthy call is coloured */
  health: MarkHealth,
});
export type Link = z.infer<typeof Link>;

/** The estate at a glance (the whole estate, not only what the filters keep): the wallboard's big status. */
export const ViewSummary = z.object({
  worst: MarkHealth,
  criticals: z.number().int().nonnegative(),
  warnings: z.number().int().nonnegative(),
  impactedServices: z.number().int().nonnegative(),
  stale: z.number().int().nonnegative(),
  hosts: z.number().int().nonnegative(),
  services: z.number().int().nonnegative(),
  /** listeners and externals in the estate (the header's kind counts); absent from older gateways */
  listeners: z.number().int().nonnegative().default(0),
  externals: z.number().int().nonnegative().default(0),
  nodes: z.number().int().nonnegative(),
  edges: z.number().int().nonnegative(),
  /** ms since the gateway last heard from the topology or alerts feed (or since `at` when time travelling) */
  dataAgeMs: z.number().int().nonnegative(),
  /** what this view holds, and what it left out to stay drawable */
  marks: z.number().int().nonnegative(),
  links: z.number().int().nonnegative(),
  linksDropped: z.number().int().nonnegative().default(0),
  /** the health overlay is known (false: no alerts service yet, health reads "ok"/"unknown" for lack of data) */
  healthKnown: z.boolean().default(true),
});
export type ViewSummary = z.infer<typeof ViewSummary>;

export const ViewSnapshot = z.object({
  schema: z.literal("view.snapshot.v1"),
  /** the client's subscribe id, echoed, so frames of an older subscription can be told apart */
  sub: z.string().max(128).optional(),
  /** numbers this socket's view frames: a delta is seq+1 of the frame before it; a gap means resubscribe */
  seq: z.number().int().nonnegative(),
  /** topology rev the view was computed at */
  rev: z.number().int().nonnegative(),
  at: EpochMs,
  spec: ViewSpec,
  marks: z.array(Mark),
  links: z.array(Link),
  summary: ViewSummary,
});
export type ViewSnapshot = z.infer<typeof ViewSnapshot>;

export const ViewDelta = z.object({
  schema: z.literal("view.delta.v1"),
  sub: z.string().max(128).optional(),
  seq: z.number().int().positive(),
  rev: z.number().int().nonnegative(),
  at: EpochMs,
  marksUpserted: z.array(Mark),
  marksRemoved: z.array(Id),
  linksUpserted: z.array(Link),
  linksRemoved: z.array(Id),
  /** present when it changed */
  summary: ViewSummary.optional(),
});
export type ViewDelta = z.infer<typeof ViewDelta>;

export const ViewErrorCode = z.enum(["bad_request", "not_synced", "unavailable"]);
export const ViewError = z.object({
  schema: z.literal("view.error.v1"),
  sub: z.string().max(128).optional(),
  code: ViewErrorCode,
  error: z.string().max(4096),
});
export type ViewError = z.infer<typeof ViewError>;

export const ViewFrame = z.discriminatedUnion("schema", [ViewSnapshot, ViewDelta, ViewError]);
export type ViewFrame = z.infer<typeof ViewFrame>;

/** Client → gateway over /ws. Send again to change view (the reply is a fresh snapshot). */
export const ViewSubscribe = z.object({
  type: z.literal("view.subscribe"),
  /** echoed as `sub` in every frame of this subscription */
  id: z.string().max(128).optional(),
  spec: ViewSpec,
});
export type ViewSubscribe = z.infer<typeof ViewSubscribe>;
/** Back to the raw topology/health stream (a fresh snapshot follows). */
export const ViewUnsubscribe = z.object({ type: z.literal("view.unsubscribe") });
export const ClientMessage = z.discriminatedUnion("type", [ViewSubscribe, ViewUnsubscribe]);
export type ClientMessage = z.infer<typeof ClientMessage>;

/** `GET /api/view/entity?id=`: one entity for a drawer, with its short name and health (a page holds no mirror). */
export const ViewEntity = z.object({
  id: Id,
  kind: z.string().max(32),
  label: z.string().max(512),
  sublabel: z.string().max(512).optional(),
  health: MarkHealth,
  impacted: z.boolean(),
  alerts: z.array(Id),
  /** the topology node as stored (props include the fingerprint, owner/team, annotatedBy) */
  node: z.record(z.string(), z.unknown()),
  /** neighbours by edge kind and direction, each with its short name (at most 200 per list) */
  neighbours: z.array(z.object({ id: Id, kind: z.string(), label: z.string(), sublabel: z.string().optional(), edge: z.string(), dir: z.enum(["in", "out"]) })),
});
export type ViewEntity = z.infer<typeof ViewEntity>;

/** `GET /api/view/search?q=&limit=`: entities by short name, each with its host (no identical rows). */
export const ViewSearch = z.object({
  q: z.string(),
  total: z.number().int().nonnegative(),
  items: z.array(z.object({ id: Id, kind: MarkKind, label: z.string(), sublabel: z.string().optional(), health: MarkHealth, impacted: z.boolean() })),
});
export type ViewSearch = z.infer<typeof ViewSearch>;

/** A ViewSpec from the `spec` query parameter (URL-encoded JSON); absent means the default view. */
export function specFromParam(raw: string | null): { ok: true; spec: ViewSpec } | { ok: false; error: string } {
  let json: unknown = {};
  if (raw !== null && raw !== "") {
    try {
      json = JSON.parse(raw);
    } catch (e) {
      return { ok: false, error: `spec is not JSON: ${(e as Error).message}` };
    }
  }
  const r = ViewSpec.safeParse(json);
  if (!r.success) return { ok: false, error: `bad spec: ${r.error.issues.map((i) => `${i.path.join(".") || "spec"}: ${i.message}`).join("; ")}` };
  return { ok: true, spec: r.data };
}
