/**
 * Kiosk URLs for bindings: a kiosk token (viewer role) written into the identity bucket as identity itself writes one
 * (TokenRecord under token.<id>; the gateway follows the bucket and honours it within milliseconds), and purged at
 * unbind. The bucket is opened, never created: it belongs to the gateway's identity module, and a broker started
 * before any gateway has run hands out bindings without a kiosk URL (and says so in its log).
 */
import { createHash, randomBytes } from "node:crypto";
import { Kvm, type KV } from "@nats-io/kv";
import { TokenRecord } from "../../pipelines/contracts/identity.ts";
import type { Bus } from "../shared/bus.ts";
import type { KioskTokens } from "./broker.ts";

export async function openKioskTokens(bus: Bus, gatewayUrl: string, now: () => number = Date.now): Promise<KioskTokens | null> {
  let kv: KV;
  try {
    kv = await new Kvm(bus.js).open(bus.topo.buckets.identity, { bindOnly: false });
    await kv.status();
  } catch {
    return null;
  }
  return {
    async create(name) {
      // the same shapes identity uses (services/identity/secrets.ts): orr_ + 32 random bytes, 16 hex id, SHA-256 stored
      const token = `orr_${randomBytes(32).toString("base64url")}`;
      const rec = TokenRecord.parse({
        id: randomBytes(8).toString("hex"),
        kind: "kiosk",
        name,
        role: "viewer",
        owner: "service-broker",
        hash: createHash("sha256").update(token).digest("hex"),
        createdAt: now(),
        expiresAt: null,
      });
      await kv.put(`token.${rec.id}`, JSON.stringify(rec));
      return { id: rec.id, url: `${gatewayUrl.replace(/\/$/, "")}/kiosk?token=${encodeURIComponent(token)}` };
    },
    async revoke(id) {
      await kv.purge(`token.${id}`);
    },
  };
}
