/**
 * broker.* — the Open Service Broker API (v2.13 – v2.17) as Orrery's broker speaks it (services/broker/), and the
 * records it keeps in its JetStream KV bucket. Request bodies are validated here once; the spec's own words on each
 * field are quoted where a choice follows from them. Spec: github.com/openservicebrokerapi/servicebroker spec.md.
 */
import { z } from "zod";
import { ViewSpec } from "./view.ts";

/** The lowest X-Broker-API-Version accepted ("API Version Header": 412 for a version the broker does not support). */
export const OSB_MIN_VERSION = { major: 2, minor: 13 } as const;

/**
 * "Service Broker Errors": an error response carries `error` (a machine-readable code from the spec's list) and
 * `description` (for a human); `instance_usable` / `update_repeatable` qualify a failed update.
 */
export const OsbErrorCode = z.enum(["AsyncRequired", "ConcurrencyError", "RequiresApp", "MaintenanceInfoConflict"]);
export type OsbErrorCode = z.infer<typeof OsbErrorCode>;
export const OsbError = z.object({
  error: z.string().optional(),
  description: z.string().optional(),
  instance_usable: z.boolean().optional(),
  update_repeatable: z.boolean().optional(),
});
export type OsbError = z.infer<typeof OsbError>;

/** Redundancy as the placement strategy writes it (pipelines/strategy/schema.ts). */
const Redundancy = z.union([z.enum(["1:1", "2:1"]), z.string().regex(/^\+[0-9]$/, "+0 … +9")]);
const Pick = z.enum(["first", "random", "cheapest"]);

/** Where a tenant runs: the strategy's pick mode and redundancy, for this instance only. */
export const PlacementParams = z
  .object({
    pick: Pick.default("first").describe("how a pool is chosen among those with room: first (in strategy order), random, cheapest"),
    redundancy: Redundancy.default("+0").describe("standby pools: 1:1 one per active, 2:1 one per two actives, +N N spare"),
  })
  .strict();

const Label = z.string().min(1).max(64).regex(/^[a-zA-Z0-9_.-]+$/, "letters, digits, _ . and - only");

/** Plan `host-agents`: agents on the platform's hosts publish discovery and metrics under the tenant's prefix. */
export const HostAgentsParams = z
  .object({
    placement: PlacementParams.optional(),
    /** the dashboard view's grouping */
    group_by: z.enum(["tier", "team", "owner", "site", "component", "host"]).default("tier"),
    /** hosts the platform expects to run an agent (a soft quota: the broker records it, NATS does not count) */
    max_hosts: z.number().int().min(1).max(10_000).default(100),
  })
  .strict();
export type HostAgentsParams = z.infer<typeof HostAgentsParams>;

/** Plan `agentless-probes`: the jobs service's workers probe targets on the tenant's behalf. */
export const AgentlessProbesParams = z
  .object({
    placement: PlacementParams.optional(),
    group_by: z.enum(["tier", "team", "owner", "site", "component", "host"]).default("tier"),
    /** host names or IPv4 addresses the probes reach */
    targets: z.array(z.string().min(1).max(253).regex(/^[a-zA-Z0-9_.:-]+$/, "a host name or address")).min(1).max(1000),
    /** TCP ports the scan tries (the jobs service's tcp-scan package) */
    ports: z.array(z.number().int().min(1).max(65535)).min(1).max(100).default([22, 80, 443]),
    /** the interval a recurring scan should run at (recorded; the jobs service takes schedules from its file only) */
    interval_s: z.number().int().min(10).max(86_400).default(300),
  })
  .strict();
export type AgentlessProbesParams = z.infer<typeof AgentlessProbesParams>;

/** Plan `wallboard`: a read-only view of the platform's part of the estate (a kiosk URL per binding). */
export const WallboardParams = z
  .object({
    placement: PlacementParams.optional(),
    group_by: z.enum(["tier", "team", "owner", "site", "component", "host"]).default("site"),
    level: z.enum(["groups", "hosts", "services"]).default("groups"),
  })
  .strict();
export type WallboardParams = z.infer<typeof WallboardParams>;

/** Binding parameters (all plans). */
export const BindParams = z
  .object({
    /** names the NATS user and the kiosk token, for the platform's operators */
    name: Label.optional(),
  })
  .strict();
export type BindParams = z.infer<typeof BindParams>;

export type PlanName = "host-agents" | "agentless-probes" | "wallboard";

/** "Service Instance Context Object" and other free-form objects: any JSON object. */
const JsonObject = z.record(z.string(), z.unknown());
const MaintenanceInfo = z.object({ version: z.string().min(1), description: z.string().optional() });

/** "Provisioning" request body: service_id and plan_id are REQUIRED; organization_guid/space_guid are deprecated. */
export const ProvisionRequest = z.object({
  service_id: z.string().min(1),
  plan_id: z.string().min(1),
  context: JsonObject.optional(),
  organization_guid: z.string().optional(),
  space_guid: z.string().optional(),
  parameters: JsonObject.optional(),
  maintenance_info: MaintenanceInfo.optional(),
});
export type ProvisionRequest = z.infer<typeof ProvisionRequest>;

