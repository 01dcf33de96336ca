/**
 * Every door of the gateway, with auth on: the route table is read from the running gateway (GET /api/auth/routes,
 * the rules its one guard applied), so a route added later is walked without a line here. Each route and the
 * WebSocket are asked with no credentials, wrong ones (a made-up token, a made-up session), an expired session, a
 * revoked token, and each role — as an API token, and as a directory user's session through a real slapd — and the
 * answer is checked: 401 without valid credentials, 403 below the route's role, anything else at or above it.
 * Nothing secret may appear in the services' logs.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ROLES, rank, type Role } from "../../../pipelines/contracts/identity.ts";
import { IdentityStore } from "../../../services/identity/store.ts";
import { sha256 } from "../../../services/identity/secrets.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { slapdMissing, startSlapd, type TestSlapd } from "../../helpers/ldap.ts";
import { createToken, LDAP_USERS, ldapEnv, login, openSocket, startAuthStack, within, type AuthStack } from "./stack.ts";

const noSlapd = slapdMissing();
let slapd: TestSlapd | undefined;
let stack: AuthStack;
let bus: Bus;
let store: IdentityStore;
let rules: { path: string; method: string; need: Role | "public" }[];
let adminCookie: string;
/** credentials by name → the headers that carry them */
const creds = new Map<string, Record<string, string>>();
const secrets: string[] = [];

/** a made-up id for `:param` segments */
const concrete = (path: string) => path.replace(/:[a-zA-Z]+/g, "0000000000000000");

beforeAll(async () => {
  if (!noSlapd) slapd = await startSlapd();
  stack = await startAuthStack({ env: slapd ? ldapEnv(slapd) : {} });
  secrets.push(stack.admin.password);
  bus = await connectBus({ url: stack.nats.url, prefix: stack.prefix, name: "doors-test" });
  store = await IdentityStore.open(bus, makeLogger("doors-test", true));

  const admin = await login(stack.gateway, stack.admin.login, stack.admin.password);
  expect(admin.res.status).toBe(200);
  adminCookie = admin.cookie!;
  secrets.push(adminCookie.split("=")[1]!);

  const routes = await fetch(`${stack.gateway}/api/auth/routes`, { headers: { cookie: adminCookie } });
  expect(routes.status).toBe(200);
  rules = ((await routes.json()) as { routes: typeof rules }).routes;

  for (const role of ROLES) {
    const t = await createToken(stack.gateway, { cookie: adminCookie }, { kind: "api", name: `doors-${role}`, role });
    creds.set(`${role} token`, { authorization: `Bearer ${t.token}` });
    secrets.push(t.token);
  }
  const kiosk = await createToken(stack.gateway, { cookie: adminCookie }, { kind: "kiosk", name: "doors-tv" });
  secrets.push(kiosk.token);
  creds.set("kiosk token", { authorization: `Bearer ${kiosk.token}` });
  const k = await fetch(`${stack.gateway}/kiosk?token=${kiosk.token}`, { redirect: "manual" });
  expect(k.status).toBe(303);
  expect(k.headers.get("location")).toBe("/");
  creds.set("kiosk session", { cookie: k.headers.get("set-cookie")!.split(";")[0]! });

  if (slapd) {
    // the directory's users, after the gateway's first sync
    for (const [role, user] of Object.entries(LDAP_USERS)) {
      const l = await login(stack.gateway, user, slapd.users[user]!.password);
      expect([user, l.res.status]).toEqual([user, 200]);
      creds.set(`${role} session (directory)`, { cookie: l.cookie! });
      secrets.push(slapd.users[user]!.password, l.cookie!.split("=")[1]!);
    }
  }
}, 180_000);

afterAll(async () => {
  await store?.close();
  await bus?.close();
  await stack?.stop();
  await slapd?.stop();
});

const roleOfCred = (name: string): Role => (name.startsWith("kiosk") ? "viewer" : (name.split(" ")[0] as Role));

