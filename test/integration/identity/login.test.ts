/**
 * Logging in at the gateway (auth on, its main.ts as a child process): the local admin's generated password works and
 * is shown once (a second gateway on the same store shows none), ORRERY_ADMIN_PASSWORD replaces it, sessions expire,
 * the plain login form redirects to `next` (inside the site only), and wrong passwords are rate-limited per login
 * and per address (429 with Retry-After, even for the right password then). No password is ever logged.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { login, openSocket, startAuthStack, within, type AuthStack } from "./stack.ts";

let stack: AuthStack;

beforeAll(async () => {
  stack = await startAuthStack({ env: { ORRERY_AUTH_SESSION_TTL_S: "2", ORRERY_AUTH_FAILURES_PER_USER: "3", ORRERY_AUTH_FAILURES_PER_ADDRESS: "8" } });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

const form = (fields: Record<string, string>) =>
  fetch(`${stack.gateway}/api/login`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(fields).toString(), redirect: "manual" });

test("the local admin's generated password logs in; a second gateway on the same store shows no password", async () => {
  expect(stack.admin.password).toMatch(/^[A-Za-z0-9_-]{24}$/);
  const other = await stack.anotherGateway();
  expect(other.admin).toEqual({ login: "admin" });
  expect((await login(other.url, "admin", stack.admin.password)).res.status).toBe(200);
});

test("a session expires after ORRERY_AUTH_SESSION_TTL_S", async () => {
  const { cookie } = await login(stack.gateway, "admin", stack.admin.password);
  expect((await fetch(`${stack.gateway}/api/me`, { headers: { cookie: cookie! } })).status).toBe(200);
  await Bun.sleep(2500);
  const res = await fetch(`${stack.gateway}/api/me`, { headers: { cookie: cookie! } });
  expect(res.status).toBe(401);
  expect(((await res.json()) as { error: string }).error).toContain("log in again");
});

test("a WebSocket opened with a session is closed when the session expires", async () => {
  const { cookie } = await login(stack.gateway, "admin", stack.admin.password);
  const s = await openSocket(stack.gateway, { cookie: cookie! });
  // the session lives 2 s; expiries are looked for every 5 s
  expect(await within(s.closed, 9000)).toEqual({ code: 4401, reason: "session ended: log in again" });
}, 15_000);

test("the login form redirects to `next` with the cookie, never off the site; a wrong password comes back to the form", async () => {
  const ok = await form({ login: "admin", password: stack.admin.password, next: "/?view=wallboard" });
  expect(ok.status).toBe(303);
  expect(ok.headers.get("location")).toBe("/?view=wallboard");
  expect(ok.headers.get("set-cookie")).toMatch(/^orrery_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
  for (const evil of ["//evil.example/", "https://evil.example/", "/\\evil.example"]) expect((await form({ login: "admin", password: stack.admin.password, next: evil })).headers.get("location")).toBe("/");
  const bad = await form({ login: "admin", password: "wrong", next: "/x" });
  expect(bad.status).toBe(303);
  expect(bad.headers.get("location")).toBe("/login?error=bad_credentials&next=%2Fx");
  const page = await (await fetch(`${stack.gateway}${bad.headers.get("location")}`)).text();
  expect(page).toContain("Wrong login or password.");
  expect(page).toContain('name="next" value="/x"');
});

test("wrong passwords: per login, then per address, 429 with Retry-After even for the right password", async () => {
  // one wrong password so far (the form test); two more lock admin
  for (let i = 0; i < 2; i++) expect((await login(stack.gateway, "admin", `wrong-${i}`)).res.status).toBe(401);
  const locked = (await login(stack.gateway, "admin", stack.admin.password)).res;
  expect(locked.status).toBe(429);
  expect(Number(locked.headers.get("retry-after"))).toBeGreaterThan(0);
  // another login from the same address still gets an answer, until the address has had its 8 failures
  for (let i = 0; i < 5; i++) expect((await login(stack.gateway, `nobody${i}`, "x")).res.status).toBe(401);
  expect((await login(stack.gateway, "someone-else", "x")).res.status).toBe(429);
});

test("ORRERY_ADMIN_PASSWORD replaces the admin's password (the old one no longer works)", async () => {
  const other = await stack.anotherGateway({ ORRERY_ADMIN_PASSWORD: "a-chosen-password-1" });
  expect(other.admin).toEqual({ login: "admin" });
  expect((await login(other.url, "admin", "a-chosen-password-1")).res.status).toBe(200);
  expect((await login(other.url, "admin", stack.admin.password)).res.status).toBe(401);
});

test("a too-short ORRERY_ADMIN_PASSWORD is refused at start without echoing it", async () => {
  const err = await stack.anotherGateway({ ORRERY_ADMIN_PASSWORD: "short-pw" }).then(
    () => "",
    (e: Error) => e.message,
  );
  expect(err).toContain("ORRERY_ADMIN_PASSWORD: at least 12 characters (got a value of 8 characters)");
  expect(err).not.toContain("short-pw");
});

test("no password in the logs", () => {
  const logs = stack.logs();
  expect(logs).toContain("login failed");
  for (const s of [stack.admin.password, "a-chosen-password-1", "wrong-0"]) expect([s, logs.includes(s)]).toEqual([s, false]);
});
