/**
 * Identity as the gateway and the ingest service use it (they import this file only). Identity runs inside the
 * gateway rather than as a service of its own: every request's check is a lookup in memory, and a login needs the
 * gateway's answer anyway, so a separate process would add a hop and a failure mode to every door. What makes it
 * shareable is the store: a JetStream KV bucket every gateway and ingest instance follows (store.ts).
 */
import type { z } from "zod";
import type { Bus } from "../shared/bus.ts";
import type { IdentityKeys } from "../shared/config.ts";
import type { Logger } from "../shared/log.ts";
import type { Routes } from "../shared/http.ts";
import { ldapConfigFromEnv, type DirectoryEnv } from "./directory/config.ts";
import { LdapDirectory } from "./directory/ldap.ts";
import { startDirectorySync, type DirectorySync } from "./directory/sync.ts";
import { authGate, type Gate } from "./gate.ts";
import { Identity } from "./identity.ts";
import { identityRoutes } from "./routes.ts";
import { IdentityStore } from "./store.ts";

export { AuthError } from "./errors.ts";
export { DirectoryKeys } from "./directory/config.ts";
export { authGate, openGate, principalOf, need, CLOSE_CREDENTIALS_ENDED, type Gate, type RouteRule, type SocketLease } from "./gate.ts";
export { Identity, credentialsOf, SESSION_COOKIE, type Principal } from "./identity.ts";
export { IngestTokens, ingestAuthOff, type IngestAuth, type IngestDoor } from "./ingest-auth.ts";
export { authOffRoutes } from "./routes.ts";

export type IdentityEnv = z.output<z.ZodObject<typeof IdentityKeys>>;

export interface StartedIdentity {
  identity: Identity;
  gate: Gate;
  /** /login, /api/login, /api/logout, /api/me, /kiosk, /api/tokens…, /api/auth/routes */
  routes: Routes;
  /** the local admin's login, and its password when this start generated it (to be shown once) */
  admin: { login: string; password?: string };
  /** the directory sync, when ORRERY_LDAP_URL is set */
  sync: DirectorySync | null;
  stop(): Promise<void>;
}

/**
 * Opens the identity bucket, creates the local admin if there is none, connects the directory (ORRERY_LDAP_URL) and
 * starts its sync, and builds the gate and the routes. Every gateway syncs on its own schedule: each sync is stored
 * atomically, so several gateways agree on a complete snapshot (the last one), at the cost of repeated searches.
 */
export async function startIdentity(o: { bus: Bus; log: Logger; env: IdentityEnv & DirectoryEnv; now?: () => number }): Promise<StartedIdentity> {
  const e = o.env;
  const ldap = ldapConfigFromEnv(e);
  const directory = ldap ? new LdapDirectory(ldap.config, { log: o.log }) : undefined;
  const store = await IdentityStore.open(o.bus, o.log);
  const window = e.ORRERY_AUTH_FAILURE_WINDOW_S * 1000;
  const identity = new Identity(
    store,
    {
      roles: e.ORRERY_AUTH_ROLES,
      sessionTtlMs: e.ORRERY_AUTH_SESSION_TTL_S * 1000,
      kioskSessionTtlMs: e.ORRERY_AUTH_KIOSK_SESSION_TTL_S * 1000,
      apiTokenTtlMs: e.ORRERY_AUTH_API_TOKEN_TTL_DAYS * 86_400_000,
      perUser: { max: e.ORRERY_AUTH_FAILURES_PER_USER, windowMs: window },
      perAddress: { max: e.ORRERY_AUTH_FAILURES_PER_ADDRESS, windowMs: window },
      adminLogin: e.ORRERY_ADMIN_LOGIN,
      adminPassword: e.ORRERY_ADMIN_PASSWORD,
    },
    o.log,
    directory,
    o.now,
  );
  await identity.start();
  const sync = directory && ldap ? startDirectorySync({ directory, sink: identity.syncSink, intervalMs: ldap.syncIntervalMs, log: o.log }) : null;
  const gate = authGate(identity, { trustedProxies: e.ORRERY_TRUSTED_PROXIES });
  const routes: Routes = { ...identityRoutes(identity, gate, { secureCookie: e.ORRERY_AUTH_SECURE_COOKIE }) };
  // a sync on demand (after a change in the directory), answered with its outcome
  if (sync) routes["/api/auth/sync"] = { POST: async () => Response.json(await sync.runNow()) };
  return {
    identity,
    gate,
    routes,
    admin: { login: e.ORRERY_ADMIN_LOGIN, password: identity.generatedAdminPassword },
    sync,
    stop: async () => {
      await sync?.stop();
      await identity.stop();
    },
  };
}