async function ask(path: string, method: string, headers: Record<string, string>): Promise<number> {
  const res = await fetch(`${stack.gateway}${concrete(path)}`, {
    method,
    headers: { ...headers, ...(method === "GET" || method === "DELETE" ? {} : { "content-type": "application/json" }) },
    body: method === "GET" || method === "DELETE" ? undefined : "{}",
    redirect: "manual",
  });
  await res.arrayBuffer();
  return res.status;
}

test("the route table the gateway guards is the whole of it, each route with a role", () => {
  const paths = new Set(rules.map((r) => r.path));
  // the gateway's own, and one of each feature module (a route added later is in the table by construction)
  for (const p of ["/api/snapshot", "/api/cypher", "/healthz", "/api/alerts", "/api/series", "/api/impact", "/api/me", "/api/tokens", "/login", "/kiosk"]) expect([p, paths.has(p)]).toEqual([p, true]);
  expect(rules.find((r) => r.path === "/api/cypher" && r.method === "POST")?.need).toBe("viewer");
  expect(rules.find((r) => r.path === "/api/auth/routes")?.need).toBe("admin");
  expect(rules.length).toBeGreaterThan(20);
});

describe("every route", () => {
  test("public routes are let through without credentials (what they answer is their own: /kiosk without a token is 401)", async () => {
    for (const r of rules.filter((x) => x.need === "public")) {
      const res = await fetch(`${stack.gateway}${concrete(r.path)}`, { method: r.method, redirect: "manual", ...(r.method === "POST" ? { headers: { "content-type": "application/json" }, body: "{}" } : {}) });
      const text = await res.text();
      expect([r.method, r.path, /authentication required|role required/.test(text)]).toEqual([r.method, r.path, false]);
    }
    expect((await fetch(`${stack.gateway}/kiosk`)).status).toBe(401);
    expect((await fetch(`${stack.gateway}/login`)).status).toBe(200);
  });

  test("no credentials, a made-up token, a made-up session, another scheme: 401 on every other route", async () => {
    const wrong: Record<string, Record<string, string>> = {
      none: {},
      "made-up token": { authorization: "Bearer orr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" },
      "not a token": { authorization: "Bearer hunter2" },
      "made-up session": { cookie: "orrery_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" },
      "basic with a wrong password": { authorization: `Basic ${btoa("admin:wrong")}` },
    };
    for (const r of rules.filter((x) => x.need !== "public"))
      for (const [name, h] of Object.entries(wrong)) expect([r.method, r.path, name, await ask(r.path, r.method, h)]).toEqual([r.method, r.path, name, 401]);
  });

  test("an expired session: 401 on every route that needs a role", async () => {
    const sid = "expired-session-id-expired-session-id-xyz0";
    const now = Date.now();
    await store.putSession(sha256(sid), { login: stack.admin.login, provider: "local", role: "admin", groups: [], createdAt: now - 7200_000, expiresAt: now - 1000 });
    for (const r of rules.filter((x) => x.need !== "public")) expect([r.method, r.path, await ask(r.path, r.method, { cookie: `orrery_session=${sid}` })]).toEqual([r.method, r.path, 401]);
  });

  test("a revoked token: 401 on every route that needs a role", async () => {
    const t = await createToken(stack.gateway, { cookie: adminCookie }, { kind: "api", name: "doors-revoked", role: "admin" });
    secrets.push(t.token);
    expect(await ask("/api/me", "GET", { authorization: `Bearer ${t.token}` })).toBe(200);
    expect((await fetch(`${stack.gateway}/api/tokens/${t.id}`, { method: "DELETE", headers: { cookie: adminCookie } })).status).toBe(200);
    for (const r of rules.filter((x) => x.need !== "public")) expect([r.method, r.path, await ask(r.path, r.method, { authorization: `Bearer ${t.token}` })]).toEqual([r.method, r.path, 401]);
  });

  test("each role: 403 below the route's role, an answer (not 401/403) at or above it", async () => {
    expect(creds.size).toBeGreaterThanOrEqual(noSlapd ? 6 : 10);
    for (const r of rules.filter((x) => x.need !== "public")) {
      // logging out would end the session the next route is asked with
      if (r.path === "/api/logout") continue;
      for (const [name, h] of creds) {
        const status = await ask(r.path, r.method, h);
        const allowed = rank(roleOfCred(name)) >= rank(r.need as Role);
        expect([r.method, r.path, name, allowed ? status !== 401 && status !== 403 : status]).toEqual([r.method, r.path, name, allowed ? true : 403]);
      }
    }
  }, 120_000);
});

