/**
 * `bun run bench [name]` — benchmarks that report a ratio to the raw limit of what the stage wraps, measured in the
 * same run on the same machine (these 2-core machines are noisy; absolute numbers move).
 *   pipeline  discovery events through JetStream → topology stage → Kuzu → delta stream, vs raw JetStream
 */
import { benchPipeline } from "./pipeline.ts";

const benches: Record<string, (args: string[]) => Promise<void>> = { pipeline: benchPipeline };
const [name = "pipeline", ...rest] = process.argv.slice(2);
const run = benches[name];
if (!run) {
  console.error(`unknown bench "${name}"; available: ${Object.keys(benches).join(", ")}`);
  process.exit(2);
}
await run(rest);
process.exit(0);
