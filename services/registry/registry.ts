/**
 * The registry's verbs: what a caller may read and change, who may, and the events a change becomes. State comes from
 * the log's fold (model.ts); every write re-reads it under one lock, checks the caller's revision (stale → conflict,
 * HTTP 409) and appends with the sequence it read (store.ts), retrying the whole decision when another process wrote
 * first.
 *
 * Who may do what: a viewer reads; the owners and maintainers of a component (directory users or groups) edit it and
 * set its requirement statuses; signing off a requirement needs the role the requirement names (an admin holds every
 * role); an admin does everything, including creating and deleting components, lists, requirements and imports.
 */
import { z } from "zod";
import { atLeast } from "../../pipelines/contracts/identity.ts";
import { formatIssues } from "../../pipelines/issues.ts";
import {
  AuditQuery,
  ComponentId,
  ComponentInput,
  componentIdOf,
  ComponentPatch,
  ListName,
  ListValues,
  Requirement,
  RequirementGroup,
  SearchQuery,
  SignOffInput,
  Slug,
  StatusInput,
  type Actor,
  type AuditEntry,
  type Caller,
  type Component,
  type ComponentChange,
  type ComponentDetail,
  type Drift,
  type ImportFormat,
  type ImportProblem,
  type ImportReport,
  type Readiness,
  type RegistryEvent,
  type RequirementStatus,
  type ServiceComponents,
} from "../../pipelines/contracts/registry.ts";
import { RegistryError } from "./errors.ts";
import { componentsSheets, FileError, readSheets, rowsToInputs, writeCsv, writeXlsx } from "./files.ts";
import { computeDrift, computeMatches, type GraphView, type Matches } from "./match.ts";
import { diffFields, statusKey, type RegistryState } from "./model.ts";
import { ConcurrentWrite, type RegistryLog } from "./store.ts";

type ComponentValue = z.output<typeof ComponentInput>;
/** an import.part event holds at most this many rows and bytes of JSON (NATS's default payload limit is 1 MiB) */
const PART_ROWS = 1000;
const PART_BYTES = 512 * 1024;
const MAX_LISTED_PROBLEMS = 1000;

export type Progress = (p: { phase: "parse" | "validate" | "apply"; done: number; total: number }) => void;

function parse<S extends z.ZodType>(schema: S, v: unknown, root: string): z.output<S> {
  const r = schema.safeParse(v);
  if (!r.success) throw new RegistryError("bad_request", formatIssues(r.error, { root, limit: 20 }));
  return r.data;
}

const cnOf = (dn: string): string => (/^\s*cn\s*=\s*((?:\\.|[^,])+)/i.exec(dn)?.[1] ?? dn).trim().toLowerCase();

/** Whether the caller is one of `parties`: `user:<login>`, or `group:<cn or DN>` of one of their directory groups. */
export function isParty(caller: Caller, parties: readonly (string | null)[]): boolean {
  const login = caller.login.toLowerCase();
  let dns: Set<string> | undefined;
  let cns: Set<string> | undefined;
  for (const p of parties) {
    if (!p) continue;
    if (p.startsWith("user:")) {
      if (p.slice(5).trim().toLowerCase() === login) return true;
    } else if (p.startsWith("group:")) {
      dns ??= new Set(caller.groups.map((g) => g.trim().toLowerCase()));
      cns ??= new Set(caller.groups.map(cnOf));
      const g = p.slice(6).trim().toLowerCase();
      if (dns.has(g) || (!g.includes("=") && cns.has(g))) return true;
    }
  }
  return false;
}

export function readinessOf(requirements: Iterable<{ id: string }>, statuses: (req: string) => RequirementStatus | undefined): Readiness {
  const r: Readiness = { total: 0, yes: 0, no: 0, na: 0, unknown: 0, signedOff: 0, ready: 0 };
  for (const q of requirements) {
    r.total++;
    const s = statuses(q.id);
    const v = s?.status ?? "unknown";
    r[v]++;
    if (s?.signedOff && (v === "yes" || v === "na")) r.signedOff++;
  }
  // ready: the share of requirements met (yes or not applicable) and signed off
  r.ready = r.total ? r.signedOff / r.total : 1;
  return r;
}

