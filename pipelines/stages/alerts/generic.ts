/**
 * The generic webhook (POST /api/alerts/generic, GenericAlert in pipelines/contracts/alerts.ts) → alert.v1 (pure).
 */
import type { z } from "zod";
import type { Alert, GenericAlert } from "../../contracts/alerts.ts";
import { parseTime, stableId } from "./normalize.ts";

/**
 * `at` is the sender's when it gives one (`at`, else endsAt of a resolve or startsAt otherwise), our receive time
 * only when it gives none, so a sender that stamps its events has them ordered by its own clock.
 */
export function normalizeGeneric(g: z.infer<typeof GenericAlert>, now: number): Alert {
  const given = parseTime(g.at) ?? (g.state === "resolved" ? parseTime(g.endsAt) : null) ?? parseTime(g.startsAt);
  const at = given ?? now;
  const fingerprint = g.fingerprint ?? `${g.source}:${stableId(g.target.host, g.target.address, g.target.service, g.target.port)}`;
  const startsAt = parseTime(g.startsAt) ?? at;
  const endsAt = g.endsAt === undefined || g.endsAt === null ? (g.state === "resolved" ? at : null) : parseTime(g.endsAt);
  return {
    id: stableId(g.source, fingerprint, g.state, g.severity, at),
    source: g.source,
    fingerprint,
    severity: g.severity,
    state: g.state,
    summary: g.summary,
    labels: g.labels,
    target: g.target,
    startsAt,
    endsAt,
    at,
  };
}
