/**
 * The registry: components (who owns what, what it must satisfy, what it declares it depends on), requirements and
 * their sign-off, and how a component is recognised among discovered services (match rules). Every change is a
 * `registry.v1` event on the REGISTRY stream, which is the record of truth (services/registry/store.ts folds it);
 * the same schemas describe the HTTP API and generate its OpenAPI document (services/gateway/routes/registry.ts).
 *
 * Text fields are plain text wherever they come from (HTTP, CSV, XLSX): nothing here is ever spliced into Cypher, an
 * LDAP filter or a formula; control characters other than tab are refused so a value prints as it reads.
 */
import { z } from "zod";
import { Role } from "./identity.ts";

/** plain text: no control characters except tab (a newline is allowed only in descriptions and notes) */
const line = (max: number) =>
  z
    .string()
    .max(max)
    // eslint-disable-next-line no-control-regex
    .regex(/^[^\u0000-\u0008\u000a-\u001f\u007f]*$/, "control characters are not allowed");
const text = (max: number) =>
  z
    .string()
    .max(max)
    // eslint-disable-next-line no-control-regex
    .regex(/^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$/, "control characters are not allowed");

/** A component's id: its name, lower-cased, with anything but [a-z0-9._-] as "-" (stable across renames of case). */
export const ComponentId = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,127}$/, "expected [a-z0-9][a-z0-9._-]{0,127}").meta({ description: "the component's id: its name lower-cased, runs of other characters as '-'", example: "orders-api" });
export type ComponentId = z.infer<typeof ComponentId>;
export const componentIdOf = (name: string): string =>
  name
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^[^a-z0-9]+/, "")
    .slice(0, 128);

export const ComponentName = line(128).refine((s) => s.trim().length > 0 && componentIdOf(s).length > 0, { message: "a name needs at least one letter or digit" });

/** A directory user (`user:<login>`) or group (`group:<name or DN>`). */
export const Party = line(512)
  .regex(/^(user|group):\S.*$/, "expected user:<login> or group:<name or DN>")
  .meta({ description: "a directory user `user:<login>` or group `group:<cn or DN>`", example: "group:payments-team" });
export type Party = z.infer<typeof Party>;

/**
 * How a discovered service is recognised as an instance of a component. Every field given must hold (AND); a
 * component matches a service when any of its rules does. host and name take `*` and `?` wildcards.
 */
export const MatchRule = z
  .object({
    /** the service's fingerprint exactly: `java:orders.jar`, `image:registry/orders`, `postgres` */
    fingerprint: line(256).min(1).optional(),
    /** the service's name (glob) */
    name: line(256).min(1).optional(),
    /** one of the service's listening ports */
    port: z.number().int().min(1).max(65535).optional(),
    /** the host it runs on (glob on the host name) */
    host: line(256).min(1).optional(),
    /** a label (annotation) on the service or its host */
    label: z.object({ key: line(128).min(1), value: line(512) }).optional(),
  })
  .strict()
  .refine((r) => Object.values(r).some((v) => v !== undefined), { message: "a match rule needs at least one of fingerprint, name, port, host, label" })
  .meta({ id: "MatchRule" });
export type MatchRule = z.infer<typeof MatchRule>;

export const Links = z
  .object({
    docs: line(2048).optional(),
    repo: line(2048).optional(),
    runbook: line(2048).optional(),
  })
  .strict()
  .meta({ id: "Links" });

/** What a caller sends to create or replace a component. */
export const ComponentInput = z
  .object({
    name: ComponentName,
    category: line(128).default(""),
    description: text(8192).default(""),
    language: line(128).default(""),
    framework: line(128).default(""),
    lifecycle: line(64).default(""),
    privacy: line(64).default("").meta({ description: "data-privacy class (an entry of the privacy list)" }),
    location: line(64).default("").meta({ description: "location class (an entry of the location list)" }),
    tags: z.array(line(64).min(1)).max(64).default([]),
    links: Links.default({}),
    owners: z.array(Party).max(32).default([]),
    maintainers: z.array(Party).max(64).default([]),
    productManager: Party.nullable().default(null),
    /** declared dependencies: ids of other components */
    dependsOn: z.array(ComponentId).max(256).default([]),
    match: z.array(MatchRule).max(32).default([]),
  })
  .strict()
  .meta({ id: "ComponentInput" });
export type ComponentInput = z.input<typeof ComponentInput>;

export const Component = ComponentInput.extend({
  id: ComponentId,
  /** the stream sequence of the last change: send it back to update (a stale one is answered 409) */
  rev: z.number().int().nonnegative(),
  createdAt: z.number().int(),
  updatedAt: z.number().int(),
}).meta({ id: "Component" });
export type Component = z.infer<typeof Component>;

