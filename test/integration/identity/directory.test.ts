/**
 * The LDAP directory adapter and the sync runner against a real OpenLDAP slapd per test (test/helpers/ldap.ts), seeded
 * with an AD-like directory: both flavours (Active Directory attributes, plain LDAP), logins good and bad, injection
 * strings, nested groups, paging past the server's size limit, TLS, a directory that is down or stops answering, and
 * a sync that fails halfway.
 */
import { describe, expect, test } from "bun:test";
import { Client, SizeLimitExceededError } from "ldapts";
import { LdapDirectory, DirectoryError } from "../../../services/identity/directory/ldap.ts";
import type { LdapConfigInput } from "../../../services/identity/directory/config.ts";
import { normDn } from "../../../services/identity/directory/membership.ts";
import type { DirectorySnapshot } from "../../../services/identity/directory/port.ts";
import { startDirectorySync, type SyncOutcome } from "../../../services/identity/directory/sync.ts";
import { failureKind, TransientError } from "../../../services/shared/errors.ts";
import type { Logger } from "../../../services/shared/log.ts";
import { slapdMissing, startSlapd, type SlapdOptions, type TestSlapd } from "../../helpers/ldap.ts";
import { waitFor } from "../../helpers/tmp.ts";

const missing = slapdMissing();
const why = missing ? ` (skipped: ${missing})` : "";

async function withSlapd<T>(opts: SlapdOptions, f: (s: TestSlapd) => Promise<T>): Promise<T> {
  const s = await startSlapd(opts);
  try {
    return await f(s);
  } finally {
    await s.stop();
  }
}

type Flavour = "ad" | "ldap";

/** The adapter for the seeded directory; the AD flavour's default user filter needs objectCategory, which slapd lacks. */
function directory(s: TestSlapd, flavour: Flavour, over: Partial<LdapConfigInput> = {}, opts: ConstructorParameters<typeof LdapDirectory>[1] = {}) {
  return new LdapDirectory(
    {
      url: s.url,
      bindDN: s.service.dn,
      bindPassword: s.service.password,
      userBase: s.userBase,
      groupBase: s.groupBase,
      flavour,
      ...(flavour === "ad" ? { userFilter: "(objectClass=user)" } : {}),
      timeoutMs: 3_000,
      connectTimeoutMs: 2_000,
      ...over,
    },
    opts,
  );
}

/** A loopback port nobody listens on. */
function closedPort(): number {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const p = l.port;
  l.stop(true);
  return p;
}

/** A logger that keeps its lines, for asserting what a failure logged. */
function memoryLog(): Logger & { lines: { level: string; msg: string; fields?: Record<string, unknown> }[] } {
  const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  return {
    lines,
    info: (msg, fields) => lines.push({ level: "info", msg, fields }),
    warn: (msg, fields) => lines.push({ level: "warn", msg, fields }),
    error: (msg, fields) => lines.push({ level: "error", msg, fields }),
  };
}

const groupDn = (s: TestSlapd, name: string) => s.groups[name]!.dn;