export interface RegistryDeps {
  log: RegistryLog;
  /** the live topology (services/topology/client.ts mirror); undefined: matches and drift are unavailable */
  graph?: () => GraphView | undefined;
  now?: () => number;
}

export class Registry {
  private readonly log: RegistryLog;
  private readonly now: () => number;
  private lock: Promise<unknown> = Promise.resolve();
  private matchCache?: { seq: number; rev: number; m: Matches };

  constructor(private readonly deps: RegistryDeps) {
    this.log = deps.log;
    this.now = deps.now ?? Date.now;
  }

  get state(): RegistryState {
    return this.log.state;
  }

  /** Runs `decide` (which reads the state and returns the events) under the lock, retrying when another writer won. */
  private async write(decide: () => RegistryEvent[]): Promise<number> {
    const run = async () => {
      for (let attempt = 0; ; attempt++) {
        const after = this.state.seq;
        const events = decide();
        if (!events.length) return after;
        try {
          return await this.log.append(events, after);
        } catch (e) {
          if (!(e instanceof ConcurrentWrite) || attempt >= 5) throw e instanceof ConcurrentWrite ? new RegistryError("conflict", "the registry is being changed by another writer; try again") : e;
          await this.log.catchUp();
        }
      }
    };
    const p = this.lock.then(run, run);
    this.lock = p.catch(() => undefined);
    return await p;
  }

  private actor(c: Caller): Actor {
    return { login: c.login, role: c.role };
  }

  private component(id: string): Component {
    const c = this.state.components.get(id);
    if (!c) throw new RegistryError("not_found", `no component "${id}"`);
    return c;
  }

  private canEdit(caller: Caller, c: Component): boolean {
    return caller.role === "admin" || isParty(caller, [...c.owners, ...c.maintainers]);
  }

  /** The checks every component value must pass against the registry: lists, dependencies, a unique name. */
  private problems(id: string, v: ComponentValue, known: (dep: string) => boolean): { column: string; message: string }[] {
    const out: { column: string; message: string }[] = [];
    const lists = this.state.lists;
    for (const [field, name] of [["category", "category"], ["lifecycle", "lifecycle"], ["privacy", "privacy"], ["location", "location"]] as const) {
      const val = v[field];
      if (val && !lists[name].includes(val)) out.push({ column: field, message: `"${val}" is not in the ${name} list (${lists[name].join(", ")})` });
    }
    for (const d of v.dependsOn) {
      if (d === id) out.push({ column: "depends_on", message: "a component cannot depend on itself" });
      else if (!known(d)) out.push({ column: "depends_on", message: `no component "${d}"` });
    }
    if (new Set(v.dependsOn).size !== v.dependsOn.length) out.push({ column: "depends_on", message: "a dependency is listed twice" });
    return out;
  }

  private checked(id: string, v: ComponentValue) {
    const p = this.problems(id, v, (d) => this.state.components.has(d));
    if (p.length) throw new RegistryError("bad_request", p.map((x) => `${x.column}: ${x.message}`).join("; "), { problems: p });
  }

  private static value(c: Component): ComponentValue & { createdAt: number } {
    const { id: _i, rev: _r, updatedAt: _u, ...rest } = c;
    return rest;
  }

  // ---- components ----

