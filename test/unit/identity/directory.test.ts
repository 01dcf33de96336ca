/**
 * The directory's pure parts (DN comparison, AD GUIDs, nested membership, login screening, error classes, config)
 * and the sync runner over a scripted port. The adapter against a real slapd is in test/integration/identity/.
 */
import { describe, expect, test } from "bun:test";
import { BusyError, InsufficientAccessError, SizeLimitExceededError, UnavailableError } from "ldapts";
import { z } from "zod";
import { DirectoryKeys, ldapConfigFromEnv } from "../../../services/identity/directory/config.ts";
import { acceptableLogin, classifyLdapError, DirectoryError, LdapDirectory } from "../../../services/identity/directory/ldap.ts";
import { adGuidToString, normDn, resolveMembership } from "../../../services/identity/directory/membership.ts";
import type { DirectorySnapshot } from "../../../services/identity/directory/port.ts";
import { startDirectorySync } from "../../../services/identity/directory/sync.ts";
import { ConfigError, parseEnv } from "../../../services/shared/config.ts";
import { TransientError } from "../../../services/shared/errors.ts";
import type { Logger } from "../../../services/shared/log.ts";
import { waitFor } from "../../helpers/tmp.ts";

describe("normDn", () => {
  test("case and spaces around separators do not matter; spaces inside values and escapes do", () => {
    expect(normDn("CN=Alice Ng, OU=People ,DC=Example,DC=com")).toBe("cn=alice ng,ou=people,dc=example,dc=com");
    expect(normDn("cn = Alice  Ng,ou=people")).toBe("cn=alice ng,ou=people");
    expect(normDn("cn=Smith\\, John,ou=x")).toBe("cn=smith\\2c john,ou=x");
    expect(normDn("cn=Smith\\, John,ou=x")).not.toBe(normDn("cn=Smith,cn=John,ou=x"));
    expect(normDn("cn=a+uid=b, dc=x")).toBe("cn=a+uid=b,dc=x");
  });
  test("one spelling per escape: `\\,` and `\\2C` are the same comma, `\\c3\\a9` is é, an escaped space stays", () => {
    expect(normDn("cn=O'Brien\\, Pat,dc=x")).toBe(normDn("CN=O'Brien\\2C Pat, DC=x"));
    expect(normDn("cn=O'Brien\\, Pat,dc=x")).toBe("cn=o'brien\\2c pat,dc=x");
    expect(normDn("cn=Jos\\c3\\a9,dc=x")).toBe(normDn("cn=José,dc=x"));
    expect(normDn("cn=\\41lice,dc=x")).toBe("cn=alice,dc=x");
    expect(normDn("cn=a\\ ,dc=x")).toBe(normDn("cn=a\\20,dc=x"));
    expect(normDn("cn=a\\ ,dc=x")).not.toBe(normDn("cn=a,dc=x"));
    expect(normDn("cn=\\#1,dc=x")).toBe("cn=\\231,dc=x");
    expect(normDn("cn=x \\2b y")).toBe("cn=x \\2b y");
    expect(normDn("cn=😀 a")).toBe("cn=😀 a");
  });
});

describe("adGuidToString", () => {
  test("AD's byte order: the first three fields little-endian", () => {
    const bytes = Uint8Array.from([0xe0, 0x04, 0x25, 0x3f, 0x89, 0x4f, 0xd3, 0x11, 0x9a, 0x0c, 0x03, 0x05, 0xe8, 0x2c, 0x33, 0x01]);
    expect(adGuidToString(bytes)).toBe("3f2504e0-4f89-11d3-9a0c-0305e82c3301");
  });
  test("anything but 16 bytes is not a GUID", () => {
    expect(adGuidToString(new Uint8Array(15))).toBeNull();
    expect(adGuidToString(new Uint8Array(0))).toBeNull();
  });
});

