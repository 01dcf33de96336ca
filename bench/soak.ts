/**
 * `bun run bench soak [--minutes 60] [--hosts 2000] [--every 10] [--warmup-minutes M] [--flat-mib-per-h 10]
 *  [--query-every-s 10] [--seed 1] [--out DIR] [--keep]`
 *
 * A soak, not in CI and not in `bench all`: the platform as `npm run demo` runs it (the supervisor as a child process
 * with every service it starts, on free ports and a fresh data directory, as bench estate starts it) under moderate
 * load for --minutes: the simulator at its real cadence with --hosts hosts (discovery churn, metrics, simulated
 * alerts, aging), a dashboard's WebSocket client left open on /ws, and one NOC Cypher query every --query-every-s.
 * Every --every seconds it samples each service's RSS (its process tree, summed) and CPU from /proc, and the
 * topology and metrics consumers' backlogs, into samples.csv under --out (default: a new temporary directory); at the
 * end it writes summary.json there and prints it, with a markdown table on stderr.
 *
 * Per service: RSS first (at ready), at the end of the warm-up, last and peak; CPU seconds and mean cores; and the
 * RSS slope after the warm-up (least squares, MiB per hour) with its standard error. The verdict, with T =
 * --flat-mib-per-h: "flat" when slope + 2·SE ≤ T, "growing" when slope − 2·SE > T, else "inconclusive" (the run was
 * too short or too noisy to tell: a GC sawtooth swamps the slope of a few minutes). The warm-up (default a sixth of
 * the run, at most 10 minutes) leaves out converging the estate and filling caches.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { topologyFor } from "../pipelines/streams.ts";
import { NatsCredentialsFile } from "../services/shared/nats-auth.ts";
import { spawnUntilReady } from "../test/helpers/process.ts";
import { tempDir } from "../test/helpers/tmp.ts";
import { summarizeLog } from "./lib/log-summary.ts";
import { cpuSeconds, serviceOf, ServiceSampler } from "./lib/proc.ts";
import { summary } from "./lib/stats.ts";
import { WsClient } from "./lib/ws-client.ts";

const t0 = performance.now();
const step = (msg: string) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(1)} s] ${msg}\n`);
const PREFIX = "orrery";

/** One service at one sampling instant. */
export interface SoakSample {
  /** seconds since the platform was ready */
  t: number;
  service: string;
  /** processes in its tree now */
  procs: number;
  rssMiB: number;
  /** CPU seconds so far (every process it ran, restarts included) */
  cpuS: number;
}

export type Verdict = "flat" | "growing" | "inconclusive";

export interface ServiceSoak {
  service: string;
  samples: number;
  rssMiB: { first: number; afterWarmup: number; last: number; peak: number };
  /** least-squares slope of RSS after the warm-up, and its standard error, MiB per hour */
  slopeMiBPerH: number | null;
  slopeSeMiBPerH: number | null;
  verdict: Verdict;
  cpuSeconds: number;
  meanCores: number;
}

/** Least-squares slope of y over x, with its standard error (null with fewer than 3 points or no spread in x). */
export function linearSlope(points: { x: number; y: number }[]): { slope: number; se: number } | null {
  const n = points.length;
  if (n < 3) return null;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (const p of points) {
    sxx += (p.x - mx) ** 2;
    sxy += (p.x - mx) * (p.y - my);
  }
  if (sxx === 0) return null;
  const slope = sxy / sxx;
  const rss = points.reduce((a, p) => a + (p.y - my - slope * (p.x - mx)) ** 2, 0);
  return { slope, se: Math.sqrt(rss / (n - 2) / sxx) };
}

/** The verdict on a slope against the threshold, two standard errors either way (see the header). */
export function judge(slope: { slope: number; se: number } | null, flatMiBPerH: number): Verdict {
  if (!slope) return "inconclusive";
  if (slope.slope + 2 * slope.se <= flatMiBPerH) return "flat";
  if (slope.slope - 2 * slope.se > flatMiBPerH) return "growing";
  return "inconclusive";
}

