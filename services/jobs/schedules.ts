/**
 * Schedules: which jobs run every how long, with which parameters. They come from the packages' own `schedule`
 * (manifests) and from the operator's ORRERY_JOB_SCHEDULES file, so a built-in job is scheduled with no code change:
 *
 *   { "schedules": [ { "name": "office-scan", "job": "tcp-scan", "every": "5m", "params": { "targets": ["10.0.0.0/24"], "ports": [22, 443] } } ] }
 *
 * Checked when the jobs service starts, against the loaded packages: every problem is reported with its JSON path
 * (`/schedules/0/params/ports: is required`), and nothing is scheduled from a file with errors.
 */
import { parseDuration, ScheduleFile } from "../../pipelines/contracts/jobs.ts";
import type { JobPackage } from "./packages.ts";

export interface Schedule {
  /** names the schedule (and its runs: `<name>@<slot>`); the job's name unless the file says otherwise */
  name: string;
  job: string;
  workerType: string;
  every: string;
  intervalMs: number;
  params: Record<string, unknown>;
  origin: "manifest" | "file";
}

export interface ScheduleProblem {
  /** JSON pointer into the file */
  path: string;
  message: string;
}

export type ScheduleCheck = { ok: true; schedules: Schedule[] } | { ok: false; errors: ScheduleProblem[] };

const pointer = (path: PropertyKey[]) => (path.length ? "/" + path.map((p) => String(p).replace(/~/g, "~0").replace(/\//g, "~1")).join("/") : "/");

/** The packages' own schedules (manifest `schedule`). */
export function manifestSchedules(packages: Map<string, JobPackage>): Schedule[] {
  return [...packages.values()]
    .filter((p) => p.manifest.schedule && p.intervalMs !== null)
    .map((p) => ({
      name: p.manifest.name,
      job: p.manifest.name,
      workerType: p.manifest.workerType,
      every: p.manifest.schedule!.every,
      intervalMs: p.intervalMs!,
      params: p.manifest.schedule!.params,
      origin: "manifest" as const,
    }));
}

/** Checks a schedules file (its parsed JSON) against the loaded packages. Pure. */
export function checkSchedules(json: unknown, packages: Map<string, JobPackage>): ScheduleCheck {
  const r = ScheduleFile.safeParse(json);
  if (!r.success) return { ok: false, errors: r.error.issues.map((i) => ({ path: pointer(i.path), message: i.message })) };
  const errors: ScheduleProblem[] = [];
  const schedules: Schedule[] = [];
  const firstAt = new Map<string, number>();
  r.data.schedules.forEach((e, i) => {
    const at = `/schedules/${i}`;
    const name = e.name ?? e.job;
    const prev = firstAt.get(name);
    if (prev !== undefined) errors.push({ path: `${at}/${e.name ? "name" : "job"}`, message: `duplicate schedule name "${name}" (first at /schedules/${prev}); give each schedule of the same job its own "name"` });
    else firstAt.set(name, i);
    const pkg = packages.get(e.job);
    if (!pkg) {
      errors.push({ path: `${at}/job`, message: `unknown job "${e.job}" (loaded: ${[...packages.keys()].sort().join(", ") || "none"})` });
      return;
    }
    // validateParams says "params/<instance path>: message"
    for (const bad of pkg.validateParams(e.params)) {
      const m = /^params(\S*): (.*)$/s.exec(bad);
      errors.push(m ? { path: `${at}/params${m[1] === "/" ? "" : m[1]}`, message: m[2]! } : { path: `${at}/params`, message: bad });
    }
    schedules.push({ name, job: e.job, workerType: pkg.manifest.workerType, every: e.every, intervalMs: parseDuration(e.every)!, params: e.params, origin: "file" });
  });
  return errors.length ? { ok: false, errors } : { ok: true, schedules };
}

/** Text of a schedules file → schedules; a file that is not JSON is one error at "/". */
export function checkSchedulesText(text: string, packages: Map<string, JobPackage>): ScheduleCheck {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { ok: false, errors: [{ path: "/", message: `not JSON: ${(e as Error).message}` }] };
  }
  return checkSchedules(json, packages);
}

/** Manifest schedules plus the file's; a file schedule named like a manifest one replaces it. */
export function mergeSchedules(fromManifests: Schedule[], fromFile: Schedule[]): Schedule[] {
  const names = new Set(fromFile.map((s) => s.name));
  return [...fromManifests.filter((s) => !names.has(s.name)), ...fromFile];
}
