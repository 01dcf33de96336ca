/**
 * Inventory CSV → hosts (pure). CSV is parsed by d3-dsv's csvParse (RFC 4180: quoted fields, embedded commas,
 * quotes and newlines, CRLF). Every bad cell is reported with its line and column; a file with errors imports nothing.
 *
 * Columns (case-insensitive; only `host` is required): host, ips (';'-separated), os, owner, team, ports. A port is
 * `443`, `53/udp`, and may name the owner of the service listening there: `5432@dba-team`, `8080/tcp@orders`.
 */
import { csvParse } from "d3-dsv";
import type { DiscoveryEvent } from "../../pipelines/contracts/discovery.ts";
import { JobInputError } from "./sdk.ts";

export interface InventoryHost {
  host: string;
  os: string;
  ips: string[];
  /** "" when the inventory does not say */
  owner: string;
  team: string;
  ports: { proto: "tcp" | "udp"; port: number; owner: string }[];
}

const MAX_PROP = 1024;

const split = (s: string | undefined) => (s ?? "").split(";").map((x) => x.trim()).filter(Boolean);

export function parseInventory(text: string): InventoryHost[] {
  const rows = csvParse(text.replace(/^\uFEFF/, ""));
  const cols = rows.columns.map((c) => c.trim().toLowerCase());
  if (!cols.includes("host")) throw new JobInputError(`csv line 1: no "host" column (columns: ${cols.join(", ") || "none"})`);
  const errors: string[] = [];
  const hosts = new Map<string, InventoryHost>();
  rows.forEach((raw, i) => {
    const row: Record<string, string> = {};
    for (const [k, v] of Object.entries(raw)) row[k.trim().toLowerCase()] = (v ?? "").trim();
    // header is line 1; d3-dsv folds quoted newlines into a field, so this is the record number + 1
    const line = i + 2;
    const host = row.host ?? "";
    if (!host) return errors.push(`csv record ${line}: host is empty`);
    if (host.length > 255) return errors.push(`csv record ${line}: host is longer than 255 characters`);
    const h = hosts.get(host) ?? { host, os: "", ips: [], owner: "", team: "", ports: [] };
    if (row.os) h.os = row.os;
    for (const k of ["owner", "team"] as const) {
      const v = row[k] ?? "";
      if (v.length > MAX_PROP) errors.push(`csv record ${line}, ${k}: longer than ${MAX_PROP} characters`);
      else if (v) h[k] = v;
    }
    for (const ip of split(row.ips ?? row.ip)) if (!h.ips.includes(ip)) h.ips.push(ip);
    for (const p of split(row.ports)) {
      const m = /^(\d{1,5})(?:\/(tcp|udp))?(?:@(.*))?$/i.exec(p);
      const port = m ? Number(m[1]) : NaN;
      if (!m || port < 1 || port > 65535) {
        errors.push(`csv record ${line}, ports: "${p}" is not a port like 443, 53/udp or 5432@owner`);
        continue;
      }
      const owner = (m[3] ?? "").trim();
      if (m[3] !== undefined && (!owner || owner.length > MAX_PROP)) {
        errors.push(`csv record ${line}, ports: "${p}": the owner after @ must be 1-${MAX_PROP} characters`);
        continue;
      }
      const proto = (m[2]?.toLowerCase() ?? "tcp") as "tcp" | "udp";
      const known = h.ports.find((x) => x.port === port && x.proto === proto);
      if (!known) h.ports.push({ proto, port, owner });
      else if (owner) known.owner = owner;
    }
    hosts.set(host, h);
  });
  if (errors.length) throw new JobInputError(errors.slice(0, 20).join("; ") + (errors.length > 20 ? `; and ${errors.length - 20} more` : ""));
  return [...hosts.values()];
}

/**
 * One host's events: host.seen + listener.seen (unless annotateOnly), entity.annotated for the host's owner/team and
 * for each port's owner (matched to the service listening on host:port), name.seen for each of its addresses.
 */
export function inventoryEvents(h: InventoryHost, annotateOnly: boolean): DiscoveryEvent[] {
  const events: DiscoveryEvent[] = [];
  if (!annotateOnly) {
    events.push({ type: "host.seen", hostname: h.host, os: h.os, kernel: "", cpus: 0, memTotalBytes: 0, ips: h.ips });
    for (const p of h.ports) events.push({ type: "listener.seen", proto: p.proto, ip: h.ips[0] ?? "0.0.0.0", port: p.port, process: null });
  }
  const props: Record<string, string> = {};
  if (h.owner) props.owner = h.owner;
  if (h.team) props.team = h.team;
  if (Object.keys(props).length) events.push({ type: "entity.annotated", match: { host: h.host }, props });
  for (const p of h.ports) if (p.owner) events.push({ type: "entity.annotated", match: { host: h.host, port: p.port, proto: p.proto }, props: { owner: p.owner } });
  for (const ip of h.ips) events.push({ type: "name.seen", ip, name: h.host });
  return events;
}
