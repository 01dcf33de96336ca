/**
 * What a registry.v1 event changes in the components an exporter sends. component.put / component.deleted carry one
 * component; an import travels as import.part events and a commit (pipelines/contracts/registry.ts), and only counts
 * once its commit arrives. The parts are not kept here between messages: an exporter that acked a part and then
 * died would have lost it. Instead the commit reads its parts back from the REGISTRY stream, which is never trimmed
 * and in which the registry writes them contiguously right before the commit (each append expects the sequence before
 * it). A commit whose parts are not all there is the registry's "damaged import": its fold ignores it, so does this.
 */
import { decode } from "../../pipelines/codec.ts";
import { RegistryEvent, type ComponentChange } from "../../pipelines/contracts/registry.ts";

type Commit = Extract<RegistryEvent, { type: "import.commit" }>;

/** The component changes an event makes, in order; [] for events about other things (lists, requirements, parts). */
export async function componentChanges(ev: RegistryEvent, seq: number, read: (seq: number) => Promise<RegistryEvent | null>): Promise<ComponentChange[]> {
  if (ev.type === "component.put" || ev.type === "component.deleted") return [ev.component];
  if (ev.type !== "import.commit") return [];
  return (await importParts(ev, seq, read)) ?? [];
}

/** The components of an import, part by part, read back from the stream before its commit; null when incomplete. */
export async function importParts(commit: Commit, seq: number, read: (seq: number) => Promise<RegistryEvent | null>): Promise<ComponentChange[] | null> {
  const parts: ComponentChange[][] = [];
  for (let i = 0; i < commit.parts; i++) {
    const s = seq - commit.parts + i;
    if (s < 1) return null;
    const p = await read(s);
    if (!p || p.type !== "import.part" || p.importId !== commit.importId || p.part !== i) return null;
    parts.push(p.components);
  }
  // within one import a component appears once; should it not, the last one is what the registry's fold keeps
  const last = new Map<string, ComponentChange>();
  for (const c of parts.flat()) {
    last.delete(c.id);
    last.set(c.id, c);
  }
  return [...last.values()];
}

/** Reads one event of the REGISTRY stream by sequence (null: not there, or not a registry.v1 event). */
export function streamReader(get: (seq: number) => Promise<{ data: Uint8Array } | null>): (seq: number) => Promise<RegistryEvent | null> {
  return async (seq) => {
    const m = await get(seq);
    if (!m) return null;
    try {
      // parts can be large (up to the registry's 900 KiB event limit, 1000 rows)
      return decode(RegistryEvent, "registry.v1", m.data, 8 * 1024 * 1024);
    } catch {
      return null;
    }
  };
}
