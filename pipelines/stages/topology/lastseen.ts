/**
 * What a call hands the store: its net changes, plus a bounded trickle of lastSeen refreshes (the store's lastSeen
 * trails the model by at most lastSeenPersistMs).
 */
import { type Changes, type PersistRec, type TopologyModel, isEmpty } from "./model.ts";
import { Tracker } from "./tracker.ts";

/**
 * The call's net changes, plus a bounded number of lastSeen refreshes: entities checked longest ago are looked at
 * first (a few times the cap at most); one whose lastSeen moved since it was written is emitted. Every entity is
 * checked once per lastSeenPersistMs as long as calls come often enough (5 × cap per call: ageModel alone, every
 * 5 s with the default cap, covers 720k entities an hour), so the store's lastSeen trails the model by at most
 * about lastSeenPersistMs, at one write per entity per period at most.
 */
export function finish(m: TopologyModel, t: Tracker, now: number): Changes {
  const period = m.opts.lastSeenPersistMs;
  if (period > 0) {
    const max = m.opts.lastSeenPersistMaxPerBatch;
    let looked = 0;
    let emitted = 0;
    for (const [id, r] of m.persisted) {
      if (r.checkedAt > now - period || emitted >= max || looked++ >= 5 * max) break;
      m.persisted.delete(id);
      const cur = m.nodes.get(id) ?? m.edges.get(id);
      if (!cur) continue;
      if (LIVE.has(cur.kind)) {
        // These exist only while open connections back them, so they were seen at their source's latest scan
        // (refreshed here, once a period, rather than per flow per scan).
        const at = m.sources.get(cur.source)?.lastBatchAt;
        if (at !== undefined && at > cur.lastSeen) cur.lastSeen = at;
      }
      if (cur.lastSeen > r.lastSeen) {
        t.force(id, !m.nodes.has(id));
        emitted++;
      }
      m.persisted.set(id, persistRec(m, r.lastSeen, now)); // to the back of the queue
    }
  }
  const c = t.result();
  // They ride with the next graph change (a source's first batch always brings one), so a store write always moves
  // the rev: a change set of intervals alone would look like a retried transaction to the Neo4j adapter.
  if (m.intervalsChanged.size && !isEmpty(c)) {
    c.sourceIntervals = Object.fromEntries(m.intervalsChanged);
    m.intervalsChanged.clear();
  }
  for (const n of c.nodesUpserted) written(m, n.id, n.lastSeen, now);
  for (const e of c.edgesUpserted) written(m, e.id, e.lastSeen, now);
  for (const id of c.nodesRemoved) m.persisted.delete(id);
  for (const e of c.edgesRemoved) m.persisted.delete(e.id);
  return c;
}

/** Kinds that exist only while confirmed, open (or just closed, within grace) connections back them. */
const LIVE = new Set<string>(["CONNECTS", "DEPENDS_ON", "external"]);

/**
 * Entities written or checked in one call mostly share one (lastSeen, checkedAt) pair: one frozen record per pair
 * instead of one per entity (~40 bytes each at 600k entities).
 */
export function persistRec(m: TopologyModel, lastSeen: number, checkedAt: number): PersistRec {
  const c = m.persistRecs;
  if (c.at !== checkedAt) {
    c.at = checkedAt;
    c.byLastSeen.clear();
  }
  let r = c.byLastSeen.get(lastSeen);
  if (!r) {
    if (c.byLastSeen.size >= 4096) c.byLastSeen.clear(); // a bound on memory, not a correctness matter
    c.byLastSeen.set(lastSeen, (r = Object.freeze({ lastSeen, checkedAt })));
  }
  return r;
}

function written(m: TopologyModel, id: string, lastSeen: number, now: number) {
  m.persisted.delete(id);
  m.persisted.set(id, persistRec(m, lastSeen, now));
}
