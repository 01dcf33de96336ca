/**
 * Who is asking, and may they: logins (the local admin, the directory), sessions, API tokens, kiosk tokens, roles.
 * Every check on the request path reads the in-memory copy of the identity bucket (store.ts), never the network.
 */
import { atLeast, rank, type CreateTokenRequest, type CreatedToken, type Me, type Role, type RoleMap, type SessionRecord, type TokenInfo, type TokenRecord } from "../../pipelines/contracts/identity.ts";
import { TransientError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import type { DirectoryPort, DirectorySnapshot } from "./directory/port.ts";
import { AuthError } from "./errors.ts";
import { FailureLimiter, type LimitRule } from "./ratelimit.ts";
import { roleOf } from "./roles.ts";
import { hashPassword, newId, newPassword, newSessionId, newToken, sha256, verifyPassword } from "./secrets.ts";
import type { IdentityStore } from "./store.ts";

export interface IdentityConfig {
  roles: RoleMap;
  sessionTtlMs: number;
  /** a kiosk's session; it ends sooner when its token is revoked */
  kioskSessionTtlMs: number;
  /** default lifetime of an API token */
  apiTokenTtlMs: number;
  perUser: LimitRule;
  perAddress: LimitRule;
  /** the local admin's login, and its password when set by the environment */
  adminLogin: string;
  adminPassword?: string;
}

export interface Principal {
  login: string;
  role: Role;
  via: "session" | "token" | "off";
  provider?: SessionRecord["provider"];
  /** the SHA-256 of the session id (via session) */
  sessionHash?: string;
  token?: TokenRecord;
  expiresAt?: number | null;
}

export const SESSION_COOKIE = "orrery_session";

export interface Credentials {
  bearer?: string;
  cookie?: string;
}

/** The bearer token (Authorization: Bearer, or Basic with the token as password) and the session cookie of a request. */
export function credentialsOf(req: Request): Credentials {
  const out: Credentials = {};
  const auth = req.headers.get("authorization");
  if (auth) {
    const [scheme, value = ""] = auth.trim().split(/\s+/, 2);
    if (/^bearer$/i.test(scheme!)) out.bearer = value;
    else if (/^basic$/i.test(scheme!)) {
      const decoded = Buffer.from(value, "base64").toString("utf8");
      out.bearer = decoded.slice(decoded.indexOf(":") + 1);
    } else out.bearer = ""; // a scheme we do not take: wrong credentials, never none
  }
  for (const part of (req.headers.get("cookie") ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === SESSION_COOKIE) out.cookie = part.slice(i + 1).trim();
  }
  return out;
}

export class Identity {
  private readonly users: FailureLimiter;
  private readonly addresses: FailureLimiter;
  private sweep?: ReturnType<typeof setInterval>;
  /** the local admin's password, when this start generated it (shown once, in the ready line) */
  generatedAdminPassword?: string;

  constructor(
    readonly store: IdentityStore,
    readonly cfg: IdentityConfig,
    private readonly log: Logger,
    private readonly directory?: DirectoryPort,
    private readonly now: () => number = Date.now,
  ) {
    this.users = new FailureLimiter(cfg.perUser, now);
    this.addresses = new FailureLimiter(cfg.perAddress, now);
  }

  /** Creates the local admin (a generated password, or the environment's) and starts the session sweep. */
  async start(): Promise<void> {
    const login = this.cfg.adminLogin;
    const existing = this.store.localUser(login);
    if (this.cfg.adminPassword) {
      if (!existing || !(await verifyPassword(this.cfg.adminPassword, existing.hash))) {
        await this.store.putLocalUser({ login, role: "admin", hash: await hashPassword(this.cfg.adminPassword), createdAt: this.now() });
        this.log.info("local admin password set from ORRERY_ADMIN_PASSWORD", { login });
      }
    } else if (!existing) {
      const pw = newPassword();
      if (await this.store.createLocalUser({ login, role: "admin", hash: await hashPassword(pw), createdAt: this.now() })) this.generatedAdminPassword = pw;
    }
    this.sweep = setInterval(() => void this.store.sweepSessions(this.now()).catch((e) => this.log.warn("session sweep failed", { error: String(e) })), 60_000);
    this.sweep.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.sweep);
    await this.directory?.close();
    await this.store.close();
  }

  /** The sink a directory sync hands each complete snapshot to; stored atomically (store.saveDirectory). */
  readonly syncSink = async (s: DirectorySnapshot): Promise<void> => {
    const p = await this.store.saveDirectory(s);
    this.log.info("directory snapshot stored", { users: p.users, groups: p.groups, parts: p.parts });
  };

  // ---- who is asking ----

  /** The principal of a request; null when it carries no credentials; AuthError bad_credentials when they are wrong. */
  principal(req: Request): Principal | null {
    return this.principalFor(credentialsOf(req));
  }

  /** principal() for credentials already taken from a request (a WebSocket's, checked again while it is open) */
  principalFor(c: Credentials): Principal | null {
    if (c.bearer !== undefined) {
      const p = this.tokenPrincipal(c.bearer);
      if (!p) throw new AuthError("bad_credentials", "invalid, expired or revoked token");
      return p;
    }
    if (c.cookie !== undefined) {
      const p = this.sessionPrincipal(c.cookie);
      if (!p) throw new AuthError("bad_credentials", "session expired or ended: log in again");
      return p;
    }
    return null;
  }

  private tokenPrincipal(token: string): Principal | null {
    if (!token.startsWith("orr_")) return null;
    const t = this.store.tokenByHash(sha256(token));
    if (!t || t.kind === "ingest" || (t.expiresAt !== null && t.expiresAt <= this.now())) return null;
    const owner = this.currentRole(t.owner);
    if (owner === undefined) return null;
    // a token never does more than its owner may do today
    const role = owner === null || rank(owner) >= rank(t.role) ? t.role : owner;
    return { login: t.kind === "kiosk" ? `kiosk:${t.name}` : t.owner, role, via: "token", token: t, expiresAt: t.expiresAt };
  }

  /** A login's role now: undefined when the login is gone or disabled; null when it cannot be told (no sync yet). */
  private currentRole(login: string): Role | null | undefined {
    const local = this.store.localUser(login);
    if (local) return local.role;
    const dir = this.store.directory();
    if (!dir.pointer) return null;
    const u = dir.byLogin.get(login.toLowerCase());
    if (!u || u.disabled) return undefined;
    return roleOf(u.groups, this.cfg.roles) ?? undefined;
  }

  private sessionPrincipal(sid: string): Principal | null {
    const hash = sha256(sid);
    const s = this.store.session(hash);
    if (!s || s.expiresAt <= this.now()) return null;
    let role: Role | null | undefined = s.role;
    if (s.provider === "kiosk") {
      const t = s.tokenId ? this.store.tokenById(s.tokenId) : undefined;
      if (!t || (t.expiresAt !== null && t.expiresAt <= this.now())) return null;
    } else if (s.provider === "local") {
      role = this.store.localUser(s.login)?.role;
    } else {
      // a directory user's role follows the latest sync; until a sync has them, the groups they logged in with
      const u = s.userId ? this.store.directory().byId.get(s.userId) : undefined;
      if (u?.disabled) return null;
      role = roleOf(u?.groups ?? s.groups, this.cfg.roles);
    }
    if (!role) return null;
    return { login: s.login, role, via: "session", provider: s.provider, sessionHash: hash, expiresAt: s.expiresAt };
  }

  me(p: Principal): Me {
    return { login: p.login, role: p.role, via: p.via, provider: p.provider, expiresAt: p.expiresAt };
  }

  // ---- logging in and out ----

  /**
   * Checks a password (the local user of that login, else the directory), rate-limited per login and per address;
   * on success a new session. Which of login or password was wrong is never said.
   */
  async login(login: string, password: string, address: string): Promise<{ sessionId: string; session: SessionRecord }> {
    const userKey = `u:${login.trim().toLowerCase()}`;
    const addrKey = `a:${address}`;
    const wait = Math.max(this.users.retryAfterMs(userKey), this.addresses.retryAfterMs(addrKey));
    if (wait > 0) throw new AuthError("rate_limited", "too many wrong passwords: try again later", Math.ceil(wait / 1000));
    const now = this.now();
    let session: SessionRecord | null = null;
    const local = this.store.localUser(login);
    if (local) {
      if (await verifyPassword(password, local.hash)) session = { login: local.login, provider: "local", role: local.role, groups: [], createdAt: now, expiresAt: now + this.cfg.sessionTtlMs };
    } else if (this.directory) {
      let u;
      try {
        u = await this.directory.authenticate(login, password);
      } catch (e) {
        if (e instanceof TransientError) throw new AuthError("directory_unavailable", "the directory is unreachable: try again shortly", undefined, { cause: e });
        throw e;
      }
      if (u && !u.disabled) {
        const role = roleOf(u.groups, this.cfg.roles);
        if (!role) {
          this.log.warn("login refused: no role for the user's groups", { login: u.login });
          throw new AuthError("forbidden", "you have no role in Orrery: ask an administrator to add one of your groups to ORRERY_AUTH_ROLES");
        }
        session = { login: u.login, provider: "directory", userId: u.id, groups: u.groups, createdAt: now, expiresAt: now + this.cfg.sessionTtlMs };
      }
    } else await verifyPassword(password, undefined);
    if (!session) {
      this.users.fail(userKey);
      this.addresses.fail(addrKey);
      this.log.warn("login failed", { login: login.slice(0, 256), address });
      throw new AuthError("bad_credentials", "wrong login or password");
    }
    this.users.clear(userKey);
    const sessionId = newSessionId();
    await this.store.putSession(sha256(sessionId), session);
    this.log.info("logged in", { login: session.login, provider: session.provider });
    return { sessionId, session };
  }

  async logout(p: Principal | null): Promise<void> {
    if (p?.sessionHash) await this.store.deleteSession(p.sessionHash);
  }

  /** A kiosk token for a viewer session (a wallboard's browser needs only a URL); rate-limited per address. */
  async kioskSession(token: string, address: string): Promise<{ sessionId: string; session: SessionRecord }> {
    const addrKey = `a:${address}`;
    const wait = this.addresses.retryAfterMs(addrKey);
    if (wait > 0) throw new AuthError("rate_limited", "too many wrong tokens: try again later", Math.ceil(wait / 1000));
    const t = token.startsWith("orr_") ? this.store.tokenByHash(sha256(token)) : undefined;
    const now = this.now();
    if (!t || t.kind !== "kiosk" || (t.expiresAt !== null && t.expiresAt <= now)) {
      this.addresses.fail(addrKey);
      throw new AuthError("bad_credentials", "invalid or revoked kiosk token");
    }
    const session: SessionRecord = { login: `kiosk:${t.name}`, provider: "kiosk", role: "viewer", tokenId: t.id, groups: [], createdAt: now, expiresAt: Math.min(now + this.cfg.kioskSessionTtlMs, t.expiresAt ?? Infinity) };
    const sessionId = newSessionId();
    await this.store.putSession(sha256(sessionId), session);
    this.log.info("kiosk session started", { kiosk: t.name, token: t.id });
    return { sessionId, session };
  }

  // ---- tokens ----

  /** api tokens: anyone, at most their own role; kiosk and ingest tokens: admins. The token is in the answer once. */
  async createToken(by: Principal, r: CreateTokenRequest): Promise<CreatedToken> {
    if (by.via === "token" && by.token?.kind !== "api") throw new AuthError("forbidden", "a kiosk token cannot create tokens");
    if (r.kind !== "api" && by.role !== "admin") throw new AuthError("forbidden", `only an admin creates ${r.kind} tokens`);
    const role: Role = r.kind === "api" ? (r.role ?? by.role) : "viewer";
    if (!atLeast(by.role, role)) throw new AuthError("forbidden", `a token cannot have more than your role (${by.role})`);
    const now = this.now();
    const ttlMs = r.ttlDays === null ? null : r.ttlDays !== undefined ? r.ttlDays * 86_400_000 : r.kind === "api" ? this.cfg.apiTokenTtlMs : null;
    const token = newToken();
    const rec: TokenRecord = { id: newId(), kind: r.kind, name: r.name, role, source: r.source, owner: by.login, hash: sha256(token), createdAt: now, expiresAt: ttlMs === null ? null : now + ttlMs };
    await this.store.putToken(rec);
    this.log.info("token created", { id: rec.id, kind: rec.kind, name: rec.name, role: rec.role, source: rec.source, by: by.login });
    const { hash: _hash, ...info } = rec;
    return { ...info, token };
  }

  /**
   * An admin manages every token; anyone else their own API tokens up to their role — so a viewer token an admin
   * made for a script cannot see or revoke that admin's other tokens.
   */
  private manages(by: Principal, t: TokenRecord): boolean {
    return by.role === "admin" || (t.kind === "api" && t.owner === (by.token?.owner ?? by.login) && rank(t.role) <= rank(by.role));
  }

  listTokens(by: Principal): TokenInfo[] {
    return this.store
      .tokens()
      .filter((t) => this.manages(by, t))
      .map(({ hash: _hash, ...info }) => info);
  }

  async revokeToken(by: Principal, id: string): Promise<void> {
    const t = this.store.tokenById(id);
    if (!t || !this.manages(by, t)) throw new AuthError("not_found", `no token ${id}`);
    await this.store.deleteToken(id);
    this.log.info("token revoked", { id, kind: t.kind, name: t.name, by: by.login });
  }
}
