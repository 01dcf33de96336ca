/**
 * `bun run bench alerts [--rate 10000 --seconds 60 --hosts 5000]`
 *
 * Alert received → wallboard: from just before an alert's HTTP POST to the ingest service to the health frame on the
 * gateway's WebSocket (what a browser gets) in which its fingerprint appears on (or leaves) its entity, at a sustained
 * offered rate. The ingest, alerts and gateway services run as child processes from their own main.ts (as the
 * supervisor runs them), with nats-server and the chDB owner (alert history) as children too. The bench process
 * answers the topology snapshot RPC with a synthetic estate (hosts, each with a postgres process listening on 5432),
 * POSTs generic alerts open-loop at --rate (one alert per request; each fingerprint fires once and resolves once),
 * and listens both on the gateway's /ws and on <prefix>.health.v1 (the alerts service's output, before the gateway):
 * the latter is reported as a breakdown. In the same run it measures raw core-NATS publish → subscribe latency at the
 * same rate. Goal: p99 ≤ 250 ms at ≥ 10k events/s.
 */
import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { decode } from "../pipelines/codec.ts";
import { HealthDelta } from "../pipelines/contracts/health.ts";
import { WsFrame, type TopoNode } from "../pipelines/contracts/topology.ts";
import { alertSubjects } from "../services/alerts/subjects.ts";
import { connectBus } from "../services/shared/bus.ts";
import { startNats } from "../test/helpers/nats.ts";
import { tempDir, uniquePrefix } from "../test/helpers/tmp.ts";

const ROOT = resolve(import.meta.dir, "..");

/** --cpu-prof DIR: each service child writes a markdown CPU profile there when it exits */
let cpuProfDir: string | null = null;

