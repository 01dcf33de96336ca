/**
 * Login and logout in headless Chromium against the real gateway (auth on): the plain login page, the redirect to the
 * dashboard with an HttpOnly, SameSite=Strict session cookie the page's scripts cannot read, logout back to the login
 * page, a wrong password shown on the form, and a wallboard that needs only a kiosk URL. The dashboard here is a stand-in
 * page: what is tested is the gateway's part.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { tempDir } from "../../helpers/tmp.ts";
import { createToken, login, startAuthStack, type AuthStack } from "./stack.ts";

const tmp = tempDir("orrery-browser-auth-");
let stack: AuthStack;
let browser: Browser;

beforeAll(async () => {
  const dist = join(tmp.dir, "dist");
  mkdirSync(dist);
  writeFileSync(join(dist, "index.html"), "<!doctype html><title>Orrery</title><h1 id=dashboard>the dashboard</h1>");
  stack = await startAuthStack({ env: { ORRERY_DASHBOARD_DIR: dist } });
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  tmp.cleanup();
});

const me = (page: import("playwright-core").Page) => page.evaluate(async () => {
  const r = await fetch("/api/me");
  return { status: r.status, body: r.ok ? await r.json() : null };
});

test("log in on the plain form, land on the dashboard with an HttpOnly cookie; log out, back to the login page", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${stack.gateway}/login?next=/`);
    await page.fill("#login", stack.admin.login);
    await page.fill("#password", stack.admin.password);
    await Promise.all([page.waitForURL(`${stack.gateway}/`), page.click("button[type=submit]")]);
    expect(await page.textContent("#dashboard")).toBe("the dashboard");
    const cookies = await context.cookies();
    expect(cookies.map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite }))).toEqual([{ name: "orrery_session", httpOnly: true, sameSite: "Strict" }]);
    // the page's own scripts cannot read it
    expect(await page.evaluate(() => document.cookie)).toBe("");
    expect(await me(page)).toEqual({ status: 200, body: expect.objectContaining({ login: "admin", role: "admin", via: "session" }) });

    await Promise.all([page.waitForURL(/\/login$/), page.goto(`${stack.gateway}/api/logout`)]);
    expect(await page.isVisible("#password")).toBe(true);
    // (asked from the dashboard: the login page's CSP lets no script fetch anything)
    await page.goto(`${stack.gateway}/`);
    expect((await me(page)).status).toBe(401);
  } finally {
    await context.close();
  }
});

test("a wrong password is said on the form, and no cookie is set", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${stack.gateway}/login`);
    await page.fill("#login", stack.admin.login);
    await page.fill("#password", "not-the-password");
    await Promise.all([page.waitForURL(/error=bad_credentials/), page.click("button[type=submit]")]);
    expect(await page.textContent("[role=alert]")).toBe("Wrong login or password.");
    expect(await context.cookies()).toEqual([]);
  } finally {
    await context.close();
  }
});

test("a wallboard's browser needs only the kiosk URL: it lands on the dashboard as a viewer", async () => {
  const { cookie } = await login(stack.gateway, stack.admin.login, stack.admin.password);
  const kiosk = await createToken(stack.gateway, { cookie: cookie! }, { kind: "kiosk", name: "lobby-tv" });
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${stack.gateway}/kiosk?token=${kiosk.token}`);
    expect(page.url()).toBe(`${stack.gateway}/`);
    expect(await page.textContent("#dashboard")).toBe("the dashboard");
    expect((await me(page)).body).toMatchObject({ login: "kiosk:lobby-tv", role: "viewer", provider: "kiosk" });
    // revoking the kiosk token ends the wallboard's session too
    expect((await fetch(`${stack.gateway}/api/tokens/${kiosk.id}`, { method: "DELETE", headers: { cookie: cookie! } })).status).toBe(200);
    expect((await me(page)).status).toBe(401);
  } finally {
    await context.close();
  }
});
