/**
 * How the page writes times, ages, numbers and entity names, in one place: times are 24-hour and ISO-like
 * (`2026-12-07 14:03:09`, never "2:03 PM"), whatever the browser's locale; a service is its short name on its host
 * (`orders on sim-app-3`), never its fingerprint; props are written for people (`annotatedBy` is not raw JSON).
 */
import { shortServiceName } from "../../../pipelines/stages/views/names.ts";

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** `2026-12-07 14:03:09` in the page's time zone. */
export function isoTime(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `14:03:09`. */
export function clockTime(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `14:03` (chart axes). */
export function shortTime(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A duration in the largest two units that matter: `45 s`, `12 min`, `3 h 4 min`, `2 d 5 h`. */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

/** A count with thousands separators (`12,345`), the same in every locale. */
export function count(n: number): string {
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** A count that fits a narrow cell: `987`, `12.3k`, `1.2M`. */
export function compactCount(n: number): string {
  if (n < 10_000) return count(n);
  if (n < 1_000_000) return `${(n / 1000).toFixed(n < 100_000 ? 1 : 0)}k`;
  return `${(n / 1_000_000).toFixed(1)}M`;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
export function bytes(n: number): string {
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v >= 100 || u === 0 ? 0 : 1)} ${UNITS[u]}`;
}

/** A number as a person reads it: no float noise, separators above a thousand. */
export function num(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 1000) return count(v);
  if (Number.isInteger(v)) return String(v);
  return String(+v.toFixed(Math.abs(v) >= 10 ? 1 : 3));
}

/** A metric's value in its unit, guessed from the name as Prometheus names them (`_bytes`, `_seconds`, `_cores`). */
export function metricValue(metric: string, v: number): string {
  if (/bytes/.test(metric)) return bytes(v);
  if (/_seconds_total$/.test(metric)) return `${num(v)} s`;
  if (/cores$/.test(metric)) return `${num(v)} cores`;
  return num(v);
}

/** Prop keys that hold epoch ms. */
const TIME_PROPS = /^(firstSeen|lastSeen|staleSince|startTime|startedAt|bootTime|at|seenAt)$|(At|Time|Since)$/;

/**
 * A prop's value for the drawer. `annotatedBy` (JSON `{prop: source}`) reads as `owner, team ← agent:web-1`; epoch
 * ms props as times; byte counts in binary units; anything else JSON-looking compacted to `k: v` pairs.
 */
export function propValue(key: string, v: unknown): string {
  if (v === null || v === undefined || v === "") return "—";
  if (key === "annotatedBy" && typeof v === "string") {
    const by = parseJsonObject(v);
    if (by) {
      const bySource = new Map<string, string[]>();
      for (const [prop, source] of Object.entries(by)) bySource.set(String(source), [...(bySource.get(String(source)) ?? []), prop]);
      return [...bySource].map(([source, props]) => `${props.join(", ")} ← ${source}`).join("; ");
    }
  }
  if (typeof v === "number") {
    if (TIME_PROPS.test(key) && v > 1e11 && v < 1e14) return isoTime(v);
    if (/bytes$/i.test(key)) return bytes(v);
    // ports, pids and uids are identifiers: no thousands separator
    return Number.isInteger(v) ? String(v) : num(v);
  }
  if (typeof v === "string") {
    const o = v.startsWith("{") ? parseJsonObject(v) : null;
    if (o) return Object.entries(o).map(([k, x]) => `${k}: ${typeof x === "object" ? JSON.stringify(x) : String(x)}`).join(", ");
    return v;
  }
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** A prop key as a label: `memTotalBytes` → `mem total bytes`, `annotatedBy` → `annotated by`. */
export function propLabel(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, "$1 $2").replace(/_/g, " ").toLowerCase();
}

function parseJsonObject(s: string): Record<string, unknown> | null {
  try {
    const o = JSON.parse(s) as unknown;
    return o && typeof o === "object" && !Array.isArray(o) ? (o as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export interface EntityName {
  /** what people call it: `orders`, `tcp/5432`, `sim-db-1`, `203.0.113.10:443` */
  label: string;
  /** where it is: `on sim-db-1` */
  sublabel?: string;
  kind: "host" | "service" | "listener" | "external" | "other";
}

/**
 * A name for a topology node id alone (lists that hold ids, not nodes: impact, alerts' entities). Ids are
 * `host:<name>`, `service:<host>:<fingerprint>:<ports>`, `listener:<host>:<proto>:<ip>:<port>`, `external:<ip>:<port>`.
 */
export function nameOfId(id: string): EntityName {
  const colon = id.indexOf(":");
  const kind = colon < 0 ? "" : id.slice(0, colon);
  const rest = id.slice(colon + 1);
  switch (kind) {
    case "host":
      return { label: rest, kind: "host" };
    case "service": {
      const h = rest.indexOf(":");
      const host = rest.slice(0, h);
      const tail = rest.slice(h + 1);
      const cut = tail.lastIndexOf(":");
      const fp = cut > 0 ? tail.slice(0, cut) : tail;
      return { label: shortServiceName(fp), sublabel: `on ${host}`, kind: "service" };
    }
    case "listener": {
      // host:proto:ip:port, where an IPv6 ip holds colons of its own
      const parts = rest.split(":");
      const host = parts[0]!;
      const proto = parts[1] ?? "tcp";
      const port = parts[parts.length - 1]!;
      return { label: `${proto}/${port}`, sublabel: `on ${host}`, kind: "listener" };
    }
    case "external":
      return { label: rest, kind: "external" };
    default:
      return { label: id, kind: "other" };
  }
}

/** `orders on sim-app-3`. */
export function fullName(n: { label: string; sublabel?: string }): string {
  return n.sublabel ? `${n.label} ${n.sublabel}` : n.label;
}

/**
 * A mark id as people say it, for chips and titles when the mark is not drawn: `postgres on sim-db-1`,
 * `tcp/5432 on sim-db-1`, `app` for `group:tier:app`, `external` for `group:external`.
 */
export function nameOfMarkId(id: string): string {
  if (id.startsWith("group:")) {
    const rest = id.slice("group:".length);
    const c = rest.indexOf(":");
    return c < 0 ? rest : rest.slice(c + 1);
  }
  if (id.startsWith("processes-of:")) return `processes of ${nameOfMarkId(id.slice("processes-of:".length))}`;
  return fullName(nameOfId(id));
}
