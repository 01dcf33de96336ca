/**
 * Jira Service Management Assets: one object per CI (POST /object/create with objectTypeId and attributes as
 * objectTypeAttributeId + objectAttributeValues; PUT /object/{id} to update; DELETE /object/{id}), found by its key
 * attribute through AQL (POST /object/aql) when a create may have been lost. A relation is a reference attribute on
 * the source object (the relation's "type" is the objectTypeAttributeId of that attribute); its values are the ids of
 * every object it references, so adding or removing one rewrites the list (kept here per source and attribute).
 * The mapping's class is the objectTypeId, attribute names are objectTypeAttributeIds. No incidents (Assets holds CIs).
 * Docs: https://developer.atlassian.com/cloud/assets/rest/api-group-object/#api-object-create-post
 *       https://developer.atlassian.com/cloud/assets/rest/api-group-object/#api-object-aql-post
 */
import { VendorRejected, type VendorHttp } from "../http.ts";
import type { VendorAdapter } from "../adapter.ts";
import type { MappedCi, Scalar } from "../map.ts";

const attributes = (values: Record<string, Scalar>) =>
  Object.entries(values)
    .filter(([, v]) => v !== null)
    .map(([objectTypeAttributeId, v]) => ({ objectTypeAttributeId, objectAttributeValues: [{ value: String(v) }] }));

export function jsmAssets(http: VendorHttp, opts: { workspaceId: string }): VendorAdapter {
  const base = `/jsm/assets/workspace/${encodeURIComponent(opts.workspaceId)}/v1`;
  /** source object id + attribute → referenced object ids (rebuilt from the vendor when missing) */
  const refs = new Map<string, Set<string>>();
  const refsOf = async (src: string, attr: string): Promise<Set<string>> => {
    const k = `${src}\0${attr}`;
    let s = refs.get(k);
    if (!s) {
      const o = (await http.request("GET", `${base}/object/${src}`)) as { attributes?: { objectTypeAttributeId: string; objectAttributeValues: { referencedObject?: { id: string } }[] }[] } | null;
      const a = o?.attributes?.find((x) => String(x.objectTypeAttributeId) === attr);
      s = new Set((a?.objectAttributeValues ?? []).flatMap((v) => (v.referencedObject?.id ? [String(v.referencedObject.id)] : [])));
      refs.set(k, s);
    }
    return s;
  };
  const writeRefs = (src: string, attr: string, ids: Set<string>) =>
    http.request("PUT", `${base}/object/${src}`, { attributes: [{ objectTypeAttributeId: attr, objectAttributeValues: [...ids].map((value) => ({ value })) }] });
  return {
    vendor: "jsm",
    upsertCi: async (ci: MappedCi, known) => {
      if (known) {
        await http.request("PUT", `${base}/object/${known}`, { objectTypeId: ci.class, attributes: attributes(ci.values) });
        return known;
      }
      const r = (await http.request("POST", `${base}/object/create`, { objectTypeId: ci.class, attributes: attributes(ci.values) })) as { id?: string | number } | null;
      if (r?.id === undefined) throw new VendorRejected(201, JSON.stringify(r), `object for ${ci.ref}: no id`);
      return String(r.id);
    },
    findCi: async (ci) => {
      const [attr, v] = Object.entries(ci.keys)[0] ?? [];
      if (!attr || v === null || v === undefined) return undefined;
      const qlQuery = `objectTypeId = ${ci.class} AND "${attr}" = "${String(v).replace(/"/g, '\\"')}"`;
      const r = (await http.request("POST", `${base}/object/aql?maxResults=1`, { qlQuery })) as { values?: { id: string | number }[] } | null;
      const id = r?.values?.[0]?.id;
      return id === undefined ? undefined : String(id);
    },
    retireCi: async (ci) => {
      await http.request("DELETE", `${base}/object/${ci.externalId}`);
    },
    relate: async (rel, ends) => {
      const s = await refsOf(ends.src.id, rel.type);
      if (!s.has(ends.dst.id)) {
        s.add(ends.dst.id);
        await writeRefs(ends.src.id, rel.type, s);
      }
      return `${ends.src.id}>${rel.type}>${ends.dst.id}`;
    },
    unrelate: async (rel) => {
      const s = await refsOf(rel.src, rel.type);
      if (s.delete(rel.dst)) await writeRefs(rel.src, rel.type, s);
    },
  };
}