/** Per service, from the samples (in time order): RSS figures, the slope after `warmupS`, the verdict, CPU. */
export function summarizeSoak(samples: SoakSample[], o: { warmupS: number; flatMiBPerH: number }): ServiceSoak[] {
  const by = new Map<string, SoakSample[]>();
  for (const s of samples) by.set(s.service, [...(by.get(s.service) ?? []), s]);
  return [...by].map(([service, xs]) => {
    const after = xs.filter((s) => s.t >= o.warmupS);
    const fit = linearSlope(after.map((s) => ({ x: s.t / 3600, y: s.rssMiB })));
    const first = xs[0]!;
    const last = xs.at(-1)!;
    const span = last.t - first.t;
    return {
      service,
      samples: xs.length,
      rssMiB: { first: first.rssMiB, afterWarmup: after[0]?.rssMiB ?? last.rssMiB, last: last.rssMiB, peak: Math.max(...xs.map((s) => s.rssMiB)) },
      slopeMiBPerH: fit ? +fit.slope.toFixed(1) : null,
      slopeSeMiBPerH: fit ? +fit.se.toFixed(1) : null,
      verdict: judge(fit, o.flatMiBPerH),
      cpuSeconds: +(last.cpuS - first.cpuS).toFixed(1),
      meanCores: span > 0 ? +((last.cpuS - first.cpuS) / span).toFixed(3) : 0,
    };
  });
}

/** Every live process's parent (zombies left out). */
function parents(): Map<number, number> {
  const out = new Map<number, number>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, "utf8");
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      if (f[0] !== "Z") out.set(Number(d), Number(f[1]));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

const rssKbOf = (pid: number) => {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
  } catch {
    return 0;
  }
};

/**
 * RSS now and CPU so far of each service under the supervisor `root`, by name (bench/lib/proc.ts's naming): a
 * service restarted under a new pid stays the same service, and the CPU of a process that ended counts as last read.
 */
class RssSampler {
  private cpu = new Map<string, Map<number, number>>();
  constructor(private readonly root: number) {}
  sample(t: number): SoakSample[] {
    const par = parents();
    const kids = (p: number) => [...par].filter(([, pp]) => pp === p).map(([c]) => c);
    const out: SoakSample[] = [];
    for (const child of kids(this.root)) {
      let cmd: string;
      try {
        cmd = readFileSync(`/proc/${child}/cmdline`, "utf8");
      } catch {
        continue;
      }
      const service = serviceOf(cmd.split("\0").filter(Boolean));
      const tree = [child];
      for (let i = 0; i < tree.length; i++) tree.push(...kids(tree[i]!));
      const cpu = this.cpu.get(service) ?? new Map<number, number>();
      this.cpu.set(service, cpu);
      let rssKb = 0;
      for (const pid of tree) {
        const c = cpuSeconds(pid);
        if (!Number.isNaN(c)) cpu.set(pid, c);
        rssKb += rssKbOf(pid);
      }
      out.push({ t, service, procs: tree.length, rssMiB: Math.round(rssKb / 1024), cpuS: +[...cpu.values()].reduce((a, b) => a + b, 0).toFixed(2) });
    }
    return out;
  }
}

/** The README's first NOC question and a count: a steady trickle of graph reads, as a NOC screen would make. */
const QUERIES = [
  "MATCH (db:Entity {kind: 'process'})-[:LISTENS]->(:Entity {kind: 'listener', port: 5432}) MATCH p = (d:Entity)-[:DEPENDS_ON*1..5]->(db) RETURN d.name AS dependant, min(length(p)) AS hops ORDER BY hops, dependant",
  "MATCH (n:Entity) RETURN n.kind AS kind, count(*) AS n",
];

async function backlogOf(jsm: JetStreamManager, stream: string, durable: string): Promise<number | null> {
  try {
    const i = await jsm.consumers.info(stream, durable);
    return i.num_pending + i.num_ack_pending;
  } catch {
    return null;
  }
}

