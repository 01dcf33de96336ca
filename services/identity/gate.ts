/**
 * The gateway's one door check. `guard(routes)` wraps every route of the route table, so a route added later is
 * covered without a line of its own: it needs the role the policy below names for it, or by default viewer to read
 * (GET) and admin for anything else. The WebSocket upgrade needs a viewer, and a socket stays open only as long as
 * the credentials it was opened with (`lease`): a logout, a revoked token, an expired session or a disabled user
 * closes it. With ORRERY_AUTH=off every door is open (and the gateway says so at every start).
 */
import type { Server } from "bun";
import { atLeast, type Role } from "../../pipelines/contracts/identity.ts";
import type { Handler, Routes } from "../shared/http.ts";
import { AuthError } from "./errors.ts";
import { credentialsOf, type Credentials, type Identity, type Principal } from "./identity.ts";
import { TrustedProxies } from "./proxy.ts";

export type Need = Role | "public";
type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
const METHODS: Method[] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/**
 * Routes that need something other than the default. `/api/me` and the token routes need any role (the handlers
 * narrow it: a user sees and revokes their own tokens, an admin all of them).
 */
const POLICY: Record<string, Partial<Record<Method, Need>>> = {
  "/healthz": { GET: "public" },
  "/login": { GET: "public" },
  "/api/login": { POST: "public" },
  "/api/logout": { POST: "public", GET: "public" },
  "/kiosk": { GET: "public" },
  // read-only Cypher: what a viewer sees on the map, asked another way
  "/api/cypher": { POST: "viewer" },
  // a read whose entity list is too long for a query string
  "/api/metrics/latest": { POST: "viewer" },
  "/api/tokens": { GET: "viewer", POST: "viewer" },
  "/api/tokens/:id": { DELETE: "viewer" },
  "/api/auth/routes": { GET: "admin" },
  // the registry decides per component: owners and maintainers edit theirs, a requirement's role signs it off
  "/api/registry/components/:id": { PUT: "viewer", PATCH: "viewer" },
  "/api/registry/components/:id/requirements/:req": { PUT: "viewer" },
  "/api/registry/components/:id/requirements/:req/signoff": { POST: "viewer" },
};
/** acknowledging or silencing an alert is an operator's job, whatever the route is called */
const OPERATOR_ROUTES = /\/(ack|acknowledge|unack|silence|silences)(\/|$)/;

export function need(path: string, method: string): Need {
  const fixed = POLICY[path]?.[method as Method];
  if (fixed) return fixed;
  if (method === "GET" || method === "HEAD") return "viewer";
  if (OPERATOR_ROUTES.test(path)) return "operator";
  return "admin";
}

export interface RouteRule {
  path: string;
  method: string;
  need: Need;
}

/** What each request carries to its handler: who asks, and from where. */
const principals = new WeakMap<Request, Principal>();
const addresses = new WeakMap<Request, string>();
/** the principal the gate found for `req` (a guarded handler always has one, unless the route is public) */
export const principalOf = (req: Request): Principal | undefined => principals.get(req);
export const addressOf = (req: Request): string => addresses.get(req) ?? "unknown";

/** WebSocket close code for credentials that ended (the 4xxx range is the application's; 4401 reads as HTTP 401) */
export const CLOSE_CREDENTIALS_ENDED = 4401;

/** The credentials an upgraded socket was opened with, kept in its data from the upgrade on. */
export interface SocketLease {
  /** calls `end(code, reason)` once when those credentials end; returns the function that stops watching */
  watch(end: (code: number, reason: string) => void): () => void;
}

export interface GateOptions {
  /** proxies whose X-Forwarded-For names the client (ORRERY_TRUSTED_PROXIES) */
  trustedProxies?: readonly string[];
  /** how often sockets are checked for credentials that ran out by time alone (default 5 s) */
  expiryCheckMs?: number;
}

export interface Gate {
  readonly mode: "on" | "off";
  /** every route wrapped with its role check */
  guard(routes: Routes): Routes;
  /** a denial for a WebSocket upgrade (401/403), or null to let it through */
  checkUpgrade(req: Request, srv: Server<unknown>): Response | null;
  /** the lease of a socket upgraded from `req` (after checkUpgrade let it through) */
  lease(req: Request): SocketLease;
  /** the rules of every route guarded so far (GET /api/auth/routes) */
  rules(): RouteRule[];
}

const OFF: Principal = { login: "anonymous", role: "admin", via: "off" };
const NO_LEASE: SocketLease = { watch: () => () => undefined };

abstract class BaseGate implements Gate {
  abstract readonly mode: "on" | "off";
  private table: RouteRule[] = [];
  private readonly proxies: TrustedProxies;