  list(input: unknown): { total: number; components: Component[] } {
    const q = parse(SearchQuery, input, "query");
    const words = (q.q ?? "").toLowerCase().split(/\s+/).filter(Boolean);
    const tags = q.tag.map((t) => t.toLowerCase());
    const hits: Component[] = [];
    for (const c of this.state.components.values()) {
      if (q.category && c.category !== q.category) continue;
      if (tags.length && !tags.every((t) => c.tags.some((x) => x.toLowerCase() === t))) continue;
      if (q.owner && !c.owners.some((o) => o.toLowerCase() === q.owner!.toLowerCase())) continue;
      if (words.length) {
        const hay = [c.id, c.name, c.description, c.category, c.language, c.framework, c.lifecycle, ...c.tags, ...c.owners, ...c.maintainers, c.productManager ?? ""].join("\n").toLowerCase();
        if (!words.every((w) => hay.includes(w))) continue;
      }
      hits.push(c);
    }
    hits.sort((a, b) => a.name.localeCompare(b.name));
    return { total: hits.length, components: hits.slice(q.offset, q.offset + q.limit) };
  }

  get(input: unknown): ComponentDetail {
    const { id } = parse(z.object({ id: ComponentId }), input, "path");
    const c = this.component(id);
    const reqs = [...this.state.requirements.values()];
    const statuses = reqs.map((r) => this.state.statuses.get(statusKey(id, r.id))).filter((s): s is RequirementStatus => !!s);
    const dependents = [...this.state.components.values()].filter((x) => x.dependsOn.includes(id)).map((x) => x.id);
    return {
      component: c,
      readiness: readinessOf(reqs, (r) => this.state.statuses.get(statusKey(id, r))),
      statuses,
      instances: this.matches()?.byComponent.get(id) ?? [],
      dependents: dependents.sort(),
    };
  }

  async create(caller: Caller, input: unknown): Promise<Component> {
    if (caller.role !== "admin") throw new RegistryError("forbidden", "creating a component needs the admin role");
    const v = parse(ComponentInput, input, "body");
    const id = componentIdOf(v.name);
    const seq = await this.write(() => {
      if (this.state.components.has(id)) throw new RegistryError("conflict", `a component "${id}" exists already`, { current: this.state.components.get(id) });
      this.checked(id, v);
      const after = { ...v, createdAt: this.now() };
      return [{ schema: "registry.v1", type: "component.put", at: this.now(), by: this.actor(caller), component: { id, after, changes: diffFields(null, v) } }];
    });
    void seq;
    return this.component(id);
  }

  /** PUT (whole value) or PATCH (the fields given), at the revision the caller read. */
  async update(caller: Caller, input: unknown, mode: "put" | "patch"): Promise<Component> {
    const { id, body } = parse(z.object({ id: ComponentId, body: z.unknown() }), input, "request");
    const patch = mode === "patch" ? parse(ComponentPatch, body, "body") : parse(ComponentInput.extend({ rev: z.number().int().nonnegative() }).strict(), body, "body");
    await this.write(() => {
      const cur = this.component(id);
      if (!this.canEdit(caller, cur)) throw new RegistryError("forbidden", `only an owner or maintainer of "${id}", or an admin, may change it`);
      if (cur.rev !== patch.rev) throw new RegistryError("conflict", `"${id}" was changed since revision ${patch.rev} (now ${cur.rev}); reload and apply your change again`, { current: cur });
      const { rev: _rev, ...fields } = patch;
      const old = Registry.value(cur);
      // a patch changes the fields the caller sent, never the ones its schema would fill in with defaults
      const sent = mode === "patch" && body && typeof body === "object" ? new Set(Object.keys(body)) : null;
      const next = { ...old, ...Object.fromEntries(Object.entries(fields).filter(([k, x]) => x !== undefined && (!sent || sent.has(k)))) } as ComponentValue & { createdAt: number };
      const rename = componentIdOf(next.name);
      const clash = [...this.state.components.values()].find((x) => x.id !== id && (x.id === rename || componentIdOf(x.name) === rename));
      if (clash) throw new RegistryError("conflict", `the name "${next.name}" is taken by "${clash.id}"`);
      this.checked(id, next);
      const changes = diffFields(old, next, new Set(["createdAt"]));
      if (!changes.length) return [];
      return [{ schema: "registry.v1", type: "component.put", at: this.now(), by: this.actor(caller), component: { id, after: next, changes } }];
    });
    return this.component(id);
  }

