/**
 * `bun run bench [name]` — benchmarks that report a ratio to the raw limit of what the stage wraps, measured in the
 * same run on the same machine (these 2-core machines are noisy; absolute numbers move).
 *   pipeline  discovery events through JetStream → topology stage → Kuzu → delta stream, vs raw JetStream
 *   discovery a simulated estate (10k hosts) converging and churning through the topology service, vs raw JetStream
 *   metrics   samples through JetStream → metrics service → ClickHouse owner (with rollups), vs raw inserts
 *   graph     100k nodes / 300k edges: write vs raw Kuzu, impact p50/p99, history state-at-T, topology service RSS
 *   jobs      job runs through the work queue and a worker, vs raw WorkQueue publish + pull + ack; placement timing
 *   alerts    alert POSTed to ingest → health frame on the gateway WebSocket, p50/p99 at 10k events/s (`alerts --help`)
 *   estate    the platform as `npm run demo` runs it (supervisor, simulator with aging, gateway, a WebSocket client) at
 *             --hosts simulated hosts: converge to the ground truth, churn, NOC queries, snapshot time, RSS/CPU, shutdown
 *   all       every bench but store-ab, one at a time, into one markdown table (docs/bench-table.md; `all --quick` for
 *             small sizes, `--only a,b`)
 *   kuzu-strings  raw Kuzu: a string property changed in place and checkpointed, vs deleted and created (not in `all`)
 *   store-ab  this tree's Kuzu adapter against another checkout's (--baseline <dir>) on discovery's churn change sets,
 *             alternating in one process
 */
import { benchMetrics } from "./metrics.ts";
import { benchDiscovery } from "./discovery.ts";
import { benchPipeline } from "./pipeline.ts";
import { benchJobs } from "./jobs.ts";
import { benchGraph } from "./graph.ts";
import { benchAlerts } from "./alerts.ts";
import { benchEstate } from "./estate.ts";
import { benchStoreAb } from "./store-ab.ts";

const benches: Record<string, (args: string[]) => Promise<void>> = { pipeline: benchPipeline, metrics: benchMetrics, discovery: benchDiscovery, jobs: benchJobs, graph: benchGraph, alerts: benchAlerts, estate: benchEstate, "store-ab": benchStoreAb };
benches.dashboard = (args) => import("./dashboard.ts").then((m) => m.benchDashboard(args));
benches.views = (args) => import("./views.ts").then((m) => m.benchViews(args)); // levels of detail on the gateway, vs one raw pass
benches.registry = (args) => import("./registry.ts").then((m) => m.benchRegistry(args)); // a 10k-row import through the registry service, vs parsing the file
benches.exporters = (args) => import("./exporters.ts").then((m) => m.benchExporters(args)); // entities through an ITSM exporter to a local receiver, vs raw JetStream consume
benches.soak = (args) => import("./soak.ts").then((m) => m.benchSoak(args)); // not in CI or `all`: an hour of the demo under moderate load, RSS/CPU per service, flat or not
benches["kuzu-strings"] = (args) => import("./kuzu-strings.ts").then((m) => m.benchKuzuStrings(args)); // not in CI or `all`: raw Kuzu, string updates in place + checkpoints vs delete-and-create
benches.all = (args) => import("./all.ts").then((m) => m.benchAll(args)); // every bench in turn, one markdown table
const [name = "pipeline", ...rest] = process.argv.slice(2);
const run = benches[name];
if (!run) {
  console.error(`unknown bench "${name}"; available: ${Object.keys(benches).join(", ")}`);
  process.exit(2);
}
await run(rest);
// a bench that sets process.exitCode (a failed check) exits with it
process.exit(process.exitCode ?? 0);
