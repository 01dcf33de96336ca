/** The exporter service's verbs: read the configuration file, build each exporter's adapter, render `/metrics`. */
import { readFileSync } from "node:fs";
import { ExportersFile, type ExporterConfig, type ExporterStatus } from "../../pipelines/contracts/exporters.ts";
import { formatIssues } from "../../pipelines/issues.ts";
import { ConfigError } from "../shared/config.ts";
import type { VendorAdapter } from "./adapter.ts";
import { authHeaders, VendorHttp, type HttpCounters } from "./http.ts";
import { itop } from "./vendors/itop.ts";
import { jsmAssets } from "./vendors/jsm.ts";
import { serviceNow } from "./vendors/servicenow.ts";
import { webhook } from "./vendors/webhook.ts";

/** The file at `path` (JSON, or YAML by its extension), validated; a ConfigError names the file and each wrong field. */
export function loadExportersFile(path: string, text = readFileSync(path, "utf8")): ExportersFile {
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(path) ? Bun.YAML.parse(text) : JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${path}: not ${/\.ya?ml$/i.test(path) ? "YAML" : "JSON"} (${(e as Error).message})`);
  }
  const r = ExportersFile.safeParse(raw);
  if (!r.success) throw new ConfigError(`${path}: ${formatIssues(r.error)}`);
  return r.data;
}

const secret = (env: Record<string, string | undefined>, name: string, key: string): string => {
  const v = env[key];
  if (!v) throw new ConfigError(`exporter ${name}: environment variable ${key} is not set`);
  return v;
};

/** The adapter of one exporter, its HTTP client reading secrets from `env` (only main.ts passes process.env). */
export function buildAdapter(cfg: ExporterConfig, env: Record<string, string | undefined>, counters: HttpCounters, prefix: string): VendorAdapter {
  const a = cfg.auth;
  const auth = a.type === "basic" ? { type: "basic" as const, user: a.user, password: secret(env, cfg.name, a.passwordEnv) } : a.type === "bearer" ? { type: "bearer" as const, token: secret(env, cfg.name, a.tokenEnv) } : { type: "none" as const };
  // iTop takes its credentials as form fields; every other vendor as an Authorization header
  const http = new VendorHttp({ baseUrl: cfg.url, headers: cfg.vendor === "itop" ? {} : authHeaders(auth), ratePerSecond: cfg.ratePerSecond, timeoutMs: cfg.timeoutMs, counters });
  const opt = (k: string) => (cfg.options[k] === undefined ? undefined : String(cfg.options[k]));
  switch (cfg.vendor) {
    case "servicenow":
      return serviceNow(http, { dataSource: opt("dataSource") });
    case "jsm": {
      const workspaceId = opt("workspaceId");
      if (!workspaceId) throw new ConfigError(`exporter ${cfg.name}: options.workspaceId is required for jsm`);
      return jsmAssets(http, { workspaceId });
    }
    case "itop":
      return itop(http, { version: opt("version"), org: opt("org"), ...(auth.type === "basic" ? { user: auth.user, password: auth.password } : {}) });
    case "webhook": {
      const key = opt("secretEnv");
      if (!key) throw new ConfigError(`exporter ${cfg.name}: options.secretEnv (the variable holding the HMAC secret) is required for webhook`);
      return webhook(http, { secret: secret(env, cfg.name, key), source: opt("source") ?? `orrery/${prefix}`, name: cfg.name });
    }
  }
}

/** Prometheus text exposition (version 0.0.4) of every exporter's counters. */
export function metricsText(all: ExporterStatus[]): string {
  const lines: string[] = [];
  const family = (name: string, type: "counter" | "gauge", help: string, rows: [Record<string, string>, number][]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of rows) lines.push(`${name}{${Object.entries(labels).map(([k, x]) => `${k}="${x.replace(/["\\\n]/g, "_")}"`).join(",")}} ${v}`);
  };
  const per = (f: (s: ExporterStatus) => number) => all.map((s) => [{ exporter: s.name, vendor: s.vendor }, f(s)] as [Record<string, string>, number]);
  family("orrery_exporter_lag_messages", "gauge", "Messages of a stream not yet exported.", all.flatMap((s) => Object.entries(s.lag).map(([stream, v]) => [{ exporter: s.name, vendor: s.vendor, stream }, v] as [Record<string, string>, number])));
  family("orrery_exporter_requests_total", "counter", "Vendor requests that succeeded.", per((s) => s.requests));
  family("orrery_exporter_retries_total", "counter", "Vendor requests retried (timeouts, 429, 5xx).", per((s) => s.retries));
  family("orrery_exporter_errors_total", "counter", "Vendor answers that were errors.", per((s) => s.errors));
  family("orrery_exporter_dead_lettered", "gauge", "Messages dead-lettered with the vendor's answer (in the DLQ stream).", per((s) => s.deadLettered));
  family("orrery_exporter_exported_total", "counter", "Items, relations and incidents written.", per((s) => s.exported));
  family("orrery_exporter_rev", "gauge", "Topology rev exported.", per((s) => s.rev));
  return lines.join("\n") + "\n";
}
