/**
 * The registry's REST API. The gateway checks the door (services/identity/gate.ts POLICY: viewers read; editing a
 * component or a status is open to viewers at the door because ownership is decided per component by the registry
 * service, which gets the caller's login, role and directory groups), then forwards over NATS request/reply
 * (services/registry/client.ts), as /api/cypher does for the graph. The OpenAPI 3 document is generated from the same
 * zod schemas (pipelines/contracts/registry.ts) with zod-openapi; /api/registry/reference is a small page that reads it.
 *
 *   GET    /api/registry/components?q=&tag=&category=&owner=&limit=&offset=   search by text and tags
 *   POST   /api/registry/components                                         create (admin)
 *   GET    /api/registry/components/:id                                     component, readiness, statuses, instances
 *   PUT    /api/registry/components/:id     PATCH the same                  replace / change fields at `rev` (409 when stale)
 *   DELETE /api/registry/components/:id?rev=                                delete (admin)
 *   GET    /api/registry/components/:id/audit                               its history
 *   PUT    /api/registry/components/:id/requirements/:req                   set a status (owners, maintainers, the role)
 *   POST   /api/registry/components/:id/requirements/:req/signoff           sign off (the requirement's role)
 *   GET    /api/registry/audit                                              the estate's history, newest first
 *   GET    /api/registry/lists        PUT /api/registry/lists/:list         editable lists (admin edits)
 *   GET    /api/registry/requirements PUT|DELETE /api/registry/requirement-groups/:id, /api/registry/requirements/:id
 *   GET    /api/registry/readiness    GET /api/registry/drift    GET /api/registry/services?id=
 *   GET    /api/registry/export?format=csv|xlsx
 *   POST   /api/registry/import?format=csv|xlsx&dryRun=true|false&file=    the file as the body (admin); with
 *          Accept: application/x-ndjson the answer streams progress lines, then {"report": …}
 */
import type { BunRequest } from "bun";
import { z } from "zod";
import { createDocument } from "zod-openapi";
import {
  AuditList,
  Component,
  ComponentDetail,
  ComponentInput,
  ComponentList,
  ComponentPatch,
  Drift,
  ImportReport,
  ListValues,
  Readiness,
  Requirement,
  RequirementGroup,
  RequirementStatus,
  ServiceComponents,
  SignOffInput,
  StatusInput,
  type Caller,
  type ImportProgress,
} from "../../../pipelines/contracts/registry.ts";
import type { Bus } from "../../shared/bus.ts";
import { HttpError, readJsonBody, type Handler, type Routes } from "../../shared/http.ts";
import { principalOf } from "../../identity/client.ts";
import { callRegistry, REGISTRY_STATUS, RegistryClientError } from "../../registry/client.ts";

/** Directory groups of a login (DNs), for ownership by group; [] when there is no directory. */
export type GroupsOf = (login: string) => string[];

const MAX_IMPORT_BYTES = 64 * 1024 * 1024;

function query(req: Request, multi: string[] = []): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, v] of new URL(req.url).searchParams) {
    if (multi.includes(k)) o[k] = [...((o[k] as string[] | undefined) ?? []), ...v.split(",").filter(Boolean)];
    else o[k] = v;
  }
  return o;
}

const json = (req: Request): Promise<unknown> => readJsonBody(req);

const params = (req: Request) => (req as BunRequest<string>).params as Record<string, string>;