/** A partial update: only the fields given change; `rev` is the revision the caller last read. */
export const ComponentPatch = ComponentInput.partial().extend({ rev: z.number().int().nonnegative() }).strict().meta({ id: "ComponentPatch" });
export type ComponentPatch = z.input<typeof ComponentPatch>;

/** The editable lists a component's fields are checked against. */
export const ListName = z.enum(["category", "lifecycle", "privacy", "location"]);
export type ListName = z.infer<typeof ListName>;
export const ListValues = z.array(line(128).min(1)).max(500).refine((v) => new Set(v).size === v.length, { message: "values must be unique" });
export const DEFAULT_LISTS: Record<ListName, string[]> = {
  category: ["service", "database", "queue", "cache", "frontend", "batch", "library", "infrastructure", "external"],
  lifecycle: ["new", "mature", "legacy", "retired"],
  privacy: ["public", "internal", "confidential", "personal-data"],
  location: ["on-premises", "cloud", "hybrid", "saas"],
};

export const Slug = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "expected [a-z0-9][a-z0-9._-]{0,63}");

export const RequirementGroup = z
  .object({ id: Slug, name: line(200).min(1), description: text(4096).default("") })
  .strict()
  .meta({ id: "RequirementGroup" });
export type RequirementGroup = z.infer<typeof RequirementGroup>;

export const Requirement = z
  .object({
    id: Slug,
    group: Slug,
    name: line(200).min(1),
    description: text(4096).default(""),
    /** who may sign it off: a user holding this role (or a higher one) */
    signoff: Role.default("expert"),
  })
  .strict()
  .meta({ id: "Requirement" });
export type Requirement = z.infer<typeof Requirement>;

export const StatusValue = z.enum(["unknown", "yes", "no", "na"]);
export type StatusValue = z.infer<typeof StatusValue>;

export const SignOff = z.object({ by: z.string(), role: Role, at: z.number().int() });
export const RequirementStatus = z
  .object({
    component: ComponentId,
    requirement: Slug,
    status: StatusValue,
    notes: text(8192).default(""),
    links: z.array(line(2048).min(1)).max(32).default([]),
    /** set by a sign-off; cleared when status, notes or links change afterwards */
    signedOff: SignOff.nullable().default(null),
    rev: z.number().int().nonnegative(),
    updatedAt: z.number().int(),
    updatedBy: z.string(),
  })
  .meta({ id: "RequirementStatus" });
export type RequirementStatus = z.infer<typeof RequirementStatus>;

export const StatusInput = z
  .object({
    status: StatusValue,
    notes: text(8192).default(""),
    links: z.array(line(2048).min(1)).max(32).default([]),
    /** the revision last read (0 when the status was never set) */
    rev: z.number().int().nonnegative(),
  })
  .strict()
  .meta({ id: "StatusInput" });
export const SignOffInput = z.object({ rev: z.number().int().nonnegative() }).strict().meta({ id: "SignOffInput" });

// ---- events: registry.v1 ----

export const Actor = z.object({ login: z.string().min(1).max(512), role: Role });
export type Actor = z.infer<typeof Actor>;
export const Change = z.object({ field: z.string(), old: z.unknown(), new: z.unknown() });
export type Change = z.infer<typeof Change>;

const base = { schema: z.literal("registry.v1"), at: z.number().int(), by: Actor };
/** One component as an event carries it: its whole new state (null: deleted), and what changed. */
const ComponentChange = z.object({ id: ComponentId, after: ComponentInput.extend({ createdAt: z.number().int() }).nullable(), changes: z.array(Change) });
export type ComponentChange = z.infer<typeof ComponentChange>;

