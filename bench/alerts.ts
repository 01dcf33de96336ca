/**
 * `bun run bench alerts [--rate 10500 --seconds 60 --hosts 5000 --group 25 --singles 0.2]`
 *
 * Alert received → wallboard: from just before an alert's HTTP POST to the ingest service to the health frame on the
 * gateway's WebSocket (what a browser gets) in which its fingerprint appears on (or leaves) its entity, at a sustained
 * offered rate of alert *events* (not requests). The ingest, alerts and gateway services run as child processes from
 * their own main.ts (as the supervisor runs them), with nats-server and the chDB owner (alert history) as children
 * too. The bench process answers the topology snapshot RPC with a synthetic estate (hosts, each with a postgres
 * process listening on 5432) and listens on the gateway's /ws; with --breakdown also on <prefix>.health.v1 (the alerts
 * service's output, before the gateway), reported as a breakdown. In the same run it measures raw core-NATS
 * publish → subscribe latency at the same rate. Goal: p99 ≤ 250 ms at ≥ 10k events/s.
 *
 * What it sends, the way real sources do: each fingerprint fires once and resolves --hold seconds later (default
 * 7.5 s, so ~rate × 7.5 alerts are open at any time after the start, ~16 per entity at 10.5k/s on 5000 hosts: a steady
 * state whatever the run's length; --hold 0 fires every fingerprint in the first half and resolves it in the second,
 * so the open alerts, and with them each health delta's size, grow with the run), all on the postgres listener of
 * host f % hosts. A share of the fingerprints (--singles, default 0.2)
 * comes one event per POST to /api/alerts/generic (what Nagios/Icinga notification commands do through
 * `orrery notify`); the rest as Alertmanager webhooks (payload version 4) of --group events each (default 25), a
 * POST going out when its last event is due (as Alertmanager sends a group it has collected). Every event counts on
 * its own: latency runs from its POST to the frame that shows it. The load generator is open loop and cheap: every
 * request is built before the clock starts (HTTP/1.1 bytes with their scheduled times inside), keep-alive
 * connections, paced by a 5 ms timer (no busy loop).
 */
import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { z } from "zod";
import { decode } from "../pipelines/codec.ts";
import { HealthDelta } from "../pipelines/contracts/health.ts";
import type { TopoNode } from "../pipelines/contracts/topology.ts";
import { alertSubjects } from "../pipelines/streams.ts";
import { connectBus } from "../services/shared/bus.ts";
import { startNats } from "../test/helpers/nats.ts";
import { tempDir, uniquePrefix } from "../test/helpers/tmp.ts";
import { buildRequests } from "./lib/alert-load.ts";
import { startChild } from "./lib/child.ts";
import { HttpLoad } from "./lib/http-load.ts";
import { paceOpenLoop } from "./lib/pace.ts";
import { cpuSeconds } from "./lib/proc.ts";
import { pct, summary } from "./lib/stats.ts";

/** The bench's event number of a fingerprint it sent (generic `bench:<f>`, Alertmanager `alertmanager:bench-<f>`). */
function benchFingerprint(fp: string): number {
  const n = fp.startsWith("bench:") ? fp.slice(6) : fp.startsWith("alertmanager:bench-") ? fp.slice(19) : "";
  return n ? Number(n) : NaN;
}

/**
 * One observer of health deltas: per entity, the fingerprints last listed on it. An entity's list is compared with
 * the one before by a merge of the two sorted lists (the alerts service sorts them; a list that is not sorted is
 * compared as sets), so a frame costs its own size, not a parse of every fingerprint in it.
 */
