/** Constant-time comparison of secrets (the broker's Basic auth). */
import { timingSafeEqual, createHash } from "node:crypto";

/** Compares digests, so neither the length nor the content of the secret leaks through timing. */
export function sameSecret(a: string, b: string): boolean {
  const x = createHash("sha256").update(a).digest();
  const y = createHash("sha256").update(b).digest();
  return timingSafeEqual(x, y);
}
