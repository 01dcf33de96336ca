/**
 * What every alert normalizer shares (pure): stable ids, times, severity words, instance strings. Each source has
 * its own module beside this one (alertmanager.ts, icinga2.ts, nagios.ts, generic.ts).
 */
import { createHash } from "node:crypto";
import type { Severity } from "../../contracts/alerts.ts";

/** Stable short id of a tuple of strings (event ids, default fingerprints). */
export function stableId(...parts: (string | number | null | undefined)[]): string {
  const text = parts.map((p) => String(p ?? "")).join("\u0000");
  // the same SHA-256; Bun's hasher costs half of node:crypto's per call (two per alert event on the ingest)
  if (typeof Bun !== "undefined") return new Bun.CryptoHasher("sha256").update(text).digest("hex").slice(0, 24);
  return createHash("sha256").update(text).digest("hex").slice(0, 24);
}

/** Cuts a string a source sent to the length alert.v1 allows (names and summaries; labels are left to validation). */
export const clip = (s: string, n: number) => (s.length > n ? s.slice(0, n) : s);

/** Severity words used by Prometheus rules, Zabbix-ish and PagerDuty-ish conventions. Missing or unknown → warning. */
export function severityFromWord(word: string | undefined): Severity {
  const w = (word ?? "").trim().toLowerCase();
  if (/^(critical|crit|page|pager|error|err|high|disaster|fatal|emergency|emerg|alert|major|p1|p2|sev1|sev2)$/.test(w)) return "critical";
  if (/^(warning|warn|medium|average|minor|p3|sev3)$/.test(w)) return "warning";
  if (/^(info|informational|low|notice|none|p4|p5|debug)$/.test(w)) return "info";
  if (w === "ok") return "ok";
  if (w === "unknown") return "unknown";
  return "warning";
}

/** "db1:9100", "10.0.0.5:5432", "[::1]:9090", "db1" → host/address and port. */
export function parseInstance(instance: string): { host?: string; address?: string; port?: number } {
  let hostPart = instance.trim();
  let port: number | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(hostPart);
  if (v6) {
    hostPart = v6[1]!;
    if (v6[2]) port = Number(v6[2]);
  } else {
    const m = /^([^:/]+):(\d{1,5})$/.exec(hostPart);
    if (m) {
      hostPart = m[1]!;
      port = Number(m[2]);
    } else {
      // a URL target (blackbox exporter): https://db1:8443/health
      try {
        const u = new URL(hostPart);
        if (u.hostname) {
          hostPart = u.hostname.replace(/^\[|\]$/g, "");
          port = u.port ? Number(u.port) : u.protocol === "https:" ? 443 : u.protocol === "http:" ? 80 : undefined;
        }
      } catch {
        /* a plain name */
      }
    }
  }
  if (port !== undefined && !(port >= 0 && port <= 65535)) port = undefined;
  if (!hostPart) return { port };
  return isIp(hostPart) ? { address: hostPart, port } : { host: hostPart, port };
}

export function isIp(s: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(s) || (s.includes(":") && /^[0-9a-fA-F:.]+$/.test(s));
}

/** Epoch ms from an ISO string; Go's zero time ("0001-01-01T00:00:00Z") and garbage are null. */
export function parseTime(s: string | number | undefined | null): number | null {
  if (s === undefined || s === null) return null;
  if (typeof s === "number") return s > 0 ? Math.round(s) : null;
  const t = Date.parse(s);
  return Number.isFinite(t) && t > 0 ? t : null;
}
