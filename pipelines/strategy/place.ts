/**
 * Placement (pure): which live workers run each job (actives) and which stand by, per the strategy's pools, pick mode
 * and redundancy. Placement is sticky: what is still valid in the previous table stays where it is, a dead active is
 * replaced by its own standby, and only the holes are filled — so a worker dying moves as little as possible.
 */
import { standbyCount, type PickMode, type Pool, type Redundancy, type Strategy } from "./schema.ts";

export interface WorkerInfo {
  id: string;
  types: string[];
  /** the pool the worker names; "" = match pools by labels */
  pool: string;
  labels: Record<string, string>;
}

export interface PlacementRequest {
  /** what is placed: a job, or one schedule of it (its name) */
  job: string;
  workerType: string;
  /** the strategy's `jobs` rule to use when none is named like `job` (a schedule's package name) */
  rule?: string;
}

export interface Placement {
  job: string;
  workerType: string;
  active: string[];
  standby: string[];
  /** null when fully placed, else what is missing and why */
  degraded: string | null;
}

/** The pool a worker belongs to: the one it names, else the first whose labels it all carries. */
export function poolOf(strategy: Strategy, w: Pick<WorkerInfo, "pool" | "labels">): Pool | undefined {
  if (w.pool) return strategy.pools.find((p) => p.name === w.pool);
  return strategy.pools.find((p) => p.labels && Object.keys(p.labels).length > 0 && Object.entries(p.labels).every(([k, v]) => w.labels[k] === v));
}

interface JobPlan {
  req: PlacementRequest;
  count: number;
  pick: PickMode;
  redundancy: Redundancy;
  allowed: Set<string>;
  active: (string | null)[];
  standby: (string | null)[];
  problems: string[];
}

