/**
 * The directory port over LDAP and Active Directory (ldapts). Every operation opens its own connection and closes it:
 * logins are rare next to page views, a sync runs every few minutes, and a connection that the directory (or a load
 * balancer) dropped while idle is then never in the way. User input only ever reaches the server inside filter
 * objects (EqualityFilter escapes its value), never spliced into a filter string.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { ConnectionOptions } from "node:tls";
import {
  AdminLimitExceededError,
  AndFilter,
  BusyError,
  Client,
  EqualityFilter,
  ExtensibleFilter,
  FilterParser,
  InvalidCredentialsError,
  OrFilter,
  ResultCodeError,
  SizeLimitExceededError,
  TimeLimitExceededError,
  UnavailableError,
  type Entry,
  type Filter,
} from "ldapts";
import { PortError, TransientError, type FailureKind } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { ConfigError } from "../../shared/config.ts";
import { defaultsFor, LdapConfig, type LdapConfigInput } from "./config.ts";
import { adGuidToString, MAX_NESTING, normDn, resolveMembership } from "./membership.ts";
import type { DirectoryGroup, DirectoryPort, DirectorySnapshot, DirectoryUser } from "./port.ts";

export type DirectoryErrorCode =
  /** the service account's bind was refused: its DN or password is wrong */
  | "bind_refused"
  /** the server's certificate was not accepted (CA, name, expiry) */
  | "tls"
  /** a server limit cut the search short (size or admin limit): paging is off or the page is above the limit */
  | "limit"
  /** the adapter was closed */
  | "closed"
  /** any other answer the directory gave (no such base DN, insufficient access, …) */
  | "failed";

/**
 * A directory failure that waiting will not cure (a wrong service password, an untrusted certificate, a limit).
 * An unreachable or busy directory is a TransientError instead.
 */
export class DirectoryError extends PortError<DirectoryErrorCode> {
  override readonly name = "DirectoryError";
  get kind(): FailureKind {
    return this.code === "failed" ? "unknown" : "permanent";
  }
}

/** Root DSE capability of Active Directory (LDAP_CAP_ACTIVE_DIRECTORY_OID). */
const AD_CAPABILITY = "1.2.840.113556.1.4.800";
/** LDAP_MATCHING_RULE_IN_CHAIN: Active Directory follows nested membership inside one filter. */
const IN_CHAIN = "1.2.840.113556.1.4.1941";
/** userAccountControl's ACCOUNTDISABLE bit. */
const UAC_DISABLED = 0x2;
/** How many DNs go into one `(|(member=…)…)` when nesting is walked client-side. */
const OR_CHUNK = 50;
/** Longest login accepted (AD's sAMAccountName is at most 20, a UPN at most 1024 in theory; 256 covers real ones). */
const MAX_LOGIN = 256;

const TLS_CODE = /^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|HOSTNAME_MISMATCH|ERR_OSSL)/;

/**
 * What a failure is, for the caller: a TransientError when the directory is unreachable, slow or says it is busy;
 * a DirectoryError for every answer that retrying will not change. `during` names the step, for the message.
 */