/** "Updating a Service Instance" request body: service_id REQUIRED, plan_id only when the plan changes. */
export const UpdateRequest = z.object({
  service_id: z.string().min(1),
  plan_id: z.string().min(1).optional(),
  context: JsonObject.optional(),
  parameters: JsonObject.optional(),
  previous_values: JsonObject.optional(),
  maintenance_info: MaintenanceInfo.optional(),
});
export type UpdateRequest = z.infer<typeof UpdateRequest>;

/** "Binding" request body. */
export const BindRequest = z.object({
  service_id: z.string().min(1),
  plan_id: z.string().min(1),
  context: JsonObject.optional(),
  app_guid: z.string().optional(),
  bind_resource: JsonObject.optional(),
  parameters: JsonObject.optional(),
});
export type BindRequest = z.infer<typeof BindRequest>;

export const OperationState = z.enum(["in progress", "succeeded", "failed"]);
export type OperationState = z.infer<typeof OperationState>;

/** An asynchronous (or synchronous) operation on an instance or binding, as last_operation reports it. */
export const Operation = z.object({
  id: z.string(),
  type: z.enum(["provision", "update", "deprovision", "bind", "unbind"]),
  state: OperationState,
  description: z.string().optional(),
  /** the next step to run (steps are idempotent: a broker restarted mid-operation runs the step again) */
  step: z.number().int().min(0),
  startedAt: z.number(),
  /** update: what to go back to if the update fails (instance_usable stays true) */
  previous: z.object({ plan_id: z.string(), parameters: JsonObject }).optional(),
});
export type Operation = z.infer<typeof Operation>;

/** Where a tenant runs: the pools the placement chose. */
export const TenantPlacement = z.object({ active: z.array(z.string()), standby: z.array(z.string()), degraded: z.string().nullable() });
export type TenantPlacement = z.infer<typeof TenantPlacement>;

/** A scoped tenant: what a provision creates. */
export const Tenant = z.object({
  /** t + 12 hex characters, derived from the instance id */
  id: z.string().regex(/^t[a-f0-9]{12}$/),
  /** subjects its agents publish under: <prefix>.discovery.v1.<tenant>.<host> and <prefix>.metrics.v1.<tenant>.<source> */
  subjects: z.object({ discovery: z.string(), metrics: z.string() }),
  /** the discovery source its entities carry */
  graphSource: z.string(),
  /** the dashboard's view of the tenant */
  view: ViewSpec,
  dashboardUrl: z.string(),
  placement: TenantPlacement.optional(),
});
export type Tenant = z.infer<typeof Tenant>;

/** KV record of an instance. `gone`: deprovisioned (kept so last_operation can answer 410 Gone). */
export const InstanceRecord = z.object({
  instance_id: z.string(),
  service_id: z.string(),
  plan_id: z.string(),
  parameters: JsonObject,
  context: JsonObject.optional(),
  organization_guid: z.string().optional(),
  space_guid: z.string().optional(),
  maintenance_info: MaintenanceInfo.optional(),
  state: z.enum(["provisioning", "ready", "failed", "deprovisioning", "gone"]),
  tenant: Tenant,
  op: Operation,
  createdAt: z.number(),
});
export type InstanceRecord = z.infer<typeof InstanceRecord>;

/** NATS credentials a binding hands out: an nkey user limited to the tenant's subjects. */
export const NatsCredentials = z.object({
  url: z.string(),
  /** the user's public nkey (U…), as it goes into nats-server's authorization block */
  nkey: z.string(),
  /** the user's seed (SU…): the agent signs the server's nonce with it (nats.js `nkeyAuthenticator`) */
  seed: z.string(),
  permissions: z.object({ publish: z.object({ allow: z.array(z.string()) }), subscribe: z.object({ allow: z.array(z.string()) }) }),
});
export type NatsCredentials = z.infer<typeof NatsCredentials>;

export const BindingCredentials = z.object({
  nats: NatsCredentials,
  subject_prefix: z.string(),
  discovery_subject: z.string(),
  metrics_subject: z.string(),
  graph_source: z.string(),
  dashboard_url: z.string(),
  /** a kiosk URL (a viewer session from a kiosk token) when the broker can write identity tokens */
  kiosk_url: z.string().optional(),
});
export type BindingCredentials = z.infer<typeof BindingCredentials>;

export const BindingRecord = z.object({
  instance_id: z.string(),
  binding_id: z.string(),
  service_id: z.string(),
  plan_id: z.string(),
  parameters: JsonObject,
  app_guid: z.string().optional(),
  bind_resource: JsonObject.optional(),
  context: JsonObject.optional(),
  state: z.enum(["binding", "ready", "failed", "unbinding", "gone"]),
  credentials: BindingCredentials.optional(),
  /** the identity token id of the kiosk URL (revoked at unbind) */
  kioskTokenId: z.string().optional(),
  op: Operation,
  createdAt: z.number(),
});
export type BindingRecord = z.infer<typeof BindingRecord>;