export function place(opts: {
  strategy: Strategy;
  workers: WorkerInfo[];
  requests: PlacementRequest[];
  previous?: Placement[];
  /** [0,1) source for pick "random"; inject a seeded one in tests */
  random?: () => number;
}): Placement[] {
  const { strategy } = opts;
  const random = opts.random ?? Math.random;
  const poolIndex = new Map(strategy.pools.map((p, i) => [p.name, i]));
  const workers = new Map<string, { w: WorkerInfo; pool: Pool | undefined }>();
  for (const w of [...opts.workers].sort((a, b) => a.id.localeCompare(b.id))) workers.set(w.id, { w, pool: poolOf(strategy, w) });
  const load = new Map<string, number>();
  const loadOf = (id: string) => load.get(id) ?? 0;
  const hasRoom = (id: string) => loadOf(id) < (workers.get(id)?.pool?.capacity ?? 0);
  const take = (id: string) => load.set(id, loadOf(id) + 1);
  const release = (id: string) => load.set(id, Math.max(0, loadOf(id) - 1));
  const poolName = (id: string | null) => (id ? (workers.get(id)?.pool?.name ?? "") : "");
  const siteOf = (id: string | null) => (id ? (workers.get(id)?.pool?.site ?? "") : "");
  const previous = new Map((opts.previous ?? []).map((p) => [p.job, p]));

  const plans: JobPlan[] = [...opts.requests]
    .sort((a, b) => a.job.localeCompare(b.job))
    .map((req) => {
      const rule = strategy.jobs?.[req.job] ?? (req.rule !== undefined ? strategy.jobs?.[req.rule] : undefined) ?? {};
      const count = rule.count ?? 1;
      const redundancy = rule.redundancy ?? strategy.redundancy ?? "+0";
      return {
        req,
        count,
        pick: rule.pick ?? strategy.pick ?? "least-loaded",
        redundancy,
        allowed: new Set(rule.pools ?? strategy.pools.map((p) => p.name)),
        active: Array.from({ length: count }, () => null),
        standby: Array.from({ length: standbyCount(redundancy, count) }, () => null),
        problems: [],
      };
    });

  const eligible = (plan: JobPlan, id: string) => {
    const e = workers.get(id);
    return !!e && !!e.pool && plan.allowed.has(e.pool.name) && e.w.types.includes(plan.req.workerType);
  };
  const usedIn = (plan: JobPlan) => new Set([...plan.active, ...plan.standby].filter((x): x is string => !!x));
  /** The actives a standby slot covers: 1:1 its own active, 2:1 a pair, +N all of them. */
  const covers = (plan: JobPlan, k: number): (string | null)[] =>
    plan.redundancy === "1:1" ? [plan.active[k] ?? null] : plan.redundancy === "2:1" ? plan.active.slice(2 * k, 2 * k + 2) : plan.active;
  const strict = (plan: JobPlan) => plan.redundancy === "1:1" || plan.redundancy === "2:1";

  // Pass 1: keep what is still valid (so kept placements claim capacity before anything new is chosen).
  for (const plan of plans) {
    const prev = previous.get(plan.req.job);
    if (!prev || prev.workerType !== plan.req.workerType) continue;
    const prevStandby = [...prev.standby];
    for (let i = 0; i < plan.count; i++) {
      const a = prev.active[i];
      if (a && eligible(plan, a) && !usedIn(plan).has(a) && hasRoom(a)) {
        plan.active[i] = a;
        take(a);
      }
    }
    // A dead active's own standby takes its place (it is already in another pool/site).
    for (let i = 0; i < plan.count; i++) {
      if (plan.active[i]) continue;
      const k = plan.redundancy === "1:1" ? i : plan.redundancy === "2:1" ? Math.floor(i / 2) : -1;
      const candidates = k >= 0 ? [prevStandby[k]] : prevStandby;
      const s = candidates.find((c) => c && eligible(plan, c) && !usedIn(plan).has(c) && hasRoom(c));
      if (s) {
        plan.active[i] = s;
        take(s);
        prevStandby[prevStandby.indexOf(s)] = "";
      }
    }
    for (let k = 0; k < plan.standby.length; k++) {
      const s = prevStandby[k];
      if (s && eligible(plan, s) && !usedIn(plan).has(s) && hasRoom(s)) {
        plan.standby[k] = s;
        take(s);
      }
    }
  }

  const choose = (plan: JobPlan, ok: (id: string) => boolean): string | null => {
    const used = usedIn(plan);
    const c = [...workers.keys()].filter((id) => eligible(plan, id) && !used.has(id) && hasRoom(id) && ok(id));
    if (!c.length) return null;
    const cost = (id: string) => workers.get(id)!.pool!.cost;
    const byLoad = (a: string, b: string) => loadOf(a) - loadOf(b) || a.localeCompare(b);
    const best = (cmp: (a: string, b: string) => number) => c.reduce((m, x) => (cmp(x, m) < 0 ? x : m));
    switch (plan.pick) {
      case "first":
        return best((a, b) => poolIndex.get(poolName(a))! - poolIndex.get(poolName(b))! || a.localeCompare(b));
      case "random":
        return c[Math.min(c.length - 1, Math.floor(random() * c.length))]!;
      case "cheapest":
        return best((a, b) => cost(a) - cost(b) || byLoad(a, b));
      case "priciest":
        return best((a, b) => cost(b) - cost(a) || byLoad(a, b));
      case "least-loaded":
        return best(byLoad);
    }
  };

  // Pass 2: fill the holes, actives first, then standbys (whose constraints depend on where the actives are).
  for (const plan of plans) {
    const where = `worker type ${plan.req.workerType}, pools ${[...plan.allowed].join(",")}`;
    for (let i = 0; i < plan.count; i++) {
      if (plan.active[i]) continue;
      const w = choose(plan, () => true);
      if (w) {
        plan.active[i] = w;
        take(w);
      } else plan.problems.push(`active ${i + 1} of ${plan.count}: no live worker with room (${where})`);
    }
    for (let k = 0; k < plan.standby.length; k++) {
      const coverPools = new Set(covers(plan, k).map(poolName).filter(Boolean));
      const coverSites = new Set(covers(plan, k).map(siteOf).filter(Boolean));
      const s = plan.standby[k];
      if (s && strict(plan) && coverPools.has(poolName(s))) {
        // its active moved into the standby's pool: it no longer protects anything
        plan.standby[k] = null;
        release(s);
      }
      if (plan.standby[k]) continue;
      const otherPool = (id: string) => !coverPools.has(poolName(id));
      const otherSite = (id: string) => otherPool(id) && !coverSites.has(siteOf(id));
      const w = choose(plan, otherSite) ?? choose(plan, otherPool) ?? (strict(plan) ? null : choose(plan, () => true));
      if (w) {
        plan.standby[k] = w;
        take(w);
      } else
        plan.problems.push(
          strict(plan)
            ? `standby ${k + 1} of ${plan.standby.length} (${plan.redundancy}): no live worker with room outside pool(s) ${[...coverPools].join(",") || "-"} (${where})`
            : `spare ${k + 1} of ${plan.standby.length}: no live worker with room (${where})`,
        );
    }
  }

  return plans.map((p) => ({
    job: p.req.job,
    workerType: p.req.workerType,
    active: p.active.filter((x): x is string => !!x),
    standby: p.standby.filter((x): x is string => !!x),
    degraded: p.problems.length ? p.problems.join("; ") : null,
  }));
}