  async remove(caller: Caller, input: unknown): Promise<{ deleted: string }> {
    if (caller.role !== "admin") throw new RegistryError("forbidden", "deleting a component needs the admin role");
    const { id, rev } = parse(z.object({ id: ComponentId, rev: z.coerce.number().int().nonnegative() }), input, "request");
    await this.write(() => {
      const cur = this.component(id);
      if (cur.rev !== rev) throw new RegistryError("conflict", `"${id}" was changed since revision ${rev} (now ${cur.rev})`, { current: cur });
      const dependents = [...this.state.components.values()].filter((x) => x.dependsOn.includes(id)).map((x) => x.id);
      if (dependents.length) throw new RegistryError("conflict", `"${id}" is a declared dependency of ${dependents.slice(0, 10).join(", ")}${dependents.length > 10 ? "…" : ""}; remove those first`);
      return [{ schema: "registry.v1", type: "component.deleted", at: this.now(), by: this.actor(caller), component: { id, after: null, changes: diffFields(Registry.value(cur), null, new Set(["createdAt"])) } }];
    });
    return { deleted: id };
  }

  // ---- lists, groups, requirements ----

  lists(): Record<string, string[]> {
    return this.state.lists;
  }

  async setList(caller: Caller, input: unknown): Promise<string[]> {
    if (caller.role !== "admin") throw new RegistryError("forbidden", "editing a list needs the admin role");
    const { list, values } = parse(z.object({ list: ListName, values: ListValues }), input, "request");
    await this.write(() => {
      const old = this.state.lists[list];
      const field = list === "category" ? "category" : list;
      const used = [...this.state.components.values()].filter((c) => c[field] && !values.includes(c[field]));
      if (used.length) throw new RegistryError("conflict", `"${used[0]![field]}" is still used by ${used.length} component(s), e.g. "${used[0]!.id}"`);
      if (JSON.stringify(old) === JSON.stringify(values)) return [];
      return [{ schema: "registry.v1", type: "list.put", at: this.now(), by: this.actor(caller), list, values, old }];
    });
    return this.state.lists[list];
  }

  requirements(): { groups: RequirementGroup[]; requirements: Requirement[] } {
    const strip = <T extends { rev: number }>({ rev: _r, ...x }: T) => x;
    return { groups: [...this.state.groups.values()].map(strip), requirements: [...this.state.requirements.values()].map(strip) };
  }

  async putGroup(caller: Caller, input: unknown): Promise<RequirementGroup> {
    if (caller.role !== "admin") throw new RegistryError("forbidden", "editing requirement groups needs the admin role");
    const g = parse(RequirementGroup, input, "body");
    await this.write(() => {
      const old = this.state.groups.get(g.id);
      const changes = diffFields(old ? { ...old, rev: undefined } : null, g);
      return changes.length ? [{ schema: "registry.v1", type: "group.put", at: this.now(), by: this.actor(caller), group: g, changes }] : [];
    });
    return g;
  }

  async removeGroup(caller: Caller, input: unknown): Promise<{ deleted: string }> {
    if (caller.role !== "admin") throw new RegistryError("forbidden", "editing requirement groups needs the admin role");
    const { id } = parse(z.object({ id: Slug }), input, "path");
    await this.write(() => {
      if (!this.state.groups.has(id)) throw new RegistryError("not_found", `no requirement group "${id}"`);
      const used = [...this.state.requirements.values()].filter((r) => r.group === id);
      if (used.length) throw new RegistryError("conflict", `group "${id}" still holds ${used.length} requirement(s)`);
      return [{ schema: "registry.v1", type: "group.deleted", at: this.now(), by: this.actor(caller), id }];
    });
    return { deleted: id };
  }

