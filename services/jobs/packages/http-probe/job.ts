/**
 * HTTP(S) probe: one item per URL. A response (any status) means the endpoint listens: listener.seen; a refused
 * connection: listener.gone. Metrics on the listener: http_up, http_status_code, http_latency_ms and, for https,
 * tls_cert_days_left (read without verifying, so expired and self-signed certificates are measured too).
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { listenerId } from "../../../../pipelines/stages/topology/ids.ts";
import { tlsCertificate } from "../../net.ts";
import { mapLimit, type JobContext, type JobItem } from "../../sdk.ts";

interface Params {
  urls: string[];
  method?: "GET" | "HEAD";
  timeoutMs?: number;
  insecure?: boolean;
  concurrency?: number;
}

async function probe(ctx: JobContext<Params>, raw: string): Promise<JobItem> {
  const url = new URL(raw);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  const timeoutMs = ctx.params.timeoutMs ?? 5000;
  let ip = host;
  if (!isIP(host)) {
    try {
      ip = (await lookup(host)).address;
    } catch (e) {
      return { key: raw, samples: [{ entity: `external:${host}:${port}`, metric: "http_up", ts: Date.now(), value: 0, labels: { url: raw, error: `dns: ${(e as Error).message}`.slice(0, 200) } }] };
    }
  }
  const entity = listenerId(host, "tcp", ip, port);
  const t0 = performance.now();
  const labels: Record<string, string> = { url: raw };
  const samples: NonNullable<JobItem["samples"]> = [];
  let answered = false;
  let refused = false;
  try {
    const res = await fetch(url, {
      method: ctx.params.method ?? "GET",
      redirect: "manual",
      signal: AbortSignal.any([ctx.signal, AbortSignal.timeout(timeoutMs)]),
      tls: { rejectUnauthorized: !ctx.params.insecure },
    } as RequestInit);
    await res.arrayBuffer().catch(() => undefined);
    answered = true;
    labels.server = (res.headers.get("server") ?? "").slice(0, 200);
    samples.push({ entity, metric: "http_status_code", ts: Date.now(), value: res.status, labels: { ...labels } });
    samples.push({ entity, metric: "http_latency_ms", ts: Date.now(), value: Math.round((performance.now() - t0) * 1000) / 1000, labels: { ...labels } });
  } catch (e) {
    const msg = String((e as Error).message ?? e);
    refused = /ECONNREFUSED|Unable to connect|ConnectionRefused/i.test(msg) || (e as { code?: string }).code === "ConnectionRefused";
    labels.error = msg.slice(0, 200);
  }
  samples.push({ entity, metric: "http_up", ts: Date.now(), value: answered ? 1 : 0, labels: { ...labels } });
  if (url.protocol === "https:" && !refused) {
    try {
      const c = await tlsCertificate(ip, port, host, timeoutMs);
      samples.push({ entity, metric: "tls_cert_days_left", ts: Date.now(), value: Math.round(((c.validTo - Date.now()) / 86_400_000) * 100) / 100, labels: { url: raw, subject: c.subject, issuer: c.issuer, verified: String(c.authorized) } });
    } catch (e) {
      ctx.log.warn("tls certificate not readable", { url: raw, error: String(e) });
    }
  }
  const events = answered
    ? [{ type: "listener.seen" as const, proto: "tcp" as const, ip, port, process: null }]
    : refused
      ? [{ type: "listener.gone" as const, proto: "tcp" as const, ip, port }]
      : [];
  // Not full: a URL knows about one port of its host, not about the host's other listeners.
  return { key: raw, host, full: false, events, samples };
}

export async function* run(ctx: JobContext<Params>): AsyncGenerator<JobItem> {
  const urls = [...new Set(ctx.params.urls)];
  const size = ctx.params.concurrency ?? 16;
  for (let i = 0; i < urls.length; i += size) {
    if (ctx.signal.aborted) return;
    for (const item of await mapLimit(urls.slice(i, i + size), size, ctx.signal, (u) => probe(ctx, u))) if (item) yield item;
  }
}
