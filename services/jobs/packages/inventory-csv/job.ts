/** Static inventory import: CSV rows → host.seen + listener.seen, one full item per host. */
import { readFile } from "node:fs/promises";
import { parseInventory } from "../../inventory.ts";
import type { JobContext, JobItem } from "../../sdk.ts";

export async function* run(ctx: JobContext<{ path?: string; csv?: string }>): AsyncGenerator<JobItem> {
  const text = ctx.params.csv ?? (await readFile(ctx.params.path!, "utf8"));
  for (const h of parseInventory(text)) {
    yield {
      key: h.host,
      host: h.host,
      full: true,
      events: [
        { type: "host.seen", hostname: h.host, os: h.os, kernel: "", cpus: 0, memTotalBytes: 0, ips: h.ips },
        ...h.ports.map((p) => ({ type: "listener.seen" as const, proto: p.proto, ip: h.ips[0] ?? "0.0.0.0", port: p.port, process: null })),
      ],
    };
  }
}