  constructor(o: GateOptions) {
    this.proxies = new TrustedProxies(o.trustedProxies);
  }

  protected abstract principal(req: Request): Principal | null;

  /** throws AuthError when `req` may not pass a door that needs `n` */
  check(req: Request, n: Need, srv?: Server<unknown>): void {
    if (srv) addresses.set(req, this.proxies.clientOf(srv.requestIP(req)?.address ?? "unknown", req.headers.get("x-forwarded-for")));
    let p: Principal | null;
    try {
      p = this.principal(req);
    } catch (e) {
      // wrong credentials on a public door (an old cookie on the login page) are no reason to refuse it
      if (n === "public") return;
      throw e;
    }
    if (p) principals.set(req, p);
    if (n === "public") return;
    if (!p) throw new AuthError("unauthenticated", "authentication required: log in at /login, or send Authorization: Bearer <token>");
    if (!atLeast(p.role, n)) throw new AuthError("forbidden", `${n} role required (you are ${p.role})`);
  }

  guard(routes: Routes): Routes {
    const out: Routes = {};
    for (const [path, r] of Object.entries(routes)) {
      if (typeof r === "function") {
        // a bare handler answers every method: each is checked as itself
        out[path] = ((req: Request, srv?: Server<unknown>) => {
          this.check(req, need(path, req.method), srv);
          return r(req);
        }) as Handler;
        for (const m of METHODS) this.table.push({ path, method: m, need: need(path, m) });
      } else {
        const wrapped: Partial<Record<Method, Handler>> = {};
        for (const [m, h] of Object.entries(r) as [Method, Handler][]) {
          const n = need(path, m);
          wrapped[m] = ((req: Request, srv?: Server<unknown>) => {
            this.check(req, n, srv);
            return h(req);
          }) as Handler;
          this.table.push({ path, method: m, need: n });
        }
        out[path] = wrapped;
      }
    }
    return out;
  }

  checkUpgrade(req: Request, srv: Server<unknown>): Response | null {
    try {
      this.check(req, "viewer", srv);
      return null;
    } catch (e) {
      if (!(e instanceof AuthError)) throw e;
      return Response.json({ error: e.message }, { status: e.status, headers: e.headers });
    }
  }

  rules(): RouteRule[] {
    return [...this.table];
  }

  lease(_req: Request): SocketLease {
    return NO_LEASE;
  }
}

interface Watched {
  credentials: Credentials;
  end(code: number, reason: string): void;
}

class IdentityGate extends BaseGate {
  readonly mode = "on";
  private readonly watched = new Set<Watched>();
  private recheckQueued = false;
  private expiryTimer?: ReturnType<typeof setInterval>;

  constructor(
    private readonly identity: Identity,
    private readonly o: GateOptions,
  ) {
    super(o);
    // any change to the bucket may end a socket's credentials (a logout, a revocation, a sync that disabled a user);
    // the changes of one tick are checked once
    identity.store.onChange(() => {
      if (this.recheckQueued || this.watched.size === 0) return;
      this.recheckQueued = true;
      setTimeout(() => {
        this.recheckQueued = false;
        this.recheck();
      }, 0);
    });
  }

  protected principal(req: Request): Principal | null {
    return this.identity.principal(req);
  }

  override lease(req: Request): SocketLease {
    const credentials = credentialsOf(req);
    return {
      watch: (end) => {
        const w: Watched = { credentials, end };
        this.watched.add(w);
        // an expiry is no change to the bucket: a timer looks for those while any socket is open
        this.expiryTimer ??= setInterval(() => this.recheck(), this.o.expiryCheckMs ?? 5000);
        this.expiryTimer.unref?.();
        return () => this.unwatch(w);
      },
    };
  }

  private unwatch(w: Watched) {
    this.watched.delete(w);
    if (this.watched.size === 0 && this.expiryTimer) {
      clearInterval(this.expiryTimer);
      this.expiryTimer = undefined;
    }
  }

  private recheck() {
    for (const w of [...this.watched]) {
      let ok: boolean;
      try {
        ok = this.identity.principalFor(w.credentials) !== null;
      } catch {
        ok = false;
      }
      if (ok) continue;
      this.unwatch(w);
      w.end(CLOSE_CREDENTIALS_ENDED, w.credentials.bearer !== undefined ? "token revoked or expired" : "session ended: log in again");
    }
  }
}

class OpenGate extends BaseGate {
  readonly mode = "off";
  protected principal(): Principal {
    return OFF;
  }
}

export const authGate = (identity: Identity, o: GateOptions = {}): Gate => new IdentityGate(identity, o);
/** ORRERY_AUTH=off: every door open, every caller an admin. */
export const openGate = (): Gate => new OpenGate({});
