/**
 * The ingest service's client, for other processes: the alerts its instances refused, over NATS request/reply
 * (<prefix>.rpc.ingest). Several instances may run behind one address and each keeps its own refusals, so one
 * request goes to all of them and the answers that come within a short window are merged.
 */
import { z } from "zod";
import { ContractError, decode } from "../../pipelines/codec.ts";
import { IngestRejected, RejectedAlertsMerged, type IngestQuery } from "../../pipelines/contracts/alerts.ts";
import type { Bus } from "../shared/bus.ts";

const Reply = z.union([IngestRejected, z.object({ error: z.string(), instance: z.string().optional() })]);

/**
 * The refusals of every ingest instance that answers within `windowMs`: counts summed, the latest `limit` newest
 * first. No instance answering is a value (an empty list with a note), not an error: no ingest may be running, and
 * then nothing was refused.
 */
export async function fetchRejected(bus: Bus, opts: { limit?: number; windowMs?: number } = {}): Promise<RejectedAlertsMerged> {
  const limit = opts.limit ?? 1000;
  const windowMs = opts.windowMs ?? 500;
  const answers: IngestRejected[] = [];
  const notes: string[] = [];
  try {
    // "timer": how many instances run is not known, so every answer of the window counts
    const replies = await bus.nc.requestMany(bus.topo.subjects.ingestRpc, JSON.stringify({ op: "rejected", limit } satisfies IngestQuery), { strategy: "timer", maxWait: windowMs });
    for await (const m of replies) {
      try {
        const r = decode(Reply, "ingest.reply", m.data);
        if ("error" in r) notes.push(`${r.instance ?? "an ingest instance"} refused the query: ${r.error}`);
        else answers.push(r);
      } catch (e) {
        if (!(e instanceof ContractError)) throw e;
        notes.push(`an unreadable answer: ${e.message}`);
      }
    }
  } catch (e) {
    // nats.js ends the iteration with an error when nobody subscribes (no responders) or the connection drops
    if (!answers.length) notes.push(`no ingest instance answered: ${(e as Error).message}`);
    else notes.push(`gathering stopped early: ${(e as Error).message}`);
  }
  if (!answers.length && !notes.length) notes.push(`no ingest instance answered within ${windowMs} ms`);
  return merge(answers, limit, notes);
}

/** Each answer lists newest last; the merge is newest first, an instance's own order kept among equal times. */
export function merge(answers: readonly IngestRejected[], limit: number, notes: readonly string[] = []): RejectedAlertsMerged {
  const bySource: Record<string, number> = {};
  for (const a of answers) for (const [s, n] of Object.entries(a.bySource)) bySource[s] = (bySource[s] ?? 0) + n;
  const alerts = answers
    .flatMap((a) => a.alerts.map((r) => ({ ...r, instance: a.instance })).reverse())
    .sort((x, y) => y.at - x.at)
    .slice(0, limit);
  return {
    total: answers.reduce((n, a) => n + a.total, 0),
    bySource,
    alerts,
    instances: answers.map((a) => a.instance).sort(),
    ...(notes.length ? { note: notes.join("; ") } : {}),
  };
}
