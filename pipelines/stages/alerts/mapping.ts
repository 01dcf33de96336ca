/**
 * Mapping alerts onto the topology (pure): rules over an index built from the topology mirror's nodes, from the
 * entity an alert names to a host-level fallback.
 */
import { z } from "zod";
import type { Alert, AlertTarget } from "../../contracts/alerts.ts";
import { Port } from "../../contracts/common.ts";
import type { TopoNode } from "../../contracts/topology.ts";
import { isIp } from "./normalize.ts";

const Regex = z.string().min(1).max(1024).refine(
  (s) => {
    try {
      new RegExp(s, "i");
      return true;
    } catch {
      return false;
    }
  },
  { message: "not a valid regular expression" },
);

export const MapRule = z
  .object({
    name: z.string().min(1).max(128),
    when: z
      .object({
        /** regex (case-insensitive) on the check/service name (Nagios service description, Alertmanager alertname) */
        check: Regex.optional(),
        /** label name → regex; all must match */
        labels: z.record(z.string(), Regex).optional(),
        /** only alerts of this source */
        source: z.string().optional(),
      })
      .refine((w) => w.check || w.labels, { message: "a rule needs `check` or `labels`" }),
    to: z
      .object({
        /** the listener(s) on this port of the alert's host */
        port: Port.optional(),
        /** the process(es) of the alert's host whose name or executable matches (regex) */
        process: Regex.optional(),
        /** the alert's host itself (disk, memory, load, ping: host-level checks) */
        host: z.boolean().optional(),
        /** one topology entity by id (e.g. "service:app1:java:orders.jar:8080"): no host needed */
        entity: z.string().min(1).max(512).optional(),
        /**
         * every service with this process fingerprint (e.g. "java:orders.jar", "postgres"), on the alert's host when it
         * has one there, else on every host: places alerts that carry no host (`job="orders"`)
         */
        fingerprint: z.string().min(1).max(256).optional(),
      })
      .refine((t) => t.port !== undefined || t.process || t.host || t.entity || t.fingerprint, {
        message: "a rule maps `to` a port, a process, the host, an entity or a fingerprint",
      }),
  });
export type MapRule = z.infer<typeof MapRule>;

/** Well-known services: what a check named after them means on a host. User rules come first. */
export const DEFAULT_RULES: MapRule[] = [
  { name: "host-level", when: { check: "^(check_)?(ping|icmp|host|load|disk|swap|memory|mem|cpu|users|uptime|filesystem|node|apt|ntp|time)([_ !-]|$)|HostDown|Host.*(Disk|Memory|Cpu|Load|Filesystem)|Node(Down|Filesystem|Memory|Load|Cpu)" }, to: { host: true } },
  ...[
  ["postgresql", "postgres|pgsql|\\bpg[_ -]", 5432],
  ["mysql", "mysql|mariadb", 3306],
  ["redis", "redis", 6379],
  ["mongodb", "mongo", 27017],
  ["nats", "\\bnats\\b", 4222],
  ["clickhouse", "clickhouse", 8123],
  ["elasticsearch", "elastic|opensearch", 9200],
  ["rabbitmq", "rabbit|amqp", 5672],
  ["kafka", "kafka", 9092],
  ["memcached", "memcache", 11211],
  ["ssh", "\\bssh", 22],
  ["smtp", "smtp|postfix|\\bmail\\b", 25],
  ["dns", "\\bdns\\b|bind9?|named|unbound", 53],
  ["ldap", "ldap", 389],
  ["https", "https|\\bssl\\b|\\bcert", 443],
  ["http", "http|nginx|apache|web", 80],
  ].map(([name, check, port]) => ({ name: name as string, when: { check: check as string }, to: { port: port as number } })),
];

const regexCache = new Map<string, RegExp>();
function re(source: string): RegExp {
  let r = regexCache.get(source);
  if (!r) {
    if (regexCache.size > 10_000) regexCache.clear();
    regexCache.set(source, (r = new RegExp(source, "i")));
  }
  return r;
}

export const AlertRules = z.object({
  rules: z.array(MapRule).max(10_000).default([]),
  /** append DEFAULT_RULES after `rules` */
  useDefaultRules: z.boolean().default(true),
  /** alert host name (lower case) → topology host name or id, for names the agent does not know */
  hostAliases: z.record(z.string(), z.string()).default({}),
  /** a check named like check_tcp!5432, tcp_5432, "port 5432" → the listener on that port */
  portFromCheckName: z.boolean().default(true),
  /** a check named like a process on the host (check_procs!sshd, "nginx") → that process */
  processFromCheckName: z.boolean().default(true),
  /** a service alert nothing else maps → its host */
  fallbackToHost: z.boolean().default(true),
});
export type AlertRules = z.infer<typeof AlertRules>;
export type AlertRulesInput = z.input<typeof AlertRules>;

