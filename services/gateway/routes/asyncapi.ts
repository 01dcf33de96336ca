/** GET /api/asyncapi.json: the subscriber contract (AsyncAPI 3.0, generated from the zod contracts; pipelines/contracts/asyncapi.ts). */
import { asyncApiDocument } from "../../../pipelines/contracts/asyncapi.ts";
import type { Routes } from "../../shared/http.ts";

export function asyncApiRoutes(o: { prefix: string; gatewayHost: string }): Routes {
  let doc: string | undefined;
  return {
    "/api/asyncapi.json": { GET: () => new Response((doc ??= JSON.stringify(asyncApiDocument({ prefix: o.prefix, gatewayHost: o.gatewayHost }))), { headers: { "content-type": "application/json" } }) },
  };
}
