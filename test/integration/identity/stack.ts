/**
 * An authenticated Orrery for the identity tests: a real nats-server, the gateway and the ingest service as child
 * processes (their main.ts, auth on), optionally a real slapd as the directory. Every log line of both services is
 * kept (info included) so a test can check that no secret was ever logged.
 */
import { join, resolve } from "node:path";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { spawnUntilReady, type ReadyProcess } from "../../helpers/process.ts";
import { tempDir, uniquePrefix } from "../../helpers/tmp.ts";
import type { TestSlapd } from "../../helpers/ldap.ts";

const ROOT = resolve(import.meta.dir, "../../..");

/** ops-leads (alice, nested in orrery-operators) are the experts: each role has a seeded user */
export const ROLE_MAP = JSON.stringify({
  admin: ["cn=orrery-admins,ou=groups,dc=orrery,dc=test"],
  expert: ["ops-leads"],
  operator: ["orrery-operators"],
  viewer: ["orrery-viewers"],
});
/** one seeded user per role (test/helpers/ldap.ts) */
export const LDAP_USERS = { viewer: "bob", operator: "star*user", expert: "alice", admin: "dave" } as const;

export interface AuthStack {
  nats: NatsServer;
  prefix: string;
  gateway: string;
  ingest?: string;
  admin: { login: string; password: string };
  /** everything both services wrote on stderr */
  logs(): string;
  /** another gateway on the same NATS and prefix (stopped with the stack); its ready line */
  anotherGateway(env?: Record<string, string>): Promise<{ url: string; admin: { login: string; password?: string } }>;
  stop(): Promise<void>;
}

export function ldapEnv(s: TestSlapd): Record<string, string> {
  return {
    ORRERY_LDAP_URL: s.url,
    ORRERY_LDAP_BIND_DN: s.service.dn,
    ORRERY_LDAP_BIND_PASSWORD: s.service.password,
    ORRERY_LDAP_USER_BASE: s.userBase,
    ORRERY_LDAP_GROUP_BASE: s.groupBase,
    ORRERY_LDAP_FLAVOUR: "ad",
    // the AD flavour's default user filter needs objectCategory, which slapd lacks
    ORRERY_LDAP_USER_FILTER: "(objectClass=user)",
  };
}

export async function startAuthStack(o: { env?: Record<string, string>; ingest?: boolean } = {}): Promise<AuthStack> {
  const nats = await startNats();
  const prefix = uniquePrefix("auth");
  const tmp = tempDir("orrery-auth-");
  const procs: ReadyProcess[] = [];
  const env = {
    ...process.env,
    NATS_URL: nats.url,
    ORRERY_PREFIX: prefix,
    ORRERY_AUTH: "on",
    ORRERY_LOG_QUIET: "0",
    ORRERY_GATEWAY_PORT: "0",
    ORRERY_INGEST_PORT: "0",
    ORRERY_DASHBOARD_DIR: join(tmp.dir, "no-dashboard"),
    // the routes under test never need ClickHouse to answer; nothing listens here (they answer 503)
    CLICKHOUSE_URL: "http://127.0.0.1:9",
    ORRERY_AUTH_ROLES: ROLE_MAP,
    ...o.env,
  };
  try {
    const gw = await spawnUntilReady([process.execPath, join(ROOT, "services/gateway/main.ts")], { cwd: ROOT, env, ready: /^(\{"event":"ready".*)\n/m, timeoutMs: 60_000, name: "the gateway" });
    procs.push(gw);
    const ready = JSON.parse(gw.match[1]!) as { url: string; admin: { login: string; password?: string } };
    const password = ready.admin.password ?? o.env?.ORRERY_ADMIN_PASSWORD;
    if (!password) throw new Error("the gateway printed no admin password and none was set");
    let ingest: string | undefined;
    if (o.ingest) {
      const ing = await spawnUntilReady([process.execPath, join(ROOT, "services/ingest/main.ts")], { cwd: ROOT, env, ready: /^(\{"event":"ready".*)\n/m, timeoutMs: 60_000, name: "the ingest" });
      procs.push(ing);
      ingest = (JSON.parse(ing.match[1]!) as { url: string }).url;
    }
    return {
      nats,
      prefix,
      gateway: ready.url,
      ingest,
      admin: { login: ready.admin.login, password },
      logs: () => procs.map((p) => p.stderr()).join("\n"),
      anotherGateway: async (extra = {}) => {
        const p = await spawnUntilReady([process.execPath, join(ROOT, "services/gateway/main.ts")], { cwd: ROOT, env: { ...env, ...extra }, ready: /^(\{"event":"ready".*)\n/m, timeoutMs: 60_000, name: "another gateway" });
        procs.push(p);
        return JSON.parse(p.match[1]!);
      },
      stop: async () => {
        for (const p of procs) p.proc.kill("SIGTERM");
        await Promise.all(procs.map((p) => p.proc.exited));
        await nats.stop();
        tmp.cleanup();
      },
    };
  } catch (e) {
    for (const p of procs) p.proc.kill("SIGKILL");
    await nats.stop();
    tmp.cleanup();
    throw e;
  }
}

/** POST /api/login (JSON); the session cookie ("orrery_session=…") or the failed response */
export async function login(gateway: string, user: string, password: string): Promise<{ cookie?: string; res: Response }> {
  const res = await fetch(`${gateway}/api/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ login: user, password }) });
  const set = res.headers.get("set-cookie");
  return { cookie: res.ok && set ? set.split(";")[0] : undefined, res };
}

/** POST /api/tokens as `auth` (headers); the new token */
export async function createToken(gateway: string, auth: Record<string, string>, body: Record<string, unknown>): Promise<{ id: string; token: string }> {
  const res = await fetch(`${gateway}/api/tokens`, { method: "POST", headers: { "content-type": "application/json", ...auth }, body: JSON.stringify(body) });
  if (res.status !== 201) throw new Error(`token not created: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as { id: string; token: string };
}

/** A WebSocket to the gateway's /ws with `headers`, once open; `closed` resolves with how the server closed it. */
export function openSocket(gateway: string, headers: Record<string, string>): Promise<{ ws: WebSocket; closed: Promise<{ code: number; reason: string }> }> {
  return new Promise((ok, fail) => {
    const ws = new WebSocket(`${gateway.replace(/^http/, "ws")}/ws`, { headers } as unknown as string[]);
    const closed = new Promise<{ code: number; reason: string }>((done) => ws.addEventListener("close", (e) => done({ code: e.code, reason: e.reason })));
    const t = setTimeout(() => fail(new Error("the WebSocket did not open within 10 s")), 10_000);
    ws.onopen = () => {
      clearTimeout(t);
      ok({ ws, closed });
    };
    ws.onerror = () => {
      clearTimeout(t);
      fail(new Error("the WebSocket was refused"));
    };
  });
}

/** how `closed` ended within `ms`, or "still open" */
export const within = <T>(p: Promise<T>, ms: number): Promise<T | "still open"> => Promise.race([p, Bun.sleep(ms).then(() => "still open" as const)]);
