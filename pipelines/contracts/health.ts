/**
 * health.delta.v1 — how alerts colour the topology. The alerts service publishes one delta per handled batch with
 * every entity whose health or alert set changed; `seq` numbers the deltas (a reader that sees a gap asks for the
 * full state: health.state.v1 over request/reply). An entity with health "ok" and no alerts has been cleared.
 * The same shape travels over the gateway's WebSocket as a frame with schema "health.delta.v1".
 */
import { z } from "zod";
import { EpochMs, Id } from "./common.ts";

export const EntityHealth = z.enum(["ok", "warning", "critical", "unknown"]);
export type EntityHealth = z.infer<typeof EntityHealth>;

export const HealthEntry = z.object({
  id: Id,
  health: EntityHealth,
  /** fingerprints of the alerts that count for this entity (firing, plus acknowledged/in downtime ones) */
  alerts: z.array(Id).max(10_000),
});
export type HealthEntry = z.infer<typeof HealthEntry>;

export const HealthDelta = z.object({
  schema: z.literal("health.delta.v1"),
  seq: z.number().int().positive(),
  at: EpochMs,
  entities: z.array(HealthEntry),
});
export type HealthDelta = z.infer<typeof HealthDelta>;

/** The whole current health (entities that are not ok or have alerts), at `seq`: answer of the health RPC. */
export const HealthState = z.object({
  schema: z.literal("health.state.v1"),
  seq: z.number().int().nonnegative(),
  at: EpochMs,
  entities: z.array(HealthEntry),
});
export type HealthState = z.infer<typeof HealthState>;
