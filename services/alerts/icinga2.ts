/**
 * Icinga2 event-stream consumer: a long-lived POST /v1/events (newline-delimited JSON) over TLS with the Icinga2 CA,
 * normalized to alert.v1 and published to JetStream. Reconnects with exponential backoff; on every (re)connect it
 * re-reads the state of all hosts and services (/v1/objects/*), so what changed while disconnected is not missed,
 * and it re-reads one object when a downtime ends (the event does not say the state after it).
 *
 * Icinga2 (2.13 measured) sends nothing on an idle event stream — no keepalive — so a half-open connection (a
 * crashed host, a dropped NAT entry) would hang the read forever. An idle watchdog therefore probes /v1/status (a
 * new connection; any HTTP answer counts) after `idleMs` without a byte; a probe that fails or times out aborts the
 * stream and reconnects.
 * After `maxIdleMs` of silence it reconnects anyway (a middlebox may have dropped only the stream's connection while
 * new ones work); the resync on connect makes that lossless.
 *
 * Needs an ApiUser with permissions ["events/*", "objects/query/*"] ("actions/*" only for tests that drive checks).
 */
import { validate } from "../../pipelines/codec.ts";
import type { Alert } from "../../pipelines/contracts/alerts.ts";
import { normalizeIcinga2Event, normalizeIcinga2Object } from "../../pipelines/stages/alerts/icinga2.ts";
import { ICINGA2_EVENT_TYPES, ICINGA2_OBJECT_ATTRS, Icinga2Event, Icinga2Object } from "../../pipelines/contracts/vendors/icinga2.ts";
import type { Logger } from "../shared/log.ts";
import type { PublishAlerts } from "./publish.ts";

export interface Icinga2Options {
  /** https://icinga.example.com:5665 */
  url: string;
  user: string;
  password: string;
  /** PEM of the Icinga2 CA (its ca.crt); without it the system CAs are used */
  ca?: string;
  /** the name in the server certificate when it differs from the URL's host (Icinga2 certs carry the node name) */
  serverName?: string;
  /** event queue name; one per consumer (several consumers with one queue share the events) */
  queue: string;
  /** Icinga2 filter expression on events, e.g. `event.host.match("prod-*")` */
  filter?: string;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** silence on the stream before the status probe (default 60 s) */
  idleMs?: number;
  /** how long a status probe, or the stream's response headers, may take (default 10 s) */
  probeTimeoutMs?: number;
  /** silence after which the stream is re-opened even though probes succeed (default 10 min) */
  maxIdleMs?: number;
}

/** Event types asked for: the alert-bearing ones, and DowntimeAdded (a downtime already in effect → re-read). */
export const ICINGA2_SUBSCRIBED_TYPES = [...ICINGA2_EVENT_TYPES, "DowntimeAdded"] as const;

/** What became of the events of one type, for status and tests: how many, and what they were mapped to. */
export interface Icinga2TypeStats {
  received: number;
  alerts: number;
  resyncs: number;
  ignored: number;
  last?: { kind: "alert"; fingerprint: string; state: Alert["state"]; severity: Alert["severity"] } | { kind: "resync"; host: string; service?: string } | { kind: "ignore"; reason: string };
}

