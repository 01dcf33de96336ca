/**
 * Binding credentials at rest: AES-256-GCM under the broker's key (ORRERY_BROKER_SECRET_KEY, 32 bytes, base64). The
 * KV bucket is readable by anything holding a NATS user with JetStream API access to it, so the NATS seed and the
 * kiosk URL a binding hands out are stored sealed; the rest of the record stays readable for operators. Each sealed
 * value is bound to its KV key (the additional authenticated data), so a sealed blob copied under another binding's
 * key does not open. A key id (a digest prefix of the key, not the key) says which key sealed a value, so a wrong key
 * is told apart from a damaged value.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { z } from "zod";

export const Sealed = z.object({
  alg: z.literal("A256GCM"),
  /** which key sealed it: the first 16 hex digits of sha-256("orrery-broker-key" + key) */
  kid: z.string(),
  iv: z.string(),
  ct: z.string(),
  tag: z.string(),
});
export type Sealed = z.infer<typeof Sealed>;

/** A sealed value could not be opened: another key sealed it, or it was altered. */
export class SealedSecretError extends Error {
  override readonly name = "SealedSecretError";
  constructor(
    readonly code: "wrong_key" | "damaged",
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The key setting is not 32 bytes of base64 (a ConfigError-like message naming the setting). */
export class SecretKeyFormatError extends Error {
  override readonly name = "SecretKeyFormatError";
}

/** 32 bytes from base64 or base64url text (what `openssl rand -base64 32` prints). */
export function parseSecretKey(text: string, setting = "ORRERY_BROKER_SECRET_KEY"): Buffer {
  const t = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) throw new SecretKeyFormatError(`${setting}: expected 32 bytes as base64 (openssl rand -base64 32), got text that is not base64`);
  const key = Buffer.from(t.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  if (key.length !== 32) throw new SecretKeyFormatError(`${setting}: expected 32 bytes as base64 (openssl rand -base64 32), got ${key.length} bytes`);
  return key;
}

/** A new key as the setting takes it. */
export const newSecretKey = (): string => randomBytes(32).toString("base64");

export interface SecretBox {
  readonly kid: string;
  seal(plain: string, aad: string): Sealed;
  /** throws SealedSecretError */
  open(s: Sealed, aad: string): string;
}

export function secretBox(key: Uint8Array): SecretBox {
  if (key.length !== 32) throw new SecretKeyFormatError(`an AES-256 key is 32 bytes, got ${key.length}`);
  const k = Buffer.from(key);
  const kid = createHash("sha256").update("orrery-broker-key").update(k).digest("hex").slice(0, 16);
  return {
    kid,
    seal(plain, aad) {
      const iv = randomBytes(12);
      const c = createCipheriv("aes-256-gcm", k, iv);
      c.setAAD(Buffer.from(aad, "utf8"));
      const ct = Buffer.concat([c.update(plain, "utf8"), c.final()]);
      return { alg: "A256GCM", kid, iv: iv.toString("base64url"), ct: ct.toString("base64url"), tag: c.getAuthTag().toString("base64url") };
    },
    open(s, aad) {
      if (s.kid !== kid) throw new SealedSecretError("wrong_key", `sealed with broker key ${s.kid}, but ORRERY_BROKER_SECRET_KEY is key ${kid}: start the broker with the key it sealed its bindings with`);
      try {
        const d = createDecipheriv("aes-256-gcm", k, Buffer.from(s.iv, "base64url"));
        d.setAAD(Buffer.from(aad, "utf8"));
        d.setAuthTag(Buffer.from(s.tag, "base64url"));
        return Buffer.concat([d.update(Buffer.from(s.ct, "base64url")), d.final()]).toString("utf8");
      } catch (e) {
        throw new SealedSecretError("damaged", `a sealed value under ${aad} does not open with broker key ${kid}: it was altered or moved from another key`, { cause: e });
      }
    },
  };
}
