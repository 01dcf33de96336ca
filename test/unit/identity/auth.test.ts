/** The pure parts of identity: roles from groups, the door policy, the failure limiter, credentials, redirects, config. */
import { describe, expect, test } from "bun:test";
import { z } from "zod";
import { CreateTokenRequest, RoleMap } from "../../../pipelines/contracts/identity.ts";
import { need } from "../../../services/identity/gate.ts";
import { credentialsOf } from "../../../services/identity/identity.ts";
import { loginPage } from "../../../services/identity/login-page.ts";
import { FailureLimiter } from "../../../services/identity/ratelimit.ts";
import { roleOf } from "../../../services/identity/roles.ts";
import { safeNext } from "../../../services/identity/routes.ts";
import { newToken, sha256 } from "../../../services/identity/secrets.ts";
import { AuthKeys, ConfigError, IdentityKeys, parseEnv } from "../../../services/shared/config.ts";

describe("roleOf", () => {
  const map = RoleMap.parse({ admin: ["CN=Orrery-Admins,OU=Groups,DC=corp"], operator: ["ops"], viewer: ["staff"] });
  test("the highest role of any group, by DN (any case) or by CN", () => {
    expect(roleOf(["cn=orrery-admins,ou=groups,dc=corp"], map)).toBe("admin");
    expect(roleOf(["CN=Staff,OU=Groups,DC=corp", "CN=ops,OU=Teams,DC=corp"], map)).toBe("operator");
    expect(roleOf(["cn=staff,dc=corp"], map)).toBe("viewer");
  });
  test("no matching group: the default, null unless configured", () => {
    expect(roleOf(["cn=other,dc=corp"], map)).toBeNull();
    expect(roleOf([], RoleMap.parse({ default: "viewer" }))).toBe("viewer");
  });
  test("a DN in the map never matches a group of that CN elsewhere", () => {
    expect(roleOf(["cn=orrery-admins,ou=elsewhere,dc=corp"], map)).toBeNull();
  });
});

describe("the door policy", () => {
  test("reads need a viewer, writes an admin, unless the table says otherwise", () => {
    expect(need("/api/some/new/route", "GET")).toBe("viewer");
    expect(need("/api/some/new/route", "POST")).toBe("admin");
    expect(need("/api/some/new/route", "DELETE")).toBe("admin");
    expect(need("/api/cypher", "POST")).toBe("viewer");
    expect(need("/healthz", "GET")).toBe("public");
    expect(need("/healthz", "POST")).toBe("admin");
    expect(need("/api/login", "POST")).toBe("public");
    expect(need("/api/auth/routes", "GET")).toBe("admin");
  });
  test("acknowledging an alert is an operator's", () => {
    expect(need("/api/alerts/:id/ack", "POST")).toBe("operator");
    expect(need("/api/alerts/acknowledge", "POST")).toBe("operator");
  });
});

describe("FailureLimiter", () => {
  test("refuses after max failures in the window, until the oldest leaves it; clear resets", () => {
    let now = 0;
    const l = new FailureLimiter({ max: 3, windowMs: 1000 }, () => now);
    for (let i = 0; i < 3; i++) {
      expect(l.retryAfterMs("k")).toBe(0);
      l.fail("k");
      now += 100;
    }
    expect(l.retryAfterMs("k")).toBe(700);
    expect(l.retryAfterMs("other")).toBe(0);
    now = 1001;
    expect(l.retryAfterMs("k")).toBe(0);
    l.fail("k");
    l.clear("k");
    expect(l.retryAfterMs("k")).toBe(0);
  });
});

describe("credentials", () => {
  const req = (h: Record<string, string>) => new Request("http://x/", { headers: h });
  test("bearer, basic (the token is the password), cookie; another scheme is wrong credentials, never none", () => {
    expect(credentialsOf(req({ authorization: "Bearer orr_abc" }))).toEqual({ bearer: "orr_abc" });
    expect(credentialsOf(req({ authorization: `Basic ${btoa("prometheus:orr_x:y")}` }))).toEqual({ bearer: "orr_x:y" });
    expect(credentialsOf(req({ authorization: "Digest abc" }))).toEqual({ bearer: "" });
    expect(credentialsOf(req({ cookie: "a=1; orrery_session=s3ss; b=2" }))).toEqual({ cookie: "s3ss" });
    expect(credentialsOf(req({}))).toEqual({});
  });
  test("tokens are 256 random bits; only their SHA-256 is kept", () => {
    const t = newToken();
    expect(t).toMatch(/^orr_[A-Za-z0-9_-]{43}$/);
    expect(newToken()).not.toBe(t);
    expect(sha256(t)).toMatch(/^[a-f0-9]{64}$/);
  });
});

describe("the login page", () => {
  test("next stays on the site", () => {
    expect(safeNext("/map?x=1")).toBe("/map?x=1");
    for (const bad of ["//evil", "https://evil", "/\\evil", "evil", "", null, "/a\r\nSet-Cookie: x"]) expect(safeNext(bad)).toBe("/");
  });
  test("what it echoes is escaped", () => {
    const html = loginPage({ next: '/"><script>alert(1)</script>', error: "bad_credentials" });
    expect(html).not.toContain("<script>");
    expect(html).toContain("Wrong login or password.");
  });
});

describe("configuration", () => {
  const parse = (env: Record<string, string>) => parseEnv(z.object({ ...AuthKeys, ...IdentityKeys }), env);
  test("auth is on by default; off only when said", () => {
    expect(parse({}).ORRERY_AUTH).toBe("on");
    expect(parse({ ORRERY_AUTH: "off" }).ORRERY_AUTH).toBe("off");
    expect(() => parse({ ORRERY_AUTH: "no" })).toThrow(/ORRERY_AUTH: /);
  });
  test("ORRERY_AUTH_ROLES is checked, with the key's name", () => {
    expect(parse({ ORRERY_AUTH_ROLES: '{"admin":["cn=a,dc=x"]}' }).ORRERY_AUTH_ROLES.admin).toEqual(["cn=a,dc=x"]);
    expect(() => parse({ ORRERY_AUTH_ROLES: "{nope" })).toThrow(/ORRERY_AUTH_ROLES: not JSON/);
    expect(() => parse({ ORRERY_AUTH_ROLES: '{"superuser":["x"]}' })).toThrow(ConfigError);
    expect(() => parse({ ORRERY_AUTH_ROLES: '{"default":"root"}' })).toThrow(/ORRERY_AUTH_ROLES: default/);
  });
  test("a secret is never echoed in a configuration error", () => {
    let msg = "";
    try {
      parse({ ORRERY_ADMIN_PASSWORD: "tooshort" });
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toContain("ORRERY_ADMIN_PASSWORD");
    expect(msg).not.toContain("tooshort");
  });
  test("token requests: ingest tokens name their source, and only they do", () => {
    expect(CreateTokenRequest.safeParse({ kind: "ingest", name: "am" }).success).toBe(false);
    expect(CreateTokenRequest.safeParse({ kind: "api", name: "x", source: "alertmanager" }).success).toBe(false);
    expect(CreateTokenRequest.safeParse({ kind: "ingest", name: "am", source: "alertmanager" }).success).toBe(true);
    expect(CreateTokenRequest.safeParse({ name: "x", hash: "y" }).success).toBe(false);
  });
});