export async function benchSoak(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      minutes: { type: "string", default: "60" },
      hosts: { type: "string", default: "2000" },
      every: { type: "string", default: "10" },
      "warmup-minutes": { type: "string" },
      "flat-mib-per-h": { type: "string", default: "10" },
      "query-every-s": { type: "string", default: "10" },
      seed: { type: "string", default: "1" },
      out: { type: "string" },
      keep: { type: "boolean", default: false },
    },
  });
  const num = (k: keyof typeof values, v: string | undefined, min: number) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${k}: a number ≥ ${min}, got "${v}"`);
    return n;
  };
  const minutes = num("minutes", values.minutes, 0.5);
  const hosts = num("hosts", values.hosts, 1);
  const everyS = num("every", values.every, 1);
  const warmupMin = values["warmup-minutes"] === undefined ? Math.min(10, minutes / 6) : num("warmup-minutes", values["warmup-minutes"], 0);
  const flatMiBPerH = num("flat-mib-per-h", values["flat-mib-per-h"], 0);
  const queryEveryS = num("query-every-s", values["query-every-s"], 1);
  if (warmupMin >= minutes) throw new Error(`--warmup-minutes (${warmupMin}) must be shorter than --minutes (${minutes})`);

  const outDir = values.out ?? mkdtempSync(join(tmpdir(), "orrery-soak-"));
  mkdirSync(outDir, { recursive: true });
  const csv = join(outDir, "samples.csv");
  writeFileSync(csv, "t_s,service,procs,rss_mib,cpu_s,topology_backlog,metrics_backlog\n");
  const tmp = tempDir("orrery-bench-soak-");
  const dataDir = join(tmp.dir, "data");
  const logFile = join(outDir, "demo.log");
  // the demo's environment on free ports and a fresh data directory, as bench estate runs it (auth off: the bench's
  // WebSocket client and queries carry no token; an outer NATS_URL / CLICKHOUSE_URL would take the embedded servers
  // out of the run)
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !["NATS_URL", "CLICKHOUSE_URL", "ORRERY_SIMULATE"].includes(k)) env[k] = v;
  Object.assign(env, { ORRERY_PREFIX: PREFIX, ORRERY_DATA_DIR: dataDir, ORRERY_NATS_PORT: "0", CLICKHOUSE_OWNER_PORT: "0", ORRERY_GATEWAY_PORT: "0", ORRERY_INGEST_PORT: "0", ORRERY_SIM_HOSTS: String(hosts), ORRERY_SIM_SEED: values.seed!, ORRERY_AUTH: "off" });

  step(`soak: ${minutes} min at ${hosts} simulated hosts, sampling every ${everyS} s, warm-up ${warmupMin.toFixed(1)} min, flat = slope + 2 SE ≤ ${flatMiBPerH} MiB/h; output ${outDir}`);
  const demo = await spawnUntilReady([process.execPath, "run", "services/supervisor/main.ts"], {
    cwd: join(import.meta.dir, ".."),
    env,
    detached: true,
    ready: /^(\{"event":"ready","service":"orrery".*)\n/m,
    timeoutMs: 300_000,
    stderrFile: logFile,
    name: "the supervisor",
  });
  try {
    await run();
  } finally {
    if (demo.proc.exitCode === null && demo.proc.signalCode === null) {
      process.kill(-demo.proc.pid, "SIGINT");
      if (!(await Promise.race([demo.proc.exited.then(() => true), Bun.sleep(30_000).then(() => false)]))) process.kill(-demo.proc.pid, "SIGKILL");
    }
    if (!values.keep) tmp.cleanup();
    else step(`kept the data directory ${tmp.dir}`);
  }

  async function run() {
    const banner = JSON.parse(demo.match[1]!) as { dashboard: string; nats: string };
    step(`ready: ${JSON.stringify(banner)}`);
    const ready = performance.now();
    const since = () => (performance.now() - ready) / 1000;
    const rss = new RssSampler(demo.proc.pid);
    // peak cores over 5 s windows and the kernel's RSS high-water marks, as bench estate reports them
    const cores = new ServiceSampler(demo.proc.pid);
    cores.start(1000);

    const credsFile = join(dataDir, "nats", "credentials.json");
    const admin = existsSync(credsFile) ? NatsCredentialsFile.parse(JSON.parse(readFileSync(credsFile, "utf8"))).admin : undefined;
    const nc = await connect({ servers: banner.nats, name: "bench-soak", ...(admin ? { user: admin.user, pass: admin.password } : {}) });
    const jsm = await jetstreamManager(nc);
    const topo = topologyFor(PREFIX);

    const wsUrl = `${banner.dashboard.replace(/^http/, "ws")}/ws`;
    const inScope = (source: string) => source.startsWith("agent:sim-");
    let ws = new WsClient(wsUrl, inScope);
    const wsCloses: string[] = [];
    const end = ready + minutes * 60_000;
    const latencies: number[] = [];
    const queryErrors = new Map<string, number>();
    const queries = (async () => {
      for (let k = 0; performance.now() < end; k++) {
        const next = performance.now() + queryEveryS * 1000;
        const t = performance.now();
        try {
          const res = await fetch(`${banner.dashboard}/api/cypher`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: QUERIES[k % QUERIES.length], params: {}, timeoutMs: 10_000 }) });
          await res.arrayBuffer();
          if (res.ok) latencies.push(performance.now() - t);
          else queryErrors.set(`HTTP ${res.status}`, (queryErrors.get(`HTTP ${res.status}`) ?? 0) + 1);
        } catch (e) {
          queryErrors.set(String(e).slice(0, 120), (queryErrors.get(String(e).slice(0, 120)) ?? 0) + 1);
        }
        await Bun.sleep(Math.max(0, Math.min(next, end) - performance.now()));
      }
    })();

    const samples: SoakSample[] = [];
    const backlogs: { t: number; topology: number | null; metrics: number | null }[] = [];
    for (let k = 0; ; k++) {
      const t = +since().toFixed(1);
      const now = rss.sample(t);
      const b = {
        t,
        topology: await backlogOf(jsm, topo.consumers.topology.stream, topo.consumers.topology.durable),
        metrics: await backlogOf(jsm, topo.consumers.metrics.stream, topo.consumers.metrics.durable),
      };
      samples.push(...now);
      backlogs.push(b);
      appendFileSync(csv, now.map((s) => `${s.t},${s.service},${s.procs},${s.rssMiB},${s.cpuS},${b.topology ?? ""},${b.metrics ?? ""}\n`).join(""));
      if (k % Math.max(1, Math.round(60 / everyS)) === 0) step(`${(t / 60).toFixed(1)} min: ${now.map((s) => `${s.service} ${s.rssMiB}`).join(", ")} MiB; backlog topology ${b.topology} metrics ${b.metrics}`);
      if (ws.stats.closed) {
        wsCloses.push(`${t} s: ${ws.stats.closed}`);
        ws = new WsClient(wsUrl, inScope);
      }
      if (demo.proc.exitCode !== null) throw new Error(`the supervisor exited (${demo.proc.exitCode}) during the soak; log: ${logFile}`);
      if (performance.now() >= end) break;
      await Bun.sleep(Math.max(0, Math.min(ready + (k + 1) * everyS * 1000, end) - performance.now()));
    }
    await queries;
    ws.close();
    await nc.close();
    cores.sample();
    cores.stop();

    step("SIGINT to the supervisor's process group");
    const stop0 = performance.now();
    process.kill(-demo.proc.pid, "SIGINT");
    const exitCode = await demo.proc.exited;
    const shutdownS = +((performance.now() - stop0) / 1000).toFixed(1);
    const log = summarizeLog(readFileSync(logFile, "utf8"));

    const services = summarizeSoak(samples, { warmupS: warmupMin * 60, flatMiBPerH });
    const usage = new Map(cores.report().map((u) => [u.name, u]));
    const tail = backlogs.filter((b) => b.t >= warmupMin * 60);
    const report = {
      bench: "soak",
      args: { minutes, hosts, everyS, warmupMinutes: +warmupMin.toFixed(2), flatMiBPerH, queryEveryS, seed: Number(values.seed) },
      machine: { cores: navigator.hardwareConcurrency, load: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ") },
      flatRule: `flat: slope + 2 SE ≤ ${flatMiBPerH} MiB/h after ${warmupMin.toFixed(1)} min of warm-up; growing: slope − 2 SE > ${flatMiBPerH}; else inconclusive`,
      services: services.map((s) => ({ ...s, peakCores: usage.get(s.service)?.peakCores ?? null, restarts: Math.max(0, (usage.get(s.service)?.pids.length ?? 1) - 1) })),
      backlog: {
        topologyMax: Math.max(0, ...tail.map((b) => b.topology ?? 0)),
        metricsMax: Math.max(0, ...tail.map((b) => b.metrics ?? 0)),
        topologyLast: tail.at(-1)?.topology ?? null,
        metricsLast: tail.at(-1)?.metrics ?? null,
      },
      queries: { ms: summary(latencies), errors: Object.fromEntries(queryErrors) },
      webSocket: { closes: wsCloses, frames: ws.stats.frames },
      log: { warnings: log.byService, top: log.top.slice(0, 5) },
      shutdown: { seconds: shutdownS, exitCode, killed: log.killed },
      files: { samples: csv, summary: join(outDir, "summary.json"), log: logFile },
    };
    writeFileSync(join(outDir, "summary.json"), JSON.stringify(report, null, 2));
    process.stderr.write(`\n${markdown(report.services)}\n${report.flatRule}\n`);
    console.log(JSON.stringify(report, null, 2));
    if (exitCode !== 0) process.exitCode = 1;
  }
}

/** The summary as a markdown table (stderr, and for docs/benchmarks.md). */
export function markdown(services: (ServiceSoak & { peakCores: number | null; restarts: number })[]): string {
  const rows = [...services].sort((a, b) => a.service.localeCompare(b.service));
  return [
    "| service | RSS first / after warm-up / last / peak (MiB) | slope after warm-up (MiB/h, ± SE) | verdict | CPU s (mean cores, peak 5 s) | restarts |",
    "|---|---|---|---|---|---|",
    ...rows.map(
      (s) =>
        `| ${s.service} | ${s.rssMiB.first} / ${s.rssMiB.afterWarmup} / ${s.rssMiB.last} / ${s.rssMiB.peak} | ${s.slopeMiBPerH ?? "—"} ± ${s.slopeSeMiBPerH ?? "—"} | ${s.verdict} | ${s.cpuSeconds} (${s.meanCores}, ${s.peakCores ?? "—"}) | ${s.restarts} |`,
    ),
  ].join("\n");
}
