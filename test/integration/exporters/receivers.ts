/**
 * Local vendor receivers (Bun.serve) that check every request against the vendor's documented shape and can be told
 * to fail: 429 with Retry-After, 503, or no answer (a timeout). They count what each external id received.
 *
 * ServiceNow IRE, POST /api/now/identifyreconcile: body { items: [{ className, values, lookup? }], relations?: [{ parent,
 *   child, type }] } (parent/child are indexes into items), answer { result: { items: [{ className, operation, sysId }] } }
 *   — https://www.servicenow.com/docs/bundle/xanadu-api-reference/page/integrate/inbound-rest/concept/c_IdentifyReconcileAPI.html
 * ServiceNow Table API, POST /api/now/table/incident → { result: { sys_id } }, PATCH /api/now/table/incident/{sys_id},
 *   DELETE /api/now/table/cmdb_rel_ci/{sys_id} (a relation the IRE answered with its sys_id)
 *   — https://www.servicenow.com/docs/bundle/xanadu-api-reference/page/integrate/inbound-rest/concept/c_TableAPI.html
 * Webhook: CloudEvents 1.0 structured JSON (specversion, id, source, type, time, datacontenttype, data) —
 *   https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md — signed per Standard Webhooks
 *   (webhook-id, webhook-timestamp, webhook-signature) — https://github.com/standard-webhooks/standard-webhooks
 * iTop REST/JSON, POST /webservices/rest.php?version=1.3 with form field json_data { operation: core/create|core/update|
 *   core/get|core/apply_stimulus, class, key?, fields?, comment } — https://www.itophub.io/wiki/page?id=latest:advancedtopics:rest_json
 * JSM Assets, POST /jsm/assets/workspace/{id}/v1/object/create { objectTypeId, attributes: [{ objectTypeAttributeId,
 *   objectAttributeValues: [{ value }] }] } → { id, objectKey } — https://developer.atlassian.com/cloud/assets/rest/api-group-object/
 */
import { verifyWebhook } from "../../../services/exporters/vendors/webhook.ts";

export type Fault = "429" | "503" | "timeout" | "400";

export interface Receiver {
  url: string;
  /** external id → requests that created or changed it */
  writes: Map<string, number>;
  /** external id → creates (an IRE INSERT, a core/create, an object create, a first-seen event id) */
  creates: Map<string, number>;
  incidents: Map<string, { opened: number; resolved: number }>;
  /** external id → retirements (ServiceNow: a PATCH setting install_status 7, "Retired") */
  retired: Map<string, number>;
  /** ServiceNow relations (`rel:<parent>:<type>:<child>`) → deletes (DELETE /api/now/table/cmdb_rel_ci/{sys_id}) */
  unrelated: Map<string, number>;
  /** shape violations seen (a test expects none) */
  violations: string[];
  requests: number;
  /** the next requests fail like this, in order */
  faults: Fault[];
  /** requests naming this value are refused with 400 */
  refuse: Set<string>;
  stop(): void;
}

const bad = (r: Receiver, why: string) => {
  r.violations.push(why);
  return Response.json({ error: { message: why } }, { status: 400 });
};
const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

