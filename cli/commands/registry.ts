/**
 * `orrery registry …`: the registry through the gateway (/api/registry).
 *
 *   orrery registry import components.xlsx            a dry run: every problem by row and column, nothing changed
 *   orrery registry import components.csv --apply     all or nothing: one bad row and nothing is imported
 *   orrery registry export --format xlsx -o components.xlsx
 *   orrery registry drift [--json] [--window-hours 168]
 *
 * The import shows a progress bar on a terminal (progress lines otherwise) fed by the gateway's NDJSON answer.
 * Exit codes: 0 done (a dry run without problems, an applied import), 1 problems found, refused or unreachable
 * (the reason on stderr), 2 bad arguments.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { extname } from "node:path";
import { defineCommand } from "citty";
import { Drift, ImportProgress, ImportReport } from "../../pipelines/contracts/registry.ts";
import { bearer, CliConfigError, gatewayTarget } from "../config.ts";

export interface RegistryIo {
  out: (s: string) => void;
  err: (s: string) => void;
  /** a terminal: the progress bar redraws one line; otherwise progress is a line per phase */
  tty: boolean;
  fetch: typeof fetch;
}

const stdio = (): RegistryIo => ({ out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), tty: !!process.stderr.isTTY, fetch });

const PHASE: Record<ImportProgress["phase"], string> = { parse: "reading", validate: "checking", apply: "applying" };

/** `[#######.......]  53% checking 5300/10000` */
export function progressBar(p: ImportProgress, width = 30): string {
  const share = p.total > 0 ? Math.min(1, p.done / p.total) : 1;
  const full = Math.round(share * width);
  return `[${"#".repeat(full)}${".".repeat(width - full)}] ${String(Math.round(share * 100)).padStart(3)}% ${PHASE[p.phase]} ${p.done}/${p.total}`;
}

function errorOf(status: number, text: string): string {
  try {
    const b = JSON.parse(text) as { error?: string };
    if (b.error) return `${b.error} (HTTP ${status})`;
  } catch {
    // said as text below
  }
  return `HTTP ${status}: ${text.slice(0, 300)}`;
}

export function formatReport(r: ImportReport): string {
  const lines = [`${r.rows} row(s): ${r.created} to create, ${r.updated} to update, ${r.unchanged} unchanged`];
  if (r.problems.length) {
    lines.push(`${r.problems.length + r.moreProblems} problem(s)${r.dryRun ? "" : "; nothing was imported"}:`);
    for (const p of r.problems) lines.push(`  ${p.sheet && p.sheet !== "components" ? `${p.sheet} ` : ""}row ${p.row}, ${p.column}: ${p.message}`);
    if (r.moreProblems) lines.push(`  … and ${r.moreProblems} more`);
  } else if (r.applied) lines.push(`imported (import ${r.importId}) in ${r.ms} ms`);
  else if (r.dryRun) lines.push("no problems: run again with --apply to import");
  else lines.push("nothing to change");
  return lines.join("\n") + "\n";
}