describe("resolveMembership", () => {
  const u = (dn: string, memberOf: string[] = []) => ({ dn, memberOf });
  const g = (dn: string, member: string[], memberOf: string[] = []) => ({ dn, member, memberOf });

  test("nested groups through member values, spelled differently than the entries", () => {
    const out = resolveMembership(
      [u("cn=Alice,ou=p"), u("cn=Bob,ou=p")],
      [g("cn=leads,ou=g", ["CN=alice, OU=P"]), g("cn=ops,ou=g", ["cn=leads,ou=g"]), g("cn=all,ou=g", ["CN=Ops,OU=G", "cn=bob,ou=p"])],
    );
    expect(out.get("cn=Alice,ou=p")).toEqual(["cn=all,ou=g", "cn=leads,ou=g", "cn=ops,ou=g"]);
    expect(out.get("cn=Bob,ou=p")).toEqual(["cn=all,ou=g"]);
  });

  test("memberOf alone is enough (a group whose member list AD handed back in ranges), and groups outside the base count", () => {
    const out = resolveMembership([u("cn=a,ou=p", ["cn=big,ou=g", "cn=Domain Admins,cn=builtin"])], [g("cn=big,ou=g", [], ["cn=all,ou=g"]), g("cn=all,ou=g", [])]);
    expect(out.get("cn=a,ou=p")).toEqual(["cn=Domain Admins,cn=builtin", "cn=all,ou=g", "cn=big,ou=g"]);
  });

  test("a loop of groups ends, and no user is its own group", () => {
    const out = resolveMembership([u("cn=a")], [g("cn=x", ["cn=a", "cn=y"]), g("cn=y", ["cn=x"])]);
    expect(out.get("cn=a")).toEqual(["cn=x", "cn=y"]);
  });

  test("a user in no group has none", () => {
    expect(resolveMembership([u("cn=lonely")], [g("cn=x", ["cn=other"])]).get("cn=lonely")).toEqual([]);
  });
});

describe("acceptableLogin", () => {
  test("control characters, surrounding spaces, empty and very long logins are never sent to the directory", () => {
    for (const bad of ["", "alice\u0000", "\u0000", "al\nice", "alice\t", " alice", "alice ", "x".repeat(257), "a\u007f"]) expect({ bad, ok: acceptableLogin(bad) }).toEqual({ bad, ok: false });
    for (const ok of ["alice", "star*user", "back\\slash", "paren(s)", "a)(uid=*", "alice@corp.example", "Jürgen"]) expect({ ok, v: acceptableLogin(ok) }).toEqual({ ok, v: true });
  });
});

