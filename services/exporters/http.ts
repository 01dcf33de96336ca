/**
 * HTTP to a vendor, with the exporter's rules: a per-exporter rate limit (token bucket), a timeout, and one mapping
 * from the vendor's answer to what the consumer does with the message (services/shared/errors.ts): timeouts, 429
 * (honouring Retry-After) and 5xx are transient — the batch is held and retried in place, in order — and any other 4xx
 * is permanent: the message is dead-lettered with the vendor's answer.
 */
import { PermanentError, TransientError } from "../shared/errors.ts";

/** A vendor's refusal of a request (4xx other than 429): retrying cannot help. */
export class VendorRejected extends PermanentError {
  constructor(
    readonly status: number,
    readonly body: string,
    what: string,
  ) {
    super(`${what}: vendor answered ${status}: ${body.slice(0, 2000)}`);
  }
}

/** The vendor is unavailable, slow or asks us to slow down (timeouts, 429, 5xx). */
export class VendorUnavailable extends TransientError {}

export interface HttpCounters {
  requests: number;
  retries: number;
  errors: number;
}

/** Seconds or an HTTP date (RFC 9110 §10.2.3), as milliseconds from now; undefined when absent or unreadable. */
export function retryAfterMs(v: string | null, now = Date.now()): number | undefined {
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/** A token bucket: `rate` tokens a second, at most `rate` (one second's worth) saved up. */
export class RateLimiter {
  private tokens: number;
  private last = performance.now();
  private chain: Promise<void> = Promise.resolve();
  constructor(private readonly rate: number) {
    this.tokens = Math.max(1, rate);
  }
  take(): Promise<void> {
    const next = this.chain.then(async () => {
      for (;;) {
        const now = performance.now();
        this.tokens = Math.min(Math.max(1, this.rate), this.tokens + ((now - this.last) / 1000) * this.rate);
        this.last = now;
        if (this.tokens >= 1) {
          this.tokens -= 1;
          return;
        }
        await Bun.sleep(Math.ceil(((1 - this.tokens) / this.rate) * 1000));
      }
    });
    this.chain = next;
    return next;
  }
}

export interface VendorHttpOptions {
  baseUrl: string;
  headers: Record<string, string>;
  ratePerSecond: number;
  timeoutMs: number;
  counters: HttpCounters;
}

export class VendorHttp {
  private readonly limiter: RateLimiter;
  constructor(readonly o: VendorHttpOptions) {
    this.limiter = new RateLimiter(o.ratePerSecond);
  }

  /** Sends one request; resolves to the parsed JSON body (or null when empty), throws VendorUnavailable / VendorRejected. */
  async request(method: string, path: string, body?: unknown, extra: { headers?: Record<string, string>; raw?: string | URLSearchParams } = {}): Promise<unknown> {
    await this.limiter.take();
    const url = path.startsWith("http") ? path : this.o.baseUrl.replace(/\/$/, "") + path;
    const what = `${method} ${new URL(url).pathname}`;
    const headers: Record<string, string> = { accept: "application/json", ...this.o.headers, ...extra.headers };
    let payload: string | URLSearchParams | undefined = extra.raw;
    if (body !== undefined && payload === undefined) {
      payload = JSON.stringify(body);
      headers["content-type"] ??= "application/json";
    }
    let res: Response;
    try {
      res = await fetch(url, { method, headers, body: payload, signal: AbortSignal.timeout(this.o.timeoutMs) });
    } catch (e) {
      this.o.counters.errors++;
      this.o.counters.retries++;
      throw new VendorUnavailable(`${what}: ${e instanceof Error && e.name === "TimeoutError" ? `no answer within ${this.o.timeoutMs} ms` : String(e)}`, undefined, { cause: e });
    }
    const text = await res.text();
    if (res.status === 429 || res.status >= 500) {
      this.o.counters.errors++;
      this.o.counters.retries++;
      throw new VendorUnavailable(`${what}: vendor answered ${res.status}: ${text.slice(0, 500)}`, retryAfterMs(res.headers.get("retry-after")));
    }
    if (res.status >= 400) {
      this.o.counters.errors++;
      throw new VendorRejected(res.status, text, what);
    }
    this.o.counters.requests++;
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch {
      // a 2xx that is not JSON is the vendor's misconfiguration (a login page behind a proxy): not retryable
      this.o.counters.errors++;
      throw new VendorRejected(res.status, text, `${what} (not JSON)`);
    }
  }
}

export function authHeaders(auth: { type: "none" } | { type: "basic"; user: string; password: string } | { type: "bearer"; token: string }): Record<string, string> {
  if (auth.type === "basic") return { authorization: `Basic ${Buffer.from(`${auth.user}:${auth.password}`).toString("base64")}` };
  if (auth.type === "bearer") return { authorization: `Bearer ${auth.token}` };
  return {};
}
