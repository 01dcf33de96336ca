/** cypher.v1 — a read-only graph question and its answer, over HTTP and over NATS request/reply alike. */
import { z } from "zod";

export const CypherRequest = z.object({
  query: z.string().min(1).max(20_000),
  params: z.record(z.string(), z.unknown()).default({}),
  timeoutMs: z.number().int().min(1).max(60_000).default(10_000),
  maxRows: z.number().int().min(1).max(100_000).default(10_000),
});
export type CypherRequest = z.infer<typeof CypherRequest>;

export const CypherResponse = z.union([
  z.object({ ok: z.literal(true), rows: z.array(z.record(z.string(), z.unknown())), ms: z.number() }),
  z.object({ ok: z.literal(false), code: z.string(), error: z.string() }),
]);
export type CypherResponse = z.infer<typeof CypherResponse>;