describe("classifyLdapError", () => {
  test("unreachable, busy and unavailable are transient; limits, refusals and certificates are DirectoryErrors", () => {
    expect(classifyLdapError(new BusyError(), "x")).toBeInstanceOf(TransientError);
    expect(classifyLdapError(new UnavailableError(), "x")).toBeInstanceOf(TransientError);
    expect(classifyLdapError(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" }), "x")).toBeInstanceOf(TransientError);
    expect(classifyLdapError(new Error("SearchRequest: Operation timed out"), "x")).toBeInstanceOf(TransientError);
    const limit = classifyLdapError(new SizeLimitExceededError(), "snapshot");
    expect(limit).toMatchObject({ code: "limit", kind: "permanent" });
    expect(classifyLdapError(new InsufficientAccessError(), "x")).toMatchObject({ code: "failed", kind: "unknown" });
    expect(classifyLdapError(Object.assign(new Error("self signed"), { code: "DEPTH_ZERO_SELF_SIGNED_CERT" }), "x")).toMatchObject({ code: "tls" });
    const typed = new DirectoryError("bind_refused", "nope");
    expect(classifyLdapError(typed, "x")).toBe(typed);
  });
});

describe("config", () => {
  const Env = z.object(DirectoryKeys);
  const base = {
    ORRERY_LDAP_URL: "ldaps://dc1.corp.example:636",
    ORRERY_LDAP_BIND_DN: "CN=orrery,OU=Service,DC=corp,DC=example",
    ORRERY_LDAP_BIND_PASSWORD: "s3cret-value",
    ORRERY_LDAP_USER_BASE: "OU=People,DC=corp,DC=example",
  };

  test("no URL: no directory", () => {
    expect(ldapConfigFromEnv(parseEnv(Env, {}))).toBeNull();
  });

  test("a full configuration with AD defaults", () => {
    const r = ldapConfigFromEnv(parseEnv(Env, { ...base, ORRERY_LDAP_LOGIN_ATTRIBUTES: "sAMAccountName, mail", ORRERY_LDAP_SYNC_INTERVAL_S: "60" }));
    expect(r).not.toBeNull();
    expect(r!.config).toMatchObject({ url: base.ORRERY_LDAP_URL, flavour: "ad", groupBase: base.ORRERY_LDAP_USER_BASE, loginAttributes: ["sAMAccountName", "mail"], tlsVerify: true, startTLS: false, pageSize: 500 });
    expect(r!.syncIntervalMs).toBe(60_000);
  });

  test("wrong settings name their key and never echo the password", () => {
    const err = (env: Record<string, string>) => {
      try {
        ldapConfigFromEnv(parseEnv(Env, env));
        return null;
      } catch (e) {
        return e as Error;
      }
    };
    const noBase = err({ ...base, ORRERY_LDAP_USER_BASE: "" });
    expect(noBase).toBeInstanceOf(ConfigError);
    expect(noBase!.message).toContain("ORRERY_LDAP_USER_BASE");
    const noPw = err({ ...base, ORRERY_LDAP_BIND_PASSWORD: "" });
    expect(noPw!.message).toContain("ORRERY_LDAP_BIND_PASSWORD");
    const tls = err({ ...base, ORRERY_LDAP_STARTTLS: "1" });
    expect(tls!.message).toContain("ORRERY_LDAP_STARTTLS");
    expect(tls!.message).not.toContain("s3cret-value");
    const filter = err({ ...base, ORRERY_LDAP_USER_FILTER: "objectClass=user)(" });
    expect(filter).toBeInstanceOf(ConfigError);
    expect(filter!.message).toContain("ORRERY_LDAP_USER_FILTER");
    expect(err({ ...base, ORRERY_LDAP_URL: "http://dc1" })!.message).toContain("ORRERY_LDAP_URL");
    expect(err({ ...base, ORRERY_LDAP_FLAVOUR: "novell" })!.message).toContain("ORRERY_LDAP_FLAVOUR");
  });

  test("the adapter refuses a CA file it cannot read, naming the setting", () => {
    expect(() => new LdapDirectory({ url: "ldaps://x", userBase: "dc=x", groupBase: "dc=x", caFile: "/nonexistent/ca.pem" })).toThrow(/ORRERY_LDAP_CA_FILE/);
  });
});

describe("startDirectorySync", () => {
  const quiet: Logger & { errors: string[] } = Object.assign(
    { info() {}, warn() {}, error(_m: string, f?: Record<string, unknown>) {
      quiet.errors.push(String(f?.error));
    } },
    { errors: [] as string[] },
  );
  const snap = (n: number): DirectorySnapshot => ({
    at: Date.now(),
    users: Array.from({ length: n }, (_, i) => ({ id: `u${i}`, login: `u${i}`, dn: `cn=u${i}`, groups: [], disabled: false })),
    groups: [],
  });

  test("runs on demand join the one running; a failure never reaches the sink and the next run does", async () => {
    const script: (() => Promise<DirectorySnapshot>)[] = [
      async () => {
        await Bun.sleep(30);
        return snap(3);
      },
      async () => {
        throw new TransientError("directory unreachable (snapshot): connection closed", undefined, { cause: new Error("ECONNRESET") });
      },
      async () => snap(4),
    ];
    let calls = 0;
    const stored: number[] = [];
    const sync = startDirectorySync({ directory: { snapshot: () => script[calls++]!() }, sink: async (s) => void stored.push(s.users.length), intervalMs: 0, log: quiet, runAtStart: false });
    const [a, b] = await Promise.all([sync.runNow(), sync.runNow()]);
    expect(a).toBe(b);
    expect(calls).toBe(1);
    expect(stored).toEqual([3]);
    const failed = await sync.runNow();
    expect(failed).toMatchObject({ ok: false, stage: "snapshot", kind: "transient" });
    expect(failed.ok || failed.error).toContain("← Error: ECONNRESET");
    expect(stored).toEqual([3]);
    expect(await sync.runNow()).toMatchObject({ ok: true, users: 4 });
    expect(stored).toEqual([3, 4]);
    await sync.stop();
  });

  test("an empty snapshot after a full one is refused; a failing sink is reported, not thrown", async () => {
    const sizes = [2, 0, 2];
    let i = 0;
    let sinkFails = false;
    const stored: number[] = [];
    const sync = startDirectorySync({
      directory: { snapshot: async () => snap(sizes[i++]!) },
      sink: async (s) => {
        if (sinkFails) throw new Error("store is read-only");
        stored.push(s.users.length);
      },
      intervalMs: 0,
      log: quiet,
      runAtStart: false,
    });
    expect(await sync.runNow()).toMatchObject({ ok: true, users: 2 });
    expect(await sync.runNow()).toMatchObject({ ok: false, stage: "check" });
    sinkFails = true;
    expect(await sync.runNow()).toMatchObject({ ok: false, stage: "sink", kind: "unknown" });
    expect(stored).toEqual([2]);
    await sync.stop();
  });

  test("the schedule runs at start and every interval after the previous run ends, and stops", async () => {
    let calls = 0;
    const sync = startDirectorySync({ directory: { snapshot: async () => (calls++, snap(1)) }, sink: async () => {}, intervalMs: 40, log: quiet });
    await waitFor(() => calls >= 3, "three scheduled runs", 5_000, 10);
    await sync.stop();
    const seen = calls;
    await Bun.sleep(100);
    expect(calls).toBe(seen);
    expect(sync.last()).toMatchObject({ ok: true, users: 1 });
  });
});
