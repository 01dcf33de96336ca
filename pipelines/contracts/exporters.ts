/**
 * ITSM exporters: the configuration file (ORRERY_EXPORTERS_CONFIG, JSON or YAML) that says which vendor each exporter
 * writes to and how Orrery's entities, relationships and alerts map onto the vendor's classes and attributes, and
 * what an exporter reports about itself (GET /api/exporters, `/metrics` of the exporter service).
 *
 * Mapping is data: an attribute's value is a source expression — `id`, `name`, `kind`, `source`, `props.<key>`,
 * `host` (the name of the host the entity belongs to) or `=<literal>`.
 */
import { z } from "zod";

export const VendorName = z.enum(["servicenow", "jsm", "itop", "webhook"]);
export type VendorName = z.infer<typeof VendorName>;

/** A value expression of the mapping (see the module header). */
export const SourceExpr = z
  .string()
  .regex(/^(id|name|kind|source|host|props\.[^\s]{1,128}|=.*)$/s, "expected id, name, kind, source, host, props.<key> or =<literal>");
export type SourceExpr = z.infer<typeof SourceExpr>;

export const ClassMapping = z.strictObject({
  /** the vendor's class: ServiceNow className, JSM object type id, iTop class; the webhook's CloudEvents type suffix */
  class: z.string().min(1).max(128),
  /** vendor attribute → source expression */
  attributes: z.record(z.string().min(1).max(128), SourceExpr).default({}),
  /** vendor attributes that identify the item (ServiceNow lookup / iTop reconciliation key); default: the first attribute */
  keys: z.array(z.string().min(1).max(128)).default([]),
});
export type ClassMapping = z.infer<typeof ClassMapping>;

export const NodeKindName = z.enum(["host", "process", "listener", "external"]);
export const EdgeKindName = z.enum(["RUNS", "LISTENS", "CONNECTS", "DEPENDS_ON"]);

/** Secrets are never in the file: the exporter reads the named environment variable at start. */
export const Auth = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("none") }),
  z.strictObject({ type: z.literal("basic"), user: z.string().min(1), passwordEnv: z.string().regex(/^[A-Z_][A-Z0-9_]*$/) }),
  z.strictObject({ type: z.literal("bearer"), tokenEnv: z.string().regex(/^[A-Z_][A-Z0-9_]*$/) }),
]);
export type Auth = z.infer<typeof Auth>;

export const IncidentMapping = z.strictObject({
  enabled: z.boolean().default(true),
  /** the least health that opens an incident */
  minHealth: z.enum(["warning", "critical"]).default("critical"),
  /** vendor field → source expression of the entity (or a literal); the summary and alert list are added by the adapter */
  fields: z.record(z.string().min(1).max(128), SourceExpr).default({}),
});
export type IncidentMapping = z.infer<typeof IncidentMapping>;

export const ExporterConfig = z.strictObject({
  /** a subject token: names the durables (exporter-<name>-…) and the KV keys */
  name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,47}$/, "expected [a-z0-9][a-z0-9_-]{0,47}"),
  vendor: VendorName,
  /** the vendor's base URL (the webhook's full URL) */
  url: z.url(),
  auth: Auth.default({ type: "none" }),
  /** requests per second to the vendor (a token bucket; bursts up to one second's worth) */
  ratePerSecond: z.number().positive().max(10_000).default(20),
  timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  /** requests in flight at once for the distinct entities of one delta (an entity's own changes are never concurrent) */
  concurrency: z.number().int().min(1).max(64).default(8),
  /** node kind → vendor class; a kind without an entry is not exported */
  classes: z.partialRecord(NodeKindName, ClassMapping).default({}),
  /** edge kind → vendor relation type (ServiceNow "Depends on::Used by", a JSM reference type id, an iTop link class) */
  relations: z.partialRecord(EdgeKindName, z.string().min(1).max(128)).default({}),
  /**
   * registry components (registry.v1 component.put / component.deleted) → vendor class; unset: the registry is not
   * exported. Their props are the component's fields (lists joined with ", "), e.g. props.lifecycle, props.owners.
   */
  components: ClassMapping.optional(),
  incidents: IncidentMapping.default({ enabled: true, minHealth: "critical", fields: {} }),
  /** vendor-specific settings (ServiceNow data source, JSM workspace/schema, iTop version, webhook secret env) */
  options: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
});
export type ExporterConfig = z.infer<typeof ExporterConfig>;
export type ExporterConfigInput = z.input<typeof ExporterConfig>;

export const ExportersFile = z
  .strictObject({ exporters: z.array(ExporterConfig).min(1).max(32) })
  .refine((f) => new Set(f.exporters.map((e) => e.name)).size === f.exporters.length, { message: "exporter names must be unique" });
export type ExportersFile = z.infer<typeof ExportersFile>;

/** One exporter's counters, as GET /api/exporters and `/metrics` show them. */
export const ExporterStatus = z.object({
  name: z.string(),
  vendor: VendorName,
  /** backfilling from a snapshot, following deltas, or stopped */
  phase: z.enum(["backfill", "following", "stopped"]),
  /** topology rev of the last delta exported (the snapshot's rev after a backfill) */
  rev: z.number().int().nonnegative(),
  /** messages of each stream not yet exported (JetStream's num_pending + num_ack_pending) */
  lag: z.record(z.string(), z.number().int().nonnegative()),
  /** vendor requests that succeeded */
  requests: z.number().int().nonnegative(),
  /** vendor requests retried (timeouts, 429, 5xx) */
  retries: z.number().int().nonnegative(),
  /** vendor answers that were errors (of any kind) */
  errors: z.number().int().nonnegative(),
  /** messages dead-lettered with the vendor's answer */
  deadLettered: z.number().int().nonnegative(),
  /** entities, relations and incidents written */
  exported: z.number().int().nonnegative(),
  lastError: z.string().nullable(),
});
export type ExporterStatus = z.infer<typeof ExporterStatus>;

export const ExportersStatus = z.object({ schema: z.literal("exporters.status.v1"), at: z.number().int(), exporters: z.array(ExporterStatus) });
export type ExportersStatus = z.infer<typeof ExportersStatus>;