export const RegistryEvent = z.discriminatedUnion("type", [
  z.object({ ...base, type: z.literal("component.put"), component: ComponentChange }),
  z.object({ ...base, type: z.literal("component.deleted"), component: ComponentChange }),
  z.object({ ...base, type: z.literal("list.put"), list: ListName, values: ListValues, old: z.array(z.string()) }),
  z.object({ ...base, type: z.literal("group.put"), group: RequirementGroup, changes: z.array(Change) }),
  z.object({ ...base, type: z.literal("group.deleted"), id: Slug }),
  z.object({ ...base, type: z.literal("requirement.put"), requirement: Requirement, changes: z.array(Change) }),
  z.object({ ...base, type: z.literal("requirement.deleted"), id: Slug }),
  z.object({
    ...base,
    type: z.literal("status.put"),
    component: ComponentId,
    requirement: Slug,
    status: StatusValue,
    notes: z.string(),
    links: z.array(z.string()),
    signedOff: SignOff.nullable(),
    changes: z.array(Change),
  }),
  /**
   * An import travels as parts (each under NATS's payload limit) and a commit: the fold applies the parts only when
   * the commit arrives, so an import is all or nothing even when its writer dies halfway.
   */
  z.object({ ...base, type: z.literal("import.part"), importId: z.string().min(1).max(64), part: z.number().int().nonnegative(), components: z.array(ComponentChange) }),
  z.object({ ...base, type: z.literal("import.commit"), importId: z.string().min(1).max(64), parts: z.number().int().positive(), file: z.string().max(512), created: z.number().int(), updated: z.number().int() }),
]);
export type RegistryEvent = z.infer<typeof RegistryEvent>;

/** One line of the audit trail: who changed what, when, from what to what. */
export const AuditEntry = z
  .object({
    seq: z.number().int(),
    at: z.number().int(),
    by: Actor,
    type: z.string(),
    /** component id, `list:<name>`, `group:<id>`, `requirement:<id>` */
    target: z.string(),
    component: ComponentId.optional(),
    requirement: Slug.optional(),
    importId: z.string().optional(),
    changes: z.array(Change),
  })
  .meta({ id: "AuditEntry" });
export type AuditEntry = z.infer<typeof AuditEntry>;

// ---- drift: registry.drift.v1 ----

/**
 * registry.graph.v1: the registry's whole part of the graph (components as nodes, what each matches, what each declares),
 * published by the registry service whenever it or its matches change; the topology service, the graph store's only
 * writer, makes the store's registry part equal to the last one. Matches stay computed in one place (match.ts).
 */
export const GraphComponent = z.object({
  id: ComponentId,
  name: z.string(),
  category: z.string(),
  lifecycle: z.string(),
  privacy: z.string(),
  location: z.string(),
  language: z.string(),
  framework: z.string(),
  /** the first group among the owners, '' when none */
  team: z.string(),
  owners: z.array(z.string()),
  maintainers: z.array(z.string()),
  tags: z.array(z.string()),
  rev: z.number().int().nonnegative(),
});
export type GraphComponent = z.infer<typeof GraphComponent>;
export const RegistryGraph = z.object({
  schema: z.literal("registry.graph.v1"),
  at: z.number().int(),
  /** the registry stream's sequence and the topology rev the matches were computed at */
  seq: z.number().int().nonnegative(),
  topologyRev: z.number().int().nonnegative(),
  components: z.array(GraphComponent),
  /** component → the id of a discovered service (process node) it matches */
  matches: z.array(z.object({ component: ComponentId, entity: z.string().min(1) })),
  declares: z.array(z.object({ src: ComponentId, dst: ComponentId })),
  /**
   * The whole registry passes a message's limit at a few thousand components, so one state may go out in parts:
   * part `part` of `parts`, each with some of the rows and the same `generation`, published back to back. Absent: one
   * part.
   */
  generation: z.string().max(200).optional(),
  part: z.number().int().nonnegative().optional(),
  parts: z.number().int().positive().max(10_000).optional(),
});
export type RegistryGraph = z.infer<typeof RegistryGraph>;

export const DriftPair = z.object({ from: ComponentId, to: ComponentId });
export const Drift = z
  .object({
    schema: z.literal("registry.drift.v1"),
    at: z.number().int(),
    /** the topology revision the discovered side was read at */
    topologyRev: z.number().int(),
    windowMs: z.number().int(),
    /** declared dependencies no DEPENDS_ON between their instances confirms within the window */
    declaredNotSeen: z.array(DriftPair),
    /** DEPENDS_ON between instances of two components, where the first does not declare the second */
    seenNotDeclared: z.array(DriftPair.extend({ edges: z.number().int() })),
    /** components (not retired) with no running instance */
    notRunning: z.array(ComponentId),
    /** discovered services no component matches */
    unregistered: z.array(z.object({ id: z.string(), name: z.string(), host: z.string() })),
  })
  .meta({ id: "Drift" });
export type Drift = z.infer<typeof Drift>;

// ---- import ----