export async function runImport(o: { url: string; token?: string; file: string; format?: "csv" | "xlsx"; apply: boolean; json: boolean }, io: RegistryIo = stdio()): Promise<number> {
  const format = o.format ?? (extname(o.file).toLowerCase() === ".xlsx" ? "xlsx" : "csv");
  let data: Uint8Array<ArrayBuffer>;
  try {
    data = new Uint8Array(readFileSync(o.file));
  } catch (e) {
    io.err(`error: cannot read ${o.file}: ${(e as Error).message}\n`);
    return 2;
  }
  const q = new URLSearchParams({ format, dryRun: String(!o.apply), file: o.file.split("/").pop() ?? "" });
  const endpoint = `${o.url.replace(/\/+$/, "")}/api/registry/import?${q}`;
  let res: Response;
  try {
    res = await io.fetch(endpoint, { method: "POST", headers: { accept: "application/x-ndjson", "content-type": format === "csv" ? "text/csv" : "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ...bearer(o.token) }, body: data });
  } catch (e) {
    io.err(`error: cannot reach the gateway at ${endpoint}: ${(e as Error).message}\n`);
    return 1;
  }
  if (!res.ok || !(res.headers.get("content-type") ?? "").includes("ndjson")) {
    io.err(`error: ${errorOf(res.status, await res.text())}\n`);
    return 1;
  }
  let report: ImportReport | undefined;
  let shownPhase = "";
  const draw = (p: ImportProgress) => {
    if (o.json) return;
    if (io.tty) io.err(`\r${progressBar(p)}`);
    else if (p.phase !== shownPhase || p.done === p.total) io.err(`${progressBar(p)}\n`);
    shownPhase = p.phase;
  };
  let buf = "";
  const dec = new TextDecoder();
  const handle = (line: string): number | undefined => {
    if (!line.trim()) return undefined;
    const m = JSON.parse(line) as { progress?: unknown; report?: unknown; error?: string; status?: number };
    if (m.progress) {
      const p = ImportProgress.safeParse(m.progress);
      if (p.success) draw(p.data);
    } else if (m.report) report = ImportReport.parse(m.report);
    else if (m.error) {
      if (io.tty && shownPhase) io.err("\n");
      io.err(`error: ${m.error}${m.status ? ` (HTTP ${m.status})` : ""}\n`);
      return 1;
    }
    return undefined;
  };
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += dec.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const code = handle(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      if (code !== undefined) return code;
    }
  }
  const code = handle(buf);
  if (code !== undefined) return code;
  if (io.tty && shownPhase && !o.json) io.err("\n");
  if (!report) {
    io.err("error: the gateway's answer ended without a report\n");
    return 1;
  }
  io.out(o.json ? JSON.stringify(report, null, 2) + "\n" : formatReport(report));
  return report.problems.length ? 1 : 0;
}

export async function runExport(o: { url: string; token?: string; format: "csv" | "xlsx"; output?: string }, io: RegistryIo = stdio()): Promise<number> {
  const endpoint = `${o.url.replace(/\/+$/, "")}/api/registry/export?format=${o.format}`;
  let res: Response;
  try {
    res = await io.fetch(endpoint, { headers: bearer(o.token), signal: AbortSignal.timeout(120_000) });
  } catch (e) {
    io.err(`error: cannot reach the gateway at ${endpoint}: ${(e as Error).message}\n`);
    return 1;
  }
  if (!res.ok) {
    io.err(`error: ${errorOf(res.status, await res.text())}\n`);
    return 1;
  }
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (o.output) {
    writeFileSync(o.output, bytes);
    io.err(`wrote ${o.output} (${bytes.byteLength} bytes)\n`);
  } else if (o.format === "xlsx") {
    io.err("error: an XLSX export needs --output <file>\n");
    return 2;
  } else io.out(new TextDecoder().decode(bytes));
  return 0;
}

export function formatDrift(d: Drift): string {
  const lines: string[] = [];
  const section = (title: string, items: string[]) => {
    lines.push(`${title}: ${items.length}`);
    for (const i of items.slice(0, 50)) lines.push(`  ${i}`);
    if (items.length > 50) lines.push(`  … and ${items.length - 50} more`);
  };
  section("declared but not seen", d.declaredNotSeen.map((p) => `${p.from} → ${p.to}`));
  section("seen but not declared", d.seenNotDeclared.map((p) => `${p.from} → ${p.to} (${p.edges} edge${p.edges === 1 ? "" : "s"})`));
  section("components with no running instance", d.notRunning);
  section("running services with no component", d.unregistered.map((u) => `${u.name} on ${u.host} (${u.id})`));
  return lines.join("\n") + "\n";
}

export async function runDrift(o: { url: string; token?: string; json: boolean; windowHours?: number }, io: RegistryIo = stdio()): Promise<number> {
  const q = o.windowHours ? `?windowMs=${Math.round(o.windowHours * 3_600_000)}` : "";
  const endpoint = `${o.url.replace(/\/+$/, "")}/api/registry/drift${q}`;
  let res: Response;
  try {
    res = await io.fetch(endpoint, { headers: bearer(o.token), signal: AbortSignal.timeout(30_000) });
  } catch (e) {
    io.err(`error: cannot reach the gateway at ${endpoint}: ${(e as Error).message}\n`);
    return 1;
  }
  const text = await res.text();
  if (!res.ok) {
    io.err(`error: ${errorOf(res.status, text)}\n`);
    return 1;
  }
  const d = Drift.parse(JSON.parse(text));
  io.out(o.json ? JSON.stringify(d, null, 2) + "\n" : formatDrift(d));
  return 0;
}

const common = {
  url: { type: "string", description: "gateway base URL (env ORRERY_URL, the config file, default http://127.0.0.1:7070)" },
  token: { type: "string", description: "API token (env ORRERY_TOKEN, or the config file `orrery login` writes)" },
} as const;

/** the target, or exit code 2 with the reason */
function target(args: { url?: string; token?: string }): { url: string; token?: string } | null {
  try {
    return gatewayTarget({ url: args.url, token: args.token });
  } catch (e) {
    if (!(e instanceof CliConfigError)) throw e;
    process.stderr.write(`error: ${e.message}\n`);
    process.exitCode = 2;
    return null;
  }
}

function formatArg(v: string | undefined): "csv" | "xlsx" | undefined | null {
  if (v === undefined || v === "") return undefined;
  if (v === "csv" || v === "xlsx") return v;
  process.stderr.write(`error: --format must be csv or xlsx (got "${v}")\n`);
  process.exitCode = 2;
  return null;
}

export const registry = defineCommand({
  meta: { name: "registry", description: "The component registry: import, export, drift" },
  subCommands: {
    import: defineCommand({
      meta: { name: "import", description: "Import components from CSV or XLSX (a dry run unless --apply)" },
      args: {
        file: { type: "positional", description: "the .csv or .xlsx file", required: true },
        apply: { type: "boolean", description: "import for real (all or nothing)", default: false },
        format: { type: "string", description: "csv or xlsx (default: from the file's extension)" },
        json: { type: "boolean", description: "print the report as JSON", default: false },
        ...common,
      },
      async run({ args }) {
        const t = target(args);
        const format = formatArg(args.format);
        if (!t || format === null) return;
        process.exitCode = await runImport({ ...t, file: String(args.file), format, apply: Boolean(args.apply), json: Boolean(args.json) });
      },
    }),
    export: defineCommand({
      meta: { name: "export", description: "Export components and declared dependencies" },
      args: {
        format: { type: "string", description: "csv (default) or xlsx" },
        output: { type: "string", alias: "o", description: "write to this file (CSV goes to stdout without it)" },
        ...common,
      },
      async run({ args }) {
        const t = target(args);
        const format = formatArg(args.format);
        if (!t || format === null) return;
        process.exitCode = await runExport({ ...t, format: format ?? (args.output?.toLowerCase().endsWith(".xlsx") ? "xlsx" : "csv"), output: args.output });
      },
    }),
    drift: defineCommand({
      meta: { name: "drift", description: "Declared vs discovered: unseen and undeclared dependencies, components not running, services not registered" },
      args: {
        json: { type: "boolean", description: "print as JSON", default: false },
        "window-hours": { type: "string", description: "a declared dependency counts as seen within this many hours (default 168)" },
        ...common,
      },
      async run({ args }) {
        const t = target(args);
        if (!t) return;
        const w = args["window-hours"] === undefined ? undefined : Number(args["window-hours"]);
        if (w !== undefined && !(w > 0)) {
          process.stderr.write(`error: --window-hours must be a positive number (got "${args["window-hours"]}")\n`);
          process.exitCode = 2;
          return;
        }
        process.exitCode = await runDrift({ ...t, json: Boolean(args.json), windowHours: w });
      },
    }),
  },
});