export function startReceiver(vendor: "servicenow" | "webhook" | "itop" | "jsm", o: { secret?: string; delayMs?: number } = {}): Receiver {
  const seen = new Set<string>();
  const r: Receiver = { url: "", writes: new Map(), creates: new Map(), incidents: new Map(), retired: new Map(), unrelated: new Map(), violations: [], requests: 0, faults: [], refuse: new Set(), stop: () => srv.stop(true) };
  let nextId = 1;
  const ids = new Map<string, string>();
  const srv = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 60,
    fetch: async (req) => {
      r.requests++;
      const url = new URL(req.url);
      const text = await req.text();
      const fault = r.faults.shift();
      if (fault === "429") return new Response("slow down", { status: 429, headers: { "retry-after": "1" } });
      if (fault === "503") return new Response("maintenance", { status: 503 });
      if (fault === "timeout") {
        await Bun.sleep(3000);
        return new Response("late", { status: 504 });
      }
      if (o.delayMs) await Bun.sleep(o.delayMs);
      if ([...r.refuse].some((v) => text.includes(v))) return Response.json({ error: { message: "Invalid class attribute", detail: "refused by the test" } }, { status: 400 });
      if (vendor === "servicenow") {
        if (req.headers.get("authorization") !== `Basic ${Buffer.from("orrery:pw").toString("base64")}`) return bad(r, "no basic auth");
        if (req.method === "POST" && url.pathname === "/api/now/identifyreconcile") {
          const b = JSON.parse(text) as { items?: { className?: unknown; values?: Record<string, unknown>; lookup?: unknown }[]; relations?: { parent: number; child: number; type: string }[] };
          if (!Array.isArray(b.items) || !b.items.length) return bad(r, "IRE: items must be a non-empty array");
          const out = [];
          for (const it of b.items) {
            if (typeof it.className !== "string" || typeof it.values !== "object" || !it.values) return bad(r, "IRE: item needs className and values");
            if (it.lookup !== undefined && !Array.isArray(it.lookup)) return bad(r, "IRE: lookup is an array");
            const key = `${it.className}:${String(it.values.name)}`;
            let sysId = ids.get(key);
            const insert = !sysId;
            if (!sysId) ids.set(key, (sysId = (nextId++).toString(16).padStart(32, "0")));
            out.push({ className: it.className, operation: insert ? "INSERT" : "UPDATE_OR_NO_CHANGE", sysId });
            if (b.items.length === 1) {
              bump(r.writes, sysId);
              if (insert) bump(r.creates, sysId);
            }
          }
          const rels = [];
          for (const rel of b.relations ?? []) {
            if (!Number.isInteger(rel.parent) || !Number.isInteger(rel.child) || !/^.+::.+$/.test(rel.type)) return bad(r, "IRE: relation needs parent, child indexes and a type like 'Depends on::Used by'");
            const k = `rel:${out[rel.parent]!.sysId}:${rel.type}:${out[rel.child]!.sysId}`;
            bump(r.writes, k);
            let relId = ids.get(k);
            if (!relId) {
              relId = (nextId++).toString(16).padStart(32, "0");
              ids.set(k, relId);
              ids.set(relId, k);
            }
            rels.push({ sysId: relId });
          }
          return Response.json({ result: { items: out, relations: rels } });
        }
        if (req.method === "POST" && url.pathname === "/api/now/table/incident") {
          const b = JSON.parse(text) as Record<string, unknown>;
          if (typeof b.short_description !== "string") return bad(r, "incident needs short_description");
          const id = `inc${nextId++}`;
          r.incidents.set(String(b.correlation_id), { opened: (r.incidents.get(String(b.correlation_id))?.opened ?? 0) + 1, resolved: 0 });
          ids.set(id, String(b.correlation_id));
          return Response.json({ result: { sys_id: id } }, { status: 201 });
        }
        if (req.method === "PATCH" && url.pathname.startsWith("/api/now/table/incident/")) {
          const b = JSON.parse(text) as Record<string, unknown>;
          if (b.state !== "6") return bad(r, "resolve sets state 6");
          const c = ids.get(url.pathname.split("/").pop()!);
          if (!c) return Response.json({ error: { message: "No Record found" } }, { status: 404 });
          r.incidents.get(c)!.resolved++;
          return Response.json({ result: { sys_id: url.pathname.split("/").pop() } });
        }
        if (req.method === "DELETE" && url.pathname.startsWith("/api/now/table/cmdb_rel_ci/")) {
          const k = ids.get(url.pathname.split("/").pop()!);
          if (!k?.startsWith("rel:")) return Response.json({ error: { message: "No Record found" } }, { status: 404 });
          bump(r.unrelated, k);
          return new Response(null, { status: 204 });
        }
        if (req.method === "PATCH" && (JSON.parse(text) as Record<string, unknown>).install_status === "7") bump(r.retired, url.pathname.split("/").pop()!);
        if (req.method === "PATCH" || req.method === "DELETE" || req.method === "GET") return Response.json({ result: [] });
        return bad(r, `unexpected ${req.method} ${url.pathname}`);
      }
      if (vendor === "webhook") {
        const v = verifyWebhook(o.secret ?? "", req.headers, text);
        if (!v.ok) return new Response(v.reason, { status: 401 });
        if (req.headers.get("content-type") !== "application/cloudevents+json") return bad(r, "content type");
        const e = JSON.parse(text) as Record<string, unknown>;
        for (const f of ["specversion", "id", "source", "type", "time", "datacontenttype", "data"]) if (e[f] === undefined) return bad(r, `CloudEvent without ${f}`);
        if (e.specversion !== "1.0" || e.id !== v.id) return bad(r, "specversion 1.0 and id = webhook-id");
        // replay-safe: an id seen before is acknowledged and not applied again
        if (seen.has(v.id)) return new Response(null, { status: 204 });
        seen.add(v.id);
        bump(r.writes, String(e.subject));
        if (e.type === "io.orrery.ci.upserted" && !r.creates.has(String(e.subject))) bump(r.creates, String(e.subject));
        return new Response(null, { status: 204 });
      }
      if (vendor === "itop") {
        if (url.pathname !== "/webservices/rest.php" || url.searchParams.get("version") !== "1.3") return bad(r, "iTop: POST /webservices/rest.php?version=1.3");
        const form = new URLSearchParams(text);
        if (form.get("auth_user") !== "orrery" || form.get("auth_pwd") !== "pw") return Response.json({ code: 1, message: "Error: Invalid login" });
        const j = JSON.parse(form.get("json_data") ?? "null") as { operation: string; class: string; key?: unknown; fields?: Record<string, unknown>; comment?: string } | null;
        if (!j || typeof j.operation !== "string" || typeof j.class !== "string") return bad(r, "iTop: json_data needs operation and class");
        const obj = (key: string) => ({ code: 0, message: "ok", objects: { [`${j.class}::${key}`]: { code: 0, message: "", class: j.class, key, fields: { id: key } } } });
        if (j.operation === "core/create") {
          if (!j.fields || !j.comment) return bad(r, "iTop: core/create needs fields and comment");
          const key = String(nextId++);
          const name = String(j.fields.name ?? j.fields.title ?? key);
          ids.set(`${j.class}:${name}`, key);
          bump(r.creates, key);
          bump(r.writes, key);
          return Response.json(obj(key));
        }
        if (j.operation === "core/update" || j.operation === "core/apply_stimulus") {
          if (j.key === undefined) return bad(r, `iTop: ${j.operation} needs a key`);
          bump(r.writes, String(j.key));
          return Response.json(obj(String(j.key)));
        }
        if (j.operation === "core/get") {
          const k = ids.get(`${j.class}:${String((j.key as Record<string, unknown>)?.name)}`);
          return Response.json(k ? obj(k) : { code: 0, message: "Found: 0", objects: null });
        }
        return Response.json({ code: 11, message: `unknown operation ${j.operation}` });
      }
      // jsm
      const m = url.pathname.match(/^\/jsm\/assets\/workspace\/([^/]+)\/v1\/object\/(create|aql|[0-9]+)$/);
      if (!m) return bad(r, `JSM: unexpected ${req.method} ${url.pathname}`);
      if (m[2] === "create" || (req.method === "PUT" && /^\d+$/.test(m[2]!))) {
        const b = JSON.parse(text) as { objectTypeId?: unknown; attributes?: { objectTypeAttributeId?: unknown; objectAttributeValues?: { value?: unknown }[] }[] };
        if (m[2] === "create" && typeof b.objectTypeId !== "string") return bad(r, "JSM: objectTypeId");
        if (!Array.isArray(b.attributes) || b.attributes.some((a) => typeof a.objectTypeAttributeId !== "string" || !Array.isArray(a.objectAttributeValues))) return bad(r, "JSM: attributes[].objectTypeAttributeId + objectAttributeValues");
        const id = m[2] === "create" ? String(nextId++) : m[2]!;
        if (m[2] === "create") bump(r.creates, id);
        bump(r.writes, id);
        return Response.json({ id, objectKey: `ORR-${id}` }, { status: m[2] === "create" ? 201 : 200 });
      }
      if (req.method === "GET") return Response.json({ id: m[2], attributes: [] });
      if (m[2] === "aql") return Response.json({ values: [] });
      return new Response(null, { status: 204 });
    },
  });
  r.url = `http://127.0.0.1:${srv.port}`;
  return r;
}
