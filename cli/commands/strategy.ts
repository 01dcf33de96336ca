/**
 * `orrery strategy check FILE` — validates a placement strategy file against the JSON Schema that ships with Orrery
 * (deploy/strategy.schema.json) and its cross-references. Prints every error with its JSON path; exit 1 on errors,
 * 0 with a summary when valid (warnings, e.g. 1:1 with a single pool, are printed but do not fail).
 */
import { readFileSync } from "node:fs";
import { defineCommand, runMain } from "citty";
import { checkStrategyText, summarize } from "../../pipelines/strategy/schema.ts";

export interface CheckIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** The command's logic: returns the exit code. */
export function runStrategyCheck(file: string, io: CheckIo): number {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    io.err(`${file}: cannot read: ${(e as Error).message}`);
    return 1;
  }
  const r = checkStrategyText(text);
  if (!r.ok) {
    for (const e of r.errors) io.err(`${file}: ${e.path || "/"}: ${e.message}`);
    io.err(`${file}: ${r.errors.length} error(s)`);
    return 1;
  }
  for (const w of r.warnings) io.err(`${file}: warning: ${w.path || "/"}: ${w.message}`);
  io.out(`${file}: valid\n${summarize(r.strategy)}`);
  return 0;
}

const check = defineCommand({
  meta: { name: "check", description: "Validate a placement strategy file; print every error with its JSON path" },
  args: { file: { type: "positional", required: true, description: "strategy JSON file" } },
  run({ args }) {
    process.exitCode = runStrategyCheck(String(args.file), { out: (s) => console.log(s), err: (s) => console.error(s) });
  },
});

export const strategy = defineCommand({
  meta: { name: "strategy", description: "Placement strategy files (pools, pick, redundancy)" },
  subCommands: { check },
});

if (import.meta.main) await runMain(strategy);
