/**
 * What an exporter remembers durably: for every item, relation and incident it wrote, the vendor's external id and a
 * digest of what it sent; and the topology rev its backfill reached. Kept in the JetStream KV bucket
 * <PREFIX>_EXPORTERS, one key per entry (`<exporter>.<what>.<digest of the Orrery id>`), so a restarted exporter, or
 * a batch retried after a vendor outage, sends nothing it already sent. A create is preceded by a `pending` entry: a
 * crash between the vendor's answer and the record is then found on the next try (the adapter looks the item up by
 * its keys) instead of creating it twice.
 */
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { z } from "zod";
import type { MappedCi } from "./map.ts";

export const Entry = z.object({
  /** the vendor's id; null while a create is in flight */
  x: z.string().nullable(),
  /** digest of what was sent last */
  h: z.string(),
  /** the item as sent (relations need their ends' values; retiring needs the class) */
  ci: z.custom<MappedCi>().optional(),
  /** relations: their ends and type */
  rel: z.object({ type: z.string(), src: z.string(), dst: z.string() }).optional(),
  /** registry components: the ids of the declared dependencies exported as relations */
  deps: z.array(z.string()).optional(),
});
export type Entry = z.infer<typeof Entry>;

export type Kind = "ci" | "rel" | "inc";

export interface ExportState {
  get(kind: Kind, ref: string): Promise<Entry | undefined>;
  put(kind: Kind, ref: string, e: Entry): Promise<void>;
  remove(kind: Kind, ref: string): Promise<void>;
  backfilledRev(): Promise<number | undefined>;
  setBackfilledRev(rev: number): Promise<void>;
  /** a number the exporter keeps about itself (the health seq of its backfill) */
  meta(name: string): Promise<number | undefined>;
  setMeta(name: string, v: number): Promise<void>;
}

const keyOf = (name: string, kind: string, ref: string) => `${name}.${kind}.${new Bun.CryptoHasher("sha256").update(ref).digest("hex").slice(0, 40)}`;

export async function openBucket(nc: NatsConnection, bucket: string): Promise<KV> {
  return new Kvm(nc).create(bucket, { history: 1 });
}

/** An exporter's state in `kv`, with a write-through cache (the exporter is its only writer). */
export function kvState(kv: KV, name: string): ExportState {
  const cache = new Map<string, Entry | null>();
  const read = async (key: string): Promise<Entry | undefined> => {
    if (cache.has(key)) return cache.get(key) ?? undefined;
    const e = await kv.get(key);
    const v = e && e.operation === "PUT" && e.value.length ? Entry.parse(e.json()) : null;
    cache.set(key, v);
    return v ?? undefined;
  };
  return {
    get: (kind, ref) => read(keyOf(name, kind, ref)),
    put: async (kind, ref, e) => {
      const key = keyOf(name, kind, ref);
      await kv.put(key, JSON.stringify(e));
      cache.set(key, e);
    },
    remove: async (kind, ref) => {
      const key = keyOf(name, kind, ref);
      await kv.delete(key);
      cache.set(key, null);
    },
    backfilledRev: async () => {
      const e = await kv.get(`${name}.meta.backfill`);
      return e && e.operation === "PUT" && e.value.length ? Number(e.string()) : undefined;
    },
    setBackfilledRev: async (rev) => {
      await kv.put(`${name}.meta.backfill`, String(rev));
    },
    meta: async (m) => {
      const e = await kv.get(`${name}.meta.${m}`);
      return e && e.operation === "PUT" && e.value.length ? Number(e.string()) : undefined;
    },
    setMeta: async (m, v) => {
      await kv.put(`${name}.meta.${m}`, String(v));
    },
  };
}
