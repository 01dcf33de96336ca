/**
 * Names people use, from topology nodes (see pipelines/stages/topology/identity.ts for how fingerprints are made):
 * a service is `orders` (not `image:registry.example/orders`) on its host, a host its hostname, an external its DNS
 * name when a resolver gave one. And the keys hosts are grouped by when nobody annotated them (tier from the host's
 * name: `sim-app-3` → `app`).
 */
import type { TopoNode } from "../../contracts/topology.ts";

/** Script and archive extensions dropped from an interpreter's fingerprint (`java:orders.jar` → `orders`). */
const EXT = /\.(jar|war|ear|py|pyc|js|mjs|cjs|ts|rb|pl|php|sh|exe|dll)$/;
/** A script named like every other one (`api/main.ts`): its folder names it. */
const GENERIC = /^(main|index|app|server|__main__)$/;

/**
 * The short name of a service fingerprint: an image's last path segment (`image:registry.example/orders` → `orders`),
 * an interpreter's script or module (`python3:celery` → `celery`, `bun:api/main.ts` → `api`, `java:kafka.Kafka` → `Kafka`),
 * else the executable (without a `-server` suffix: `redis-server` → `redis`).
 */
export function shortServiceName(fp: string): string {
  if (fp.startsWith("image:")) {
    const repo = fp.slice(6);
    return repo.slice(repo.lastIndexOf("/") + 1) || repo;
  }
  const colon = fp.indexOf(":");
  // `redis-server` is what runs, `redis` what people call it
  if (colon < 0) return fp.replace(/-server$/, "") || fp;
  const target = fp.slice(colon + 1);
  if (target === "inline") return fp.slice(0, colon);
  const parts = target.split("/").filter(Boolean);
  let last = (parts.pop() ?? target).replace(EXT, "");
  if (GENERIC.test(last) && parts.length) last = parts.pop()!;
  // a JVM main class: its simple name (`kafka.Kafka` → `Kafka`)
  if (!EXT.test(target) && /^[\w$]+(\.[\w$]+)+$/.test(last)) last = last.slice(last.lastIndexOf(".") + 1);
  return last || fp;
}

/** A label and sublabel for a node (`orders` / `on sim-app-3`); `hostName` names the host a node runs on. */
export function nodeLabel(n: TopoNode, hostName: (n: TopoNode) => string | undefined): { label: string; sublabel?: string } {
  const onHost = () => {
    const name = hostName(n);
    return name ? `on ${name}` : undefined;
  };
  switch (n.kind) {
    case "host":
      return { label: n.name };
    case "process": {
      const fp = typeof n.props.service === "string" ? n.props.service : n.name;
      return { label: shortServiceName(fp), sublabel: onHost() };
    }
    case "listener":
      return { label: n.name, sublabel: onHost() };
    case "external":
      return { label: typeof n.props.dnsName === "string" && typeof n.props.port === "number" ? `${n.props.dnsName}:${n.props.port}` : n.name };
  }
}

const TIER_TOKEN = /^[a-z][a-z-]*?(?=\d*$)/i;

/**
 * A host's tier: its `tier` or `role` prop (an annotation) when set, else guessed from its name: the last word before
 * the trailing numbers (`sim-app-3` → `app`, `sim-app-3-r2` → `app`, `web01` → `web`, `db.example.com` → `db`).
 */
export function tierOf(host: TopoNode): string {
  const p = host.props.tier ?? host.props.role;
  if (typeof p === "string" && p) return p;
  const first = (host.name.split(".")[0] ?? host.name).toLowerCase();
  const tokens = first.split(/[-_]/).filter(Boolean);
  while (tokens.length > 1 && /^(\d+|r\d+)$/.test(tokens[tokens.length - 1]!)) tokens.pop();
  const last = tokens[tokens.length - 1] ?? first;
  const m = TIER_TOKEN.exec(last);
  return (m?.[0] || last || "unknown").replace(/-$/, "");
}

/** A host's site: its `site`, `datacenter`, `dc`, `region` or `zone` prop when present. */
export function siteOf(host: TopoNode | undefined): string {
  for (const k of ["site", "datacenter", "dc", "region", "zone"]) {
    const v = host?.props[k];
    if (typeof v === "string" && v) return v;
  }
  return "unknown";
}

export const strProp = (n: TopoNode | undefined, k: string): string | undefined => {
  const v = n?.props[k];
  return typeof v === "string" && v ? v : undefined;
};