  async putRequirement(caller: Caller, input: unknown): Promise<Requirement> {
    if (caller.role !== "admin") throw new RegistryError("forbidden", "editing requirements needs the admin role");
    const r = parse(Requirement, input, "body");
    await this.write(() => {
      if (!this.state.groups.has(r.group)) throw new RegistryError("bad_request", `group: no requirement group "${r.group}"`);
      const old = this.state.requirements.get(r.id);
      const changes = diffFields(old ? { ...old, rev: undefined } : null, r);
      return changes.length ? [{ schema: "registry.v1", type: "requirement.put", at: this.now(), by: this.actor(caller), requirement: r, changes }] : [];
    });
    return r;
  }

  async removeRequirement(caller: Caller, input: unknown): Promise<{ deleted: string }> {
    if (caller.role !== "admin") throw new RegistryError("forbidden", "editing requirements needs the admin role");
    const { id } = parse(z.object({ id: Slug }), input, "path");
    await this.write(() => {
      if (!this.state.requirements.has(id)) throw new RegistryError("not_found", `no requirement "${id}"`);
      return [{ schema: "registry.v1", type: "requirement.deleted", at: this.now(), by: this.actor(caller), id }];
    });
    return { deleted: id };
  }

  // ---- statuses and sign-off ----

  private statusTarget(component: string, requirement: string) {
    const c = this.component(component);
    const r = this.state.requirements.get(requirement);
    if (!r) throw new RegistryError("not_found", `no requirement "${requirement}"`);
    return { c, r, cur: this.state.statuses.get(statusKey(component, requirement)) };
  }

  async setStatus(caller: Caller, input: unknown): Promise<RequirementStatus> {
    const { component, requirement, body } = parse(z.object({ component: ComponentId, requirement: Slug, body: z.unknown() }), input, "request");
    const v = parse(StatusInput, body, "body");
    await this.write(() => {
      const { c, r, cur } = this.statusTarget(component, requirement);
      if (!this.canEdit(caller, c) && !atLeast(caller.role, r.signoff)) throw new RegistryError("forbidden", `only an owner or maintainer of "${component}", a holder of the ${r.signoff} role, or an admin may set its statuses`);
      if ((cur?.rev ?? 0) !== v.rev) throw new RegistryError("conflict", `the status of "${requirement}" on "${component}" was changed since revision ${v.rev} (now ${cur?.rev ?? 0})`, { current: cur ?? null });
      const old = { status: cur?.status ?? "unknown", notes: cur?.notes ?? "", links: cur?.links ?? [] };
      const next = { status: v.status, notes: v.notes, links: v.links };
      const changes = diffFields(old, next);
      if (!changes.length) return [];
      // a sign-off vouches for what was signed: any change to it withdraws the sign-off
      if (cur?.signedOff) changes.push({ field: "signedOff", old: cur.signedOff, new: null });
      return [{ schema: "registry.v1", type: "status.put", at: this.now(), by: this.actor(caller), component, requirement, ...next, signedOff: null, changes }];
    });
    return this.state.statuses.get(statusKey(component, requirement))!;
  }

  async signOff(caller: Caller, input: unknown): Promise<RequirementStatus> {
    const { component, requirement, body } = parse(z.object({ component: ComponentId, requirement: Slug, body: z.unknown() }), input, "request");
    const v = parse(SignOffInput, body, "body");
    await this.write(() => {
      const { r, cur } = this.statusTarget(component, requirement);
      if (!atLeast(caller.role, r.signoff)) throw new RegistryError("forbidden", `signing off "${requirement}" needs the ${r.signoff} role (you are ${caller.role})`);
      if ((cur?.rev ?? 0) !== v.rev) throw new RegistryError("conflict", `the status of "${requirement}" on "${component}" was changed since revision ${v.rev} (now ${cur?.rev ?? 0})`, { current: cur ?? null });
      if (!cur || cur.status === "unknown") throw new RegistryError("bad_request", `set a status (yes, no or na) before signing "${requirement}" off`);
      const signedOff = { by: caller.login, role: caller.role, at: this.now() };
      return [{ schema: "registry.v1", type: "status.put", at: this.now(), by: this.actor(caller), component, requirement, status: cur.status, notes: cur.notes, links: cur.links, signedOff, changes: [{ field: "signedOff", old: cur.signedOff, new: signedOff }] }];
    });
    return this.state.statuses.get(statusKey(component, requirement))!;
  }

