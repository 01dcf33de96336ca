/**
 * Job packages: folders with a `job.json` manifest and a module. Loaded once at start from the built-in
 * services/jobs/packages/ plus any dirs in ORRERY_JOB_PACKAGES; a new package is a new folder, no core change.
 * Bad packages are reported (with the file and the JSON path of each problem) and skipped; good ones still load.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import Ajv2020, { type ValidateFunction } from "ajv/dist/2020.js";
import { JobManifest, parseDuration } from "../../pipelines/contracts/jobs.ts";
import type { JobModule } from "./sdk.ts";
import { formatIssue } from "../../pipelines/issues.ts";

export const BUILTIN_PACKAGES = resolve(import.meta.dir, "packages");

export interface JobPackage {
  manifest: JobManifest;
  dir: string;
  module: JobModule;
  validateParams: (params: unknown) => string[];
  intervalMs: number | null;
  timeoutMs: number;
}

export interface PackageProblem {
  /** the file at fault */
  file: string;
  /** "path: message" lines */
  errors: string[];
}

export class PackageError extends Error {
  override readonly name = "PackageError";
  constructor(readonly problem: PackageProblem) {
    super(`${problem.file}: ${problem.errors.join("; ")}`);
  }
}

// strict: a typo in a parameter schema (an unknown keyword, a bad type name) is an error at load, not a silent pass.
const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });

function ajvErrors(v: ValidateFunction, prefix: string): string[] {
  return (v.errors ?? []).map((e) => {
    const p = e.params as Record<string, unknown>;
    const at = e.keyword === "required" ? `${e.instancePath}/${String(p.missingProperty)}` : e.keyword === "additionalProperties" ? `${e.instancePath}/${String(p.additionalProperty)}` : e.instancePath;
    const what = e.keyword === "required" ? "is required" : e.keyword === "additionalProperties" ? "is not a known parameter" : e.message;
    return `${prefix}${at || "/"}: ${what}`;
  });
}

/** Checks a manifest (parsed JSON) and compiles its parameter schema. Pure apart from ajv's compile. */
export function checkManifest(json: unknown): { ok: true; manifest: JobManifest; validateParams: (p: unknown) => string[] } | { ok: false; errors: string[] } {
  const r = JobManifest.safeParse(json);
  if (!r.success) return { ok: false, errors: r.error.issues.map((i) => formatIssue(i)) };
  let v: ValidateFunction;
  try {
    v = ajv.compile(r.data.params);
  } catch (e) {
    return { ok: false, errors: [`params: not a valid JSON Schema: ${(e as Error).message}`] };
  }
  const validateParams = (p: unknown) => (v(p) ? [] : ajvErrors(v, "params"));
  if (r.data.schedule) {
    const bad = validateParams(r.data.schedule.params);
    if (bad.length) return { ok: false, errors: bad.map((b) => `schedule.${b}`) };
  }
  return { ok: true, manifest: r.data, validateParams };
}

/** Loads one package folder; throws PackageError with every problem found. */
export async function loadPackage(dir: string): Promise<JobPackage> {
  const file = join(dir, "job.json");
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new PackageError({ file, errors: [`(root): cannot read JSON: ${(e as Error).message}`] });
  }
  const c = checkManifest(json);
  if (!c.ok) throw new PackageError({ file, errors: c.errors });
  const entry = join(dir, c.manifest.entry);
  if (!existsSync(entry)) throw new PackageError({ file, errors: [`entry: ${c.manifest.entry} does not exist in ${dir}`] });
  let mod: Partial<JobModule>;
  try {
    mod = (await import(entry)) as Partial<JobModule>;
  } catch (e) {
    throw new PackageError({ file: entry, errors: [`(module): cannot import: ${(e as Error).message}`] });
  }
  if (typeof mod.run !== "function") throw new PackageError({ file: entry, errors: ["(module): must export a function `run(ctx)` (an async generator of items)"] });
  return {
    manifest: c.manifest,
    dir,
    module: { run: mod.run.bind(mod) },
    validateParams: c.validateParams,
    intervalMs: c.manifest.schedule ? parseDuration(c.manifest.schedule.every) : null,
    timeoutMs: parseDuration(c.manifest.timeout)!,
  };
}

/** Every package in every dir (each sub-folder holding a job.json). A name defined twice is an error for the second. */
export async function loadPackages(dirs: string[]): Promise<{ packages: Map<string, JobPackage>; problems: PackageProblem[] }> {
  const packages = new Map<string, JobPackage>();
  const problems: PackageProblem[] = [];
  for (const root of dirs) {
    if (!existsSync(root) || !statSync(root).isDirectory()) {
      problems.push({ file: root, errors: ["(dir): not a directory"] });
      continue;
    }
    for (const name of readdirSync(root).sort()) {
      const dir = join(root, name);
      if (!statSync(dir).isDirectory() || !existsSync(join(dir, "job.json"))) continue;
      try {
        const p = await loadPackage(dir);
        const prev = packages.get(p.manifest.name);
        if (prev) problems.push({ file: join(dir, "job.json"), errors: [`name: job "${p.manifest.name}" is already defined by ${prev.dir}`] });
        else packages.set(p.manifest.name, p);
      } catch (e) {
        if (e instanceof PackageError) problems.push(e.problem);
        else throw e;
      }
    }
  }
  return { packages, problems };
}
