/**
 * The identity routes the gateway serves (each behind the gate's policy, gate.ts):
 *   GET  /login                  a plain HTML form (works without the dashboard); posts to /api/login
 *   POST /api/login              form or JSON {login, password, next?} → session cookie; a form is redirected to `next`
 *   POST /api/logout             ends the session (GET too, for a link); clears the cookie
 *   GET  /api/me                 who the caller is {login, role, via, provider, expiresAt}
 *   GET  /kiosk?token=…          a kiosk token → a viewer session cookie, then a redirect to / (a TV needs only a URL)
 *   GET  /api/tokens             tokens (an admin: all; others: their own), never the secret
 *   POST /api/tokens             CreateTokenRequest → the token, shown this once
 *   DELETE /api/tokens/:id       revoke
 *   GET  /api/auth/routes        every route and the role it needs (admin)
 * The session cookie is HttpOnly and SameSite=Strict, Secure when the request came over TLS (or when
 * ORRERY_AUTH_SECURE_COOKIE=always, behind a proxy that ends TLS).
 */
import type { BunRequest } from "bun";
import { CreateTokenRequest, LoginRequest, type Me, type SessionRecord } from "../../pipelines/contracts/identity.ts";
import { HttpError, parseBody, type Routes } from "../shared/http.ts";
import { AuthError } from "./errors.ts";
import { addressOf, principalOf, type Gate } from "./gate.ts";
import { SESSION_COOKIE, type Identity, type Principal } from "./identity.ts";
import { loginPage, messagePage } from "./login-page.ts";

/** A redirect target inside this site only: a path, never `//host` or `https://…`. */
export function safeNext(next: string | null | undefined): string {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\") || /[\r\n]/.test(next)) return "/";
  return next;
}

export interface IdentityRouteOptions {
  /** "always": the cookie is Secure even over plain HTTP (TLS ended by a proxy); "auto": when the request is https */
  secureCookie: "auto" | "always";
}

function cookie(req: Request, value: string, maxAgeS: number, o: IdentityRouteOptions): string {
  const secure = o.secureCookie === "always" || new URL(req.url).protocol === "https:";
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.max(0, Math.floor(maxAgeS))}${secure ? "; Secure" : ""}`;
}

const me = (req: Request): Principal => {
  const p = principalOf(req);
  if (!p) throw new AuthError("unauthenticated", "authentication required");
  return p;
};

export function identityRoutes(identity: Identity, gate: Gate, o: IdentityRouteOptions): Routes {
  const started = (req: Request, sessionId: string, s: SessionRecord) => cookie(req, sessionId, (s.expiresAt - Date.now()) / 1000, o);

  const login = async (req: Request): Promise<Response> => {
    const isForm = /application\/x-www-form-urlencoded|multipart\/form-data/.test(req.headers.get("content-type") ?? "");
    if (!isForm) {
      const body = await parseBody(LoginRequest, req, '{"login": "…", "password": "…"}');
      const { sessionId, session } = await identity.login(body.login, body.password, addressOf(req));
      return Response.json({ login: session.login, provider: session.provider, expiresAt: session.expiresAt }, { headers: { "set-cookie": started(req, sessionId, session) } });
    }
    const form = await req.formData();
    const parsed = LoginRequest.safeParse({ login: form.get("login") ?? undefined, password: form.get("password") ?? undefined, next: form.get("next") ?? undefined });
    const next = safeNext(typeof form.get("next") === "string" ? String(form.get("next")) : null);
    const back = (error: string) => new Response(null, { status: 303, headers: { location: `/login?error=${error}&next=${encodeURIComponent(next)}` } });
    if (!parsed.success) return back("missing");
    try {
      const { sessionId, session } = await identity.login(parsed.data.login, parsed.data.password, addressOf(req));
      return new Response(null, { status: 303, headers: { location: next, "set-cookie": started(req, sessionId, session) } });
    } catch (e) {
      if (!(e instanceof AuthError)) throw e;
      return back(e.code);
    }
  };

  const logout = async (req: Request): Promise<Response> => {
    await identity.logout(principalOf(req) ?? null);
    const clear = cookie(req, "", 0, o);
    if (req.method === "GET") return new Response(null, { status: 303, headers: { location: "/login", "set-cookie": clear } });
    return Response.json({ ok: true }, { headers: { "set-cookie": clear } });
  };

  return {
    "/login": {
      GET: (req) => {
        const u = new URL(req.url);
        return new Response(loginPage({ next: safeNext(u.searchParams.get("next")), error: u.searchParams.get("error") }), {
          headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store", "x-frame-options": "DENY", "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'" },
        });
      },
    },
    "/api/login": { POST: login },
    "/api/logout": { POST: logout, GET: logout },
    "/api/me": { GET: (req) => Response.json(identity.me(me(req))) },
    "/kiosk": {
      GET: async (req) => {
        const token = new URL(req.url).searchParams.get("token") ?? "";
        try {
          const { sessionId, session } = await identity.kioskSession(token, addressOf(req));
          return new Response(null, { status: 303, headers: { location: "/", "set-cookie": started(req, sessionId, session), "referrer-policy": "no-referrer" } });
        } catch (e) {
          if (!(e instanceof AuthError)) throw e;
          return new Response(messagePage("Kiosk", e.message), { status: e.status, headers: { "content-type": "text/html; charset=utf-8", ...e.headers } });
        }
      },
    },
    "/api/tokens": {
      GET: (req) => Response.json({ tokens: identity.listTokens(me(req)) }),
      POST: async (req) => {
        const body = await parseBody(CreateTokenRequest, req, '{"kind": "api" | "kiosk" | "ingest", "name": "…", "role"?: "viewer", "source"?: "alertmanager"}');
        return Response.json(await identity.createToken(me(req), body), { status: 201 });
      },
    },
    "/api/tokens/:id": {
      DELETE: async (req) => {
        const id = (req as BunRequest<"/api/tokens/:id">).params.id;
        if (!/^[a-f0-9]{16}$/.test(id)) throw new HttpError(400, `bad token id ${JSON.stringify(id)}: 16 hex digits`);
        await identity.revokeToken(me(req), id);
        return Response.json({ revoked: id });
      },
    },
    "/api/auth/routes": { GET: () => Response.json({ mode: gate.mode, routes: gate.rules() }) },
  };
}

/**
 * With ORRERY_AUTH=off: the same paths, so the dashboard needs no second way to ask who it is (everyone is an
 * anonymous admin) and a bookmarked login page leads to the dashboard.
 */
export function authOffRoutes(): Routes {
  const me: Me = { login: "anonymous", role: "admin", via: "off" };
  return {
    "/login": { GET: () => new Response(null, { status: 303, headers: { location: "/" } }) },
    "/api/me": { GET: () => Response.json(me) },
    "/api/logout": { POST: () => Response.json({ ok: true }), GET: () => new Response(null, { status: 303, headers: { location: "/" } }) },
  };
}