interface ProcRef {
  id: string;
  name: string;
  exe: string;
}
export interface TopologyIndex {
  /** every entity id (for explicit ids: the `orrery_entity` label, rules `to.entity`) */
  ids: Set<string>;
  /** process fingerprint → service ids on any host (rules `to.fingerprint`) */
  byFingerprint: Map<string, { id: string; host: string }[]>;
  hostsByName: Map<string, string>;
  hostsByIp: Map<string, string>;
  /** `${hostId}|${port}` → listener ids */
  listeners: Map<string, string[]>;
  /** host id → its processes */
  processes: Map<string, ProcRef[]>;
}

/** Builds the lookup tables mapping needs from topology nodes (a mirror's nodes). */
export function buildIndex(nodes: Iterable<TopoNode>): TopologyIndex {
  const idx: TopologyIndex = { ids: new Set(), byFingerprint: new Map(), hostsByName: new Map(), hostsByIp: new Map(), listeners: new Map(), processes: new Map() };
  const addName = (name: unknown, id: string) => {
    if (typeof name !== "string" || !name) return;
    const n = name.toLowerCase();
    if (!idx.hostsByName.has(n)) idx.hostsByName.set(n, id);
    const short = n.split(".")[0]!;
    if (short !== n && !isIp(n) && !idx.hostsByName.has(short)) idx.hostsByName.set(short, id);
  };
  for (const n of nodes) {
    idx.ids.add(n.id);
    if (n.kind === "host") {
      addName(n.id.slice("host:".length), n.id);
      addName(n.name, n.id);
      addName(n.props.hostname, n.id);
      if (typeof n.props.ips === "string") for (const ip of n.props.ips.split(",")) if (ip) idx.hostsByIp.set(ip.trim(), n.id);
    } else if (n.kind === "listener") {
      const host = n.props.host;
      const port = n.props.port;
      if (typeof host !== "string" || typeof port !== "number") continue;
      const k = `host:${host}|${port}`;
      const list = idx.listeners.get(k);
      if (list) list.push(n.id);
      else idx.listeners.set(k, [n.id]);
      // a listener bound to one specific address also tells us that address belongs to the host
      if (typeof n.props.ip === "string" && !/^(0\.0\.0\.0|::|\*)$/.test(n.props.ip) && !n.props.ip.startsWith("127.") && n.props.ip !== "::1") {
        if (!idx.hostsByIp.has(n.props.ip)) idx.hostsByIp.set(n.props.ip, `host:${host}`);
      }
    } else if (n.kind === "process") {
      const host = n.props.host;
      if (typeof host !== "string") continue;
      const exe = typeof n.props.exe === "string" ? n.props.exe.split("/").pop()! : "";
      const list = idx.processes.get(`host:${host}`);
      const ref = { id: n.id, name: n.name.toLowerCase(), exe: exe.toLowerCase() };
      if (list) list.push(ref);
      else idx.processes.set(`host:${host}`, [ref]);
      const fp = fingerprintOfServiceId(n.id, host);
      if (fp) {
        const same = idx.byFingerprint.get(fp);
        if (same) same.push({ id: n.id, host: `host:${host}` });
        else idx.byFingerprint.set(fp, [{ id: n.id, host: `host:${host}` }]);
      }
    }
  }
  return idx;
}

/** `service:<host>:<fingerprint>:<ports>` → the fingerprint (which may itself hold ':', e.g. "java:orders.jar"). */
export function fingerprintOfServiceId(id: string, host: string): string | null {
  const head = `service:${host}:`;
  if (!id.startsWith(head)) return null;
  const rest = id.slice(head.length);
  const cut = rest.lastIndexOf(":");
  return cut > 0 ? rest.slice(0, cut) : null;
}

/** The label an alert names its topology entity with, when the source knows it exactly. */
export const ENTITY_LABEL = "orrery_entity";

export interface Mapping {
  entities: string[];
  via: string;
}

/** A check name that names a port: check_tcp!5432, tcp_5432, "TCP port 5432", "port-5432", ":5432". */
export function portInCheckName(check: string): number | undefined {
  const m = /!(\d{1,5})(?:!|$)/.exec(check) ?? /(?:^|[!:_\s/-])(?:port[_\s-]?)?(\d{1,5})$/i.exec(check.trim());
  if (!m) return undefined;
  const p = Number(m[1]);
  return p > 0 && p <= 65535 ? p : undefined;
}

/** check_procs!sshd, "proc_nginx", "nginx process", "Redis" → candidate process names. */
function processWords(check: string): string[] {
  const c = check.toLowerCase().trim();
  const out = new Set<string>([c]);
  const bang = c.split("!");
  if (bang.length > 1) for (const b of bang.slice(1)) out.add(b.trim());
  out.add(c.replace(/^(check_procs?|check|procs?)[_\s!-]+/, ""));
  out.add(c.replace(/[_\s-]+(process|procs?|service|daemon)$/, ""));
  return [...out].filter(Boolean);
}

