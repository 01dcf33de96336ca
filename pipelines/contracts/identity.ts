/**
 * Identity: roles, the records the identity store keeps in its JetStream KV bucket (sessions, API tokens, local users,
 * the directory snapshot in generations), and the HTTP bodies of login and token management. Secrets never appear
 * here in clear: a password is an argon2id hash, a token or session id a SHA-256 of a high-entropy random value.
 */
import { z } from "zod";

/** Ordered: each role may do what the roles before it may. */
export const ROLES = ["viewer", "operator", "expert", "admin"] as const;
export const Role = z.enum(ROLES);
export type Role = z.infer<typeof Role>;

export const rank = (r: Role): number => ROLES.indexOf(r);
export const atLeast = (have: Role, need: Role): boolean => rank(have) >= rank(need);

/**
 * Directory groups → roles (ORRERY_AUTH_ROLES, JSON). A group is named by its DN (compared case-insensitively) or by
 * its name (the CN); a user gets the highest role any of their groups (nested membership resolved) gives, else
 * `default` (null: a directory user in none of the groups cannot log in).
 */
export const RoleMap = z
  .object({
    viewer: z.array(z.string().min(1)).default([]),
    operator: z.array(z.string().min(1)).default([]),
    expert: z.array(z.string().min(1)).default([]),
    admin: z.array(z.string().min(1)).default([]),
    default: Role.nullable().default(null),
  })
  .strict();
export type RoleMap = z.infer<typeof RoleMap>;

export const TokenKind = z.enum(["api", "kiosk", "ingest"]);
export type TokenKind = z.infer<typeof TokenKind>;
/** The ingest endpoints a per-source token may post to: /api/alerts/<source>, or remote_write for prometheus. */
export const IngestSource = z.enum(["alertmanager", "generic", "prometheus"]);
export type IngestSource = z.infer<typeof IngestSource>;

/** key token.<id> */
export const TokenRecord = z.object({
  id: z.string().regex(/^[a-f0-9]{16}$/),
  kind: TokenKind,
  name: z.string().min(1).max(200),
  /** what the token may do at the gateway (kiosk: viewer; ingest tokens are not accepted there) */
  role: Role,
  source: IngestSource.optional(),
  /** who created it (login) */
  owner: z.string(),
  /** SHA-256 (hex) of the token */
  hash: z.string().regex(/^[a-f0-9]{64}$/),
  createdAt: z.number(),
  expiresAt: z.number().nullable(),
});
export type TokenRecord = z.infer<typeof TokenRecord>;
/** What a list shows: never the hash. */
export type TokenInfo = Omit<TokenRecord, "hash">;

/** key session.<sha256 of the session id> */
export const SessionRecord = z.object({
  login: z.string(),
  provider: z.enum(["local", "directory", "kiosk"]),
  /** the directory user's id (provider directory) */
  userId: z.string().optional(),
  /** the user's groups when they logged in (used until the next sync has them) */
  groups: z.array(z.string()).default([]),
  /** a local user's or a kiosk's role; a directory user's role is mapped from their groups at each request */
  role: Role.optional(),
  /** a kiosk session lasts as long as its token */
  tokenId: z.string().optional(),
  createdAt: z.number(),
  expiresAt: z.number(),
});
export type SessionRecord = z.infer<typeof SessionRecord>;

/** key local.<login> */
export const LocalUser = z.object({ login: z.string(), role: Role, hash: z.string().min(1), createdAt: z.number() });
export type LocalUser = z.infer<typeof LocalUser>;

const DirUser = z.object({
  id: z.string(),
  login: z.string(),
  upn: z.string().optional(),
  mail: z.string().optional(),
  displayName: z.string().optional(),
  dn: z.string(),
  manager: z.string().optional(),
  groups: z.array(z.string()),
  disabled: z.boolean(),
});
const DirGroup = z.object({ id: z.string(), dn: z.string(), name: z.string(), members: z.array(z.string()) });
/** key dir.<gen>.<n>: one part of a directory snapshot */
export const DirectoryChunk = z.object({ users: z.array(DirUser), groups: z.array(DirGroup) });
export type DirectoryChunk = z.infer<typeof DirectoryChunk>;
/** key dir.current: the generation readers use; written after every part of it is stored, so a sync is atomic */
export const DirectoryPointer = z.object({ gen: z.string().regex(/^[a-z0-9]+$/), at: z.number(), parts: z.number().int().min(0), users: z.number().int(), groups: z.number().int() });
export type DirectoryPointer = z.infer<typeof DirectoryPointer>;

// ---- HTTP bodies ----

export const LoginRequest = z.object({ login: z.string().min(1).max(256), password: z.string().min(1).max(1024), next: z.string().max(2048).optional() });
export type LoginRequest = z.infer<typeof LoginRequest>;

export const CreateTokenRequest = z
  .object({
    kind: TokenKind.default("api"),
    name: z.string().min(1).max(200),
    /** api tokens: at most the creator's role (default: the creator's role) */
    role: Role.optional(),
    /** ingest tokens: the endpoint they may post to */
    source: IngestSource.optional(),
    /** default: api tokens 90 days, kiosk and ingest tokens never (revoke them instead) */
    ttlDays: z.number().int().min(1).max(3650).nullable().optional(),
  })
  .strict()
  .refine((t) => (t.kind === "ingest") === (t.source !== undefined), { message: "source is required for ingest tokens, and only for them", path: ["source"] });
export type CreateTokenRequest = z.infer<typeof CreateTokenRequest>;

/** The one answer that carries a token in clear: it is shown once, at creation. */
export type CreatedToken = TokenInfo & { token: string };

export interface Me {
  login: string;
  role: Role;
  via: "session" | "token" | "off";
  provider?: SessionRecord["provider"];
  expiresAt?: number | null;
}
