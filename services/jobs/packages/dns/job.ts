/**
 * DNS lookups (the system resolver, as the services themselves resolve): one item per name, one per address asked
 * for by PTR. Each resolved address is a `name.seen` event, so a connection to that IP shows the DNS name. Each item
 * is the full state of its source (job:dns:<name>): a name that stops resolving to an address drops that pair. A
 * failed lookup reports only dns_up 0 (no events), so a resolver hiccup does not erase names; aging does, later.
 */
import { lookup, lookupService } from "node:dns/promises";
import { isIP } from "node:net";
import type { NameSeen } from "../../../../pipelines/contracts/discovery.ts";
import { JobInputError, mapLimit, type JobContext, type JobItem } from "../../sdk.ts";

interface Params {
  names?: string[];
  addresses?: string[];
  reverse?: boolean;
  announceHosts?: boolean;
  concurrency?: number;
}

const ms = (t0: number) => Math.round((performance.now() - t0) * 1000) / 1000;

/** The PTR name of an address (getnameinfo: /etc/hosts, then DNS), or null when it has none. */
async function ptr(ip: string): Promise<string | null> {
  try {
    const { hostname } = await lookupService(ip, 0);
    return hostname && hostname !== ip && !isIP(hostname) ? hostname : null;
  } catch {
    return null;
  }
}

async function forward(ctx: JobContext<Params>, name: string): Promise<JobItem> {
  const t0 = performance.now();
  const entity = `host:${name}`;
  try {
    const addrs = [...new Set((await lookup(name, { all: true })).map((a) => a.address))].sort();
    const lookupMs = ms(t0);
    const events: (NameSeen | { type: "host.seen"; hostname: string; os: string; kernel: string; cpus: number; memTotalBytes: number; ips: string[] })[] = addrs.map((ip) => ({ type: "name.seen" as const, ip, name }));
    if (ctx.params.reverse)
      for (const ip of addrs) {
        const p = await ptr(ip);
        if (p && p !== name) events.push({ type: "name.seen", ip, name: p });
      }
    // a host node named by DNS, claiming no addresses (the hosts that have them say so themselves)
    if (ctx.params.announceHosts) events.unshift({ type: "host.seen", hostname: name, os: "", kernel: "", cpus: 0, memTotalBytes: 0, ips: [] });
    const ts = Date.now();
    const labels = { name, addresses: addrs.join(",").slice(0, 4000) };
    return {
      key: name,
      host: name,
      full: true,
      events,
      samples: [
        { entity, metric: "dns_up", ts, value: 1, labels },
        { entity, metric: "dns_lookup_ms", ts, value: lookupMs, labels },
        { entity, metric: "dns_addresses", ts, value: addrs.length, labels },
      ],
    };
  } catch (e) {
    return { key: name, samples: [{ entity, metric: "dns_up", ts: Date.now(), value: 0, labels: { name, error: String((e as Error).message).slice(0, 200) } }] };
  }
}

async function reverseOf(ip: string): Promise<JobItem> {
  const t0 = performance.now();
  const entity = `host:${ip}`;
  const name = await ptr(ip);
  const labels = { address: ip, kind: "ptr", name: name ?? "" };
  const samples = [
    { entity, metric: "dns_up", ts: Date.now(), value: name ? 1 : 0, labels },
    { entity, metric: "dns_lookup_ms", ts: Date.now(), value: ms(t0), labels },
  ];
  return name ? { key: `ptr:${ip}`, host: ip, full: true, events: [{ type: "name.seen", ip, name }], samples } : { key: `ptr:${ip}`, samples };
}

export async function* run(ctx: JobContext<Params>): AsyncGenerator<JobItem> {
  const names = [...new Set(ctx.params.names ?? [])];
  const addresses = [...new Set(ctx.params.addresses ?? [])];
  const bad = addresses.filter((a) => !isIP(a));
  if (bad.length) throw new JobInputError(`addresses: ${bad.slice(0, 5).map((a) => `"${a}"`).join(", ")} ${bad.length > 1 ? "are not IP addresses" : "is not an IP address"}`);
  const limit = ctx.params.concurrency ?? 32;
  for (const item of await mapLimit(names, limit, ctx.signal, (n) => forward(ctx, n))) if (item) yield item;
  for (const item of await mapLimit(addresses, limit, ctx.signal, reverseOf)) if (item) yield item;
}
