/**
 * health.delta.v1 — how alerts colour the topology, and what that breaks. The alerts service publishes one delta per
 * handled batch (more when it is large) with every entity whose health or alert set changed, every CONNECTS edge whose
 * state changed, and the net change of the impact: the entities that depend (transitively, from the graph) on an
 * unhealthy one. `seq` numbers the deltas (a reader that sees a gap asks for the full state: health.state.v1 over
 * request/reply). An entity with health "ok" and no alerts has been cleared; impact and edge entries that no longer
 * hold are listed in `impactCleared` / `edgesCleared`.
 * Deltas are stored in the HEALTH stream (subscribe there to feed an ITSM tool) and travel over the gateway's WebSocket
 * as frames with schema "health.delta.v1".
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

/** One unhealthy entity an impacted entity depends on, and how far away it is. */
export const ImpactCause = z.object({
  id: Id,
  health: EntityHealth,
  /** length of the shortest dependency path to it, in graph edges (≥ 1) */
  hops: z.number().int().positive(),
});
export type ImpactCause = z.infer<typeof ImpactCause>;

/** An entity affected by unhealthy entities it depends on (the upstream impact of each of them). */
export const ImpactEntry = z.object({
  id: Id,
  /** the worst health among its causes */
  health: EntityHealth,
  /** the nearest cause's distance */
  hops: z.number().int().positive(),
  /** nearest first, then by id; at most MAX_CAUSES (`causesTotal` says how many there are) */
  causes: z.array(ImpactCause).max(1000),
  causesTotal: z.number().int().positive(),
});
export type ImpactEntry = z.infer<typeof ImpactEntry>;

/** A CONNECTS edge into an unhealthy listener (or a listener of an unhealthy process or host) carries that health. */
export const EdgeHealth = z.object({
  id: Id,
  src: Id,
  dst: Id,
  health: EntityHealth,
  /** the unhealthy entity that colours it (the listener itself, its process or its host) */
  cause: Id,
});
export type EdgeHealth = z.infer<typeof EdgeHealth>;

export const HealthDelta = z.object({
  schema: z.literal("health.delta.v1"),
  seq: z.number().int().positive(),
  at: EpochMs,
  entities: z.array(HealthEntry),
  edges: z.array(EdgeHealth).default([]),
  edgesCleared: z.array(Id).default([]),
  impact: z.array(ImpactEntry).default([]),
  impactCleared: z.array(Id).default([]),
});
export type HealthDelta = z.infer<typeof HealthDelta>;
export type HealthDeltaInput = z.input<typeof HealthDelta>;

/** The whole current health (entities that are not ok or have alerts, edge states, impact), at `seq`: answer of the health RPC. */
export const HealthState = z.object({
  schema: z.literal("health.state.v1"),
  seq: z.number().int().nonnegative(),
  at: EpochMs,
  entities: z.array(HealthEntry),
  edges: z.array(EdgeHealth).default([]),
  impact: z.array(ImpactEntry).default([]),
});
export type HealthState = z.infer<typeof HealthState>;

/**
 * A state too large for one message is answered (to `{op: "health", parts: true}`) as several messages to the reply
 * subject, each a slice of the arrays with the same seq; the reader concatenates parts 0 … parts-1.
 */
export const HealthStatePart = HealthState.extend({ part: z.number().int().nonnegative(), parts: z.number().int().positive() });
export type HealthStatePart = z.infer<typeof HealthStatePart>;

/** What the alerts service answers while it is still replaying its stream or waiting for the topology. */
export const NotReady = z.object({ error: z.string(), code: z.literal("not_ready") });
export type NotReady = z.infer<typeof NotReady>;

/**
 * A health state too large for one WebSocket frame travels as begin, chunks of entries, end (the gateway's frame
 * limit bounds each chunk). A reader replaces its health with the chunks' union at `end`, and applies only the health
 * deltas with a seq past the state's.
 */
export const HealthStateBegin = z.object({
  schema: z.literal("health.state.begin.v1"),
  seq: z.number().int().nonnegative(),
  at: EpochMs,
  /** totals of each list across the chunks that follow */
  entities: z.number().int().nonnegative(),
  edges: z.number().int().nonnegative(),
  impact: z.number().int().nonnegative(),
});
export type HealthStateBegin = z.infer<typeof HealthStateBegin>;

export const HealthStateChunk = z.object({
  schema: z.literal("health.state.chunk.v1"),
  seq: z.number().int().nonnegative(),
  entities: z.array(HealthEntry).default([]),
  edges: z.array(EdgeHealth).default([]),
  impact: z.array(ImpactEntry).default([]),
});
export type HealthStateChunk = z.infer<typeof HealthStateChunk>;

export const HealthStateEnd = z.object({
  schema: z.literal("health.state.end.v1"),
  seq: z.number().int().nonnegative(),
  /** how many chunks were sent: a reader that counted fewer lost frames and waits for the next state */
  chunks: z.number().int().nonnegative(),
});
export type HealthStateEnd = z.infer<typeof HealthStateEnd>;
