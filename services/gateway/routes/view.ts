/**
 * View routes (levels of detail over HTTP, for tests, the CLI and time travel; pages subscribe over /ws instead):
 *   GET /api/view?spec=<url-encoded JSON ViewSpec>     view.snapshot.v1 (with spec.at: from topology history at that time)
 *   GET /api/view/entity?id=                           one entity for a drawer: short name, health, neighbours
 *   GET /api/view/search?q=&limit=                     entities by short name, host, id or DNS name
 * A bad spec is a 400 that names the field; before the gateway's mirror is synced, 503.
 */
import { z } from "zod";
import { specFromParam } from "../../../pipelines/contracts/view.ts";
import { HttpError, parseQuery, type Routes } from "../../shared/http.ts";
import { ViewUnavailable, type ViewHub } from "../views.ts";

export const EntityParams = z.object({ id: z.string().min(1).max(512) });
export const SearchParams = z.object({ q: z.string().min(1).max(256), limit: z.coerce.number().int().min(1).max(1000).default(50) });

/** A hub's refusal (not synced, no history) as a 503; anything else goes to the server's error mapping. */
async function guarded<T>(f: () => T | Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof ViewUnavailable) throw new HttpError(503, e.message);
    throw e;
  }
}

export function viewRoutes(deps: { views: ViewHub }): Routes {
  const { views } = deps;
  return {
    "/api/view": {
      GET: async (req) => {
        const p = specFromParam(new URL(req.url).searchParams.get("spec"));
        if (!p.ok) throw new HttpError(400, p.error);
        return Response.json(await guarded(() => views.snapshot(p.spec)));
      },
    },
    "/api/view/entity": {
      GET: async (req) => {
        const p = parseQuery(EntityParams, req);
        const e = await guarded(() => views.entity(p.id));
        if (!e) throw new HttpError(404, `no such entity in the live graph: ${p.id}`);
        return Response.json(e);
      },
    },
    "/api/view/search": {
      GET: async (req) => {
        const p = parseQuery(SearchParams, req);
        return Response.json(await guarded(() => views.search(p.q, p.limit)));
      },
    },
  };
}