export function registryRoutes(deps: { bus: Bus; groupsOf?: GroupsOf }): Routes {
  const caller = (req: Request): Caller => {
    const p = principalOf(req);
    if (!p) throw new HttpError(401, "authentication required");
    return { login: p.login, role: p.role, groups: p.via === "off" ? [] : (deps.groupsOf?.(p.login) ?? []) };
  };
  /** one mapping of the registry's answers to HTTP: its codes by REGISTRY_STATUS, with the detail (a 409's current record) */
  const call = async (req: Request, op: string, input: unknown, status = 200): Promise<Response> => {
    try {
      return Response.json(await callRegistry(deps.bus, op, caller(req), input), { status });
    } catch (e) {
      if (!(e instanceof RegistryClientError)) throw e;
      return Response.json({ error: e.message, code: e.code, ...(e.detail !== undefined ? { detail: e.detail } : {}) }, { status: REGISTRY_STATUS[e.code] });
    }
  };
  const h = (f: (req: Request) => Promise<Response>): Handler => f;

  let doc: string | undefined;
  const routes: Routes = {
    "/api/registry/components": {
      GET: h((req) => call(req, "components.list", query(req, ["tag"]))),
      POST: h(async (req) => call(req, "components.create", await json(req), 201)),
    },
    "/api/registry/components/:id": {
      GET: h((req) => call(req, "components.get", { id: params(req).id })),
      PUT: h(async (req) => call(req, "components.put", { id: params(req).id, body: await json(req) })),
      PATCH: h(async (req) => call(req, "components.patch", { id: params(req).id, body: await json(req) })),
      DELETE: h((req) => call(req, "components.delete", { id: params(req).id, rev: query(req).rev })),
    },
    "/api/registry/components/:id/audit": { GET: h((req) => call(req, "audit", { ...query(req), component: params(req).id })) },
    "/api/registry/components/:id/requirements/:req": {
      PUT: h(async (req) => call(req, "status.put", { component: params(req).id, requirement: params(req).req, body: await json(req) })),
    },
    "/api/registry/components/:id/requirements/:req/signoff": {
      POST: h(async (req) => call(req, "status.signoff", { component: params(req).id, requirement: params(req).req, body: await json(req) })),
    },
    "/api/registry/audit": { GET: h((req) => call(req, "audit", query(req))) },
    "/api/registry/lists": { GET: h((req) => call(req, "lists.get", {})) },
    "/api/registry/lists/:list": { PUT: h(async (req) => call(req, "lists.put", { list: params(req).list, values: await json(req) })) },
    "/api/registry/requirements": { GET: h((req) => call(req, "requirements.get", {})) },
    "/api/registry/requirement-groups/:id": {
      PUT: h(async (req) => call(req, "groups.put", { ...((await json(req)) as object), id: params(req).id })),
      DELETE: h((req) => call(req, "groups.delete", { id: params(req).id })),
    },
    "/api/registry/requirements/:id": {
      PUT: h(async (req) => call(req, "requirements.put", { ...((await json(req)) as object), id: params(req).id })),
      DELETE: h((req) => call(req, "requirements.delete", { id: params(req).id })),
    },
    "/api/registry/readiness": { GET: h((req) => call(req, "readiness", {})) },
    "/api/registry/drift": { GET: h((req) => call(req, "drift", query(req))) },
    "/api/registry/services": { GET: h((req) => call(req, "service", query(req))) },
    "/api/registry/export": {
      GET: h(async (req) => {
        const q = query(req);
        const format = q.format === "xlsx" ? "xlsx" : "csv";
        let r: { base64: string };
        try {
          r = await callRegistry<{ base64: string }>(deps.bus, "export", caller(req), { format });
        } catch (e) {
          if (!(e instanceof RegistryClientError)) throw e;
          return Response.json({ error: e.message, code: e.code }, { status: REGISTRY_STATUS[e.code] });
        }
        const type = format === "xlsx" ? "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" : "text/csv; charset=utf-8";
        return new Response(Buffer.from(r.base64, "base64"), { headers: { "content-type": type, "content-disposition": `attachment; filename="components.${format}"` } });
      }),
    },
    "/api/registry/import": {
      POST: h(async (req) => {
        const q = query(req);
        const format = q.format ?? (/spreadsheetml|xlsx/.test(req.headers.get("content-type") ?? "") ? "xlsx" : "csv");
        if (format !== "csv" && format !== "xlsx") throw new HttpError(400, `format must be csv or xlsx, got "${String(format)}"`);
        const dryRun = q.dryRun === undefined ? true : q.dryRun === "true" || q.dryRun === "1";
        if (q.dryRun !== undefined && !["true", "false", "1", "0"].includes(String(q.dryRun))) throw new HttpError(400, `dryRun must be true or false, got "${String(q.dryRun)}"`);
        const body = new Uint8Array(await req.arrayBuffer());
        if (body.byteLength > MAX_IMPORT_BYTES) throw new HttpError(413, `an import file is at most ${MAX_IMPORT_BYTES} bytes`);
        if (!body.byteLength) throw new HttpError(400, "the body is empty: send the CSV or XLSX file as the request body");
        const input = { format, dryRun, file: String(q.file ?? "").slice(0, 512), base64: Buffer.from(body).toString("base64") };
        const who = caller(req);
        if (!(req.headers.get("accept") ?? "").includes("application/x-ndjson")) return await call(req, "import", input);
        // progress lines while the registry works, then the report (or the error) as the last line
        const stream = new ReadableStream<Uint8Array>({
          start: async (ctl) => {
            const line = (o: unknown) => ctl.enqueue(new TextEncoder().encode(JSON.stringify(o) + "\n"));
            try {
              const report = await callRegistry(deps.bus, "import", who, input, { onProgress: (p: ImportProgress) => line({ progress: p }) });
              line({ report });
            } catch (e) {
              line(e instanceof RegistryClientError ? { error: e.message, code: e.code, status: REGISTRY_STATUS[e.code] } : { error: "internal error", status: 500 });
            }
            ctl.close();
          },
        });
        return new Response(stream, { headers: { "content-type": "application/x-ndjson" } });
      }),
    },
    "/api/registry/openapi.json": { GET: () => new Response((doc ??= JSON.stringify(openApiDocument())), { headers: { "content-type": "application/json" } }) },
    "/api/registry/reference": { GET: () => new Response(REFERENCE_PAGE, { headers: { "content-type": "text/html; charset=utf-8", "content-security-policy": "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'" } }) },
  };
  return routes;
}

