/**
 * The ingest service's door: a per-source ingest token to post (Alertmanager's and Prometheus's `http_config`
 * `authorization` / `basic_auth`, `orrery notify --token`), an API or kiosk token to read its refusals. The ingest
 * follows only the tokens of the identity bucket.
 */
import { IngestSource, type TokenRecord } from "../../pipelines/contracts/identity.ts";
import type { Bus } from "../shared/bus.ts";
import type { Logger } from "../shared/log.ts";
import { AuthError } from "./errors.ts";
import { credentialsOf } from "./identity.ts";
import { sha256 } from "./secrets.ts";
import { IdentityStore } from "./store.ts";

/** What a request wants: to post alerts or samples from one source, to read, or nothing (a health probe). */
export type IngestDoor = { post: string } | "read" | "public";

export interface IngestAuth {
  readonly mode: "on" | "off";
  /** throws AuthError (401/403) when `req` may not pass */
  check(req: Request, door: IngestDoor): void;
  close(): Promise<void>;
}

export class IngestTokens implements IngestAuth {
  readonly mode = "on";
  private constructor(
    private readonly store: IdentityStore,
    private readonly now: () => number,
  ) {}

  static async open(bus: Bus, log: Logger, now: () => number = Date.now): Promise<IngestTokens> {
    return new IngestTokens(await IdentityStore.open(bus, log, { tokensOnly: true }), now);
  }

  check(req: Request, door: IngestDoor): void {
    if (door === "public") return;
    const { bearer } = credentialsOf(req);
    if (bearer === undefined) throw new AuthError("unauthenticated", "a token is required: Authorization: Bearer <ingest token> (Alertmanager/Prometheus: http_config authorization)");
    const t: TokenRecord | undefined = bearer.startsWith("orr_") ? this.store.tokenByHash(sha256(bearer)) : undefined;
    if (!t || (t.expiresAt !== null && t.expiresAt <= this.now())) throw new AuthError("bad_credentials", "invalid, expired or revoked token");
    if (door === "read") {
      if (t.kind === "ingest") throw new AuthError("forbidden", "an ingest token may post, not read");
      return;
    }
    const source = IngestSource.safeParse(door.post);
    if (t.kind !== "ingest" || !source.success || t.source !== source.data) throw new AuthError("forbidden", `this token may not post to ${door.post} (an ingest token for source "${door.post}" is needed)`);
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}

/** ORRERY_AUTH=off */
export const ingestAuthOff = (): IngestAuth => ({ mode: "off", check: () => undefined, close: async () => undefined });
