/**
 * ServiceNow: CIs and relations through the Identification and Reconciliation API (POST /api/now/identifyreconcile,
 * `items` with className/values/lookup and `relations` between item indexes, such as "Depends on::Used by"), so
 * ServiceNow's identification rules decide insert or update and a repeated request is idempotent by design.
 * Incidents from alerts through the Table API (POST /api/now/table/incident), resolved with them (PATCH state 6).
 * Retired CIs: install_status 7 (Retired) through the Table API on the CI's class.
 * Docs: https://www.servicenow.com/docs/bundle/xanadu-api-reference/page/integrate/inbound-rest/concept/c_IdentifyReconcileAPI.html
 *       https://www.servicenow.com/docs/bundle/xanadu-api-reference/page/integrate/inbound-rest/concept/c_TableAPI.html
 */
import { VendorRejected, type VendorHttp } from "../http.ts";
import type { VendorAdapter } from "../adapter.ts";
import type { MappedCi } from "../map.ts";

type IreItem = { className: string; values: Record<string, unknown>; lookup?: unknown[] };
type IreAnswer = { items?: { className?: string; operation?: string; sysId?: string; errors?: { error: string; message: string }[] }[]; relations?: { sysId?: string; errors?: unknown[] }[] };

const item = (ci: MappedCi): IreItem => ({ className: ci.class, values: { ...ci.values }, lookup: [] });

export function serviceNow(http: VendorHttp, opts: { dataSource?: string } = {}): VendorAdapter {
  const ds = opts.dataSource ? `?sysparm_data_source=${encodeURIComponent(opts.dataSource)}` : "";
  const ire = async (body: { items: IreItem[]; relations?: { parent: number; child: number; type: string }[] }, what: string): Promise<IreAnswer> => {
    const r = (await http.request("POST", `/api/now/identifyreconcile${ds}`, body)) as { result?: IreAnswer } | IreAnswer | null;
    const a = (r && "result" in r ? r.result : r) as IreAnswer | null;
    const errs = a?.items?.flatMap((i) => i.errors ?? []) ?? [];
    // the IRE answers 200 with per-item errors (an identification rule not met): the vendor refused this item
    if (!a?.items?.length || errs.length) throw new VendorRejected(200, JSON.stringify(a), `${what} (IRE)`);
    return a;
  };
  return {
    vendor: "servicenow",
    upsertCi: async (ci) => {
      const a = await ire({ items: [item(ci)] }, `CI ${ci.ref}`);
      const id = a.items![0]!.sysId;
      if (!id) throw new VendorRejected(200, JSON.stringify(a), `CI ${ci.ref}: no sysId`);
      return id;
    },
    retireCi: async (ci) => {
      await http.request("PATCH", `/api/now/table/${encodeURIComponent(ci.class)}/${ci.externalId}`, { install_status: "7" });
    },
    relate: async (rel, ends) => {
      if (!ends.src.ci || !ends.dst.ci) throw new VendorRejected(0, "an end's values are unknown", `relation ${rel.ref}`);
      const a = await ire({ items: [item(ends.src.ci), item(ends.dst.ci)], relations: [{ parent: 0, child: 1, type: rel.type }] }, `relation ${rel.ref}`);
      return a.relations?.[0]?.sysId ?? `${ends.src.id}:${rel.type}:${ends.dst.id}`;
    },
    unrelate: async (rel) => {
      // the relation's sys_id when the IRE gave one; otherwise find it by its ends and type
      let id = /^[0-9a-f]{32}$/.test(rel.externalId) ? rel.externalId : undefined;
      if (!id) {
        const q = `parent=${rel.src}^child=${rel.dst}^type.name=${rel.type}`;
        const r = (await http.request("GET", `/api/now/table/cmdb_rel_ci?sysparm_query=${encodeURIComponent(q)}&sysparm_fields=sys_id&sysparm_limit=1`)) as { result?: { sys_id: string }[] };
        id = r?.result?.[0]?.sys_id;
      }
      if (id) await http.request("DELETE", `/api/now/table/cmdb_rel_ci/${id}`);
    },
    openIncident: async (inc, ciId) => {
      const r = (await http.request("POST", "/api/now/table/incident", {
        short_description: inc.summary,
        description: `Orrery: ${inc.name} is ${inc.health}. Alerts: ${inc.alerts.join(", ") || "none"}`,
        impact: inc.health === "critical" ? "1" : "2",
        urgency: inc.health === "critical" ? "1" : "2",
        correlation_id: `orrery:${inc.ref}`,
        ...(ciId ? { cmdb_ci: ciId } : {}),
        ...inc.fields,
      })) as { result?: { sys_id?: string } };
      const id = r?.result?.sys_id;
      if (!id) throw new VendorRejected(201, JSON.stringify(r), `incident for ${inc.ref}: no sys_id`);
      return id;
    },
    resolveIncident: async (inc, id) => {
      await http.request("PATCH", `/api/now/table/incident/${id}`, { state: "6", close_code: "Solved (Permanently)", close_notes: `Orrery: ${inc.name} is ${inc.health} again` });
    },
  };
}
