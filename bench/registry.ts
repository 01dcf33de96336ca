/**
 * `bun run bench registry [--rows N] [--format csv|xlsx]` — an import of N components (default 10 000, each with
 * owners, tags, a match rule and a declared dependency) through the registry service's request/reply on a real
 * nats-server: a dry run, then the all-or-nothing apply (events in parts and a commit on the REGISTRY stream, folded
 * back), then a replay of the stream by a new process and an export. Beside it, in the same run, the raw cost of only
 * parsing the same file into rows (CSV: the parser; XLSX: exceljs loading the workbook), which every import pays.
 */
import { parseArgs } from "node:util";
import type { Caller, ImportReport } from "../pipelines/contracts/registry.ts";
import { callRegistry } from "../services/registry/client.ts";
import { readSheets, writeCsv, writeXlsx } from "../services/registry/files.ts";
import { Registry } from "../services/registry/registry.ts";
import { serveRegistry } from "../services/registry/service.ts";
import { JetStreamRegistryLog } from "../services/registry/store.ts";
import { connectBus } from "../services/shared/bus.ts";
import { makeLogger } from "../services/shared/log.ts";
import { startNats } from "../test/helpers/nats.ts";
import { uniquePrefix } from "../test/helpers/tmp.ts";

const admin: Caller = { login: "bench", role: "admin", groups: [] };

export function benchRows(n: number): string[][] {
  const rows = [["name", "category", "description", "language", "lifecycle", "tags", "owners", "maintainers", "repo", "depends_on", "match"]];
  for (let i = 0; i < n; i++)
    rows.push([
      `svc-${i}`,
      i % 5 === 0 ? "database" : "service",
      `Component ${i}: takes part in order flow ${i % 97}`,
      ["java", "go", "python", "typescript"][i % 4]!,
      ["new", "mature", "legacy"][i % 3]!,
      `team-${i % 40};tier-${i % 3}`,
      `group:team-${i % 40};user:owner${i % 300}`,
      `user:dev${i % 700}`,
      `https://git.example/svc-${i}`,
      i > 0 ? `svc-${Math.floor(i / 2)}` : "",
      `fingerprint=java:svc-${i}.jar;host=app-${i % 50}-*&port=${8000 + (i % 1000)}`,
    ]);
  return rows;
}

const ms = (t0: number) => Math.round(performance.now() - t0);

export async function benchRegistry(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { rows: { type: "string", default: "10000" }, format: { type: "string", default: "csv" } } });
  const n = Number(values.rows);
  const format = values.format === "xlsx" ? "xlsx" : "csv";
  const rows = benchRows(n);
  const file = format === "csv" ? new TextEncoder().encode(writeCsv(rows)) : await writeXlsx([{ name: "components", rows }]);

  // raw: only turning the file's bytes into rows, best of 3
  let raw = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const sheets = await readSheets(format, file);
    if (sheets[0]!.rows.length !== n + 1) throw new Error("raw parse lost rows");
    raw = Math.min(raw, performance.now() - t0);
  }

  const nats = await startNats();
  const log = makeLogger("bench", true);
  try {
    const prefix = uniquePrefix("regbench");
    const bus = await connectBus({ url: nats.url, prefix, name: "bench-registry" });
    const store = await JetStreamRegistryLog.open(bus, log);
    const registry = new Registry({ log: store });
    const server = serveRegistry(bus, registry, log);
    const base64 = Buffer.from(file).toString("base64");

    let t0 = performance.now();
    const dry = await callRegistry<ImportReport>(bus, "import", admin, { format, base64, dryRun: true }, { idleTimeoutMs: 120_000 });
    const dryMs = ms(t0);
    if (dry.problems.length) throw new Error(`bench file has problems: ${JSON.stringify(dry.problems.slice(0, 3))}`);
    t0 = performance.now();
    const applied = await callRegistry<ImportReport>(bus, "import", admin, { format, base64, dryRun: false }, { idleTimeoutMs: 120_000 });
    const applyMs = ms(t0);
    if (!applied.applied || store.state.components.size !== n) throw new Error(`import did not apply: ${JSON.stringify({ ...applied, problems: applied.problems.length })}`);

    // a second process's start: the stream replayed into the same state
    const bus2 = await connectBus({ url: nats.url, prefix, name: "bench-registry-replay" });
    t0 = performance.now();
    const replay = await JetStreamRegistryLog.open(bus2, log);
    const replayMs = ms(t0);
    if (replay.state.components.size !== n) throw new Error("replay lost components");
    t0 = performance.now();
    const exported = await callRegistry<{ base64: string }>(bus, "export", admin, { format }, { idleTimeoutMs: 120_000 });
    const exportMs = ms(t0);

    const rate = (m: number) => Math.round(n / (m / 1000));
    console.log(
      JSON.stringify({
        bench: "registry",
        rows: n,
        format,
        fileBytes: file.byteLength,
        rawParseMs: Math.round(raw),
        dryRunMs: dryMs,
        applyMs,
        applyRowsPerS: rate(applyMs),
        replayMs,
        exportMs,
        exportBytes: Buffer.from(exported.base64, "base64").byteLength,
        // what an import costs beyond reading its file
        applyVsRawParse: +(applyMs / raw).toFixed(1),
      }),
    );
    await replay.close();
    await bus2.close();
    await server.stop();
    await store.close();
    await bus.close();
  } finally {
    await nats.stop();
  }
}
