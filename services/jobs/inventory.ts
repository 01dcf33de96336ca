/**
 * Inventory CSV → hosts (pure). CSV is parsed by d3-dsv's csvParse (RFC 4180: quoted fields, embedded commas,
 * quotes and newlines, CRLF). Every bad cell is reported with its line and column; a file with errors imports nothing.
 */
import { csvParse } from "d3-dsv";
import { JobInputError } from "./sdk.ts";

export interface InventoryHost {
  host: string;
  os: string;
  ips: string[];
  ports: { proto: "tcp" | "udp"; port: number }[];
}

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
    const h = hosts.get(host) ?? { host, os: "", ips: [], ports: [] };
    if (row.os) h.os = row.os;
    for (const ip of split(row.ips ?? row.ip)) if (!h.ips.includes(ip)) h.ips.push(ip);
    for (const p of split(row.ports)) {
      const m = /^(\d{1,5})(?:\/(tcp|udp))?$/i.exec(p);
      const port = m ? Number(m[1]) : NaN;
      if (!m || port < 1 || port > 65535) {
        errors.push(`csv record ${line}, ports: "${p}" is not a port like 443 or 53/udp`);
        continue;
      }
      const proto = (m[2]?.toLowerCase() ?? "tcp") as "tcp" | "udp";
      if (!h.ports.some((x) => x.port === port && x.proto === proto)) h.ports.push({ proto, port });
    }
    hosts.set(host, h);
  });
  if (errors.length) throw new JobInputError(errors.slice(0, 20).join("; ") + (errors.length > 20 ? `; and ${errors.length - 20} more` : ""));
  return [...hosts.values()];
}