export function resolveHost(idx: TopologyIndex, rules: AlertRules, target: AlertTarget): string | undefined {
  const byName = (name: string | undefined) => {
    if (!name) return undefined;
    const n = name.toLowerCase();
    const alias = rules.hostAliases[n];
    if (alias) {
      const a = alias.toLowerCase();
      return idx.hostsByName.get(a.startsWith("host:") ? a.slice(5) : a) ?? (idx.hostsByName.has(a) ? idx.hostsByName.get(a) : undefined);
    }
    return idx.hostsByName.get(n) ?? idx.hostsByName.get(n.split(".")[0]!) ?? (isIp(n) ? idx.hostsByIp.get(n) : undefined);
  };
  return byName(target.host) ?? (target.address ? idx.hostsByIp.get(target.address) : undefined);
}

function ruleMatches(rule: MapRule, alert: Alert): boolean {
  if (rule.when.source && rule.when.source !== alert.source) return false;
  if (rule.when.check && !(alert.target.service && re(rule.when.check).test(alert.target.service))) return false;
  if (rule.when.labels) {
    for (const [k, pattern] of Object.entries(rule.when.labels)) {
      const v = alert.labels[k];
      if (v === undefined || !re(pattern).test(v)) return false;
    }
  }
  return true;
}

/**
 * Maps an alert onto topology entities: the entity its `orrery_entity` label names; else rules (user rules, then
 * DEFAULT_RULES; those on the check name only for a service/check alert) → an entity by id, the services with a
 * fingerprint (no host needed), or on its host (by name, alias or IP) the listener on a port, matching processes or
 * the host itself; then, for a service/check alert on a known host: the port the source gave
 * (Alertmanager instance="host:port"); a port in the check name; a process named like the check; the host itself.
 * Returns null when nothing names an entity and the host is not in the topology (the alert is kept as unmapped).
 */
export function mapAlert(args: { rules: AlertRules; index: TopologyIndex; alert: Alert }): Mapping | null {
  const { rules, index: idx, alert } = args;
  // the source named the entity: nothing to guess (when the graph does not have it (yet), map as usual)
  const explicit = alert.labels[ENTITY_LABEL];
  if (explicit && idx.ids.has(explicit)) return { entities: [explicit], via: `label:${ENTITY_LABEL}` };
  const host = resolveHost(idx, rules, alert.target);
  const listenersOn = (port: number) => (host ? (idx.listeners.get(`${host}|${port}`) ?? []) : []);
  const processesLike = (match: (p: ProcRef) => boolean) => (host ? (idx.processes.get(host) ?? []) : []).filter(match).map((p) => p.id);
  const all = rules.useDefaultRules ? [...rules.rules, ...DEFAULT_RULES] : rules.rules;
  const hasCheck = !!alert.target.service || alert.target.port !== undefined;
  // label-only rules apply to any alert; rules on the check name need one
  for (const r of all) {
    if (!hasCheck && r.when.check) continue;
    if (!ruleMatches(r, alert)) continue;
    if (r.to.host && host) return { entities: [host], via: `rule:${r.name}` };
    const found: string[] = [];
    if (r.to.entity && idx.ids.has(r.to.entity)) found.push(r.to.entity);
    if (r.to.fingerprint) {
      const same = idx.byFingerprint.get(r.to.fingerprint) ?? [];
      const here = host ? same.filter((s) => s.host === host) : [];
      found.push(...(here.length ? here : same).map((s) => s.id));
    }
    if (r.to.port !== undefined) found.push(...listenersOn(r.to.port));
    if (r.to.process) {
      const pr = re(r.to.process);
      found.push(...processesLike((p) => pr.test(p.name) || pr.test(p.exe)));
    }
    if (found.length) return { entities: [...new Set(found)], via: `rule:${r.name}` };
  }
  if (!host) return null;
  if (hasCheck) {
    if (alert.target.port !== undefined) {
      const l = listenersOn(alert.target.port);
      if (l.length) return { entities: l, via: "port" };
    }
    const check = alert.target.service;
    if (check && rules.portFromCheckName) {
      const p = portInCheckName(check);
      if (p !== undefined && listenersOn(p).length) return { entities: listenersOn(p), via: "port-in-check-name" };
    }
    if (check && rules.processFromCheckName) {
      const words = processWords(check);
      const procs = processesLike((p) => words.includes(p.name) || (p.exe !== "" && words.includes(p.exe)));
      if (procs.length) return { entities: procs, via: "process-name" };
    }
    if (!rules.fallbackToHost) return null;
  }
  return { entities: [host], via: hasCheck ? "host-fallback" : "host" };
}
