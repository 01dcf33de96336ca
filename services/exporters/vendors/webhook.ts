/**
 * A generic webhook: every change as a CloudEvents 1.0 event in structured JSON mode (content type
 * application/cloudevents+json), signed as Standard Webhooks prescribe: headers webhook-id, webhook-timestamp
 * (Unix seconds) and webhook-signature ("v1,<base64 HMAC-SHA256 of `id.timestamp.body`>"). The event id is derived
 * from what it says, so an event sent again after a crash carries the same id: a receiver that remembers the ids of
 * its tolerance window (and refuses timestamps outside it) takes every event exactly once. `verifyWebhook` is the
 * receiver's side.
 * Docs: https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md, https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/formats/json-format.md
 *       https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { VendorHttp } from "../http.ts";
import type { VendorAdapter } from "../adapter.ts";
import { digest } from "../map.ts";

export const EVENT_TYPES = ["ci.upserted", "ci.retired", "relation.upserted", "relation.removed", "incident.opened", "incident.resolved"] as const;

export function sign(secret: string, id: string, ts: number, body: string): string {
  return `v1,${createHmac("sha256", secret).update(`${id}.${ts}.${body}`).digest("base64")}`;
}

/** The receiver's check: a valid signature over a timestamp within `toleranceS` of now. */
export function verifyWebhook(secret: string, headers: Headers, body: string, o: { now?: number; toleranceS?: number } = {}): { ok: true; id: string } | { ok: false; reason: string } {
  const id = headers.get("webhook-id");
  const ts = Number(headers.get("webhook-timestamp"));
  const sig = headers.get("webhook-signature") ?? "";
  if (!id || !Number.isInteger(ts)) return { ok: false, reason: "missing webhook-id or webhook-timestamp" };
  const now = Math.floor((o.now ?? Date.now()) / 1000);
  if (Math.abs(now - ts) > (o.toleranceS ?? 300)) return { ok: false, reason: "timestamp outside the tolerance window" };
  const want = Buffer.from(sign(secret, id, ts, body));
  const good = sig.split(" ").some((s) => {
    const got = Buffer.from(s);
    return got.length === want.length && timingSafeEqual(got, want);
  });
  return good ? { ok: true, id } : { ok: false, reason: "bad signature" };
}

export function webhook(http: VendorHttp, opts: { secret: string; source: string; name: string }): VendorAdapter {
  const send = async (type: (typeof EVENT_TYPES)[number], subject: string, data: unknown) => {
    const id = `${opts.name}:${type}:${digest([subject, data])}`;
    const body = JSON.stringify({ specversion: "1.0", id, source: opts.source, type: `io.orrery.${type}`, subject, time: new Date().toISOString(), datacontenttype: "application/json", data });
    const ts = Math.floor(Date.now() / 1000);
    await http.request("POST", "", undefined, { raw: body, headers: { "content-type": "application/cloudevents+json", "webhook-id": id, "webhook-timestamp": String(ts), "webhook-signature": sign(opts.secret, id, ts, body) } });
  };
  return {
    vendor: "webhook",
    upsertCi: async (ci) => {
      await send("ci.upserted", ci.ref, { class: ci.class, name: ci.name, kind: ci.kind, values: ci.values, keys: ci.keys });
      return ci.ref;
    },
    retireCi: (ci) => send("ci.retired", ci.ref, { class: ci.class }),
    relate: async (rel) => {
      await send("relation.upserted", rel.ref, { type: rel.type, src: rel.src, dst: rel.dst });
      return rel.ref;
    },
    unrelate: (rel) => send("relation.removed", rel.ref, { type: rel.type }),
    openIncident: async (inc) => {
      await send("incident.opened", inc.ref, inc);
      return inc.ref;
    },
    resolveIncident: (inc) => send("incident.resolved", inc.ref, inc),
  };
}
