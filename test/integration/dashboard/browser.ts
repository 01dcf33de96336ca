/** Shared by the dashboard's browser tests: the built page (rebuilt when older than its sources) and where screenshots go. */
import { existsSync, readdirSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../../..");
export const DIST = join(ROOT, "dashboard", "dist");
/** Screenshots of each main view, kept after the run to be looked at. */
export const SHOTS = join(tmpdir(), "orrery-dashboard-shots");

/** A build older than its sources (or than the shared contracts it bundles) is rebuilt, so the test sees this code. */
export function buildIfStale(): void {
  let newest = 0;
  for (const d of [join(ROOT, "dashboard", "src"), join(ROOT, "pipelines", "contracts")]) {
    for (const e of readdirSync(d, { recursive: true, withFileTypes: true })) if (e.isFile()) newest = Math.max(newest, statSync(join(e.parentPath, e.name)).mtimeMs);
  }
  if (!existsSync(join(DIST, "index.html")) || newest > statSync(join(DIST, "index.html")).mtimeMs) {
    const r = Bun.spawnSync([join(ROOT, "node_modules/.bin/vite"), "build"], { cwd: join(ROOT, "dashboard"), stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`dashboard build failed: ${r.stderr.toString()}`);
  }
}