test.skipIf(!!noSlapd)(`directory users get the role of their groups, nested ones included${noSlapd ? ` (${noSlapd})` : ""}`, async () => {
  for (const [role, user] of Object.entries(LDAP_USERS)) {
    const me = await fetch(`${stack.gateway}/api/me`, { headers: creds.get(`${role} session (directory)`)! });
    expect(await me.json()).toMatchObject({ login: user, role, via: "session", provider: "directory" });
  }
  // carol is disabled in the directory; a wrong password and an injection string are refused alike
  expect((await login(stack.gateway, "carol", slapd!.users.carol!.password)).res.status).toBe(401);
  expect((await login(stack.gateway, "bob", "wrong")).res.status).toBe(401);
  expect((await login(stack.gateway, "*)(uid=*))(|(uid=*", "x")).res.status).toBe(401);
});

describe("the WebSocket", () => {
  /** "open", or the close/error that came instead */
  const connect = (headers: Record<string, string>) =>
    new Promise<string>((done) => {
      const ws = new WebSocket(`${stack.gateway.replace(/^http/, "ws")}/ws`, { headers } as unknown as string[]);
      const t = setTimeout(() => done("timeout"), 10_000);
      ws.onopen = () => {
        clearTimeout(t);
        ws.close();
        done("open");
      };
      ws.onerror = () => {
        clearTimeout(t);
        done("refused");
      };
    });

  test("refused without valid credentials, open for every role (cookie or token)", async () => {
    expect(await connect({})).toBe("refused");
    expect(await connect({ authorization: "Bearer orr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" })).toBe("refused");
    expect(await connect({ cookie: "orrery_session=nope" })).toBe("refused");
    for (const [name, h] of creds) expect([name, await connect(h)]).toEqual([name, "open"]);
    // the upgrade's refusal says why, as any door does
    const res = await fetch(`${stack.gateway}/ws`, { headers: { upgrade: "websocket", connection: "Upgrade", "sec-websocket-version": "13", "sec-websocket-key": btoa("0123456789abcdef") } });
    expect(res.status).toBe(401);
  });

  test("an open socket is closed (4401, with the reason) when its session ends or its token is revoked; others stay open", async () => {
    const l = await login(stack.gateway, stack.admin.login, stack.admin.password);
    secrets.push(l.cookie!.split("=")[1]!);
    const api = await createToken(stack.gateway, { cookie: adminCookie }, { kind: "api", name: "ws-api", role: "viewer" });
    const kiosk = await createToken(stack.gateway, { cookie: adminCookie }, { kind: "kiosk", name: "ws-tv" });
    secrets.push(api.token, kiosk.token);
    const k = await fetch(`${stack.gateway}/kiosk?token=${kiosk.token}`, { redirect: "manual" });
    const kioskCookie = k.headers.get("set-cookie")!.split(";")[0]!;

    const bySession = await openSocket(stack.gateway, { cookie: l.cookie! });
    const byToken = await openSocket(stack.gateway, { authorization: `Bearer ${api.token}` });
    const byKiosk = await openSocket(stack.gateway, { cookie: kioskCookie });
    const bystander = await openSocket(stack.gateway, creds.get("viewer token")!);

    expect((await fetch(`${stack.gateway}/api/logout`, { method: "POST", headers: { cookie: l.cookie! } })).status).toBe(200);
    expect(await within(bySession.closed, 5000)).toEqual({ code: 4401, reason: "session ended: log in again" });

    expect((await fetch(`${stack.gateway}/api/tokens/${api.id}`, { method: "DELETE", headers: { cookie: adminCookie } })).status).toBe(200);
    expect(await within(byToken.closed, 5000)).toEqual({ code: 4401, reason: "token revoked or expired" });

    // a kiosk's session lives as long as its token
    expect((await fetch(`${stack.gateway}/api/tokens/${kiosk.id}`, { method: "DELETE", headers: { cookie: adminCookie } })).status).toBe(200);
    expect(await within(byKiosk.closed, 5000)).toEqual({ code: 4401, reason: "session ended: log in again" });

    // revocation made by another process (straight into the bucket, as a second gateway would)
    const direct = await createToken(stack.gateway, { cookie: adminCookie }, { kind: "api", name: "ws-direct", role: "viewer" });
    secrets.push(direct.token);
    const byDirect = await openSocket(stack.gateway, { authorization: `Bearer ${direct.token}` });
    await store.deleteToken(direct.id);
    expect(await within(byDirect.closed, 5000)).toEqual({ code: 4401, reason: "token revoked or expired" });

    expect(await within(bystander.closed, 300)).toBe("still open");
    expect(bystander.ws.readyState).toBe(WebSocket.OPEN);
    bystander.ws.close();
  });
});