for (const flavour of ["ad", "ldap"] as const) {
  describe(`${flavour} flavour`, () => {
    test.skipIf(!!missing)(`login: the right password gives the user with its attributes and nested groups; wrong, disabled, unknown and empty give null${why}`, async () => {
      await withSlapd({}, async (s) => {
        const d = directory(s, flavour);
        try {
          const alice = s.users.alice!;
          const u = await d.authenticate("alice", alice.password);
          expect(u).not.toBeNull();
          expect(u!.login).toBe("alice");
          expect(u!.dn).toBe(alice.dn);
          expect(u!.mail).toBe(alice.mail);
          expect(u!.upn).toBe(alice.upn);
          expect(u!.displayName).toBe("Alice Ng");
          expect(u!.disabled).toBe(false);
          if (flavour === "ad") expect(u!.id).toBe(alice.guid);
          else expect(u!.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
          // ops-leads directly, orrery-operators through it, orrery-everyone through that
          expect(u!.groups).toEqual([groupDn(s, "ops-leads"), groupDn(s, "orrery-everyone"), groupDn(s, "orrery-operators")].sort());

          const bob = await d.authenticate("bob", s.users.bob!.password);
          expect(bob!.manager).toBe(alice.dn);
          expect(bob!.groups).toEqual([groupDn(s, "orrery-everyone"), groupDn(s, "orrery-viewers")].sort());

          // an escaped comma in the DN survives the bind and the member search
          const pat = await d.authenticate("pobrien", s.users.pobrien!.password);
          // (slapd hands the DN back as cn=O'Brien\\2C Pat: the same name spelled differently)
          expect(normDn(pat!.dn)).toBe(normDn(s.users.pobrien!.dn));
          expect(pat?.displayName).toBe("O'Brien, Pat");
          expect(pat?.groups).toEqual([groupDn(s, "orrery-everyone"), groupDn(s, "orrery-viewers")].sort());

          expect(await d.authenticate("alice", "wrong")).toBeNull();
          expect(await d.authenticate("alice", s.users.bob!.password)).toBeNull();
          // carol's password is right: the directory itself would let her bind, the adapter must not
          expect(await d.authenticate("carol", s.users.carol!.password)).toBeNull();
          expect(await d.authenticate("nobody", "whatever")).toBeNull();
          // an empty password would be an anonymous bind, which the server accepts
          expect(await d.authenticate("alice", "")).toBeNull();
          expect(await d.authenticate("", "")).toBeNull();
          if (flavour === "ad") {
            // AD users log in by userPrincipalName too
            expect((await d.authenticate(alice.upn, alice.password))?.id).toBe(alice.guid);
          }
        } finally {
          await d.close();
        }
      });
    });

    test.skipIf(!!missing)(`injection strings in the login never match another user; metacharacters are searched as plain text${why}`, async () => {
      await withSlapd({}, async (s) => {
        const d = directory(s, flavour);
        try {
          const pw = s.users.alice!.password;
          const attacks = [
            "*",
            "al*",
            "*lice",
            "a*e",
            ")(uid=*",
            "*)(uid=*",
            "alice)(uid=*",
            "alice)(|(uid=*",
            "admin)(|(uid=*",
            "alice)(&)",
            "*)(objectClass=*",
            "(|(uid=*))",
            "alice\u0000",
            "alice\u0000)(uid=*",
            "\u0000",
            "alice\\",
            "\\2a",
            "al\\2a",
            "alic\\65",
            "alice\\00",
            "alice\\29(uid=*",
            " alice",
            "alice\n",
          ];
          for (const login of attacks) {
            // as alice's password: an unescaped filter would find alice (or several users) and bind her
            expect({ login, user: await d.authenticate(login, pw) }).toEqual({ login, user: null });
            expect({ login, found: await d.findUser(login) }).toEqual({ login, found: null });
          }
          // logins that contain metacharacters belong to their owners, found literally…
          for (const login of ["star*user", "back\\slash", "paren(s)"]) {
            const u = await d.authenticate(login, s.users[login]!.password);
            expect({ login, got: u?.login }).toEqual({ login, got: login });
          }
          // …and never by a pattern or an escape sequence that a spliced filter would decode to the same value
          for (const [login, owner] of [
            ["star*", "star*user"],
            ["star\\2auser", "star*user"],
            ["back\\5cslash", "back\\slash"],
            ["back*", "back\\slash"],
            ["paren\\28s\\29", "paren(s)"],
            ["paren(*)", "paren(s)"],
          ] as const) {
            expect({ login, user: await d.authenticate(login, s.users[owner]!.password) }).toEqual({ login, user: null });
          }
        } finally {
          await d.close();
        }
      });
    });

    test.skipIf(!!missing)(`snapshot: every user and group, nested membership resolved both ways, the disabled user marked${why}`, async () => {
      await withSlapd({}, async (s) => {
        const d = directory(s, flavour);
        try {
          const snap = await d.snapshot();
          expect(snap.users.map((u) => u.login).sort()).toEqual(Object.keys(s.users).sort());
          const byLogin = new Map(snap.users.map((u) => [u.login, u]));
          expect(snap.users.filter((u) => u.disabled).map((u) => u.login)).toEqual(["carol"]);
          if (flavour === "ad") for (const u of snap.users) expect(u.id).toBe(s.users[u.login]!.guid);
          expect(new Set(snap.users.map((u) => u.id)).size).toBe(snap.users.length);
          expect(byLogin.get("alice")!.groups).toEqual([groupDn(s, "ops-leads"), groupDn(s, "orrery-everyone"), groupDn(s, "orrery-operators")].sort());
          expect(byLogin.get("dave")!.groups).toEqual([groupDn(s, "orrery-admins"), groupDn(s, "orrery-everyone")].sort());
          expect(byLogin.get("bob")!.manager).toBe(s.users.alice!.dn);

          const members = (name: string) => snap.groups.find((g) => g.name === name)!.members.map((id) => snap.users.find((u) => u.id === id)!.login).sort();
          expect(snap.groups.map((g) => g.name).sort()).toEqual(Object.keys(s.groups).sort());
          expect(members("ops-leads")).toEqual(["alice"]);
          expect(members("orrery-operators")).toEqual(["alice", "star*user"]);
          expect(members("orrery-everyone")).toEqual(["alice", "back\\slash", "bob", "carol", "dave", "paren(s)", "pobrien", "star*user"]);
          expect(members("orrery-viewers")).toEqual(["back\\slash", "bob", "carol", "paren(s)", "pobrien"]);
          expect(normDn(byLogin.get("pobrien")!.dn)).toBe(normDn(s.users.pobrien!.dn));
          expect(byLogin.get("pobrien")!.manager).toBe(s.users.bob!.dn);
          if (flavour === "ad") for (const g of snap.groups) expect(g.id).toBe(s.groups[g.name]!.guid);

          // the same answer as a login gives, and the same ids next time
          const again = await d.snapshot();
          expect(again.users.map((u) => [u.login, u.id]).sort()).toEqual(snap.users.map((u) => [u.login, u.id]).sort());
          expect((await d.authenticate("alice", s.users.alice!.password))!.groups).toEqual(byLogin.get("alice")!.groups);
        } finally {
          await d.close();
        }
      });
    });
  });
}

test.skipIf(!!missing)(`the plain-LDAP flavour's disabled marker is configurable${why}`, async () => {
  await withSlapd({}, async (s) => {
    await s.modify(`dn: ${s.users.bob!.dn}\nchangetype: modify\nreplace: employeeType\nemployeeType: left-the-company\n`);
    const d = directory(s, "ldap", { disabledFilter: "(employeeType=left-the-company)" });
    try {
      expect(await d.authenticate("bob", s.users.bob!.password)).toBeNull();
      // carol's pwdAccountLockedTime is no longer the test, so she may log in
      expect((await d.authenticate("carol", s.users.carol!.password))?.login).toBe("carol");
      const snap = await d.snapshot();
      expect(snap.users.filter((u) => u.disabled).map((u) => u.login)).toEqual(["bob"]);
    } finally {
      await d.close();
    }
  });
});

test.skipIf(!!missing)(`paging: 1,200 users past a size limit of 500 arrive in one complete snapshot${why}`, async () => {
  await withSlapd({ bulk: 1200, sizeLimit: 500 }, async (s) => {
    // the limit is real: the service account's unpaged search is cut off
    const c = new Client({ url: s.url, timeout: 10_000 });
    try {
      await c.bind(s.service.dn, s.service.password);
      await expect(c.search(s.userBase, { scope: "sub", filter: "(objectClass=user)", attributes: ["1.1"] })).rejects.toBeInstanceOf(SizeLimitExceededError);
    } finally {
      await c.unbind();
    }
    const pages: number[] = [];
    const d = directory(s, "ad", { pageSize: 200 }, { onPage: (what, n) => what === "users" && pages.push(n) });
    try {
      const snap = await d.snapshot();
      const named = Object.keys(s.users).length - 1200;
      expect(snap.users.length).toBe(1200 + named);
      expect(new Set(snap.users.map((u) => u.login)).size).toBe(1200 + named);
      expect(snap.users.find((u) => u.login === "user01200")?.id).toBe(s.users.user01200!.guid);
      expect(pages.length).toBe(7);
      expect(pages.at(-1)).toBe(1200 + named);
    } finally {
      await d.close();
    }
  });
}, 60_000);

test.skipIf(!!missing)(`a server that cuts a paged search short is a DirectoryError (limit), never a partial snapshot${why}`, async () => {
  await withSlapd({ bulk: 600, sizeLimit: 500, pagedTotal: 500 }, async (s) => {
    const d = directory(s, "ad", { pageSize: 100 });
    try {
      const err = await d.snapshot().then(
        (x) => x.users.length,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DirectoryError);
      expect((err as DirectoryError).code).toBe("limit");
      // a login needs one entry, well inside the limit
      expect((await d.authenticate("alice", s.users.alice!.password))?.login).toBe("alice");
    } finally {
      await d.close();
    }
  });
}, 60_000);

test.skipIf(!!missing)(`a sync killed halfway (slapd dies mid-search) leaves the previous snapshot; the failure is logged with its cause${why}`, async () => {
  await withSlapd({ bulk: 1200 }, async (s) => {
    let killAt: number | null = null;
    const d = directory(s, "ad", { pageSize: 200 }, {
      onPage: (what, n) => {
        if (what === "users" && killAt !== null && n >= killAt) s.proc.kill("SIGKILL");
      },
    });
    const stored: DirectorySnapshot[] = [];
    const log = memoryLog();
    const sync = startDirectorySync({ directory: d, sink: async (snap) => void stored.push(snap), intervalMs: 0, log, runAtStart: false });
    try {
      const first = await sync.runNow();
      const all = Object.keys(s.users).length;
      expect(first).toMatchObject({ ok: true, users: all, groups: 5 });
      expect(stored.length).toBe(1);

      killAt = 400;
      const second = await sync.runNow();
      expect(second.ok).toBe(false);
      expect(second).toMatchObject({ ok: false, stage: "snapshot", kind: "transient" });
      // the sink never saw a partial directory: the one snapshot it has is the first, whole
      expect(stored.length).toBe(1);
      expect(stored[0]!.users.length).toBe(all);
      const logged = log.lines.find((l) => l.level === "error");
      expect(logged?.msg).toContain("previous users and groups stay");
      expect(String(logged?.fields?.error)).toMatch(/TransientError: directory unreachable \(snapshot\).*← Error: /);
      expect(sync.last()).toEqual(second);
    } finally {
      await sync.stop();
      await d.close();
    }
  });
}, 60_000);

test.skipIf(!!missing)(`a directory that stops answering mid-sync times out, keeps the previous snapshot, and the next interval delivers the new one${why}`, async () => {
  await withSlapd({ bulk: 300 }, async (s) => {
    let pauseNext = false;
    const d = directory(s, "ldap", { pageSize: 100, timeoutMs: 1_000 }, {
      onPage: (what) => {
        if (what === "users" && pauseNext) {
          pauseNext = false;
          s.pause();
        }
      },
    });
    const stored: DirectorySnapshot[] = [];
    const log = memoryLog();
    const outcomes: SyncOutcome[] = [];
    const sync = startDirectorySync({
      directory: d,
      sink: async (snap) => void stored.push(snap),
      intervalMs: 300,
      log,
      runAtStart: false,
    });
    try {
      outcomes.push(await sync.runNow());
      expect(stored.length).toBe(1);
      pauseNext = true;
      const failed = await sync.runNow();
      expect(failed).toMatchObject({ ok: false, kind: "transient" });
      expect(failed.ok || failed.error).toMatch(/timed out/);
      expect(stored.length).toBe(1);
      s.resume();
      await s.modify(
        `dn: cn=Erin New,${s.userBase}\nobjectClass: inetOrgPerson\ncn: Erin New\nsn: New\nuid: erin\nuserPassword: erin-pw!\n`,
      );
      // the schedule carries on after a failure: a later run sees the directory as it is now
      await waitFor(() => stored.length >= 2, "a scheduled sync after the failed one", 10_000, 50);
      expect(stored[1]!.users.map((u) => u.login)).toContain("erin");
      expect(stored[1]!.users.length).toBe(stored[0]!.users.length + 1);
    } finally {
      s.resume();
      await sync.stop();
      await d.close();
    }
  });
}, 60_000);

test.skipIf(!!missing)(`directory down: login and snapshot throw a TransientError, never null or an empty snapshot${why}`, async () => {
  const nowhere = new LdapDirectory({ url: `ldap://127.0.0.1:${closedPort()}`, bindDN: "cn=x", bindPassword: "y", userBase: "dc=x", groupBase: "dc=x", connectTimeoutMs: 1_000 });
  for (const op of [() => nowhere.authenticate("alice", "pw"), () => nowhere.snapshot()]) {
    const err = await op().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TransientError);
    expect(failureKind(err)).toBe("transient");
  }

  await withSlapd({}, async (s) => {
    const d = directory(s, "ad", { timeoutMs: 800 });
    try {
      expect((await d.authenticate("alice", s.users.alice!.password))?.login).toBe("alice");
      // stopped answering (a hung server, a dropped route): the timeout turns it into a TransientError
      s.pause();
      await expect(d.authenticate("alice", s.users.alice!.password)).rejects.toBeInstanceOf(TransientError);
      await expect(d.snapshot()).rejects.toBeInstanceOf(TransientError);
      s.resume();
      expect((await d.authenticate("alice", s.users.alice!.password))?.login).toBe("alice");
      // gone
      await s.stop();
      await expect(d.authenticate("alice", s.users.alice!.password)).rejects.toBeInstanceOf(TransientError);
    } finally {
      await d.close();
    }
  });
}, 30_000);