function healthObserver(sentAt: Float64Array) {
  return () => {
    const seen = new Uint8Array(sentAt.length);
    const latencies: number[] = [];
    /** when each observed event was sent, beside its latency (for the per-window timeline) */
    const sentTimes: number[] = [];
    const onEntity = new Map<string, string[]>();
    let deltas = 0;
    let t = 0;
    const observe = (fp: string, resolved: boolean) => {
      const f = benchFingerprint(fp);
      if (!Number.isInteger(f)) return;
      const k = f * 2 + (resolved ? 1 : 0);
      if (k >= sentAt.length || seen[k] || Number.isNaN(sentAt[k]!)) return;
      seen[k] = 1;
      latencies.push(t - sentAt[k]!);
      sentTimes.push(sentAt[k]!);
    };
    const sorted = (xs: string[]) => xs.every((x, i) => i === 0 || xs[i - 1]! < x);
    const diff = (before: string[], now: string[]) => {
      if (!sorted(before) || !sorted(now)) {
        const b = new Set(before);
        const n = new Set(now);
        for (const fp of now) if (!b.has(fp)) observe(fp, false);
        for (const fp of before) if (!n.has(fp)) observe(fp, true);
        return;
      }
      let i = 0;
      let j = 0;
      while (i < before.length || j < now.length) {
        const b = before[i];
        const n = now[j];
        if (b === n) {
          i++;
          j++;
        } else if (n === undefined || (b !== undefined && b < n)) {
          observe(b!, true);
          i++;
        } else {
          observe(n, false);
          j++;
        }
      }
    };
    const onDelta = (at: number, d: HealthDelta) => {
      deltas++;
      t = at;
      for (const e of d.entities) {
        diff(onEntity.get(e.id) ?? [], e.alerts);
        onEntity.set(e.id, e.alerts);
      }
    };
    /** p50/p99 of the events sent in each `windowS` seconds from `start`: a run that falls behind shows a rising tail */
    const timeline = (start: number, windowS: number) => {
      const by = new Map<number, number[]>();
      sentTimes.forEach((s, i) => {
        const w = Math.floor((s - start) / 1000 / windowS);
        let l = by.get(w);
        if (!l) by.set(w, (l = []));
        l.push(latencies[i]!);
      });
      return [...by.entries()].sort((a, b) => a[0] - b[0]).map(([w, l]) => ({ fromS: w * windowS, n: l.length, p50: +pct(l, 50).toFixed(1), p99: +pct(l, 99).toFixed(1) }));
    };
    return { onDelta, latencies, deltas: () => deltas, timeline };
  };
}

