/** TCP connect scan: one item per host, the full set of its open ports (what closed since the last run goes). */
import { listenerId } from "../../../../pipelines/stages/topology/ids.ts";
import { expandPorts, expandTargets, tcpConnect } from "../../net.ts";
import { mapLimit } from "../../sdk.ts";
import type { JobContext, JobItem } from "../../sdk.ts";

interface Params {
  targets: string[];
  ports: (number | string)[];
  timeoutMs?: number;
  concurrency?: number;
  maxHosts?: number;
}

export async function* run(ctx: JobContext<Params>): AsyncGenerator<JobItem> {
  const hosts = expandTargets(ctx.params.targets, ctx.params.maxHosts ?? 1024);
  const ports = expandPorts(ctx.params.ports);
  for (const host of hosts) {
    if (ctx.signal.aborted) return;
    const results = await mapLimit(ports, ctx.params.concurrency ?? 128, ctx.signal, async (port) => ({ port, r: await tcpConnect(host, port, ctx.params.timeoutMs ?? 1000) }));
    const open = results.filter((x) => x?.r.open) as { port: number; r: { open: true; ms: number; ip: string } }[];
    const at = Date.now();
    yield {
      key: host,
      host,
      full: true,
      events: open.map(({ port, r }) => ({ type: "listener.seen" as const, proto: "tcp" as const, ip: r.ip, port, process: null })),
      samples: open.map(({ port, r }) => ({ entity: listenerId(host, "tcp", r.ip, port), metric: "tcp_connect_ms", ts: at, value: Math.round(r.ms * 1000) / 1000, labels: { job: "tcp-scan" } })),
    };
  }
}