  readiness(): { estate: Readiness; components: { id: string; readiness: Readiness }[] } {
    const reqs = [...this.state.requirements.values()];
    const estate: Readiness = { total: 0, yes: 0, no: 0, na: 0, unknown: 0, signedOff: 0, ready: 0 };
    const components = [...this.state.components.values()].map((c) => {
      const r = readinessOf(reqs, (q) => this.state.statuses.get(statusKey(c.id, q)));
      for (const k of ["total", "yes", "no", "na", "unknown", "signedOff"] as const) estate[k] += r[k];
      return { id: c.id, readiness: r };
    });
    estate.ready = estate.total ? estate.signedOff / estate.total : 1;
    return { estate, components };
  }

  // ---- audit ----

  audit(input: unknown): { entries: AuditEntry[] } {
    const q = parse(AuditQuery, input, "query");
    const s = this.state;
    const out: AuditEntry[] = [];
    if (q.component) {
      const idx = s.auditBy.get(q.component) ?? [];
      for (let i = idx.length - 1; i >= 0 && out.length < q.limit; i--) {
        const e = s.audit[idx[i]!]!;
        if (q.since !== undefined && e.at < q.since) break;
        out.push(e);
      }
    } else
      for (let i = s.audit.length - 1; i >= 0 && out.length < q.limit; i--) {
        const e = s.audit[i]!;
        if (q.since !== undefined && e.at < q.since) break;
        out.push(e);
      }
    return { entries: out };
  }

  // ---- discovery ----

  /** the live topology, when the registry has one */
  graph(): GraphView | undefined {
    return this.deps.graph?.();
  }

  matches(): Matches | undefined {
    const g = this.deps.graph?.();
    if (!g) return undefined;
    const c = this.matchCache;
    if (c && c.seq === this.state.seq && c.rev === g.rev) return c.m;
    const m = computeMatches(this.state.components.values(), g);
    this.matchCache = { seq: this.state.seq, rev: g.rev, m };
    return m;
  }

  service(input: unknown): ServiceComponents {
    const { id } = parse(z.object({ id: z.string().min(1).max(512) }), input, "query");
    const m = this.matches();
    if (!m) throw new RegistryError("unavailable", "the topology is not available to the registry yet");
    const ids = m.byService.get(id) ?? [];
    return {
      service: id,
      components: ids.map((c) => this.component(c)).map((c) => ({ id: c.id, name: c.name, owners: c.owners, maintainers: c.maintainers, productManager: c.productManager })),
    };
  }

  drift(input: unknown): Drift {
    const { windowMs, max } = parse(z.object({ windowMs: z.coerce.number().int().min(1000).max(365 * 86_400_000).default(7 * 86_400_000), max: z.coerce.number().int().min(1).max(100_000).default(10_000) }), input ?? {}, "query");
    const g = this.deps.graph?.();
    const m = this.matches();
    if (!g || !m) throw new RegistryError("unavailable", "the topology is not available to the registry yet");
    return computeDrift(this.state.components, g, m, { now: this.now(), windowMs, maxListed: max });
  }

  // ---- import and export ----

