/**
 * iTop REST/JSON (POST <url>/webservices/rest.php?version=1.3, form field json_data): CIs with core/create and
 * core/update, identified by their reconciliation keys (a key given as an object of attribute → value, which iTop
 * resolves to exactly one object) so a lost create is found with core/get; relations as objects of a link class
 * ("lnkClass:srcField:dstField", core/create, core/delete); UserRequests from alerts (core/create), resolved with
 * core/apply_stimulus ev_resolve. iTop answers HTTP 200 with `code` 0 on success; other codes are refusals, except
 * 100 (internal error), which is retried.
 * Docs: https://www.itophub.io/wiki/page?id=latest:advancedtopics:rest_json
 */
import { VendorRejected, VendorUnavailable, type VendorHttp } from "../http.ts";
import type { VendorAdapter } from "../adapter.ts";

type Answer = { code: number; message?: string | null; objects?: Record<string, { code: number; message: string; class: string; key: string | number; fields?: Record<string, unknown> }> | null };

export function itop(http: VendorHttp, opts: { version?: string; user?: string; password?: string; org?: string } = {}): VendorAdapter {
  const call = async (op: Record<string, unknown>, what: string): Promise<Answer> => {
    const form = new URLSearchParams({ json_data: JSON.stringify({ ...op, comment: "Orrery exporter" }) });
    if (opts.user) form.set("auth_user", opts.user);
    if (opts.password) form.set("auth_pwd", opts.password);
    const r = (await http.request("POST", `/webservices/rest.php?version=${opts.version ?? "1.3"}`, undefined, { raw: form, headers: { "content-type": "application/x-www-form-urlencoded" } })) as Answer | null;
    if (!r || typeof r.code !== "number") throw new VendorRejected(200, JSON.stringify(r), what);
    if (r.code === 100) throw new VendorUnavailable(`${what}: iTop internal error: ${r.message}`);
    if (r.code !== 0) throw new VendorRejected(200, JSON.stringify(r), what);
    return r;
  };
  const keyOf = (a: Answer, what: string): string => {
    const o = Object.values(a.objects ?? {})[0];
    if (!o || o.code !== 0) throw new VendorRejected(200, JSON.stringify(a), what);
    return String(o.key);
  };
  return {
    vendor: "itop",
    upsertCi: async (ci, known) => {
      const what = `${ci.class} for ${ci.ref}`;
      if (known) return keyOf(await call({ operation: "core/update", class: ci.class, key: Number(known), fields: ci.values, output_fields: "id" }, what), what);
      return keyOf(await call({ operation: "core/create", class: ci.class, fields: ci.values, output_fields: "id" }, what), what);
    },
    findCi: async (ci) => {
      const a = await call({ operation: "core/get", class: ci.class, key: ci.keys, output_fields: "id" }, `find ${ci.ref}`);
      const o = Object.values(a.objects ?? {})[0];
      return o ? String(o.key) : undefined;
    },
    retireCi: async (ci) => {
      await call({ operation: "core/update", class: ci.class, key: Number(ci.externalId), fields: { status: "obsolete" } }, `retire ${ci.ref}`);
    },
    relate: async (rel, ends, known) => {
      if (known) return known;
      const [cls, sf, df] = rel.type.split(":");
      if (!cls || !sf || !df) throw new VendorRejected(0, `relation type "${rel.type}" is not lnkClass:srcField:dstField`, `relation ${rel.ref}`);
      const what = `${cls} for ${rel.ref}`;
      return keyOf(await call({ operation: "core/create", class: cls, fields: { [sf]: Number(ends.src.id), [df]: Number(ends.dst.id) }, output_fields: "id" }, what), what);
    },
    unrelate: async (rel) => {
      const [cls] = rel.type.split(":");
      await call({ operation: "core/delete", class: cls, key: Number(rel.externalId) }, `unrelate ${rel.ref}`);
    },
    openIncident: async (inc, ciId) => {
      const what = `UserRequest for ${inc.ref}`;
      const fields: Record<string, unknown> = {
        title: inc.summary.slice(0, 255),
        description: `Orrery: ${inc.name} is ${inc.health}. Alerts: ${inc.alerts.join(", ") || "none"}`,
        impact: inc.health === "critical" ? "2" : "3",
        urgency: inc.health === "critical" ? "2" : "3",
        ...(opts.org ? { org_id: { name: opts.org } } : {}),
        ...(ciId ? { functionalcis_list: [{ functionalci_id: Number(ciId) }] } : {}),
        ...inc.fields,
      };
      return keyOf(await call({ operation: "core/create", class: "UserRequest", fields, output_fields: "id" }, what), what);
    },
    resolveIncident: async (inc, id) => {
      await call({ operation: "core/apply_stimulus", class: "UserRequest", key: Number(id), stimulus: "ev_resolve", fields: { solution: `Orrery: ${inc.name} is ${inc.health} again` } }, `resolve UserRequest ${id}`);
    },
  };
}
