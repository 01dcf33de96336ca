/** The session cookie's attributes: HttpOnly and SameSite=Strict always, Secure over TLS (or when told: a TLS proxy). */
import { expect, test } from "bun:test";
import type { SessionRecord } from "../../../pipelines/contracts/identity.ts";
import { openGate } from "../../../services/identity/gate.ts";
import type { Identity } from "../../../services/identity/identity.ts";
import { identityRoutes } from "../../../services/identity/routes.ts";
import type { Handler } from "../../../services/shared/http.ts";

const session: SessionRecord = { login: "admin", provider: "local", role: "admin", groups: [], createdAt: 0, expiresAt: Date.now() + 3600_000 };
const identity = { login: async () => ({ sessionId: "sid", session }) } as unknown as Identity;

async function cookieOf(url: string, secureCookie: "auto" | "always"): Promise<string> {
  const routes = identityRoutes(identity, openGate(), { secureCookie });
  const post = (routes["/api/login"] as Record<string, Handler>).POST!;
  const res = await post(new Request(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ login: "admin", password: "x" }) }));
  expect(res.status).toBe(200);
  return res.headers.get("set-cookie")!;
}

test("Secure over https, or always when told; never without HttpOnly and SameSite=Strict", async () => {
  const plain = await cookieOf("http://gw/api/login", "auto");
  expect(plain).toMatch(/^orrery_session=sid; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
  expect(await cookieOf("https://gw/api/login", "auto")).toMatch(/; HttpOnly; SameSite=Strict; Max-Age=\d+; Secure$/);
  expect(await cookieOf("http://gw/api/login", "always")).toMatch(/; Secure$/);
});
