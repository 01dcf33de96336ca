/**
 * What the identity code answers a caller with. An AuthError is an HttpError, so the one mapping from errors to HTTP
 * (services/shared/http.ts) answers it with its status and headers like any other.
 */
import { HttpError } from "../shared/http.ts";

export type AuthErrorCode = "unauthenticated" | "forbidden" | "bad_credentials" | "rate_limited" | "directory_unavailable" | "not_found";

const STATUS: Record<AuthErrorCode, number> = { unauthenticated: 401, bad_credentials: 401, forbidden: 403, rate_limited: 429, directory_unavailable: 503, not_found: 404 };

export class AuthError extends HttpError {
  override readonly name = "AuthError";
  constructor(
    readonly code: AuthErrorCode,
    message: string,
    /** rate_limited: seconds until the next try */
    readonly retryAfterS?: number,
    options?: { cause?: unknown },
  ) {
    super(
      STATUS[code],
      message,
      code === "rate_limited" ? { "retry-after": String(retryAfterS ?? 60) } : STATUS[code] === 401 ? { "www-authenticate": 'Bearer realm="orrery"' } : undefined,
    );
    if (options?.cause) this.cause = options.cause;
  }
}
