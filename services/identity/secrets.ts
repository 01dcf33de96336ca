/**
 * Secrets: tokens and session ids are 32 random bytes (base64url) and only their SHA-256 is stored — enough for a
 * value nobody can guess, and cheap to check on every request; passwords are hashed with argon2id (Bun.password,
 * built into the runtime), whose cost is what protects a guessable secret.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** A token a person can recognise in a config file: `orr_` + 43 characters. */
export const newToken = (): string => `orr_${randomBytes(32).toString("base64url")}`;
export const newSessionId = (): string => randomBytes(32).toString("base64url");
export const newId = (): string => randomBytes(8).toString("hex");
/** A generated password: 18 random bytes, 24 characters. */
export const newPassword = (): string => randomBytes(18).toString("base64url");

export const sha256 = (s: string): string => createHash("sha256").update(s).digest("hex");

export const hashPassword = (pw: string): Promise<string> => Bun.password.hash(pw, { algorithm: "argon2id" });

/** A hash verified when the login is unknown, so a wrong login costs as long as a wrong password (no user oracle). */
let dummy: Promise<string> | undefined;
export async function verifyPassword(pw: string, hash: string | undefined): Promise<boolean> {
  if (!hash) {
    dummy ??= hashPassword(newPassword());
    await Bun.password.verify(pw, await dummy).catch(() => false);
    return false;
  }
  return await Bun.password.verify(pw, hash).catch(() => false);
}

export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