// ---- OpenAPI ----

const ErrorBody = z.object({ error: z.string(), code: z.string().optional(), detail: z.unknown().optional() }).meta({ id: "Error" });
const errors = (...codes: number[]) =>
  Object.fromEntries(codes.map((c) => [String(c), { description: ({ 400: "bad input", 401: "not logged in", 403: "not allowed", 404: "not found", 409: "stale revision or a clash (detail.current holds the current record)", 503: "the registry service is unavailable" } as Record<number, string>)[c] ?? "error", content: { "application/json": { schema: ErrorBody } } }]));
const ok = (schema: z.ZodType, description = "OK") => ({ "200": { description, content: { "application/json": { schema } } } });
const body = (schema: z.ZodType) => ({ content: { "application/json": { schema } } });
const Id = z.object({ id: z.string().meta({ description: "component id" }) });
const IdReq = Id.extend({ req: z.string().meta({ description: "requirement id" }) });

export function openApiDocument() {
  return createDocument({
    openapi: "3.1.0",
    info: { title: "Orrery registry API", version: "1", description: "Components, owners, requirements and sign-off, import/export, and drift between what is declared and what runs. Authenticate with a session cookie or `Authorization: Bearer <token>`." },
    servers: [{ url: "/" }],
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" }, session: { type: "apiKey", in: "cookie", name: "orrery_session" } } },
    security: [{ bearer: [] }, { session: [] }],
    paths: {
      "/api/registry/components": {
        get: {
          summary: "Search components by text and tags",
          requestParams: { query: z.object({ q: z.string().optional(), tag: z.string().optional().meta({ description: "comma-separated; all must match" }), category: z.string().optional(), owner: z.string().optional(), limit: z.number().int().optional(), offset: z.number().int().optional() }) },
          responses: { ...ok(ComponentList), ...errors(400, 401, 503) },
        },
        post: { summary: "Create a component (admin)", requestBody: body(ComponentInput), responses: { "201": { description: "created", content: { "application/json": { schema: Component } } }, ...errors(400, 401, 403, 409, 503) } },
      },
      "/api/registry/components/{id}": {
        get: { summary: "A component with its readiness, statuses, running instances and dependents", requestParams: { path: Id }, responses: { ...ok(ComponentDetail), ...errors(401, 404, 503) } },
        put: { summary: "Replace a component at a revision (owners, maintainers, admin)", requestParams: { path: Id }, requestBody: body(ComponentInput.extend({ rev: z.number().int() })), responses: { ...ok(Component), ...errors(400, 401, 403, 404, 409, 503) } },
        patch: { summary: "Change some fields at a revision (owners, maintainers, admin)", requestParams: { path: Id }, requestBody: body(ComponentPatch), responses: { ...ok(Component), ...errors(400, 401, 403, 404, 409, 503) } },
        delete: { summary: "Delete a component (admin)", requestParams: { path: Id, query: z.object({ rev: z.number().int() }) }, responses: { ...ok(z.object({ deleted: z.string() })), ...errors(401, 403, 404, 409, 503) } },
      },
      "/api/registry/components/{id}/audit": { get: { summary: "A component's history (who, when, old → new), newest first", requestParams: { path: Id, query: z.object({ since: z.number().int().optional(), limit: z.number().int().optional() }) }, responses: { ...ok(AuditList), ...errors(401, 503) } } },
      "/api/registry/components/{id}/requirements/{req}": { put: { summary: "Set a requirement's status on a component (withdraws a sign-off)", requestParams: { path: IdReq }, requestBody: body(StatusInput), responses: { ...ok(RequirementStatus), ...errors(400, 401, 403, 404, 409, 503) } } },
      "/api/registry/components/{id}/requirements/{req}/signoff": { post: { summary: "Sign a requirement off (needs the requirement's role)", requestParams: { path: IdReq }, requestBody: body(SignOffInput), responses: { ...ok(RequirementStatus), ...errors(400, 401, 403, 404, 409, 503) } } },
      "/api/registry/audit": { get: { summary: "The estate's history, newest first", requestParams: { query: z.object({ since: z.number().int().optional(), limit: z.number().int().optional() }) }, responses: { ...ok(AuditList), ...errors(401, 503) } } },
      "/api/registry/lists": { get: { summary: "The editable lists (category, lifecycle, privacy, location)", responses: { ...ok(z.record(z.string(), z.array(z.string()))), ...errors(401, 503) } } },
      "/api/registry/lists/{list}": { put: { summary: "Replace a list (admin)", requestParams: { path: z.object({ list: z.enum(["category", "lifecycle", "privacy", "location"]) }) }, requestBody: body(ListValues), responses: { ...ok(z.array(z.string())), ...errors(400, 401, 403, 409, 503) } } },
      "/api/registry/requirements": { get: { summary: "Requirement groups and requirements", responses: { ...ok(z.object({ groups: z.array(RequirementGroup), requirements: z.array(Requirement) })), ...errors(401, 503) } } },
      "/api/registry/requirement-groups/{id}": {
        put: { summary: "Create or change a requirement group (admin)", requestParams: { path: z.object({ id: z.string() }) }, requestBody: body(RequirementGroup.omit({ id: true })), responses: { ...ok(RequirementGroup), ...errors(400, 401, 403, 503) } },
        delete: { summary: "Delete an empty requirement group (admin)", requestParams: { path: z.object({ id: z.string() }) }, responses: { ...ok(z.object({ deleted: z.string() })), ...errors(401, 403, 404, 409, 503) } },
      },
      "/api/registry/requirements/{id}": {
        put: { summary: "Create or change a requirement and the role that signs it off (admin)", requestParams: { path: z.object({ id: z.string() }) }, requestBody: body(Requirement.omit({ id: true })), responses: { ...ok(Requirement), ...errors(400, 401, 403, 503) } },
        delete: { summary: "Delete a requirement (admin)", requestParams: { path: z.object({ id: z.string() }) }, responses: { ...ok(z.object({ deleted: z.string() })), ...errors(401, 403, 404, 503) } },
      },
      "/api/registry/readiness": { get: { summary: "Readiness per component and across the estate", responses: { ...ok(z.object({ estate: Readiness, components: z.array(z.object({ id: z.string(), readiness: Readiness })) })), ...errors(401, 503) } } },
      "/api/registry/drift": { get: { summary: "Declared vs discovered", requestParams: { query: z.object({ windowMs: z.number().int().optional() }) }, responses: { ...ok(Drift), ...errors(401, 503) } } },
      "/api/registry/services": { get: { summary: "The component(s), owners and team of a discovered service", requestParams: { query: z.object({ id: z.string() }) }, responses: { ...ok(ServiceComponents), ...errors(401, 503) } } },
      "/api/registry/export": { get: { summary: "Components and declared dependencies as CSV or XLSX", requestParams: { query: z.object({ format: z.enum(["csv", "xlsx"]).optional() }) }, responses: { "200": { description: "the file" }, ...errors(401, 503) } } },
      "/api/registry/import": {
        post: {
          summary: "Import components (admin): a dry run reports every problem by row and column; an apply is all or nothing",
          requestParams: { query: z.object({ format: z.enum(["csv", "xlsx"]).optional(), dryRun: z.enum(["true", "false"]).optional().meta({ description: "default true" }), file: z.string().optional() }) },
          requestBody: { content: { "text/csv": { schema: z.string() }, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": { schema: z.string().meta({ format: "binary" }) } } },
          responses: { ...ok(ImportReport, "the report (applied: false when a problem was found; nothing changed)"), ...errors(400, 401, 403, 409, 413, 503) },
        },
      },
    },
  });
}

const REFERENCE_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Orrery registry API</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2433;background:#fafbfc}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}
.op{background:#fff;border:1px solid #d9dee7;border-radius:6px;margin:10px 0}
.op summary{cursor:pointer;padding:8px 12px;display:flex;gap:12px;align-items:baseline}
.m{font:600 12px ui-monospace,monospace;min-width:58px;text-transform:uppercase}
.get{color:#0b6e4f}.post{color:#1f5fbf}.put,.patch{color:#9a6700}.delete{color:#b42318}
code,pre{font:12px ui-monospace,monospace}
pre{background:#f3f5f8;padding:8px;border-radius:4px;overflow:auto;max-height:360px;margin:4px 12px 12px}
.d{padding:0 12px;color:#5b6473}
</style></head>
<body><main><h1>Orrery registry API</h1><p id="desc"></p><p><a href="openapi.json">openapi.json</a> (OpenAPI 3.1, generated from the registry's zod schemas)</p><div id="ops">loading…</div></main>
<script>
const esc=s=>String(s).replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
fetch("openapi.json").then(r=>r.json()).then(doc=>{
  document.getElementById("desc").textContent=doc.info.description||"";
  const schemas=(doc.components&&doc.components.schemas)||{};
  const deref=(s,d=0)=>{if(!s||d>6)return s;if(s.$ref){const n=s.$ref.split("/").pop();return {title:n,...deref(schemas[n],d+1)}}
    const o=Array.isArray(s)?[]:{};for(const k in s)o[k]=typeof s[k]==="object"?deref(s[k],d+1):s[k];return o};
  let html="";
  for(const [path,ops] of Object.entries(doc.paths)) for(const [m,op] of Object.entries(ops)){
    const parts=[];
    if(op.parameters&&op.parameters.length)parts.push("<div class=d>parameters</div><pre>"+esc(op.parameters.map(p=>p.in+" "+p.name+(p.required?" (required)":"")+(p.description?" — "+p.description:"")).join("\\n"))+"</pre>");
    const rb=op.requestBody&&op.requestBody.content;
    if(rb)for(const [t,c] of Object.entries(rb))parts.push("<div class=d>request body "+esc(t)+"</div><pre>"+esc(JSON.stringify(deref(c.schema),null,2))+"</pre>");
    for(const [code,r] of Object.entries(op.responses||{})){const c=r.content&&r.content["application/json"];
      parts.push("<div class=d>"+esc(code)+" "+esc(r.description||"")+"</div>"+(c&&code<300?"<pre>"+esc(JSON.stringify(deref(c.schema),null,2))+"</pre>":""));}
    html+="<details class=op><summary><span class='m "+m+"'>"+m+"</span><code>"+esc(path)+"</code><span>"+esc(op.summary||"")+"</span></summary>"+parts.join("")+"</details>";
  }
  document.getElementById("ops").innerHTML=html;
}).catch(e=>{document.getElementById("ops").textContent="could not load openapi.json: "+e});
</script></body></html>`;