export const ImportFormat = z.enum(["csv", "xlsx"]);
export type ImportFormat = z.infer<typeof ImportFormat>;
/** One problem of an import: the row as a spreadsheet numbers it (the header is row 1) and the column's header. */
export const ImportProblem = z.object({ sheet: z.string().optional(), row: z.number().int(), column: z.string(), message: z.string() }).meta({ id: "ImportProblem" });
export type ImportProblem = z.infer<typeof ImportProblem>;
export const ImportReport = z
  .object({
    dryRun: z.boolean(),
    applied: z.boolean(),
    rows: z.number().int(),
    created: z.number().int(),
    updated: z.number().int(),
    unchanged: z.number().int(),
    problems: z.array(ImportProblem),
    /** problems beyond those listed */
    moreProblems: z.number().int().default(0),
    importId: z.string().optional(),
    ms: z.number(),
  })
  .meta({ id: "ImportReport" });
export type ImportReport = z.infer<typeof ImportReport>;
/** NDJSON progress lines of an import (Accept: application/x-ndjson), the last being {report}. */
export const ImportProgress = z.object({ phase: z.enum(["parse", "validate", "apply"]), done: z.number().int(), total: z.number().int() });
export type ImportProgress = z.infer<typeof ImportProgress>;

/** The columns of a components file, in export order; tags, parties, dependencies and rules are `;`-separated. */
export const COMPONENT_COLUMNS = [
  "name",
  "category",
  "description",
  "language",
  "framework",
  "lifecycle",
  "privacy",
  "location",
  "tags",
  "docs",
  "repo",
  "runbook",
  "owners",
  "maintainers",
  "product_manager",
  "depends_on",
  "match",
] as const;
export type ComponentColumn = (typeof COMPONENT_COLUMNS)[number];

// ---- answers ----

export const Readiness = z.object({ total: z.number().int(), yes: z.number().int(), no: z.number().int(), na: z.number().int(), unknown: z.number().int(), signedOff: z.number().int(), ready: z.number() }).meta({ id: "Readiness" });
export type Readiness = z.infer<typeof Readiness>;

export const Instance = z.object({ id: z.string(), name: z.string(), host: z.string(), ports: z.string(), rule: z.number().int() }).meta({ id: "Instance" });
export type Instance = z.infer<typeof Instance>;

export const ComponentDetail = z
  .object({
    component: Component,
    readiness: Readiness,
    statuses: z.array(RequirementStatus),
    instances: z.array(Instance),
    dependents: z.array(ComponentId),
  })
  .meta({ id: "ComponentDetail" });
export type ComponentDetail = z.infer<typeof ComponentDetail>;

/** A discovered service seen from the registry: its component(s), owners and team. */
export const ServiceComponents = z
  .object({
    service: z.string(),
    components: z.array(z.object({ id: ComponentId, name: z.string(), owners: z.array(Party), maintainers: z.array(Party), productManager: Party.nullable() })),
  })
  .meta({ id: "ServiceComponents" });
export type ServiceComponents = z.infer<typeof ServiceComponents>;

export const SearchQuery = z.object({
  q: z.string().max(256).optional(),
  tag: z.array(z.string().max(64)).max(16).default([]),
  category: z.string().max(128).optional(),
  owner: z.string().max(512).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(100),
  offset: z.coerce.number().int().min(0).default(0),
});
export type SearchQuery = z.infer<typeof SearchQuery>;
export const ComponentList = z.object({ total: z.number().int(), components: z.array(Component) }).meta({ id: "ComponentList" });
export const AuditQuery = z.object({
  component: z.string().max(128).optional(),
  since: z.coerce.number().int().optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(500),
});
export type AuditQuery = z.infer<typeof AuditQuery>;
export const AuditList = z.object({ entries: z.array(AuditEntry) }).meta({ id: "AuditList" });

// ---- the registry service's request/reply (gateway → registry over NATS) ----

/** Who asks: the gateway's principal plus the directory groups used to recognise owners. */
export const Caller = z.object({ login: z.string(), role: Role, groups: z.array(z.string()).max(10_000).default([]) });
export type Caller = z.infer<typeof Caller>;

export const RegistryRequest = z.object({
  op: z.string().min(1).max(64),
  caller: Caller,
  input: z.unknown(),
  /** an import's progress goes here (core NATS), when given */
  progress: z.string().optional(),
});
export type RegistryRequest = z.infer<typeof RegistryRequest>;
export const RegistryErrorCode = z.enum(["bad_request", "forbidden", "not_found", "conflict", "unavailable", "too_large"]);
export type RegistryErrorCode = z.infer<typeof RegistryErrorCode>;
export const RegistryReply = z.union([
  z.object({ ok: z.literal(true), value: z.unknown() }),
  z.object({ ok: z.literal(false), code: RegistryErrorCode, error: z.string(), detail: z.unknown().optional() }),
]);
export type RegistryReply = z.infer<typeof RegistryReply>;