export async function benchAlerts(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      rate: { type: "string", default: "10500" },
      seconds: { type: "string", default: "60" },
      hosts: { type: "string", default: "5000" },
      group: { type: "string", default: "25" },
      hold: { type: "string", default: "7.5" },
      singles: { type: "string", default: "0.2" },
      "cpu-prof": { type: "string" },
      breakdown: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  const cpuProfDir = values["cpu-prof"] ? resolve(values["cpu-prof"]) : null;
  const child = (args: string[], env: Record<string, string>) => startChild(args, { env, cpuProfDir });
  if (values.help) {
    console.log(`bench alerts: alert POSTed to ingest → health frame on the gateway WebSocket, p50/p99 at an offered rate

  --rate N      offered alert events per second, open loop (default 10500: pacing offers a little under the rate, and the goal counts what is achieved)
  --seconds N   how long to offer them (default 60; e.g. 15 for a quick check)
  --hosts N     hosts in the synthetic estate (default 5000)
  --group N     events per Alertmanager webhook (default 25)
  --hold S      a fingerprint resolves S seconds after it fired (default 7.5: ~rate × S alerts open, steady);
                0 = all fire in the first half and resolve in the second (open alerts pile up over the run)
  --singles F   share of fingerprints sent one event per POST to /api/alerts/generic (default 0.2; 1 = all)
  --breakdown   also time each event to its delta on the NATS subject (before the gateway); costs the bench a
                second parse of every delta
  --cpu-prof DIR  each service writes a markdown CPU profile (bun --cpu-prof-md) into DIR when it stops

Reports JSON: alertToWallboardMs (the measure) and its 5 s timeline, alertToHealthDeltaMs (with --breakdown),
acceptedMs (POST → 202), CPU per process, raw NATS pub→sub, and goalMet (p99 ≤ 250 ms at ≥ 10k events/s achieved).`);
    return;
  }
  const breakdown = values.breakdown;
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  const hosts = Number(values.hosts);
  const group = Number(values.group);
  const singles = Number(values.singles);
  const hold = Number(values.hold);
  if (!(hold >= 0)) throw new Error("--hold must be a number of seconds ≥ 0");
  for (const [k, v] of Object.entries({ rate, seconds, hosts, group })) if (!Number.isFinite(v) || v <= 0) throw new Error(`--${k} must be a positive number`);
  if (!Number.isInteger(group) || group > 1000) throw new Error("--group must be an integer from 1 to 1000 (the ingest takes up to 1000 alerts per request)");
  if (!(singles >= 0 && singles <= 1)) throw new Error("--singles must be a share from 0 to 1");
  const total = rate * seconds;

  const nats = await startNats();
  const tmp = tempDir("orrery-bench-alerts-");
  const prefix = uniquePrefix("bal");
  const procs: Subprocess[] = [];
  try {
    const bus = await connectBus({ url: nats.url, prefix, name: "bench" });
    // the estate, served as the topology service would (snapshot RPC, in chunks)
    const node = (id: string, kind: TopoNode["kind"], name: string, props: TopoNode["props"]): TopoNode => ({ id, kind, name, source: "bench", props, firstSeen: 1, lastSeen: 1 });
    const nodes: TopoNode[] = [];
    for (let h = 0; h < hosts; h++) {
      nodes.push(node(`host:h${h}`, "host", `h${h}`, { hostname: `h${h}`, ips: `10.${(h >> 16) & 255}.${(h >> 8) & 255}.${h & 255}` }));
      nodes.push(node(`process:h${h}:100:1`, "process", "postgres", { host: `h${h}`, pid: 100, exe: "/usr/lib/postgresql/15/bin/postgres" }));
      nodes.push(node(`listener:h${h}:tcp:0.0.0.0:5432`, "listener", "tcp/5432", { host: `h${h}`, proto: "tcp", ip: "0.0.0.0", port: 5432 }));
    }
    const CHUNK = 1500;
    const parts = Math.max(1, Math.ceil(nodes.length / CHUNK));
    let snapshotRequests = 0;
    bus.nc.subscribe(bus.topo.subjects.snapshotRpc, {
      callback: (_e, m) => {
        snapshotRequests++;
        for (let p = 0; p < parts; p++) {
          m.respond(new TextEncoder().encode(JSON.stringify({ schema: "topology.snapshot.v1", rev: 1, at: Date.now(), nodes: nodes.slice(p * CHUNK, (p + 1) * CHUNK), edges: [], part: p, parts })));
        }
      },
    });

    const ch = await child(["services/clickhouse/main.ts", "--data-dir", join(tmp.dir, "ch"), "--port", "0"], {});
    procs.push(ch.proc);
    const env = {
      NATS_URL: nats.url,
      ORRERY_PREFIX: prefix,
      CLICKHOUSE_URL: String(ch.ready.url),
      CLICKHOUSE_DATABASE: prefix.replace(/-/g, "_"),
      ORRERY_INGEST_PORT: "0",
      ORRERY_LOG_QUIET: "1",
      // the bench measures alerts, not logins
      ORRERY_AUTH: "off",
    };
    const alerts = await child(["services/alerts/main.ts"], env);
    procs.push(alerts.proc);
    const ingest = await child(["services/ingest/main.ts"], env);
    procs.push(ingest.proc);
    const gateway = await child(["services/gateway/main.ts"], { ...env, ORRERY_GATEWAY_PORT: "0", ORRERY_DASHBOARD_DIR: join(tmp.dir, "no-dashboard") });
    procs.push(gateway.proc);
    const gwUrl = String(gateway.ready.url);
    const url = `${ingest.ready.url}/api/alerts/generic`;
    const ingestHost = new URL(url).host;

    // subscriber: per listener, the fingerprints currently on it; appearance = firing observed, disappearance = resolved
    const cpuBefore = {
      bench: process.cpuUsage(),
      ingest: cpuSeconds(ingest.proc.pid),
      alerts: cpuSeconds(alerts.proc.pid),
      gateway: cpuSeconds(gateway.proc.pid),
      clickhouse: cpuSeconds(ch.proc.pid),
      nats: cpuSeconds(nats.proc.pid),
    };
    // event k = fingerprint f firing (2f) or resolving (2f+1); observed once per vantage point
    const sentAt = new Float64Array(total * 2).fill(NaN);
    const observer = healthObserver(sentAt);
    const onNats = observer();
    const onWs = observer();
    const CompiledDelta = z.compile(HealthDelta);
    // the breakdown costs the bench a second copy of every delta from nats-server and a second parse (~as much CPU
    // as the gateway's): only when asked
    if (breakdown) {
      bus.nc.subscribe(alertSubjects(bus.topo).health, {
        callback: (_e, m) => onNats.onDelta(performance.now(), decode(CompiledDelta, "health.delta.v1", m.data, 64 * 1024 * 1024)),
      });
    }
    const healthStream = alertSubjects(bus.topo).healthStream.name;
    const healthStored = async () => (await bus.jsm.streams.info(healthStream)).state.messages;


    // the wallboard: the gateway's WebSocket, as a browser opens it (a topology snapshot, the health state, deltas)
    for (let i = 0; !(await fetch(`${gwUrl}/healthz`).catch(() => null))?.ok; i++) {
      if (i > 300) throw new Error(`gateway never synced its mirror: ${gateway.logs()}`);
      await Bun.sleep(100);
    }
    let wsFrames = 0;
    let wsHealthFrames = 0;
    let wsBytes = 0;
    let wsClosed: string | null = null;
    const ws = new WebSocket(`${gwUrl.replace(/^http/, "ws")}/ws`);
    ws.onmessage = (ev) => {
      const t = performance.now();
      const text = String(ev.data);
      wsFrames++;
      wsBytes += text.length;
      const json = JSON.parse(text) as { schema?: unknown };
      if (json.schema !== "health.delta.v1") return; // topology frames and the health state: not what we measure
      wsHealthFrames++;
      onWs.onDelta(t, CompiledDelta.parse(json));
    };
    ws.onclose = (ev) => (wsClosed = `closed ${ev.code} ${ev.reason}`);
    await new Promise<void>((ok, fail) => {
      ws.onopen = () => ok();
      ws.onerror = () => fail(new Error("gateway WebSocket failed to open"));
    });

    // warm up: the alerts service has its mirror, the ingest answers, and the gateway forwards health to the
    // WebSocket (its overlay has the alerts service's state): a warm-up alert shows up there
    for (let i = 0; ; i++) {
      const r = await fetch(url, { method: "POST", body: JSON.stringify({ fingerprint: `warmup-${i}`, severity: "warning", target: { host: "h0" } }) }).catch(() => null);
      if (r?.ok && wsHealthFrames > 0) break;
      if (i > 300) throw new Error(`no health frame on the gateway WebSocket after warm-up alerts: ${ingest.logs()}\n${gateway.logs()}`);
      await Bun.sleep(100);
    }
    await Bun.sleep(1000);

    // every request, built before the clock starts (with the times it is scheduled for)
    const built = performance.now();
    const { requests, fingerprints } = buildRequests({ total, hosts, rate, group, singles, hold, t0: Date.now(), host: ingestHost });
    const buildSeconds = (performance.now() - built) / 1000;
    let sent = 0;
    let sentRequests = 0;
    let ok = 0;
    let lastAccepted = 0;
    let failed = 0;
    let inFlight = 0;
    const acceptMs: number[] = [];
    let maxInFlight = 0;
    const firstError: string[] = [];
    const healthBefore = await healthStored();
    const load = await HttpLoad.open(url, 128);
    const started = performance.now();
    await paceOpenLoop({
      total,
      rate,
      start: started,
      // a request goes out once its last event is due
      onDue: (due) => {
        while (sentRequests < requests.length && requests[sentRequests]!.last < due) {
          const r = requests[sentRequests++]!;
          const t0 = performance.now();
          for (const k of r.events) sentAt[k] = t0;
          sent += r.events.length;
          inFlight += r.events.length;
          maxInFlight = Math.max(maxInFlight, inFlight);
          load.send(r.bytes).then((status) => {
            inFlight -= r.events.length;
            acceptMs.push(performance.now() - t0);
            if (status === 202) {
              ok += r.events.length;
              lastAccepted = performance.now();
            } else {
              failed += r.events.length;
              if (firstError.length < 3) firstError.push(status ? `HTTP ${status}` : "connection closed");
            }
          });
        }
        return sentRequests >= requests.length;
      },
    });
    const sendSeconds = (performance.now() - started) / 1000;
    const deadline = Date.now() + 30_000;
    while ((inFlight > 0 || onWs.latencies.length < ok || (breakdown && onNats.latencies.length < ok)) && Date.now() < deadline) await Bun.sleep(50);
    const drainSeconds = (performance.now() - started) / 1000;
    const unanswered = { events: inFlight, requests: load.pending(), reconnects: load.reconnects };
    if (inFlight > 0) console.error(`${inFlight} events not answered after the drain; ingest log tail:\n${ingest.logs().slice(-3000)}\nalerts log tail:\n${alerts.logs().slice(-2000)}`);
    load.close();
    const benchCpu = process.cpuUsage(cpuBefore.bench);
    const cpu = {
      "bench (HTTP client + subscriber)": +((benchCpu.user + benchCpu.system) / 1e6).toFixed(2),
      ingest: +(cpuSeconds(ingest.proc.pid) - cpuBefore.ingest).toFixed(2),
      alerts: +(cpuSeconds(alerts.proc.pid) - cpuBefore.alerts).toFixed(2),
      gateway: +(cpuSeconds(gateway.proc.pid) - cpuBefore.gateway).toFixed(2),
      "clickhouse owner": +(cpuSeconds(ch.proc.pid) - cpuBefore.clickhouse).toFixed(2),
      "nats-server": +(cpuSeconds(nats.proc.pid) - cpuBefore.nats).toFixed(2),
    };
    const loadavg = require("node:os").loadavg() as number[];
    /** JetStream messages the ingest stored (its group commit decides how many events share one) */
    const alertMessages = (await bus.jsm.streams.info(bus.topo.streams.alerts.name)).state.messages;
    const healthDeltas = (await healthStored()) - healthBefore;

    // raw core NATS publish → subscribe at the same rate, same process, same run
    const raw: number[] = [];
    const rawSubject = `${prefix}.bench.raw`;
    const rawBus = await connectBus({ url: nats.url, prefix, name: "bench-raw" });
    rawBus.nc.subscribe(rawSubject, { callback: (_e, m) => void raw.push(performance.now() - new DataView(m.data.buffer, m.data.byteOffset).getFloat64(0)) });
    await rawBus.nc.flush();
    const rawTotal = Math.min(total, rate * 5);
    const payload = new Uint8Array(300);
    let rawSent = 0;
    await paceOpenLoop({
      total: rawTotal,
      rate,
      onDue: (due) => {
        while (rawSent < due) {
          new DataView(payload.buffer).setFloat64(0, performance.now());
          bus.nc.publish(rawSubject, payload);
          rawSent++;
        }
        return rawSent >= rawTotal;
      },
    });
    const rawDeadline = Date.now() + 10_000;
    while (raw.length < rawTotal && Date.now() < rawDeadline) await Bun.sleep(20);

    ws.close();
    const e2e = summary(onWs.latencies);
    const onSubject = breakdown ? summary(onNats.latencies) : null;
    const rawS = summary(raw);
    /** accepted events per second, from the first POST to the last 202 */
    const achievedRate = Math.round(ok / ((lastAccepted - started) / 1000));
    const report = {
      bench: "alerts",
      target: { rate, seconds, events: total, hosts, fingerprints, holdSeconds: hold },
      /** how the events were sent: one per generic POST, or in Alertmanager webhooks of `group` */
      mix: {
        group,
        singles,
        requests: requests.length,
        genericRequests: requests.filter((r) => r.kind === "generic").length,
        alertmanagerRequests: requests.filter((r) => r.kind === "alertmanager").length,
        buildSeconds: +buildSeconds.toFixed(2),
      },
      /** counted in events; sendSeconds is the time the requests took to go out */
      http: { sent, requests: sentRequests, accepted: ok, failed, unanswered, errors: firstError, sendSeconds: +sendSeconds.toFixed(2), offeredRate: Math.round(sent / sendSeconds), achievedRate, maxInFlight },
      /** POST → 202 (stored in JetStream), per request */
      acceptedMs: summary(acceptMs),
      /** THE measure: POST → the health frame on the gateway WebSocket (what a wallboard gets) */
      alertToWallboardMs: e2e,
      /** the same, per 5 s of send time */
      wallboardTimeline: onWs.timeline(started, 5),
      /** breakdown: POST → the health delta on the NATS subject (the alerts service's output, before the gateway) */
      alertToHealthDeltaMs: onSubject,
      observed: { wallboard: onWs.latencies.length, natsSubject: breakdown ? onNats.latencies.length : null, of: total },
      websocket: { frames: wsFrames, healthFrames: wsHealthFrames, megabytes: +(wsBytes / 1e6).toFixed(1), closed: wsClosed },
      /** health deltas the alerts service stored in the HEALTH stream during the run */
      healthDeltasOnSubject: healthDeltas,
      alertMessagesStored: alertMessages,
      /** topology snapshots the services asked the bench for (once each at start; more means resyncs) */
      snapshotRequests,
      drainSeconds: +drainSeconds.toFixed(2),
      /** CPU seconds used during the run, per process; the machine has 2 cores shared with whatever else runs */
      cpuSeconds: cpu,
      loadavg1m: +loadavg[0]!.toFixed(2),
      rawNatsPubSubMs: rawS,
      p99VsRawNats: +(e2e.p99 / rawS.p99).toFixed(1),
      goal: "alert received → wallboard p99 ≤ 250 ms at ≥ 10k events/s achieved, ≥ 99% of events observed",
      goalMet: e2e.p99 <= 250 && achievedRate >= 10_000 && onWs.latencies.length >= total * 0.99,
    };
    console.log(JSON.stringify(report, null, 2));
    console.log(
      `alert → wallboard p99 ${e2e.p99} ms (p50 ${e2e.p50}); ${onSubject ? `on the NATS subject p99 ${onSubject.p99} ms (p50 ${onSubject.p50}); ` : ""}` +
        `${achievedRate} events/s achieved (${report.http.offeredRate} offered), ${onWs.latencies.length}/${total} observed at the wallboard; ` +
        `raw NATS pub→sub p99 ${rawS.p99} ms; goal ${report.goalMet ? "met" : "NOT met"}`,
    );
    await rawBus.close();
    await bus.close();
  } finally {
    for (const p of procs.reverse()) {
      p.kill("SIGTERM");
      await Promise.race([p.exited, Bun.sleep(10_000)]);
    }
    await nats.stop();
    tmp.cleanup();
  }
}
