/**
 * The registry's current state: a pure fold of the registry.v1 events in stream order. Every process that holds a
 * registry (the service, tests, a second instance) gets the same state from the same events; nothing else writes it.
 * The audit trail is kept beside it, indexed by component, so a component's history is a lookup.
 */
import {
  DEFAULT_LISTS,
  type AuditEntry,
  type Change,
  type Component,
  type ComponentChange,
  type ListName,
  type RegistryEvent,
  type Requirement,
  type RequirementGroup,
  type RequirementStatus,
} from "../../pipelines/contracts/registry.ts";

export interface RegistryState {
  /** the stream sequence of the last event folded in */
  seq: number;
  components: Map<string, Component>;
  lists: Record<ListName, string[]>;
  groups: Map<string, RequirementGroup & { rev: number }>;
  requirements: Map<string, Requirement & { rev: number }>;
  /** key `${component}|${requirement}` */
  statuses: Map<string, RequirementStatus>;
  audit: AuditEntry[];
  /** positions in `audit` of the entries about each component */
  auditBy: Map<string, number[]>;
  /** import parts waiting for their commit */
  pending: Map<string, ComponentChange[][]>;
}

export function emptyState(): RegistryState {
  return {
    seq: 0,
    components: new Map(),
    lists: structuredClone(DEFAULT_LISTS),
    groups: new Map(),
    requirements: new Map(),
    statuses: new Map(),
    audit: [],
    auditBy: new Map(),
    pending: new Map(),
  };
}

export const statusKey = (component: string, requirement: string) => `${component}|${requirement}`;

function record(s: RegistryState, e: Omit<AuditEntry, "component"> & { component?: string }) {
  const i = s.audit.push(e as AuditEntry) - 1;
  if (e.component) {
    let l = s.auditBy.get(e.component);
    if (!l) s.auditBy.set(e.component, (l = []));
    l.push(i);
  }
}

function applyComponent(s: RegistryState, c: ComponentChange, seq: number, at: number) {
  if (c.after === null) {
    s.components.delete(c.id);
    for (const k of [...s.statuses.keys()]) if (k.startsWith(`${c.id}|`)) s.statuses.delete(k);
    return;
  }
  s.components.set(c.id, { ...c.after, id: c.id, rev: seq, updatedAt: at });
}

/** Folds one event (its stream sequence `seq`) into the state. Events at or below s.seq are ignored (replays). */
export function applyEvent(s: RegistryState, seq: number, e: RegistryEvent): void {
  if (seq <= s.seq) return;
  s.seq = seq;
  // an import's parts and commit are contiguous in the stream (each append expects the sequence before it), so any
  // other event means the parts waiting are an import whose writer died: they are dropped, never applied
  if (s.pending.size && e.type !== "import.commit" && !(e.type === "import.part" && s.pending.has(e.importId) && s.pending.size === 1)) s.pending.clear();
  const who = { seq, at: e.at, by: e.by, type: e.type };
  switch (e.type) {
    case "component.put":
    case "component.deleted":
      applyComponent(s, e.component, seq, e.at);
      record(s, { ...who, target: e.component.id, component: e.component.id, changes: e.component.changes });
      return;
    case "list.put":
      s.lists[e.list] = e.values;
      record(s, { ...who, target: `list:${e.list}`, changes: [{ field: e.list, old: e.old, new: e.values }] });
      return;
    case "group.put":
      s.groups.set(e.group.id, { ...e.group, rev: seq });
      record(s, { ...who, target: `group:${e.group.id}`, changes: e.changes });
      return;
    case "group.deleted": {
      const old = s.groups.get(e.id);
      s.groups.delete(e.id);
      record(s, { ...who, target: `group:${e.id}`, changes: [{ field: "group", old: old ?? null, new: null }] });
      return;
    }
    case "requirement.put":
      s.requirements.set(e.requirement.id, { ...e.requirement, rev: seq });
      record(s, { ...who, target: `requirement:${e.requirement.id}`, requirement: e.requirement.id, changes: e.changes });
      return;
    case "requirement.deleted": {
      const old = s.requirements.get(e.id);
      s.requirements.delete(e.id);
      for (const k of [...s.statuses.keys()]) if (k.endsWith(`|${e.id}`)) s.statuses.delete(k);
      record(s, { ...who, target: `requirement:${e.id}`, requirement: e.id, changes: [{ field: "requirement", old: old ?? null, new: null }] });
      return;
    }
    case "status.put":
      s.statuses.set(statusKey(e.component, e.requirement), {
        component: e.component,
        requirement: e.requirement,
        status: e.status,
        notes: e.notes,
        links: e.links,
        signedOff: e.signedOff,
        rev: seq,
        updatedAt: e.at,
        updatedBy: e.by.login,
      });
      record(s, { ...who, target: e.component, component: e.component, requirement: e.requirement, changes: e.changes });
      return;
    case "import.part": {
      let parts = s.pending.get(e.importId);
      if (!parts) s.pending.set(e.importId, (parts = []));
      parts[e.part] = e.components;
      return;
    }
    case "import.commit": {
      const parts = s.pending.get(e.importId);
      s.pending.delete(e.importId);
      // a commit whose parts are not all here is ignored: the writer checks before committing, so this is a damaged stream
      if (!parts || parts.length !== e.parts || Array.from(parts).some((p) => !p)) return; // Array.from: some() skips holes
      // the import itself (file and counts) estate-wide, then each component it changed on its own line
      record(s, { ...who, target: `import:${e.importId}`, importId: e.importId, changes: [{ field: "file", old: null, new: e.file }, { field: "created", old: null, new: e.created }, { field: "updated", old: null, new: e.updated }] });
      for (const part of parts)
        for (const c of part) {
          applyComponent(s, c, seq, e.at);
          if (c.changes.length) record(s, { ...who, target: c.id, component: c.id, importId: e.importId, changes: c.changes });
        }
      return;
    }
  }
}

/** Field-by-field differences between two records (JSON equality), for the audit trail. */
export function diffFields(old: Record<string, unknown> | null, next: Record<string, unknown> | null, skip: ReadonlySet<string> = new Set()): Change[] {
  const keys = new Set([...Object.keys(old ?? {}), ...Object.keys(next ?? {})]);
  const out: Change[] = [];
  for (const k of keys) {
    if (skip.has(k)) continue;
    const a = old?.[k] ?? null;
    const b = next?.[k] ?? null;
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ field: k, old: a, new: b });
  }
  return out;
}
