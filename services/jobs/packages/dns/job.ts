/** DNS lookups (the system resolver, as the services themselves resolve): one item per name. */
import { lookup } from "node:dns/promises";
import { mapLimit, type JobContext, type JobItem } from "../../sdk.ts";

interface Params {
  names: string[];
  announceHosts?: boolean;
  concurrency?: number;
}

export async function* run(ctx: JobContext<Params>): AsyncGenerator<JobItem> {
  const names = [...new Set(ctx.params.names)];
  const items = await mapLimit(names, ctx.params.concurrency ?? 32, ctx.signal, async (name): Promise<JobItem> => {
    const t0 = performance.now();
    const entity = `host:${name}`;
    try {
      const addrs = [...new Set((await lookup(name, { all: true })).map((a) => a.address))].sort();
      const ms = Math.round((performance.now() - t0) * 1000) / 1000;
      const ts = Date.now();
      const labels = { name, addresses: addrs.join(",").slice(0, 4000) };
      return {
        key: name,
        ...(ctx.params.announceHosts
          ? { host: name, full: false, events: [{ type: "host.seen" as const, hostname: name, os: "", kernel: "", cpus: 0, memTotalBytes: 0, ips: addrs }] }
          : {}),
        samples: [
          { entity, metric: "dns_up", ts, value: 1, labels },
          { entity, metric: "dns_lookup_ms", ts, value: ms, labels },
          { entity, metric: "dns_addresses", ts, value: addrs.length, labels },
        ],
      };
    } catch (e) {
      return { key: name, samples: [{ entity, metric: "dns_up", ts: Date.now(), value: 0, labels: { name, error: String((e as Error).message).slice(0, 200) } }] };
    }
  });
  for (const item of items) if (item) yield item;
}