export class Icinga2Error extends Error {
  override readonly name = "Icinga2Error";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface Icinga2Status {
  connected: boolean;
  connects: number;
  events: number;
  published: number;
  /** alerts alert.v1 refused (e.g. a label over its limit), each alone */
  refused: number;
  lastError: string | null;
  /** status probes of an idle stream that succeeded */
  probes: number;
  /** full state re-reads handed to the publisher (one per connect) */
  resyncs: number;
  /** per Icinga2 event type */
  types: Record<string, Icinga2TypeStats>;
}

export interface Icinga2Consumer {
  status(): Icinga2Status;
  stop(): Promise<void>;
}

export function startIcinga2Consumer(opts: Icinga2Options, deps: { publish: PublishAlerts; log: Logger }): Icinga2Consumer {
  const { log } = deps;
  const base = opts.url.replace(/\/+$/, "");
  const auth = `Basic ${Buffer.from(`${opts.user}:${opts.password}`).toString("base64")}`;
  const tls = { ...(opts.ca ? { ca: opts.ca } : {}), ...(opts.serverName ? { serverName: opts.serverName } : {}) };
  const status: Icinga2Status = { connected: false, connects: 0, events: 0, published: 0, refused: 0, lastError: null, probes: 0, resyncs: 0, types: {} };
  const idleMs = opts.idleMs ?? 60_000;
  const probeTimeoutMs = opts.probeTimeoutMs ?? 10_000;
  const maxIdleMs = opts.maxIdleMs ?? 600_000;
  const addresses = new Map<string, string>();
  const addressOf = (h: string) => addresses.get(h);
  let stopped = false;
  let abort = new AbortController();

  // Publishing is serialized so events of one object keep their order; a failed publish is retried until it works
  // or we stop (the resync on the next connect covers anything lost to a crash).
  let chain: Promise<void> = Promise.resolve();
  const publish = (alerts: Alert[]) => {
    if (!alerts.length) return;
    chain = chain.then(async () => {
      for (let attempt = 0; !stopped; attempt++) {
        try {
          const r = await deps.publish(alerts);
          status.published += r.stored.length;
          if (r.refused.length) {
            // refused alone: retrying cannot make it valid, and the rest of the batch is stored
            status.refused += r.refused.length;
            log.warn("icinga2: alerts refused", { refused: r.refused.length, first: r.refused[0]!.reason, fingerprint: r.refused[0]!.alert.fingerprint });
          }
          return;
        } catch (e) {
          if (attempt % 10 === 0) log.warn("icinga2: publishing alerts failed; retrying", { error: String(e) });
          await Bun.sleep(Math.min(5000, 100 * 2 ** Math.min(attempt, 6)));
        }
      }
    });
  };

  const api = async (path: string, body: unknown, signal: AbortSignal): Promise<Response> => {
    const res = await fetch(`${base}${path}`, {
      method: "POST",
      headers: { Authorization: auth, Accept: "application/json", "Content-Type": "application/json", "X-HTTP-Method-Override": path.startsWith("/v1/objects") ? "GET" : "POST" },
      body: JSON.stringify(body),
      tls,
      signal,
    });
    if (!res.ok) throw new Icinga2Error(res.status, `icinga2 ${path}: HTTP ${res.status} ${(await res.text()).slice(0, 500)}`);
    return res;
  };

  /**
   * Icinga2's clock minus ours, from the latest event's timestamp. Events are ordered by Icinga2's clock, so a state
   * read from /v1/objects must be stamped on that clock too: stamped with ours, a snapshot taken while Icinga2 runs
   * behind would hide every event of the next seconds as older than it.
   */
  let clockOffset: number | null = null;

  /** Objects with the time the query was sent, on Icinga2's clock: their state is at least that fresh, and no fresher
   * (an event that arrives after the answer but happened before the query must not be overridden, nor the other way
   * round). Before any event has told the offset, the newest check in the answer stands in (never ahead of Icinga2). */
  const queryObjects = async (kind: "hosts" | "services", filter: string | undefined, signal: AbortSignal) => {
    const sent = Date.now();
    const res = await api(`/v1/objects/${kind}`, { attrs: ICINGA2_OBJECT_ATTRS[kind], ...(filter ? { filter } : {}) }, signal);
    const json = (await res.json()) as { results?: unknown[] };
    const out: Icinga2Object[] = [];
    for (const r of json.results ?? []) {
      try {
        out.push(validate(Icinga2Object, "icinga2 object", r));
      } catch (e) {
        log.warn("icinga2: object skipped", { error: String(e) });
      }
    }
    const newestCheck = out.reduce((m, o) => Math.max(m, Math.round((o.attrs.last_check_result?.execution_end ?? 0) * 1000)), 0);
    const asked = clockOffset !== null ? sent + clockOffset : newestCheck || sent;
    return { objects: out, asked };
  };

  const resyncAll = async (signal: AbortSignal) => {
    const hosts = await queryObjects("hosts", undefined, signal);
    for (const h of hosts.objects) if (h.attrs.address) addresses.set(h.attrs.name, h.attrs.address);
    const services = await queryObjects("services", undefined, signal);
    publish([
      ...hosts.objects.map((o) => normalizeIcinga2Object(o, hosts.asked, addressOf)),
      ...services.objects.map((o) => normalizeIcinga2Object(o, services.asked, addressOf)),
    ].filter((a): a is Alert => a !== null));
    status.resyncs++;
    log.info("icinga2: state resynced", { hosts: hosts.objects.length, services: services.objects.length });
  };

  const resyncOne = (host: string, service: string | undefined, signal: AbortSignal) => {
    const filter = service ? `host.name==${JSON.stringify(host)} && service.name==${JSON.stringify(service)}` : `host.name==${JSON.stringify(host)}`;
    void queryObjects(service ? "services" : "hosts", filter, signal)
      .then((r) => publish(r.objects.map((o) => normalizeIcinga2Object(o, r.asked, addressOf)).filter((a): a is Alert => a !== null)))
      .catch((e) => log.warn("icinga2: object resync failed", { host, service, error: String(e) }));
  };

  const handleLine = (line: string, out: Alert[], signal: AbortSignal) => {
    if (!line.trim()) return;
    let ev: Icinga2Event;
    try {
      ev = validate(Icinga2Event, "icinga2 event", JSON.parse(line));
    } catch (e) {
      log.warn("icinga2: event skipped", { error: String(e).slice(0, 500) });
      return;
    }
    status.events++;
    clockOffset = Math.round(ev.timestamp * 1000) - Date.now();
    const t = (status.types[ev.type] ??= { received: 0, alerts: 0, resyncs: 0, ignored: 0 });
    t.received++;
    let o = normalizeIcinga2Event(ev, addressOf);
    // a downtime added may already be in effect (DowntimeStarted follows) or start later: re-read the object's state
    if (ev.type === "DowntimeAdded" && o.kind === "ignore") {
      const host = ev.downtime?.host_name ?? ev.host;
      if (host) o = { kind: "resync", host, service: ev.downtime?.service_name || ev.service || undefined };
    }
    if (o.kind === "alert") {
      t.alerts++;
      t.last = { kind: "alert", fingerprint: o.alert.fingerprint, state: o.alert.state, severity: o.alert.severity };
      out.push(o.alert);
    } else if (o.kind === "resync") {
      t.resyncs++;
      t.last = o;
      resyncOne(o.host, o.service, signal);
    } else {
      t.ignored++;
      t.last = o;
    }
  };

  const connectOnce = async () => {
    abort = new AbortController();
    const ctl = abort;
    const signal = ctl.signal;
    // a server that accepts the connection but never answers must not hang us either
    const headersTimer = setTimeout(() => ctl.abort(new Error(`no response to /v1/events within ${probeTimeoutMs} ms`)), probeTimeoutMs);
    let res: Response;
    try {
      res = await api("/v1/events", { types: ICINGA2_SUBSCRIBED_TYPES, queue: opts.queue, ...(opts.filter ? { filter: opts.filter } : {}) }, signal);
    } finally {
      clearTimeout(headersTimer);
    }
    let lastByte = Date.now();
    let lastProbe = Date.now();
    let probing = false;
    const watchdog = setInterval(() => {
      const now = Date.now();
      if (probing || signal.aborted) return;
      if (now - lastByte >= maxIdleMs) {
        log.info("icinga2: event stream silent for long; re-opening it", { silentMs: now - lastByte });
        ctl.abort(new Error(`no bytes for ${Math.round((now - lastByte) / 1000)} s; re-opened as a precaution`));
        return;
      }
      if (now - Math.max(lastByte, lastProbe) < idleMs) return;
      probing = true;
      const probeSignal = AbortSignal.any([signal, AbortSignal.timeout(probeTimeoutMs)]);
      // any HTTP answer proves the server is there (a 403 too: the ApiUser needs no "status/query" permission for it)
      void fetch(`${base}/v1/status/IcingaApplication`, { headers: { Authorization: auth, Accept: "application/json" }, tls, signal: probeSignal })
        .then(async (r) => {
          await r.arrayBuffer();
          status.probes++;
          lastProbe = Date.now();
        })
        .catch((e) => {
          if (signal.aborted) return;
          const why = `no bytes on the event stream for ${Math.round((Date.now() - lastByte) / 1000)} s and the status probe failed: ${e instanceof Error ? e.message : String(e)}`;
          log.warn("icinga2: event stream idle and server not answering; reconnecting", { error: why });
          ctl.abort(new Error(why));
        })
        .finally(() => (probing = false));
    }, Math.max(100, Math.min(1000, Math.floor(idleMs / 4))));
    try {
      await readStream(res, signal, () => (lastByte = Date.now()));
    } finally {
      clearInterval(watchdog);
    }
  };

  const readStream = async (res: Response, signal: AbortSignal, onBytes: () => void) => {
    status.connected = true;
    status.connects++;
    status.lastError = null;
    log.info("icinga2: event stream connected", { url: base, connects: status.connects });
    // a new connection may be to another Icinga2 (a failover) or to one whose clock was set meanwhile
    clockOffset = null;
    void resyncAll(signal).catch((e) => log.warn("icinga2: state resync failed", { error: String(e) }));
    const reader = res.body!.getReader();
    // an abort (stop, or the watchdog) ends a read that would otherwise wait forever on a half-open connection
    const aborted = new Promise<never>((_, reject) => {
      const fail = () => reject(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
      if (signal.aborted) fail();
      else signal.addEventListener("abort", fail, { once: true });
    });
    aborted.catch(() => undefined);
    const decoder = new TextDecoder();
    let buf = "";
    while (true) {
      const { value, done } = await Promise.race([reader.read(), aborted]).catch((e) => {
        void reader.cancel().catch(() => undefined);
        throw e;
      });
      if (done) break;
      onBytes();
      buf += decoder.decode(value, { stream: true });
      const lines = buf.split("\n");
      buf = lines.pop()!;
      const out: Alert[] = [];
      for (const l of lines) handleLine(l, out, signal);
      publish(out);
    }
  };

  const loop = (async () => {
    const initial = opts.initialBackoffMs ?? 500;
    const max = opts.maxBackoffMs ?? 30_000;
    let attempt = 0;
    while (!stopped) {
      const started = Date.now();
      try {
        await connectOnce();
        if (!stopped) status.lastError = "event stream ended";
      } catch (e) {
        if (!stopped) status.lastError = e instanceof Error ? e.message : String(e);
      }
      status.connected = false;
      abort.abort();
      if (stopped) break;
      // a connection that lived a while resets the backoff
      if (Date.now() - started > 30_000) attempt = 0;
      const wait = Math.min(max, initial * 2 ** Math.min(attempt++, 16)) * (0.8 + Math.random() * 0.4);
      log.warn("icinga2: event stream lost; reconnecting", { error: status.lastError, inMs: Math.round(wait) });
      const until = Date.now() + wait;
      while (!stopped && Date.now() < until) await Bun.sleep(Math.min(100, until - Date.now()));
    }
  })();

  return {
    status: () => ({ ...status, types: structuredClone(status.types) }),
    stop: async () => {
      stopped = true;
      abort.abort();
      await loop;
      await chain;
    },
  };
}
