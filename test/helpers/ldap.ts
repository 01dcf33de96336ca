/**
 * A real OpenLDAP slapd for a test: its own cn=config and mdb database in a temp dir, a random port, and a seeded
 * directory that looks like Active Directory to the adapter (sAMAccountName, userPrincipalName, userAccountControl,
 * binary objectGUID, memberOf kept by the memberof overlay, manager) and like plain LDAP too (uid, entryUUID,
 * groupOfNames, pwdAccountLockedTime from the ppolicy module), so both flavours run against the same entries.
 * A nested group (ops-leads inside orrery-operators inside orrery-everyone), a disabled user (carol) and logins with
 * filter metacharacters and one with an escaped comma in its DN are part of the seed. The service account has a size limit (500 by default) that only a
 * paged search gets past.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pickPort } from "../../services/shared/ports.ts";
import { spawnUntilReady, type ReadyProcess } from "./process.ts";

export const SLAPD = "/usr/sbin/slapd";
const MODULES = "/usr/lib/ldap";
const SCHEMA = "/etc/ldap/schema";

/** Why slapd cannot run here, or null when it can (for test.skipIf). */
export function slapdMissing(): string | null {
  if (!existsSync(SLAPD)) return "slapd is not installed (apt-get install slapd ldap-utils)";
  if (!Bun.which("slapadd", { PATH: "/usr/sbin:/usr/bin" }) || !Bun.which("ldapadd")) return "slapadd/ldapadd missing (apt-get install slapd ldap-utils)";
  for (const m of ["back_mdb", "memberof", "ppolicy"]) if (!existsSync(join(MODULES, `${m}.so`)) && !existsSync(join(MODULES, `${m}.la`))) return `${m} module missing in ${MODULES}`;
  return null;
}

export interface SeedUser {
  login: string;
  password: string;
  dn: string;
  /** objectGUID as Active Directory prints it (lower case, no braces) */
  guid: string;
  upn: string;
  mail: string;
  displayName: string;
  disabled: boolean;
  manager?: string;
}

export interface SeedGroup {
  name: string;
  dn: string;
  guid: string;
}