test.skipIf(!!missing)(`a wrong service password is a DirectoryError (bind_refused), not a failed login or a transient outage${why}`, async () => {
  await withSlapd({}, async (s) => {
    const d = directory(s, "ad", { bindPassword: "not-the-password" });
    const log = memoryLog();
    try {
      const err = await d.authenticate("alice", s.users.alice!.password).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DirectoryError);
      expect((err as DirectoryError).code).toBe("bind_refused");
      expect(String((err as Error).message)).not.toContain("not-the-password");
      const sync = startDirectorySync({ directory: d, sink: async () => {}, intervalMs: 0, log, runAtStart: false });
      expect(await sync.runNow()).toMatchObject({ ok: false, kind: "permanent", stage: "snapshot" });
      expect(JSON.stringify(log.lines)).not.toContain("not-the-password");
    } finally {
      await d.close();
    }
  });
});

test.skipIf(!!missing)(`TLS: ldaps:// and StartTLS with the test CA; an untrusted certificate is a DirectoryError (tls)${why}`, async () => {
  await withSlapd({ tls: true }, async (s) => {
    const pw = s.users.alice!.password;
    const ldaps = directory(s, "ad", { url: s.ldapsUrl!, caFile: s.caFile });
    const startTls = directory(s, "ldap", { url: s.url.replace("127.0.0.1", "localhost"), startTLS: true, caFile: s.caFile });
    const untrusted = directory(s, "ad", { url: s.ldapsUrl! });
    try {
      expect((await ldaps.authenticate("alice", pw))?.login).toBe("alice");
      expect((await startTls.authenticate("alice", pw))?.login).toBe("alice");
      expect((await startTls.snapshot()).users.length).toBe(Object.keys(s.users).length);
      const err = await untrusted.authenticate("alice", pw).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DirectoryError);
      expect((err as DirectoryError).code).toBe("tls");
    } finally {
      await Promise.all([ldaps.close(), startTls.close(), untrusted.close()]);
    }
  });
});

test.skipIf(!!missing)(`close: later calls fail with DirectoryError (closed)${why}`, async () => {
  await withSlapd({}, async (s) => {
    const d = directory(s, "ad");
    await d.close();
    await expect(d.authenticate("alice", s.users.alice!.password)).rejects.toMatchObject({ code: "closed" });
  });
});