async function child(args: string[], env: Record<string, string>): Promise<{ proc: Subprocess; ready: Record<string, unknown>; logs: () => string }> {
  const prof = cpuProfDir ? ["--cpu-prof-md", `--cpu-prof-dir=${cpuProfDir}`, `--cpu-prof-name=${args[0]!.split("/")[1]}.md`] : [];
  const proc = Bun.spawn([process.execPath, ...prof, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let logs = "";
  void (async () => {
    for await (const c of proc.stderr as ReadableStream<Uint8Array>) logs = (logs + new TextDecoder().decode(c)).slice(-20_000);
  })();
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  let out = "";
  const deadline = Date.now() + 60_000;
  while (!out.includes("\n") && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  void (proc.stdout as ReadableStream<Uint8Array>).pipeTo(new WritableStream()).catch(() => undefined);
  if (!out.includes("\n")) throw new Error(`${args.join(" ")} did not start:\n${out}\n${logs}`);
  return { proc, ready: JSON.parse(out.split("\n")[0]!), logs: () => logs };
}

/** user+system CPU seconds of a process so far (Linux /proc), to show where the cores went. */
function cpuSeconds(pid: number): number {
  try {
    const f = require("node:fs").readFileSync(`/proc/${pid}/stat`, "utf8") as string;
    const fields = f.slice(f.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/**
 * A small open-loop HTTP/1.1 load generator (like wrk): keep-alive connections, one request in flight per connection
 * (Bun.serve closes a connection that pipelines a request while an async handler is still running), requests queued
 * client-side when every connection is busy (that wait counts in the latency). fetch() cost ~80 µs of client CPU per
 * request here, which on 2 cores starved the services under test; this costs a few µs.
 */
interface Conn {
  socket: import("bun").Socket<undefined>;
  busy: ((status: number) => void) | null;
  buf: Uint8Array;
  out: Uint8Array | null;
}
export class HttpLoad {
  private conns: Conn[] = [];
  private idle: Conn[] = [];
  private queue: { req: Uint8Array; resolve: (status: number) => void }[] = [];
  private qHead = 0;
  static async open(url: string, connections: number): Promise<HttpLoad> {
    const u = new URL(url);
    const load = new HttpLoad();
    for (let i = 0; i < connections; i++) {
      const c: Conn = { socket: null as unknown as import("bun").Socket<undefined>, busy: null, buf: new Uint8Array(0), out: null };
      c.socket = await Bun.connect({
        hostname: u.hostname,
        port: Number(u.port),
        socket: {
          data: (_s, chunk) => {
            const merged = new Uint8Array(c.buf.length + chunk.length);
            merged.set(c.buf);
            merged.set(chunk, c.buf.length);
            c.buf = merged;
            const text = new TextDecoder().decode(c.buf.subarray(0, Math.min(c.buf.length, 1024)));
            const end = text.indexOf("\r\n\r\n");
            if (end < 0) return;
            const len = Number(/content-length: *(\d+)/i.exec(text.slice(0, end))?.[1] ?? "0");
            if (c.buf.length < end + 4 + len) return;
            c.buf = c.buf.subarray(end + 4 + len);
            const done = c.busy!;
            c.busy = null;
            done(Number(text.slice(9, 12)));
            load.dispatch(c);
          },
          drain: () => HttpLoad.flush(c),
          close: () => {
            c.busy?.(0);
            c.busy = null;
          },
        },
      });
      load.conns.push(c);
      load.idle.push(c);
    }
    return load;
  }
  /** socket.write takes what the kernel buffer has room for; the rest waits for `drain`. */
  private static flush(c: Conn) {
    if (!c.out) return;
    const n = c.socket.write(c.out);
    c.out = n < c.out.length ? c.out.subarray(Math.max(0, n)) : null;
  }
  private dispatch(c: Conn) {
    if (this.qHead >= this.queue.length) {
      this.idle.push(c);
      return;
    }
    const next = this.queue[this.qHead++]!;
    if (this.qHead > 4096) {
      this.queue = this.queue.slice(this.qHead);
      this.qHead = 0;
    }
    c.busy = next.resolve;
    c.out = next.req;
    HttpLoad.flush(c);
  }
  post(path: string, host: string, body: string): Promise<number> {
    const b = Buffer.from(body);
    const req = Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\n\r\n`), b]);
    return new Promise((resolve) => {
      this.queue.push({ req, resolve });
      const c = this.idle.pop();
      if (c) this.dispatch(c);
    });
  }
  close() {
    for (const c of this.conns) c.socket.end();
  }
}

const pct = (xs: number[], p: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const summary = (xs: number[]) => ({ n: xs.length, p50: +pct(xs, 50).toFixed(2), p90: +pct(xs, 90).toFixed(2), p99: +pct(xs, 99).toFixed(2), max: +pct(xs, 100).toFixed(2) });

export async function benchAlerts(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      rate: { type: "string", default: "10000" },
      seconds: { type: "string", default: "60" },
      hosts: { type: "string", default: "5000" },
      "cpu-prof": { type: "string" },
      help: { type: "boolean", default: false },
    },
  });
  cpuProfDir = values["cpu-prof"] ? resolve(values["cpu-prof"]) : null;
  if (values.help) {
    console.log(`bench alerts: alert POSTed to ingest → health frame on the gateway WebSocket, p50/p99 at an offered rate

  --rate N      offered alert events per second, open loop (default 10000)
  --seconds N   how long to offer them (default 60; e.g. 15 for a quick check)
  --hosts N     hosts in the synthetic estate (default 5000)
  --cpu-prof DIR  each service writes a markdown CPU profile (bun --cpu-prof-md) into DIR when it stops

Reports JSON: alertToWallboardMs (the measure), alertToHealthDeltaMs (on the NATS subject, before the gateway),
acceptedMs (POST → 202), CPU per process, raw NATS pub→sub, and goalMet (p99 ≤ 250 ms at ≥ 10k events/s achieved).`);
    return;
  }
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  const hosts = Number(values.hosts);
  for (const [k, v] of Object.entries({ rate, seconds, hosts })) if (!Number.isFinite(v) || v <= 0) throw new Error(`--${k} must be a positive number`);
  const total = rate * seconds;
  const fingerprints = Math.ceil(total / 2);

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
    const sentAt = new Float64Array(fingerprints * 2).fill(NaN);
    /** one observer of health deltas: per entity, the bench fingerprints currently on it */
    const observer = () => {
      const seen = new Uint8Array(fingerprints * 2);
      const latencies: number[] = [];
      const onEntity = new Map<string, Set<number>>();
      let deltas = 0;
      const onDelta = (t: number, d: HealthDelta) => {
        deltas++;
        for (const e of d.entities) {
          const before = onEntity.get(e.id) ?? new Set<number>();
          const now = new Set(e.alerts.map((fp) => Number(fp.slice(fp.lastIndexOf(":") + 1))).filter((f) => Number.isInteger(f)));
          const observe = (k: number) => {
            if (k >= sentAt.length || seen[k] || Number.isNaN(sentAt[k]!)) return;
            seen[k] = 1;
            latencies.push(t - sentAt[k]!);
          };
          for (const f of now) if (!before.has(f)) observe(f * 2);
          for (const f of before) if (!now.has(f)) observe(f * 2 + 1);
          onEntity.set(e.id, now);
        }
      };
      return { onDelta, latencies, deltas: () => deltas };
    };
    const onNats = observer();
    const onWs = observer();
    bus.nc.subscribe(alertSubjects(bus.topo).health, {
      callback: (_e, m) => onNats.onDelta(performance.now(), decode(HealthDelta, "health.delta.v1", m.data, 64 * 1024 * 1024)),
    });

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
      const f = WsFrame.parse(json);
      if (f.schema !== "health.delta.v1") return;
      wsHealthFrames++;
      onWs.onDelta(t, f);
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

    // events: fingerprint f fires in the first half, resolves in the second; f lives on host f % hosts
    const body = (i: number) => {
      const resolve = i >= fingerprints;
      const f = resolve ? i - fingerprints : i;
      return {
        f,
        resolve,
        json: JSON.stringify({
          source: "bench",
          fingerprint: `bench:${f}`,
          severity: resolve ? "ok" : "critical",
          state: resolve ? "resolved" : "firing",
          summary: "PostgreSQL connection refused",
          target: { host: `h${f % hosts}`, service: "PostgreSQL" },
          at: Date.now(),
        }),
      };
    };
    let sent = 0;
    let ok = 0;
    let lastAccepted = 0;
    let failed = 0;
    let inFlight = 0;
    const acceptMs: number[] = [];
    let maxInFlight = 0;
    const firstError: string[] = [];
    const load = await HttpLoad.open(url, 256);
    const started = performance.now();
    const tickMs = 5;
    await new Promise<void>((done) => {
      const tick = () => {
        const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate));
        while (sent < due) {
          const i = sent++;
          const b = body(i);
          const t0 = performance.now();
          sentAt[b.f * 2 + (b.resolve ? 1 : 0)] = t0;
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          load.post("/api/alerts/generic", ingestHost, b.json).then((status) => {
            inFlight--;
            acceptMs.push(performance.now() - t0);
            if (status === 202) {
              ok++;
              lastAccepted = performance.now();
            }
            else {
              failed++;
              if (firstError.length < 3) firstError.push(status ? `HTTP ${status}` : "connection closed");
            }
          });
        }
        if (sent >= total) done();
        else setTimeout(tick, tickMs);
      };
      tick();
    });
    const sendSeconds = (performance.now() - started) / 1000;
    const deadline = Date.now() + 30_000;
    while ((inFlight > 0 || onWs.latencies.length < ok || onNats.latencies.length < ok) && Date.now() < deadline) await Bun.sleep(50);
    const drainSeconds = (performance.now() - started) / 1000;
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

    // raw core NATS publish → subscribe at the same rate, same process, same run
    const raw: number[] = [];
    const rawSubject = `${prefix}.bench.raw`;
    const rawBus = await connectBus({ url: nats.url, prefix, name: "bench-raw" });
    rawBus.nc.subscribe(rawSubject, { callback: (_e, m) => void raw.push(performance.now() - new DataView(m.data.buffer, m.data.byteOffset).getFloat64(0)) });
    await rawBus.nc.flush();
    const rawTotal = Math.min(total, rate * 5);
    const payload = new Uint8Array(300);
    let rawSent = 0;
    const rawStart = performance.now();
    await new Promise<void>((done) => {
      const tick = () => {
        const due = Math.min(rawTotal, Math.floor(((performance.now() - rawStart) / 1000) * rate));
        while (rawSent < due) {
          new DataView(payload.buffer).setFloat64(0, performance.now());
          bus.nc.publish(rawSubject, payload);
          rawSent++;
        }
        if (rawSent >= rawTotal) done();
        else setTimeout(tick, tickMs);
      };
      tick();
    });
    const rawDeadline = Date.now() + 10_000;
    while (raw.length < rawTotal && Date.now() < rawDeadline) await Bun.sleep(20);

    ws.close();
    const e2e = summary(onWs.latencies);
    const onSubject = summary(onNats.latencies);
    const rawS = summary(raw);
    /** accepted events per second, from the first POST to the last 202 */
    const achievedRate = Math.round(ok / ((lastAccepted - started) / 1000));
    const report = {
      bench: "alerts",
      target: { rate, seconds, events: total, hosts, fingerprints },
      http: { sent, accepted: ok, failed, errors: firstError, sendSeconds: +sendSeconds.toFixed(2), offeredRate: Math.round(sent / sendSeconds), achievedRate, maxInFlight },
      /** POST → 202 (stored in JetStream) */
      acceptedMs: summary(acceptMs),
      /** THE measure: POST → the health frame on the gateway WebSocket (what a wallboard gets) */
      alertToWallboardMs: e2e,
      /** breakdown: POST → the health delta on the NATS subject (the alerts service's output, before the gateway) */
      alertToHealthDeltaMs: onSubject,
      observed: { wallboard: onWs.latencies.length, natsSubject: onNats.latencies.length, of: total },
      websocket: { frames: wsFrames, healthFrames: wsHealthFrames, megabytes: +(wsBytes / 1e6).toFixed(1), closed: wsClosed },
      healthDeltasOnSubject: onNats.deltas(),
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
      `alert → wallboard p99 ${e2e.p99} ms (p50 ${e2e.p50}); on the NATS subject p99 ${onSubject.p99} ms (p50 ${onSubject.p50}); ` +
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
