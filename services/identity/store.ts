/**
 * The identity store: sessions, API tokens, local users and the directory snapshot, in one JetStream KV bucket
 * (kv.ts) that the gateway and the ingest service read alike. JetStream KV because it is durable and the same on the
 * embedded demo and a real cluster, every service already connects to NATS, and a per-key revision gives the local
 * admin a create-once; a revocation reaches every process that follows the bucket within milliseconds.
 *
 * A directory sync is stored in a new generation (dir.<gen>.<n> parts) and becomes current only when the pointer
 * dir.current is written after its last part: a sync that fails halfway leaves the pointer, and so the previous users
 * and groups, as they were.
 */
import type { z } from "zod";
import { DirectoryChunk, DirectoryPointer, LocalUser, SessionRecord, TokenRecord } from "../../pipelines/contracts/identity.ts";
import type { Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import type { DirectorySnapshot, DirectoryUser } from "./directory/port.ts";
import { KvBucket } from "./kv.ts";

/** A part of a directory snapshot stays well under NATS's default 1 MiB payload. */
const PART_BYTES = 512 * 1024;
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

  private constructor(
    private readonly kv: KvBucket,
    private readonly log: Logger,
  ) {
    kv.onChange((key) => {
      if (key.startsWith("token.")) this.indexTokens();
      else if (key === "dir.current") this.dirDirty = true;
    });
    this.indexTokens();
  }

  /** `tokensOnly`: the ingest service needs the tokens and nothing else. */
  static async open(bus: Bus, log: Logger, opts: { tokensOnly?: boolean } = {}): Promise<IdentityStore> {
    const kv = await KvBucket.open(bus, bus.topo.buckets.identity, { prefix: opts.tokensOnly ? "token." : undefined });
    return new IdentityStore(kv, log);
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
  /** Removes expired sessions, and kiosk sessions whose token is gone; returns how many. */
  async sweepSessions(now: number): Promise<number> {
    let n = 0;
    for (const [key] of [...this.kv.list("session.")]) {
      const s = this.read(SessionRecord, key);
      if (!s || s.expiresAt <= now || (s.tokenId && !this.tokenById(s.tokenId))) {
        await this.kv.delete(key);
        n++;
      }
    }
    return n;
  }

  // ---- local users ----
  localUser(login: string): LocalUser | undefined {
    return /^[a-zA-Z0-9_.-]+$/.test(login) ? this.read(LocalUser, `local.${login}`) : undefined;
  }
  /** false when the user exists already (another gateway created it first) */
  async createLocalUser(u: LocalUser): Promise<boolean> {
    return await this.kv.create(`local.${u.login}`, LocalUser.parse(u));
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
    // parts of older generations (purged by the writer, which followers do not hear of); a newer generation's parts
    // come after this pointer in the stream, so they are kept
    const at = this.kv.get("dir.current")!.seq;
    this.kv.forget((k, e) => k.startsWith("dir.") && k !== "dir.current" && !k.startsWith(`dir.${pointer.gen}.`) && e.seq < at);
    return (this.dir = { pointer, byId, byLogin, groups });
  }

  /**
   * Stores a complete snapshot as a new generation and makes it current; the previous generation's parts are removed
   * only after that. A failure before the pointer is written leaves the previous generation current.
   */
  async saveDirectory(s: DirectorySnapshot): Promise<DirectoryPointer> {
    const gen = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    const previous = this.read(DirectoryPointer, "dir.current");
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
    try {
      for (const [i, p] of parts.entries()) await this.kv.put(`dir.${gen}.${i}`, DirectoryChunk.parse(p));
    } catch (e) {
      await this.kv.purgePrefix(`dir.${gen}.`).catch(() => undefined);
      throw e;
    }
    const pointer: DirectoryPointer = { gen, at: s.at, parts: parts.length, users: s.users.length, groups: s.groups.length };
    await this.kv.put("dir.current", pointer);
    this.dirDirty = true;
    if (previous && previous.gen !== gen) await this.kv.purgePrefix(`dir.${previous.gen}.`).catch((e) => this.log.warn("identity store: old directory generation not removed", { gen: previous.gen, error: String(e) }));
    return pointer;
  }

  async close(): Promise<void> {
    await this.kv.close();
  }
}