test("logout ends the session; /api/me then answers 401", async () => {
  const l = await login(stack.gateway, stack.admin.login, stack.admin.password);
  expect(l.res.status).toBe(200);
  const cookie = l.cookie!;
  const set = l.res.headers.get("set-cookie")!;
  expect(set).toMatch(/HttpOnly/);
  expect(set).toMatch(/SameSite=Strict/);
  expect(set).not.toMatch(/Secure/); // plain HTTP here; over TLS it is set
  expect((await fetch(`${stack.gateway}/api/me`, { headers: { cookie } })).status).toBe(200);
  const out = await fetch(`${stack.gateway}/api/logout`, { method: "POST", headers: { cookie } });
  expect(out.status).toBe(200);
  expect(out.headers.get("set-cookie")).toMatch(/Max-Age=0/);
  expect((await fetch(`${stack.gateway}/api/me`, { headers: { cookie } })).status).toBe(401);
});

test("a token never does more than its creator: a viewer cannot mint an admin token, nor kiosk or ingest tokens", async () => {
  const viewer = creds.get("viewer token")!;
  const post = (body: unknown) => fetch(`${stack.gateway}/api/tokens`, { method: "POST", headers: { "content-type": "application/json", ...viewer }, body: JSON.stringify(body) });
  expect((await post({ name: "x", role: "admin" })).status).toBe(403);
  expect((await post({ name: "x", kind: "kiosk" })).status).toBe(403);
  expect((await post({ name: "x", kind: "ingest", source: "alertmanager" })).status).toBe(403);
  const own = await post({ name: "mine" });
  expect(own.status).toBe(201);
  secrets.push(((await own.json()) as { token: string }).token);
  // a viewer token (its owner is the admin) sees the owner's API tokens up to its own role only, never a hash or a token
  const list = (await (await fetch(`${stack.gateway}/api/tokens`, { headers: viewer })).json()) as { tokens: Record<string, unknown>[] };
  expect(list.tokens.map((t) => t.name)).toEqual(["doors-viewer", "mine"]);
  const adminTokenId = (await (await fetch(`${stack.gateway}/api/tokens`, { headers: { cookie: adminCookie } })).json() as { tokens: { id: string; name: string }[] }).tokens.find((t) => t.name === "doors-admin")!.id;
  expect((await fetch(`${stack.gateway}/api/tokens/${adminTokenId}`, { method: "DELETE", headers: viewer })).status).toBe(404);
  expect(JSON.stringify(list)).not.toMatch(/hash|orr_/);
});

test("no password, token or session id in the logs", async () => {
  // wait for the last request's lines
  await Bun.sleep(200);
  const logs = stack.logs();
  expect(logs).toContain("logged in");
  expect(logs).toContain("token created");
  for (const s of secrets) expect([s.slice(0, 6), logs.includes(s)]).toEqual([s.slice(0, 6), false]);
  expect(logs).not.toMatch(/orr_[A-Za-z0-9_-]{20,}/);
});