export interface TestSlapd {
  url: string;
  /** ldaps:// on a second port, when started with tls */
  ldapsUrl?: string;
  /** the test CA's PEM file, when started with tls */
  caFile?: string;
  suffix: string;
  admin: { dn: string; password: string };
  service: { dn: string; password: string };
  userBase: string;
  groupBase: string;
  users: Record<string, SeedUser>;
  groups: Record<string, SeedGroup>;
  /** how many bulk users (user00001 …) were seeded */
  bulk: number;
  proc: ReadyProcess["proc"];
  /** LDIF applied as the admin (ldapmodify -a) */
  modify(ldif: string): Promise<void>;
  /** SIGSTOP / SIGCONT: a server that stops answering without closing its connections */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

export interface SlapdOptions {
  /** extra plain users (no groups) for paging tests */
  bulk?: number;
  /** the service account's size limit (soft and hard); a paged search may return more */
  sizeLimit?: number;
  /** the most entries one paged search may return in all (slapd's size.prtotal; default unlimited) */
  pagedTotal?: number;
  /** also listen on ldaps:// and accept StartTLS, with a certificate from a fresh test CA */
  tls?: boolean;
}

const SUFFIX = "dc=orrery,dc=test";
const PEOPLE = `ou=people,${SUFFIX}`;
const GROUPS = `ou=groups,${SUFFIX}`;

/** {SSHA}: what slappasswd writes; slapd checks a simple bind against it. */
function ssha(password: string): string {
  const salt = randomBytes(8);
  const digest = createHash("sha1").update(password).update(salt).digest();
  return `{SSHA}${Buffer.concat([digest, salt]).toString("base64")}`;
}

/** The 16 bytes AD stores for a GUID string (first three fields little-endian): the adapter must undo this. */
function adGuidBytes(guid: string): Buffer {
  const hex = guid.replace(/-/g, "");
  const b = Buffer.from(hex, "hex");
  return Buffer.concat([Buffer.from(b.subarray(0, 4)).reverse(), Buffer.from(b.subarray(4, 6)).reverse(), Buffer.from(b.subarray(6, 8)).reverse(), b.subarray(8)]);
}

/** An LDIF value: base64 (`::`) when it is not safe as plain text (RFC 2849), as for backslashes and non-ASCII. */
function attr(name: string, value: string | Buffer): string {
  if (Buffer.isBuffer(value)) return `${name}:: ${value.toString("base64")}`;
  const safe = /^[\x01-\x09\x0b-\x0c\x0e-\x1f\x21-\x39\x3b\x3d-\x7f][\x01-\x09\x0b-\x0c\x0e-\x7f]*$/.test(value) && !value.endsWith(" ");
  return safe ? `${name}: ${value}` : `${name}:: ${Buffer.from(value, "utf8").toString("base64")}`;
}

function entry(dn: string, attrs: [string, string | Buffer | undefined][]): string {
  return [attr("dn", dn), ...attrs.filter((a): a is [string, string | Buffer] => a[1] !== undefined).map(([k, v]) => attr(k, v))].join("\n") + "\n\n";
}

/** A custom schema with AD's names and OIDs for the few attributes OpenLDAP's standard schemas lack. */
const AD_SCHEMA = `dn: cn=orrery-ad,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: orrery-ad
olcAttributeTypes: ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
olcAttributeTypes: ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
olcAttributeTypes: ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
olcAttributeTypes: ( 1.2.840.113556.1.4.2 NAME 'objectGUID' EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
olcObjectClasses: ( 1.2.840.113556.1.5.9 NAME 'user' SUP top AUXILIARY MAY ( sAMAccountName $ userPrincipalName $ userAccountControl $ objectGUID ) )
olcObjectClasses: ( 1.2.840.113556.1.5.8 NAME 'group' SUP top AUXILIARY MAY ( sAMAccountName $ objectGUID ) )

`;

function configLdif(dir: string, o: { sizeLimit: number; pagedTotal?: number; serviceDn: string; adminPassword: string; tls?: { ca: string; cert: string; key: string } }): string {
  const tls = o.tls ? `olcTLSCACertificateFile: ${o.tls.ca}\nolcTLSCertificateFile: ${o.tls.cert}\nolcTLSCertificateKeyFile: ${o.tls.key}\n` : "";
  return `dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: ${join(dir, "slapd.pid")}
${tls}
dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: ${MODULES}
olcModuleLoad: back_mdb
olcModuleLoad: memberof
olcModuleLoad: refint
olcModuleLoad: ppolicy

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file://${SCHEMA}/core.ldif
include: file://${SCHEMA}/cosine.ldif
include: file://${SCHEMA}/inetorgperson.ldif

${AD_SCHEMA}dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: to * by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcSuffix: ${SUFFIX}
olcRootDN: cn=admin,${SUFFIX}
olcRootPW: ${o.adminPassword}
olcDbDirectory: ${join(dir, "db")}
olcDbNoSync: TRUE
olcDbMaxSize: 268435456
olcDbIndex: objectClass eq
olcDbIndex: uid,sAMAccountName,userPrincipalName,cn eq
olcDbIndex: member,memberOf eq
olcAccess: to attrs=userPassword by self =xw by anonymous auth by * none
olcAccess: to * by dn.exact="${o.serviceDn}" read by self read by * none
olcLimits: dn.exact="${o.serviceDn}" size.soft=${o.sizeLimit} size.hard=${o.sizeLimit} size.prtotal=${o.pagedTotal ?? "unlimited"}

dn: olcOverlay={0}memberof,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {0}memberof
olcMemberOfRefInt: TRUE
olcMemberOfGroupOC: groupOfNames
olcMemberOfMemberAD: member
olcMemberOfMemberOfAD: memberOf

dn: olcOverlay={1}refint,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcRefintConfig
olcOverlay: {1}refint
olcRefintAttribute: member manager

dn: olcOverlay={2}ppolicy,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcPPolicyConfig
olcOverlay: {2}ppolicy

`;
}

interface UserSpec {
  login: string;
  cn: string;
  uac?: number;
  manager?: string;
}

/** The seeded people: the named ones, then `bulk` plain users. */
function seed(bulk: number): { ldif: string; users: Record<string, SeedUser>; groups: Record<string, SeedGroup> } {
  const users: Record<string, SeedUser> = {};
  const groups: Record<string, SeedGroup> = {};
  const parts: string[] = [
    entry(SUFFIX, [["objectClass", "dcObject"], ["objectClass", "organization"], ["o", "Orrery test"], ["dc", "orrery"]]),
    entry(PEOPLE, [["objectClass", "organizationalUnit"], ["ou", "people"]]),
    entry(GROUPS, [["objectClass", "organizationalUnit"], ["ou", "groups"]]),
    entry(`ou=service,${SUFFIX}`, [["objectClass", "organizationalUnit"], ["ou", "service"]]),
  ];
  const addUser = (s: UserSpec) => {
    const dn = `cn=${s.cn.replace(/([,+"\\<>;=])/g, "\\$1")},${PEOPLE}`;
    const guid = randomUUID();
    const u: SeedUser = {
      login: s.login,
      password: `${s.login}-pw!`,
      dn,
      guid,
      upn: `${s.login}@orrery.test`,
      mail: `${s.login.replace(/[^a-z0-9]/gi, "_")}@orrery.test`,
      displayName: s.cn,
      disabled: ((s.uac ?? 512) & 2) !== 0,
      manager: s.manager ? users[s.manager]!.dn : undefined,
    };
    users[s.login] = u;
    parts.push(
      entry(dn, [
        ["objectClass", "inetOrgPerson"],
        ["objectClass", "user"],
        ["cn", s.cn],
        ["sn", s.cn.split(" ").at(-1)!],
        ["uid", s.login],
        ["sAMAccountName", s.login],
        ["userPrincipalName", u.upn],
        ["mail", u.mail],
        ["displayName", s.cn],
        ["userAccountControl", String(s.uac ?? 512)],
        ["objectGUID", adGuidBytes(guid)],
        ["manager", u.manager],
        ["userPassword", ssha(u.password)],
        // the plain-LDAP flavour's disabled marker (ppolicy's administrative lock)
        ["pwdAccountLockedTime", u.disabled ? "000001010000Z" : undefined],
      ]),
    );
  };
  addUser({ login: "alice", cn: "Alice Ng" });
  addUser({ login: "bob", cn: "Bob Ortiz", manager: "alice" });
  addUser({ login: "carol", cn: "Carol Disabled", uac: 514 });
  addUser({ login: "dave", cn: "Dave Root" });
  // logins with filter metacharacters: found as plain text, never as patterns
  addUser({ login: "star*user", cn: "Star User" });
  addUser({ login: "back\\slash", cn: "Back Slash" });
  addUser({ login: "paren(s)", cn: "Paren Thesis" });
  // a comma in the name, escaped in the DN (AD's "CN=O'Brien\, Pat"): binds and member values must keep the escape
  addUser({ login: "pobrien", cn: "O'Brien, Pat", manager: "bob" });
  for (let i = 1; i <= bulk; i++) addUser({ login: `user${String(i).padStart(5, "0")}`, cn: `Bulk User ${i}` });

  const addGroup = (name: string, members: string[]) => {
    const dn = `cn=${name},${GROUPS}`;
    const guid = randomUUID();
    groups[name] = { name, dn, guid };
    const memberDns = members.map((m) => users[m]?.dn ?? groups[m]!.dn);
    parts.push(
      entry(dn, [
        ["objectClass", "groupOfNames"],
        ["objectClass", "group"],
        ["cn", name],
        ["sAMAccountName", name],
        ["objectGUID", adGuidBytes(guid)],
        ...memberDns.map((m): [string, string] => ["member", m]),
      ]),
    );
  };
  addGroup("orrery-admins", ["dave"]);
  addGroup("ops-leads", ["alice"]);
  addGroup("orrery-operators", ["ops-leads", "star*user"]);
  addGroup("orrery-viewers", ["bob", "carol", "back\\slash", "paren(s)", "pobrien"]);
  addGroup("orrery-everyone", ["orrery-admins", "orrery-operators", "orrery-viewers"]);
  return { ldif: parts.join(""), users, groups };
}

async function run(cmd: string[], input?: string): Promise<void> {
  const p = Bun.spawn(cmd, { stdin: input === undefined ? "ignore" : new TextEncoder().encode(input), stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  if (code !== 0) throw new Error(`${cmd.slice(0, 2).join(" ")} failed (${code}):\n${out}\n${err}`.slice(0, 8000));
}

async function makeCertificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const f = (n: string) => join(dir, n);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await run(["openssl", "req", "-x509", ...ec, "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "2", "-subj", "/CN=orrery test CA"]);
  await run(["openssl", "req", ...ec, "-keyout", f("server.key"), "-out", f("server.csr"), "-subj", "/CN=localhost"]);
  writeFileSync(f("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n");
  await run(["openssl", "x509", "-req", "-in", f("server.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("server.pem"), "-days", "2", "-extfile", f("ext.cnf")]);
  return { ca: f("ca.pem"), cert: f("server.pem"), key: f("server.key") };
}

export async function startSlapd(opts: SlapdOptions = {}): Promise<TestSlapd> {
  const dir = mkdtempSync(join(tmpdir(), "orrery-slapd-"));
  try {
    return await startIn(dir, opts);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

async function startIn(dir: string, opts: SlapdOptions): Promise<TestSlapd> {
  const admin = { dn: `cn=admin,${SUFFIX}`, password: `admin-${randomBytes(6).toString("hex")}` };
  const service = { dn: `cn=orrery-sync,ou=service,${SUFFIX}`, password: `svc-${randomBytes(6).toString("hex")}` };
  const confDir = join(dir, "slapd.d");
  mkdirSync(confDir);
  mkdirSync(join(dir, "db"));
  const tls = opts.tls ? await makeCertificates(dir) : undefined;
  writeFileSync(join(dir, "config.ldif"), configLdif(dir, { sizeLimit: opts.sizeLimit ?? 500, pagedTotal: opts.pagedTotal, serviceDn: service.dn, adminPassword: admin.password, tls }));
  await run(["/usr/sbin/slapadd", "-n0", "-F", confDir, "-l", join(dir, "config.ldif")]);

  // slapd cannot be told port 0 and report back, so a free port is picked first (and again if it is taken meanwhile)
  let proc: ReadyProcess["proc"] | undefined;
  let url = "";
  let ldapsUrl: string | undefined;
  for (let attempt = 0; !proc; attempt++) {
    const port = pickPort(0).port;
    const sport = tls ? pickPort(0, "127.0.0.1", [port]).port : 0;
    url = `ldap://127.0.0.1:${port}`;
    ldapsUrl = tls ? `ldaps://127.0.0.1:${sport}` : undefined;
    try {
      // -d none: in the foreground, logging only what slapd always prints ("slapd starting", errors)
      const started = await spawnUntilReady([SLAPD, "-d", "none", "-F", confDir, "-h", [`${url}/`, ...(ldapsUrl ? [`${ldapsUrl}/`] : [])].join(" ")], {
        ready: /slapd starting/,
        stream: "either",
        timeoutMs: 15_000,
        name: "slapd",
      });
      proc = started.proc;
    } catch (err) {
      if (attempt < 3 && /Address already in use|bind\(\d+\) failed/i.test(String(err))) continue;
      throw err;
    }
  }

  const bulk = opts.bulk ?? 0;
  const s = seed(bulk);
  const ldapBase = ["-x", "-H", url, "-D", admin.dn, "-w", admin.password];
  const modify = (ldif: string) => run(["ldapmodify", "-a", ...ldapBase], ldif);
  try {
    await modify(s.ldif + entry(service.dn, [["objectClass", "organizationalRole"], ["objectClass", "simpleSecurityObject"], ["cn", "orrery-sync"], ["userPassword", ssha(service.password)]]));
  } catch (err) {
    proc.kill("SIGKILL");
    await proc.exited;
    throw err;
  }
  const p = proc;
  let stopped = false;
  return {
    url,
    ldapsUrl,
    caFile: tls?.ca,
    suffix: SUFFIX,
    admin,
    service,
    userBase: PEOPLE,
    groupBase: GROUPS,
    users: s.users,
    groups: s.groups,
    bulk,
    proc: p,
    modify,
    pause: () => p.kill("SIGSTOP"),
    resume: () => p.kill("SIGCONT"),
    stop: async () => {
      if (stopped) return;
      stopped = true;
      p.kill("SIGCONT");
      p.kill("SIGTERM");
      const timer = setTimeout(() => p.kill("SIGKILL"), 5_000);
      await p.exited;
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
