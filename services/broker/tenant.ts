/**
 * What a provision creates and a bind hands out (pure): the tenant's subjects, graph source and dashboard view, its
 * placement over the strategy's pools, and a NATS user limited to the tenant's subjects.
 *
 * Subjects: a tenant's agents publish under `<prefix>.discovery.v1.<tenant>.>` and `<prefix>.metrics.v1.<tenant>.>`.
 * Both fall inside the install's DISCOVERY and METRICS streams (whose subjects end in `>`), so the existing topology
 * and metrics services take the tenant's data with no change, and a NATS permission on the tenant's token confines a
 * user to its own subjects (NATS permissions work on whole tokens, which is why the tenant is a token of its own).
 */
import { createHash } from "node:crypto";
import { createUser } from "@nats-io/nkeys";
import { ViewSpec } from "../../pipelines/contracts/view.ts";
import type { BindingCredentials, NatsCredentials, PlanName, Tenant, TenantPlacement } from "../../pipelines/contracts/broker.ts";
import { place } from "../../pipelines/strategy/place.ts";
import type { PickMode, Redundancy, Strategy } from "../../pipelines/strategy/schema.ts";

export const tenantIdOf = (instanceId: string): string => `t${createHash("sha256").update(instanceId).digest("hex").slice(0, 12)}`;

export interface TenantInput {
  instanceId: string;
  plan: PlanName;
  params: { group_by?: string; level?: string };
  /** the install's subject prefix (ORRERY_PREFIX) */
  prefix: string;
  /** the gateway's public URL, for the dashboard link */
  gatewayUrl: string;
}

/** The dashboard's URL parameters for a view (the same names dashboard/src/lib/view-url.ts reads). */
function viewParams(v: ViewSpec): URLSearchParams {
  const p = new URLSearchParams();
  p.set("level", v.level);
  p.set("group", v.groupBy);
  if (v.filters.tag) p.set("tag", v.filters.tag);
  return p;
}

export function tenantFor(i: TenantInput): Omit<Tenant, "placement"> {
  const id = tenantIdOf(i.instanceId);
  // Entities of the tenant carry the prop tenant=<id> (the agent sets it from the binding's graph_source), so the
  // view is a tag filter: a wallboard of the tenant's part of the estate.
  const view = ViewSpec.parse({
    level: i.plan === "wallboard" ? (i.params.level ?? "groups") : "hosts",
    groupBy: i.params.group_by ?? "tier",
    filters: { tag: `tenant=${id}` },
  });
  return {
    id,
    subjects: { discovery: `${i.prefix}.discovery.v1.${id}`, metrics: `${i.prefix}.metrics.v1.${id}` },
    graphSource: `tenant:${id}`,
    view,
    dashboardUrl: `${i.gatewayUrl.replace(/\/$/, "")}/?${viewParams(view).toString()}`,
  };
}

/** The demo's strategy when none is configured: one local pool with room for many tenants. */
export const DEFAULT_STRATEGY: Strategy = { version: 1, pools: [{ name: "local", site: "local", provider: "local", cost: 0, capacity: 1000 }] };

/**
 * A tenant's pools, per the placement strategy: each pool stands for one slot holder (its capacity = tenants it
 * takes), and the strategy's own placement (pipelines/strategy/place.ts) picks actives and standbys over them, sticky
 * for the tenants already placed.
 */
export function placeTenant(o: {
  strategy: Strategy;
  tenant: string;
  pick: PickMode;
  redundancy: Redundancy;
  existing: { tenant: string; placement: TenantPlacement; pick: PickMode; redundancy: Redundancy }[];
  random?: () => number;
}): TenantPlacement {
  const workers = o.strategy.pools.map((p) => ({ id: p.name, types: ["tenant"], pool: p.name, labels: {} }));
  const others = o.existing.filter((e) => e.tenant !== o.tenant);
  const jobs: Strategy["jobs"] = { ...o.strategy.jobs };
  for (const e of others) jobs[e.tenant] = { count: 1, pick: e.pick, redundancy: e.redundancy };
  jobs[o.tenant] = { count: 1, pick: o.pick, redundancy: o.redundancy };
  const placements = place({
    strategy: { ...o.strategy, jobs },
    workers,
    requests: [...others.map((e) => ({ job: e.tenant, workerType: "tenant" })), { job: o.tenant, workerType: "tenant" }],
    previous: others.map((e) => ({ job: e.tenant, workerType: "tenant", ...e.placement })),
    random: o.random,
  });
  const mine = placements.find((p) => p.job === o.tenant);
  return mine ? { active: mine.active, standby: mine.standby, degraded: mine.degraded } : { active: [], standby: [], degraded: "not placed" };
}

/**
 * A NATS user for one binding: an nkey pair (the seed goes to the agent, the public key into nats-server's
 * authorization), allowed to publish only under the tenant's subjects and to receive replies on its own inbox.
 */
export function natsUserFor(t: Pick<Tenant, "subjects">, natsUrl: string): NatsCredentials {
  const kp = createUser();
  return {
    url: natsUrl,
    nkey: kp.getPublicKey(),
    seed: new TextDecoder().decode(kp.getSeed()),
    permissions: { publish: { allow: [`${t.subjects.discovery}.>`, `${t.subjects.metrics}.>`] }, subscribe: { allow: ["_INBOX.>"] } },
  };
}

export function credentialsFor(t: Tenant, nats: NatsCredentials, kioskUrl?: string): BindingCredentials {
  return {
    nats,
    subject_prefix: t.subjects.discovery.slice(0, t.subjects.discovery.indexOf(".discovery.v1.")),
    discovery_subject: `${t.subjects.discovery}.<host>`,
    metrics_subject: `${t.subjects.metrics}.<source>`,
    graph_source: t.graphSource,
    dashboard_url: t.dashboardUrl,
    ...(kioskUrl ? { kiosk_url: kioskUrl } : {}),
  };
}

/**
 * nats-server's `authorization` block for the given users (nats.conf syntax, which accepts JSON values), to be
 * included in the server's configuration and applied with a reload (`nats-server --signal reload`). A user removed
 * here (an unbind) can no longer connect after that reload.
 */
export function authorizationBlock(users: NatsCredentials[], service?: { user: string; password: string }): string {
  const entries: unknown[] = users.map((u) => ({ nkey: u.nkey, permissions: u.permissions }));
  if (service) entries.unshift({ user: service.user, password: service.password });
  return `authorization {\n  users: ${JSON.stringify(entries, null, 2).replace(/\n/g, "\n  ")}\n}\n`;
}
