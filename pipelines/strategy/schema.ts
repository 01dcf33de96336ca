/**
 * The placement strategy file: validated by the JSON Schema that ships in deploy/strategy.schema.json (ajv), then by
 * the cross-references a schema cannot express (unique pool names, rules naming known pools). Every error carries
 * the JSON pointer of what is wrong. Pure: the caller reads the file.
 */
import Ajv2020 from "ajv/dist/2020.js";
import type { ErrorObject } from "ajv";
import schemaJson from "../../deploy/strategy.schema.json" with { type: "json" };

export type PickMode = "first" | "random" | "cheapest" | "priciest" | "least-loaded";
export type Redundancy = "1:1" | "2:1" | `+${number}`;

export interface Pool {
  name: string;
  site: string;
  provider: string;
  labels?: Record<string, string>;
  cost: number;
  capacity: number;
}

export interface JobRule {
  count?: number;
  pick?: PickMode;
  redundancy?: Redundancy;
  pools?: string[];
}

export interface Strategy {
  version: 1;
  pick?: PickMode;
  redundancy?: Redundancy;
  pools: Pool[];
  jobs?: Record<string, JobRule>;
}

export interface StrategyIssue {
  /** JSON pointer, "" for the document root */
  path: string;
  message: string;
}

export type StrategyCheck = { ok: true; strategy: Strategy; warnings: StrategyIssue[] } | { ok: false; errors: StrategyIssue[] };

export const strategySchema = schemaJson;

const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
const validateSchema = ajv.compile(schemaJson);

const escapePointer = (s: string) => s.replace(/~/g, "~0").replace(/\//g, "~1");

/** ajv's errors with the path pointing at the offending member (a missing key points at where it should be). */
function fromAjv(e: ErrorObject): StrategyIssue {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case "required":
      return { path: `${e.instancePath}/${escapePointer(String(p.missingProperty))}`, message: "is required" };
    case "additionalProperties":
      return { path: `${e.instancePath}/${escapePointer(String(p.additionalProperty))}`, message: "is not a known property" };
    case "const":
      return { path: e.instancePath, message: `must be ${JSON.stringify(p.allowedValue)}` };
    case "enum":
      return { path: e.instancePath, message: `must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}` };
    case "pattern":
      if (String(e.schemaPath).includes("redundancy"))
        return { path: e.instancePath, message: 'must be "1:1", "2:1" or "+N" (N spare workers, e.g. "+1")' };
      return { path: e.instancePath, message: `must match ${String(p.pattern)}` };
    case "propertyNames":
      return { path: `${e.instancePath}/${escapePointer(String(p.propertyName))}`, message: "is not a valid job name (letters, digits, _ and -)" };
    default:
      return { path: e.instancePath, message: e.message ?? e.keyword };
  }
}

/** Validates a parsed strategy document. Expected failures are values, never exceptions. */
export function checkStrategy(doc: unknown): StrategyCheck {
  const errors: StrategyIssue[] = [];
  if (!validateSchema(doc)) {
    const seen = new Set<string>();
    for (const e of validateSchema.errors ?? []) {
      // propertyNames reports the name twice (the pattern and the wrapper); keep one line per path+message.
      if (e.keyword === "pattern" && e.propertyName !== undefined) continue;
      const issue = fromAjv(e);
      const key = `${issue.path} ${issue.message}`;
      if (!seen.has(key)) errors.push(issue), seen.add(key);
    }
  }
  const { errors: refErrors, warnings } = crossCheck(doc);
  errors.push(...refErrors);
  return errors.length ? { ok: false, errors } : { ok: true, strategy: doc as unknown as Strategy, warnings };
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

/** What a JSON Schema cannot say: unique pool names, rules naming pools that exist. Defensive: runs on invalid docs too. */
function crossCheck(doc: unknown): { errors: StrategyIssue[]; warnings: StrategyIssue[] } {
  const errors: StrategyIssue[] = [];
  const warnings: StrategyIssue[] = [];
  if (!isObj(doc) || !Array.isArray(doc.pools)) return { errors, warnings };
  const firstAt = new Map<string, number>();
  doc.pools.forEach((p, i) => {
    if (!isObj(p) || typeof p.name !== "string") return;
    const prev = firstAt.get(p.name);
    if (prev !== undefined) errors.push({ path: `/pools/${i}/name`, message: `duplicate pool name "${p.name}" (first at /pools/${prev})` });
    else firstAt.set(p.name, i);
  });
  const multiPool = (r: unknown, n: number, path: string) => {
    if ((r === "1:1" || r === "2:1") && n < 2) warnings.push({ path, message: `redundancy ${r} needs standbys in another pool, but only one pool is allowed: it will run degraded` });
  };
  multiPool(doc.redundancy, doc.pools.length, "/redundancy");
  if (isObj(doc.jobs))
    for (const [job, rule] of Object.entries(doc.jobs)) {
      if (!isObj(rule)) continue;
      const at = `/jobs/${escapePointer(job)}`;
      if (Array.isArray(rule.pools))
        rule.pools.forEach((name, i) => {
          if (typeof name === "string" && !firstAt.has(name)) errors.push({ path: `${at}/pools/${i}`, message: `unknown pool "${name}" (pools: ${[...firstAt.keys()].join(", ")})` });
        });
      multiPool(rule.redundancy ?? doc.redundancy, Array.isArray(rule.pools) ? rule.pools.length : doc.pools.length, at);
    }
  return { errors, warnings };
}

/** Parses and validates the text of a strategy file. */
export function checkStrategyText(text: string): StrategyCheck {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return { ok: false, errors: [{ path: "", message: `not JSON: ${(e as Error).message}` }] };
  }
  return checkStrategy(doc);
}

/** "1:1" / "2:1" / "+N" → how many standbys a job with `actives` actives keeps. */
export function standbyCount(r: Redundancy, actives: number): number {
  if (r === "1:1") return actives;
  if (r === "2:1") return Math.ceil(actives / 2);
  return Number(r.slice(1));
}

/** One line per pool and rule, for `orrery strategy check`. */
export function summarize(s: Strategy): string {
  const lines = [`strategy: ${s.pools.length} pool(s), pick ${s.pick ?? "least-loaded"}, redundancy ${s.redundancy ?? "+0"}`];
  for (const p of s.pools)
    lines.push(`  pool ${p.name}: site ${p.site}, provider ${p.provider}, cost ${p.cost}, capacity ${p.capacity}/worker${p.labels && Object.keys(p.labels).length ? `, labels ${Object.entries(p.labels).map(([k, v]) => `${k}=${v}`).join(",")}` : ""}`);
  for (const [job, r] of Object.entries(s.jobs ?? {}))
    lines.push(`  job ${job}: ${r.count ?? 1} active(s), pick ${r.pick ?? s.pick ?? "least-loaded"}, redundancy ${r.redundancy ?? s.redundancy ?? "+0"}, pools ${r.pools?.join(",") ?? "all"}`);
  return lines.join("\n");
}