export function classifyLdapError(err: unknown, during: string): TransientError | DirectoryError {
  if (err instanceof TransientError || err instanceof DirectoryError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  if (err instanceof ResultCodeError) {
    if (err instanceof BusyError || err instanceof UnavailableError || err instanceof TimeLimitExceededError)
      return new TransientError(`directory ${during}: ${msg}`, undefined, { cause: err });
    if (err instanceof SizeLimitExceededError || err instanceof AdminLimitExceededError)
      return new DirectoryError("limit", `directory ${during}: ${msg}`, { cause: err });
    return new DirectoryError("failed", `directory ${during}: ${msg} (LDAP result ${err.code})`, { cause: err });
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && TLS_CODE.test(code))
    return new DirectoryError("tls", `directory ${during}: the server's certificate was refused (${code}): ${msg}`, { cause: err });
  // everything else is the transport: refused, reset, closed mid-answer, timed out
  return new TransientError(`directory unreachable (${during}): ${msg}`, undefined, { cause: err });
}

export interface LdapDirectoryOptions {
  log?: Logger;
  /** called after each page of a paged search with the entries read so far in that search (progress, tests) */
  onPage?: (search: "users" | "groups" | "disabled", entriesSoFar: number) => void;
}

type Attr = string | string[] | Buffer | Buffer[];

/** An entry's attribute values as strings, whatever the case the server spelled its name in. */
function values(e: Entry, name: string): string[] {
  const lc = name.toLowerCase();
  for (const [k, v] of Object.entries(e) as [string, Attr][]) {
    if (k.toLowerCase() !== lc || k === "dn") continue;
    const list = Array.isArray(v) ? v : [v];
    return list.map((x) => (Buffer.isBuffer(x) ? x.toString("utf8") : x));
  }
  return [];
}
function first(e: Entry, name: string): string | undefined {
  return values(e, name)[0] || undefined;
}
function buffer(e: Entry, name: string): Buffer | undefined {
  const lc = name.toLowerCase();
  for (const [k, v] of Object.entries(e) as [string, Attr][]) {
    if (k.toLowerCase() !== lc) continue;
    const x = Array.isArray(v) ? v[0] : v;
    return Buffer.isBuffer(x) ? x : typeof x === "string" ? Buffer.from(x, "latin1") : undefined;
  }
  return undefined;
}

/** A login worth asking the directory about: control characters (NUL among them) never are. */
export function acceptableLogin(login: string): boolean {
  // eslint-disable-next-line no-control-regex
  return login.length > 0 && login.length <= MAX_LOGIN && !/[\u0000-\u001f\u007f]/.test(login) && login.trim() === login;
}

export class LdapDirectory implements DirectoryPort {
  readonly config: LdapConfig;
  private readonly userFilter: Filter;
  private readonly groupFilter: Filter;
  private readonly disabledFilter: Filter | undefined;
  private readonly loginAttributes: string[];
  private readonly idAttribute: string;
  private readonly tls: ConnectionOptions;
  private readonly open = new Set<Client>();
  private closed = false;
  private inChain: Promise<boolean> | undefined;

  constructor(
    config: LdapConfigInput,
    private readonly opts: LdapDirectoryOptions = {},
  ) {
    const r = LdapConfig.safeParse(config);
    if (!r.success) throw new ConfigError(`invalid directory configuration: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    this.config = r.data;
    const d = defaultsFor(this.config.flavour);
    this.userFilter = FilterParser.parseString(this.config.userFilter ?? d.userFilter);
    this.groupFilter = FilterParser.parseString(this.config.groupFilter ?? d.groupFilter);
    const disabled = this.config.disabledFilter ?? d.disabledFilter;
    this.disabledFilter = disabled ? FilterParser.parseString(disabled) : undefined;
    this.loginAttributes = this.config.loginAttributes ?? d.loginAttributes;
    this.idAttribute = this.config.flavour === "ad" ? "objectGUID" : "entryUUID";
    const host = new URL(this.config.url).hostname.replace(/^\[|\]$/g, "");
    let ca: string | undefined;
    if (this.config.caFile) {
      try {
        ca = readFileSync(this.config.caFile, "utf8");
      } catch (err) {
        throw new ConfigError(`ORRERY_LDAP_CA_FILE: cannot read ${this.config.caFile}: ${(err as Error).message}`);
      }
    }
    // `host` is what the certificate's name is checked against; SNI (servername) must not be an IP address
    this.tls = { ca, rejectUnauthorized: this.config.tlsVerify, host, ...(isIP(host) ? {} : { servername: host }) };
  }

  async authenticate(login: string, password: string): Promise<DirectoryUser | null> {
    // An empty password would be an unauthenticated bind, which servers accept as a success.
    if (!acceptableLogin(login) || password.length === 0) return null;
    return this.withService("login", async (c) => {
      const found = await this.findUserWith(c, login);
      if (!found) return null;
      const { entry, user } = found;
      if (user.disabled) return null;
      if (!(await this.passwordMatches(entry.dn, password))) return null;
      return { ...user, groups: await this.groupsOf(c, entry) };
    });
  }

  /**
   * The user a login names (exactly one entry, or null), without checking a password; groups are the direct ones
   * only. For diagnostics and tests; never a way in.
   */
  async findUser(login: string): Promise<DirectoryUser | null> {
    if (!acceptableLogin(login)) return null;
    return this.withService("user search", async (c) => (await this.findUserWith(c, login))?.user ?? null);
  }

  async snapshot(): Promise<DirectorySnapshot> {
    const at = Date.now();
    return this.withService("snapshot", async (c) => {
      const userEntries = await this.paged(c, "users", this.config.userBase, this.userFilter, this.userAttributes());
      const groupEntries = await this.paged(c, "groups", this.config.groupBase, this.groupFilter, [this.idAttribute, "cn", "sAMAccountName", "member", "memberOf"]);
      const disabledDns = new Set<string>();
      if (this.disabledFilter) {
        const f = new AndFilter({ filters: [this.userFilter, this.disabledFilter] });
        for (const e of await this.paged(c, "disabled", this.config.userBase, f, ["1.1"])) disabledDns.add(normDn(e.dn));
      }

      const users: DirectoryUser[] = [];
      const ids = new Set<string>();
      let skipped = 0;
      for (const e of userEntries) {
        const u = this.toUser(e, disabledDns.has(normDn(e.dn)));
        if (!u || ids.has(u.id)) {
          skipped++;
          continue;
        }
        ids.add(u.id);
        users.push(u);
      }
      if (skipped > 0) this.opts.log?.warn("directory entries without an id or a login (or with a duplicate id) were left out", { skipped, idAttribute: this.idAttribute });

      const groupNodes = groupEntries.map((e) => ({ dn: e.dn, member: values(e, "member"), memberOf: values(e, "memberOf") }));
      const memberOf = new Map(userEntries.map((e) => [normDn(e.dn), values(e, "memberOf")]));
      const closure = resolveMembership(
        users.map((u) => ({ dn: u.dn, memberOf: memberOf.get(normDn(u.dn)) ?? [] })),
        groupNodes,
      );
      const membersOf = new Map<string, string[]>();
      for (const u of users) {
        u.groups = closure.get(u.dn) ?? [];
        for (const g of u.groups) {
          const k = normDn(g);
          let list = membersOf.get(k);
          if (!list) membersOf.set(k, (list = []));
          list.push(u.id);
        }
      }
      const groups: DirectoryGroup[] = groupEntries.map((e) => ({
        id: this.idOf(e) ?? `dn:${normDn(e.dn)}`,
        dn: e.dn,
        name: first(e, "cn") ?? first(e, "sAMAccountName") ?? e.dn.split(",")[0]!.replace(/^[^=]*=/, ""),
        members: membersOf.get(normDn(e.dn)) ?? [],
      }));
      return { at, users, groups };
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.open].map((c) => c.unbind().catch(() => {})));
    this.open.clear();
  }

  private userAttributes(): string[] {
    const a = new Set([this.idAttribute, ...this.loginAttributes, "userPrincipalName", "mail", "displayName", "cn", "manager", "memberOf"]);
    if (this.config.flavour === "ad") a.add("userAccountControl").add("sAMAccountName");
    else a.add("uid");
    return [...a];
  }

  private idOf(e: Entry): string | undefined {
    if (this.config.flavour === "ad") {
      const b = buffer(e, "objectGUID");
      return b ? (adGuidToString(b) ?? undefined) : undefined;
    }
    return first(e, "entryUUID")?.toLowerCase();
  }

  /** A user from its entry, or null when it has no stable id or no login. Groups are the direct ones (memberOf). */
  private toUser(e: Entry, disabledByFilter: boolean): DirectoryUser | null {
    const id = this.idOf(e);
    const login = first(e, this.config.flavour === "ad" ? "sAMAccountName" : "uid") ?? first(e, this.loginAttributes[0]!);
    if (!id || !login) return null;
    const uac = Number(first(e, "userAccountControl") ?? 0);
    const disabled = disabledByFilter || (this.config.flavour === "ad" && Number.isFinite(uac) && (uac & UAC_DISABLED) !== 0);
    return {
      id,
      login,
      upn: first(e, "userPrincipalName"),
      mail: first(e, "mail"),
      displayName: first(e, "displayName") ?? first(e, "cn"),
      dn: e.dn,
      manager: first(e, "manager"),
      groups: values(e, "memberOf"),
      disabled,
    };
  }

  private async findUserWith(c: Client, login: string): Promise<{ entry: Entry; user: DirectoryUser } | null> {
    const byLogin = this.loginAttributes.map((attribute) => new EqualityFilter({ attribute, value: login }));
    const filter = new AndFilter({ filters: [this.userFilter, byLogin.length === 1 ? byLogin[0]! : new OrFilter({ filters: byLogin })] });
    // two are enough to know the login is ambiguous
    const r = await c.search(this.config.userBase, { scope: "sub", filter, attributes: this.userAttributes(), explicitBufferAttributes: ["objectGUID"], sizeLimit: 2 });
    if (r.searchEntries.length !== 1) {
      if (r.searchEntries.length > 1) this.opts.log?.warn("a login matches more than one directory entry; refused", { login, attributes: this.loginAttributes });
      return null;
    }
    const entry = r.searchEntries[0]!;
    let disabledByFilter = false;
    if (this.disabledFilter) {
      const d = await c.search(entry.dn, { scope: "base", filter: this.disabledFilter, attributes: ["1.1"] });
      disabledByFilter = d.searchEntries.length > 0;
    }
    const user = this.toUser(entry, disabledByFilter);
    return user ? { entry, user } : null;
  }

  /** Binds as the user on a connection of its own (the service connection keeps its identity). */
  private async passwordMatches(dn: string, password: string): Promise<boolean> {
    const c = await this.connect("user bind");
    try {
      await c.bind(dn, password);
      return true;
    } catch (err) {
      if (err instanceof InvalidCredentialsError) return false;
      throw classifyLdapError(err, "user bind");
    } finally {
      await this.release(c);
    }
  }

  /** Every group the user is in, nesting resolved by the server (in-chain) or by walking up one level per search. */
  private async groupsOf(c: Client, user: Entry): Promise<string[]> {
    if (await this.useInChain(c)) {
      const f = new AndFilter({ filters: [this.groupFilter, new ExtensibleFilter({ matchType: "member", rule: IN_CHAIN, value: user.dn })] });
      const found = await this.paged(c, "groups", this.config.groupBase, f, ["1.1"]);
      // in-chain only sees groups under the base that match the filter; memberOf adds the direct ones outside it
      return dedupe([...found.map((e) => e.dn), ...values(user, "memberOf")]);
    }
    const found = new Map<string, string>();
    let frontier = [user.dn];
    for (const g of values(user, "memberOf")) {
      if (!found.has(normDn(g))) {
        found.set(normDn(g), g);
        frontier.push(g);
      }
    }
    for (let depth = 0; frontier.length > 0 && depth < MAX_NESTING; depth++) {
      const next: string[] = [];
      for (let i = 0; i < frontier.length; i += OR_CHUNK) {
        const members = frontier.slice(i, i + OR_CHUNK).map((dn) => new EqualityFilter({ attribute: "member", value: dn }));
        const f = new AndFilter({ filters: [this.groupFilter, members.length === 1 ? members[0]! : new OrFilter({ filters: members })] });
        for (const e of await this.paged(c, "groups", this.config.groupBase, f, ["memberOf"])) {
          for (const g of [e.dn, ...values(e, "memberOf")]) {
            if (found.has(normDn(g))) continue;
            found.set(normDn(g), g);
            next.push(g);
          }
        }
      }
      frontier = next;
    }
    return [...found.values()].sort();
  }

  private useInChain(c: Client): Promise<boolean> {
    if (this.config.nested !== "auto") return Promise.resolve(this.config.nested === "in-chain");
    this.inChain ??= c
      .search("", { scope: "base", filter: "(objectClass=*)", attributes: ["supportedCapabilities"] })
      .then((r) => values(r.searchEntries[0] ?? { dn: "" }, "supportedCapabilities").includes(AD_CAPABILITY))
      .catch((err) => {
        this.inChain = undefined;
        throw err;
      });
    return this.inChain;
  }

  private async paged(c: Client, what: "users" | "groups" | "disabled", base: string, filter: Filter, attributes: string[]): Promise<Entry[]> {
    const out: Entry[] = [];
    for await (const page of c.searchPaginated(base, { scope: "sub", filter, attributes, explicitBufferAttributes: ["objectGUID"], paged: { pageSize: this.config.pageSize } })) {
      for (const e of page.searchEntries) out.push(e);
      this.opts.onPage?.(what, out.length);
    }
    return out;
  }

  /** A connection bound as the service account, handed to `f`, closed after; failures classified. */
  private async withService<T>(during: string, f: (c: Client) => Promise<T>): Promise<T> {
    const c = await this.connect(during);
    try {
      if (this.config.bindDN) {
        try {
          await c.bind(this.config.bindDN, this.config.bindPassword);
        } catch (err) {
          if (err instanceof InvalidCredentialsError)
            throw new DirectoryError("bind_refused", "directory: the service account's bind was refused (check ORRERY_LDAP_BIND_DN and ORRERY_LDAP_BIND_PASSWORD)", { cause: err });
          throw err;
        }
      }
      return await f(c);
    } catch (err) {
      throw classifyLdapError(err, during);
    } finally {
      await this.release(c);
    }
  }

  private async connect(during: string): Promise<Client> {
    if (this.closed) throw new DirectoryError("closed", "directory: the adapter is closed");
    const secure = this.config.url.toLowerCase().startsWith("ldaps:");
    const c = new Client({
      url: this.config.url,
      timeout: this.config.timeoutMs,
      connectTimeout: this.config.connectTimeoutMs,
      tlsOptions: secure ? this.tls : undefined,
    });
    this.open.add(c);
    if (this.config.startTLS) {
      try {
        await c.startTLS({ ...this.tls });
      } catch (err) {
        await this.release(c);
        throw classifyLdapError(err, `${during}: StartTLS`);
      }
    }
    return c;
  }

  private async release(c: Client): Promise<void> {
    this.open.delete(c);
    await c.unbind().catch(() => {});
  }
}

function dedupe(dns: string[]): string[] {
  const m = new Map<string, string>();
  for (const d of dns) if (!m.has(normDn(d))) m.set(normDn(d), d);
  return [...m.values()].sort();
}