  async export(input: unknown): Promise<{ format: ImportFormat; base64: string }> {
    const { format } = parse(z.object({ format: z.enum(["csv", "xlsx"]).default("csv") }), input ?? {}, "query");
    const comps = [...this.state.components.values()].sort((a, b) => a.name.localeCompare(b.name));
    const sheets = componentsSheets(comps);
    const bytes = format === "csv" ? new TextEncoder().encode(writeCsv(sheets[0]!.rows)) : await writeXlsx(sheets);
    return { format, base64: Buffer.from(bytes).toString("base64") };
  }

  /**
   * An import: every row checked (shape, lists, dependencies on components in the registry or in the file), every
   * problem reported with its row and column; applied only when there is none, as parts and a commit.
   */
  async import(caller: Caller, input: unknown, progress?: Progress): Promise<ImportReport> {
    if (caller.role !== "admin") throw new RegistryError("forbidden", "importing components needs the admin role");
    const o = parse(z.object({ format: z.enum(["csv", "xlsx"]), base64: z.string(), dryRun: z.boolean().default(true), file: z.string().max(512).default("") }), input, "request");
    const t0 = performance.now();
    const data = Buffer.from(o.base64, "base64");
    progress?.({ phase: "parse", done: 0, total: data.byteLength });
    let sheets;
    try {
      sheets = await readSheets(o.format, data);
    } catch (e) {
      if (e instanceof FileError) throw new RegistryError("bad_request", e.message);
      throw e;
    }
    progress?.({ phase: "parse", done: data.byteLength, total: data.byteLength });
    const parsed = rowsToInputs(sheets, (done, total) => progress?.({ phase: "validate", done, total }));
    const problems: ImportProblem[] = [...parsed.problems];
    const report = (extra: Partial<ImportReport>): ImportReport => ({
      dryRun: o.dryRun,
      applied: false,
      rows: parsed.count,
      created: 0,
      updated: 0,
      unchanged: 0,
      problems: problems.slice(0, MAX_LISTED_PROBLEMS),
      moreProblems: Math.max(0, problems.length - MAX_LISTED_PROBLEMS),
      ms: Math.round(performance.now() - t0),
      ...extra,
    });

    let counts = { created: 0, updated: 0, unchanged: 0 };
    let changes: ComponentChange[] = [];
    const decide = (): RegistryEvent[] => {
      const rowProblems: ImportProblem[] = [];
      const byName = new Map<string, string>();
      for (const c of this.state.components.values()) byName.set(componentIdOf(c.name), c.id);
      // the file's rows by id; a name twice in one file is a problem, not a silent overwrite
      const rows = new Map<string, (typeof parsed.rows)[number] & { id: string }>();
      for (const r of parsed.rows) {
        const key = componentIdOf(r.input.name);
        const id = byName.get(key) ?? key;
        const dup = rows.get(id);
        if (dup) rowProblems.push({ sheet: r.sheet, row: r.row, column: "name", message: `"${r.input.name}" is also on row ${dup.row}` });
        else rows.set(id, { ...r, id });
      }
      const resolve = (d: string) => byName.get(d) ?? d;
      for (const d of parsed.deps) {
        const r = rows.get(resolve(d.from));
        if (!r && !this.state.components.has(resolve(d.from))) rowProblems.push({ sheet: d.sheet, row: d.row, column: "from", message: `no component "${d.from}" in the file or the registry` });
      }
      const known = (d: string) => rows.has(d) || this.state.components.has(d) || parsed.names.has(d);
      const depsOf = new Map<string, string[]>();
      for (const d of parsed.deps) {
        const from = resolve(d.from);
        depsOf.set(from, [...(depsOf.get(from) ?? []), resolve(d.to)]);
      }
      changes = [];
      counts = { created: 0, updated: 0, unchanged: 0 };
      const now = this.now();
      let done = 0;
      for (const r of rows.values()) {
        const extra = depsOf.get(r.id) ?? [];
        const v = { ...r.input, dependsOn: [...new Set([...r.input.dependsOn.map(resolve), ...extra])] };
        for (const p of this.problems(r.id, v, known)) rowProblems.push({ sheet: r.sheet, row: r.row, ...p });
        const cur = this.state.components.get(r.id);
        const old = cur ? Registry.value(cur) : null;
        const next = { ...v, createdAt: old?.createdAt ?? now };
        const diff = diffFields(old, next, new Set(["createdAt"]));
        if (!cur) counts.created++;
        else if (diff.length) counts.updated++;
        else counts.unchanged++;
        if (diff.length) changes.push({ id: r.id, after: next, changes: diff });
        if (++done % 2000 === 0) progress?.({ phase: "validate", done, total: rows.size });
      }
      // a row that failed its own checks is still checked against the registry, so one dry run lists everything
      for (const f of parsed.failed)
        for (const p of this.problems(f.id, { ...f.lists, dependsOn: f.dependsOn.map(resolve).filter(Boolean) } as ComponentValue, known)) rowProblems.push({ sheet: f.sheet, row: f.row, ...p });
      // dependencies given only in a dependencies sheet, for components not on the components sheet
      const onlyDeps = new Map<string, string[]>();
      for (const d of parsed.deps) {
        const from = resolve(d.from);
        if (rows.has(from) || !this.state.components.has(from)) continue;
        const to = resolve(d.to);
        if (!known(to)) rowProblems.push({ sheet: d.sheet, row: d.row, column: "to", message: `no component "${d.to}" in the file or the registry` });
        else if (to === from) rowProblems.push({ sheet: d.sheet, row: d.row, column: "to", message: "a component cannot depend on itself" });
        else onlyDeps.set(from, [...(onlyDeps.get(from) ?? []), to]);
      }
      for (const [from, tos] of onlyDeps) {
        const cur = this.state.components.get(from)!;
        const old = Registry.value(cur);
        const next = { ...old, dependsOn: [...new Set([...old.dependsOn, ...tos])] };
        const diff = diffFields(old, next, new Set(["createdAt"]));
        if (diff.length) {
          counts.updated++;
          changes.push({ id: from, after: next, changes: diff });
        }
      }
      problems.push(...rowProblems);
      if (o.dryRun || problems.length || !changes.length) return [];
      const importId = crypto.randomUUID();
      const by = this.actor(caller);
      const events: RegistryEvent[] = [];
      // parts by size: a row may carry up to ~20 KiB of text, and a part must stay under NATS's payload limit
      let part: ComponentChange[] = [];
      let bytes = 0;
      const flush = () => {
        if (part.length) events.push({ schema: "registry.v1", type: "import.part", at: now, by, importId, part: events.length, components: part });
        part = [];
        bytes = 0;
      };
      for (const c of changes) {
        const size = JSON.stringify(c).length;
        if (bytes + size > PART_BYTES || part.length >= PART_ROWS) flush();
        part.push(c);
        bytes += size;
      }
      flush();
      events.push({ schema: "registry.v1", type: "import.commit", at: now, by, importId, parts: events.length, file: o.file, created: counts.created, updated: counts.updated });
      lastImportId = importId;
      return events;
    };
    let lastImportId: string | undefined;
    const sortProblems = () => problems.sort((a, b) => (a.sheet ?? "").localeCompare(b.sheet ?? "") || a.row - b.row || a.column.localeCompare(b.column));
    if (o.dryRun || problems.length) {
      decide();
      sortProblems();
      return report({ ...counts });
    }
    const before = problems.length;
    await this.write(() => {
      problems.length = before;
      const events = decide();
      if (events.length) progress?.({ phase: "apply", done: 0, total: changes.length });
      return events;
    });
    sortProblems();
    if (problems.length) return report({ ...counts });
    progress?.({ phase: "apply", done: changes.length, total: changes.length });
    return report({ ...counts, applied: changes.length > 0, importId: lastImportId });
  }
}
