/**
 * The broker's HTTP surface: the Open Service Broker API's routes under /v2, plus GET /broker/nats-authorization (the
 * nats-server authorization block for every live binding). Every request is checked first for Basic auth (401, so
 * nothing — not even the versions the broker speaks — is told to a caller without the password) and then, on /v2,
 * for X-Broker-API-Version ("API Version Header": 412 when it is missing or older than 2.13).
 */
import { OSB_MIN_VERSION } from "../../pipelines/contracts/broker.ts";
import type { Logger } from "../shared/log.ts";
import { SealedSecretError } from "./seal.ts";
import { sameSecret } from "./secrets.ts";
import type { Broker, Reply } from "./broker.ts";
import { catalog } from "./catalog.ts";
import { authorizationBlock } from "./tenant.ts";

export interface BrokerHttpOptions {
  broker: Broker;
  log: Logger;
  user: string;
  password: string;
  host: string;
  port: number;
}

const json = (r: Reply) => Response.json(r.body, { status: r.status, headers: r.headers });

/** null when authorized, else the 401 */
export function checkAuth(req: Request, user: string, password: string): Response | null {
  const h = req.headers.get("authorization") ?? "";
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(h);
  if (m) {
    const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
    const i = decoded.indexOf(":");
    if (i >= 0 && sameSecret(decoded.slice(0, i), user) && sameSecret(decoded.slice(i + 1), password)) return null;
  }
  return Response.json({ description: "Basic authentication required" }, { status: 401, headers: { "WWW-Authenticate": 'Basic realm="orrery-broker"' } });
}

/** null when the version is one the broker speaks (2.13 or later, major 2), else the 412 */
export function checkVersion(req: Request): Response | null {
  const v = req.headers.get("x-broker-api-version");
  const m = v === null ? null : /^(\d+)\.(\d+)$/.exec(v.trim());
  const ok = m !== null && Number(m[1]) === OSB_MIN_VERSION.major && Number(m[2]) >= OSB_MIN_VERSION.minor;
  if (ok) return null;
  const description =
    v === null ? `the X-Broker-API-Version header is required (this broker speaks ${OSB_MIN_VERSION.major}.${OSB_MIN_VERSION.minor} or later)` : `X-Broker-API-Version ${v} is not supported: this broker speaks ${OSB_MIN_VERSION.major}.${OSB_MIN_VERSION.minor} or later (major ${OSB_MIN_VERSION.major})`;
  return Response.json({ error: "PreconditionFailed", description }, { status: 412 });
}

async function bodyOf(req: Request): Promise<{ ok: true; value: unknown } | { ok: false; res: Response }> {
  const text = await req.text();
  try {
    return { ok: true, value: text === "" ? {} : JSON.parse(text) };
  } catch (e) {
    return { ok: false, res: Response.json({ error: "BadRequest", description: `the body is not JSON: ${(e as Error).message}` }, { status: 400 }) };
  }
}

type Params = Record<string, string>;

export function startBrokerServer(o: BrokerHttpOptions) {
  const b = o.broker;
  const osb =
    (f: (req: Request, p: Params, q: URLSearchParams) => Promise<Response> | Response) =>
    async (req: Request & { params?: Params }): Promise<Response> =>
      checkAuth(req, o.user, o.password) ?? checkVersion(req) ?? (await f(req, req.params ?? {}, new URL(req.url).searchParams));
  const withBody =
    (f: (p: Params, body: unknown, q: URLSearchParams) => Promise<Reply>) =>
    osb(async (req, p, q) => {
      const body = await bodyOf(req);
      return body.ok ? json(await f(p, body.value, q)) : body.res;
    });
  return Bun.serve({
    hostname: o.host,
    port: o.port,
    routes: {
      "/v2/catalog": { GET: osb(() => Response.json(catalog())) },
      "/v2/service_instances/:instance_id": {
        PUT: withBody((p, body, q) => b.provision(p.instance_id!, body, q)),
        PATCH: withBody((p, body, q) => b.update(p.instance_id!, body, q)),
        DELETE: osb(async (_r, p, q) => json(await b.deprovision(p.instance_id!, q))),
        GET: osb(async (_r, p) => json(await b.fetchInstance(p.instance_id!))),
      },
      "/v2/service_instances/:instance_id/last_operation": { GET: osb(async (_r, p, q) => json(await b.lastOperation(p.instance_id!, q))) },
      "/v2/service_instances/:instance_id/service_bindings/:binding_id": {
        PUT: withBody((p, body, q) => b.bind(p.instance_id!, p.binding_id!, body, q)),
        DELETE: osb(async (_r, p, q) => json(await b.unbind(p.instance_id!, p.binding_id!, q))),
        GET: osb(async (_r, p) => json(await b.fetchBinding(p.instance_id!, p.binding_id!))),
      },
      "/v2/service_instances/:instance_id/service_bindings/:binding_id/last_operation": {
        GET: osb(async (_r, p, q) => json(await b.bindingLastOperation(p.instance_id!, p.binding_id!, q))),
      },
      // for the NATS operator: nats.conf's authorization block of every live binding (include it, then reload)
      "/broker/nats-authorization": {
        GET: async (req) => checkAuth(req, o.user, o.password) ?? new Response(authorizationBlock(await b.liveUsers()), { headers: { "content-type": "text/plain; charset=utf-8" } }),
      },
    },
    fetch: (req) => checkAuth(req, o.user, o.password) ?? Response.json({ description: `no route ${req.method} ${new URL(req.url).pathname}` }, { status: 404 }),
    error: (e) => {
      const id = crypto.randomUUID();
      o.log.error("broker request failed", { id, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
      // a wrong ORRERY_BROKER_SECRET_KEY is the operator's to fix: say so (the message names key ids, never a key)
      if (e instanceof SealedSecretError) return Response.json({ description: `binding credentials cannot be opened (${e.code}): ${e.message} [${id}]` }, { status: 500 });
      return Response.json({ description: `internal error ${id}` }, { status: 500 });
    },
  });
}
