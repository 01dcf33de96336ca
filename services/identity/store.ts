/**
 * The identity store: sessions, API tokens, local users and the directory snapshot, in one NATS KV bucket (kv.ts,
 * on @nats-io/kv) that the gateway and the ingest service read alike. NATS KV because it is durable and the same on
 * the embedded demo and a real cluster, every service already connects to NATS, and a per-key revision gives the
 * local admin a create-once and the directory pointer a compare-and-set; a revocation reaches every process that
 * follows the bucket within milliseconds.
 *
 * A directory sync is stored in a new generation (dir.<gen>.<n> parts) and becomes current only when the pointer
 * dir.current is written after its last part, at the revision the sync read it at: a sync that fails halfway, or
 * that another sync overtook, leaves the pointer, and so the current users and groups, as they were.
 */
import type { z } from "zod";
import { DirectoryChunk, DirectoryPointer, LocalUser, SessionRecord, TokenRecord } from "../../pipelines/contracts/identity.ts";
import type { Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { DirectorySnapshot, DirectoryUser } from "./directory/port.ts";
import { KvMirror, RevisionConflict } from "./kv.ts";

/** A part of a directory snapshot stays well under NATS's default 1 MiB payload. */
const PART_BYTES = 512 * 1024;
/** markers of deleted keys are kept this long for followers still catching up, then removed (at most hourly) */
const MARKER_KEEP_MS = 30 * 60_000;
const dec = new TextDecoder();

export interface DirectoryView {
  pointer: DirectoryPointer | null;
  byId: Map<string, DirectoryUser>;
  /** login, UPN and mail, lower-cased */
  byLogin: Map<string, DirectoryUser>;
  groups: number;
}

const EMPTY: DirectoryView = { pointer: null, byId: new Map(), byLogin: new Map(), groups: 0 };

export class IdentityStore {
  private tokensByHash = new Map<string, TokenRecord>();
  private dir: DirectoryView = EMPTY;
  private dirDirty = true;
  private compactedAt = 0;
  private readonly changes: ((key: string) => void)[] = [];

  private constructor(
    private readonly kv: KvMirror,
    private readonly log: Logger,
  ) {
    kv.onChange((key) => {
      if (key.startsWith("token.")) this.indexTokens();
      else if (key === "dir.current") this.dirDirty = true;
      for (const f of this.changes) f(key);
    });
    this.indexTokens();
  }

  /** `tokensOnly`: the ingest service needs the tokens and nothing else. */
  static async open(bus: Bus, log: Logger, opts: { tokensOnly?: boolean } = {}): Promise<IdentityStore> {
    const kv = await KvMirror.open(bus, bus.topo.buckets.identity, { prefix: opts.tokensOnly ? "token." : undefined });
    return new IdentityStore(kv, log);
  }

  /** `f(key)` after every change to the local copy (a write here, or one another process made) */
  onChange(f: (key: string) => void): void {
    this.changes.push(f);
  }

  private read<S extends z.ZodType>(schema: S, key: string): z.output<S> | undefined {
    const e = this.kv.get(key);
    if (!e) return undefined;
    try {
      return schema.parse(JSON.parse(dec.decode(e.value)));
    } catch (err) {
      this.log.warn("identity store: a stored record does not fit its schema; ignored", { key: key.replace(/^(session|token)\..*/, "$1.…"), error: String(err).slice(0, 300) });
      return undefined;
    }
  }

  private indexTokens() {
    const m = new Map<string, TokenRecord>();
    for (const [key] of this.kv.list("token.")) {
      const t = this.read(TokenRecord, key);
      if (t) m.set(t.hash, t);
    }
    this.tokensByHash = m;
  }

  // ---- tokens ----
  tokenByHash(hash: string): TokenRecord | undefined {
    return this.tokensByHash.get(hash);
  }
  tokenById(id: string): TokenRecord | undefined {
    return /^[a-f0-9]{16}$/.test(id) ? this.read(TokenRecord, `token.${id}`) : undefined;
  }
  tokens(): TokenRecord[] {
    return [...this.tokensByHash.values()].sort((a, b) => a.createdAt - b.createdAt);
  }
  async putToken(t: TokenRecord): Promise<void> {
    await this.kv.put(`token.${t.id}`, TokenRecord.parse(t));
  }
  async deleteToken(id: string): Promise<void> {
    await this.kv.delete(`token.${id}`);
  }

  // ---- sessions (keyed by the SHA-256 of the session id) ----
  session(hash: string): SessionRecord | undefined {
    return /^[a-f0-9]{64}$/.test(hash) ? this.read(SessionRecord, `session.${hash}`) : undefined;
  }
  async putSession(hash: string, s: SessionRecord): Promise<void> {
    await this.kv.put(`session.${hash}`, SessionRecord.parse(s));
  }
  async deleteSession(hash: string): Promise<void> {
    await this.kv.delete(`session.${hash}`);
  }
  /**
   * Removes expired sessions, and kiosk sessions whose token is gone; returns how many. At most hourly it also
   * removes the markers that deleted keys leave in the bucket, once every follower has had time to see them.
   */
  async sweepSessions(now: number): Promise<number> {
    let n = 0;
    for (const [key] of [...this.kv.list("session.")]) {
      const s = this.read(SessionRecord, key);
      if (!s || s.expiresAt <= now || (s.tokenId && !this.tokenById(s.tokenId))) {
        await this.kv.delete(key);
        n++;
      }
    }
    if (now - this.compactedAt >= 3_600_000) {
      this.compactedAt = now;
      await this.kv.compact(MARKER_KEEP_MS);
    }
    return n;
  }

  // ---- local users ----
  localUser(login: string): LocalUser | undefined {
    return /^[a-zA-Z0-9_.-]+$/.test(login) ? this.read(LocalUser, `local.${login}`) : undefined;
  }
  /** false when the user exists already (another gateway created it first) */
  async createLocalUser(u: LocalUser): Promise<boolean> {
    try {
      await this.kv.create(`local.${u.login}`, LocalUser.parse(u));
      return true;
    } catch (e) {
      if (e instanceof RevisionConflict) return false;
      throw e;
    }
  }
  async putLocalUser(u: LocalUser): Promise<void> {
    await this.kv.put(`local.${u.login}`, LocalUser.parse(u));
  }

  // ---- the directory ----
  directory(): DirectoryView {
    if (!this.dirDirty) return this.dir;
    this.dirDirty = false;
    const pointer = this.read(DirectoryPointer, "dir.current") ?? null;
    if (!pointer) return (this.dir = EMPTY);
    const byId = new Map<string, DirectoryUser>();
    const byLogin = new Map<string, DirectoryUser>();
    let groups = 0;
    for (let i = 0; i < pointer.parts; i++) {
      const part = this.read(DirectoryChunk, `dir.${pointer.gen}.${i}`);
      if (!part) {
        // the parts come before the pointer in the stream; one missing means the bucket was tampered with
        this.log.error("identity store: a part of the current directory generation is missing; keeping the previous one", { gen: pointer.gen, part: i });
        return this.dir;
      }
      for (const u of part.users) {
        byId.set(u.id, u);
        for (const name of [u.login, u.upn, u.mail]) if (name) byLogin.set(name.toLowerCase(), u);
      }
      groups += part.groups.length;
    }
    return (this.dir = { pointer, byId, byLogin, groups });
  }

  /**
   * Stores a complete snapshot as a new generation and makes it current by moving the pointer from the revision read
   * before the parts were written; the previous generation's parts are removed only after that. A failure before the
   * pointer moves, or a pointer another sync moved meanwhile (RevisionConflict), leaves the current generation.
   */
  async saveDirectory(s: DirectorySnapshot): Promise<DirectoryPointer> {
    const gen = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    const previous = this.read(DirectoryPointer, "dir.current");
    const previousRevision = this.kv.get("dir.current")?.revision ?? 0;
    const parts: DirectoryChunk[] = [];
    let cur: DirectoryChunk = { users: [], groups: [] };
    let bytes = 0;
    const push = (add: () => void, size: number) => {
      if (bytes + size > PART_BYTES && (cur.users.length || cur.groups.length)) {
        parts.push(cur);
        cur = { users: [], groups: [] };
        bytes = 0;
      }
      add();
      bytes += size;
    };
    for (const u of s.users) push(() => cur.users.push(u), JSON.stringify(u).length);
    for (const g of s.groups) push(() => cur.groups.push(g), JSON.stringify(g).length);
    if (cur.users.length || cur.groups.length) parts.push(cur);
    const pointer: DirectoryPointer = { gen, at: s.at, parts: parts.length, users: s.users.length, groups: s.groups.length };
    let written = 0;
    try {
      for (const [i, p] of parts.entries()) {
        await this.kv.put(`dir.${gen}.${i}`, DirectoryChunk.parse(p));
        written = i + 1;
      }
      if (previousRevision) await this.kv.update("dir.current", pointer, previousRevision);
      else await this.kv.create("dir.current", pointer);
    } catch (e) {
      await this.dropParts(gen, written).catch(() => undefined);
      throw e;
    }
    this.dirDirty = true;
    if (previous && previous.gen !== gen) await this.dropParts(previous.gen, previous.parts).catch((e) => this.log.warn("identity store: old directory generation not removed", { gen: previous.gen, error: String(e) }));
    return pointer;
  }

  private async dropParts(gen: string, parts: number): Promise<void> {
    for (let i = 0; i < parts; i++) await this.kv.delete(`dir.${gen}.${i}`);
  }

  async close(): Promise<void> {
    await this.kv.close();
  }
}
