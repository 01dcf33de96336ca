/**
 * Starts Orrery on one machine as child processes: nats-server (unless NATS_URL is given), the embedded ClickHouse
 * owner (unless CLICKHOUSE_URL is given), then topology, metrics, gateway and the local agent. Each child prints one
 * JSON "ready" line; stop() ends them in reverse order.
 *
 * A child that dies is reported, and restarted with backoff — unless nothing can work without it (`essential`:
 * nats-server) or it keeps dying (MAX_RESTARTS in a row, each within a minute of its start): then the supervisor's
 * `onFatal` is called with the reason, and the demo stops everything with a non-zero status rather than run on half
 * alive. When the essential child is gone, stop() ends the others all at once: the order only matters while they can
 * still drain through NATS.
 *
 * Each child runs in its own session (setsid), so a terminal's Ctrl-C — SIGINT to the whole foreground process group —
 * reaches only the supervisor, which then stops the services first and nats-server last; were they in its group,
 * nats-server would die while the services are still draining. A child that lost its supervisor still stops: Bun
 * services watch their parent pid (onShutdown), and every child gets SIGTERM from the kernel when the supervisor dies
 * (setpriv --pdeathsig, util-linux, when present), which also covers nats-server.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import type { Logger } from "../shared/log.ts";
import { EXIT_PORT_IN_USE, pickPort } from "../shared/ports.ts";

export interface ChildSpec {
  name: string;
  cmd: string[];
  env: Record<string, string>;
  readyTimeoutMs?: number;
  /** parse readiness from a non-JSON log line (nats-server) */
  readyFrom?: (line: string) => Record<string, unknown> | null;
  /** nothing works without it: when it dies, everything stops instead of a restart */
  essential?: boolean;
}

interface Running {
  spec: ChildSpec;
  proc: Subprocess;
  ready: Record<string, unknown>;
  /** restarts in a row, each within UNSTABLE_MS of the start before it */
  restarts: number;
  startedAt: number;
  /** it said its address was in use before it was ready */
  portLost: boolean;
}

const ROOT = resolve(import.meta.dir, "../..");
export const BUN = process.execPath;
const SETPRIV = Bun.which("setpriv", { PATH: `${process.env.PATH ?? ""}:/usr/bin:/bin` });
/** a child that dies this many times in a row, each within UNSTABLE_MS of its start, is given up on */
export const MAX_RESTARTS = 5;
const UNSTABLE_MS = 60_000;

/** The command that runs `cmd` in a child that gets SIGTERM when we die (without setpriv, `cmd` itself). */
export const withParentDeathSignal = (cmd: string[]): string[] => (SETPRIV ? [SETPRIV, "--pdeathsig", "SIGTERM", ...cmd] : cmd);

export interface StopReport {
  /** children that did not stop within the grace period and were SIGKILLed */
  killed: string[];
}

/** A child exited before it was ready because the port it was given had been taken meanwhile. */
export class PortLostError extends Error {
  override readonly name = "PortLostError";
}

const howItEnded = (p: Subprocess) => (p.signalCode ? `signal ${p.signalCode}` : `code ${p.exitCode}`);

export class Supervisor {
  private children: Running[] = [];
  /** what each child gets on top of its spec's env (its own NATS credentials when NATS auth is on) */
  childEnv: (name: string) => Record<string, string> = () => ({});
  private stopping = false;
  /** an essential child died: the others cannot drain, so stop() need not keep an order */
  private essentialLost = false;
  constructor(
    private log: Logger,
    private onFatal: (reason: string) => void = () => undefined,
    /** the wait before the first restart of a child; it doubles with each one in a row, up to 30 s */
    private firstBackoffMs = 1000,
  ) {}

  async start(spec: ChildSpec): Promise<Record<string, unknown>> {
    const r: Running = { spec, proc: null as unknown as Subprocess, ready: {}, restarts: 0, startedAt: 0, portLost: false };
    await this.spawn(r);
    this.children.push(r);
    return r.ready;
  }

  /**
   * Starts a child that listens on a port: `preferred` or the next free one above it (said in the log when it moved;
   * 0 = any free port). A child that lost its port to a race before it was ready is started again on another.
   */
  async startOnPort(preferred: number, make: (port: number) => ChildSpec): Promise<Record<string, unknown>> {
    const lost: number[] = [];
    for (;;) {
      const { port, moved } = pickPort(preferred, "127.0.0.1", lost);
      const spec = make(port);
      if (moved && preferred !== 0) this.log.warn(`port ${preferred} is in use; ${spec.name} listens on ${port} instead`);
      try {
        return await this.start(spec);
      } catch (e) {
        if (!(e instanceof PortLostError) || lost.length >= 2) throw e;
        this.log.warn(`${spec.name} lost port ${port} to another process before it was ready; picking another`);
        lost.push(port);
      }
    }
  }

  private async spawn(r: Running): Promise<void> {
    const { spec } = r;
    r.portLost = false;
    r.startedAt = Date.now();
    const proc = Bun.spawn(withParentDeathSignal(spec.cmd), {
      cwd: ROOT,
      detached: true,
      stdin: "ignore",
      env: { ...process.env, ...spec.env, ...this.childEnv(spec.name) },
      stdout: "pipe",
      stderr: "pipe",
    });
    r.proc = proc;
    const ready = Promise.withResolvers<Record<string, unknown>>();
    let isReady = false;
    const forward = async (stream: ReadableStream<Uint8Array>, isStdout: boolean) => {
      const dec = new TextDecoder();
      let buf = "";
      for await (const chunk of stream) {
        buf += dec.decode(chunk, { stream: true });
        let i: number;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const fromLog = spec.readyFrom?.(line);
          if (fromLog) ready.resolve(fromLog);
          if (!isReady && /address already in use/i.test(line)) r.portLost = true;
          if (isStdout && line.startsWith('{"event":"ready"')) {
            try {
              ready.resolve(JSON.parse(line));
            } catch {
              /* not ours */
            }
          } else process.stderr.write(line.startsWith("{") ? line + "\n" : `[${spec.name}] ${line}\n`);
        }
      }
    };
    const forwarded = Promise.all([forward(proc.stdout as ReadableStream<Uint8Array>, true), forward(proc.stderr as ReadableStream<Uint8Array>, false)]);
    const timeout = setTimeout(() => ready.reject(new Error(`${spec.name} did not report ready within ${spec.readyTimeoutMs ?? 60_000} ms`)), spec.readyTimeoutMs ?? 60_000);
    void proc.exited.then(async (code) => {
      // Its last lines (why it ended) are forwarded before we report it; a grandchild holding the pipes open does
      // not hold the report up for long.
      await Promise.race([forwarded.catch(() => undefined), Bun.sleep(1000)]);
      if (code === EXIT_PORT_IN_USE || r.portLost) ready.reject(new PortLostError(`${spec.name} could not listen: its port is in use`));
      else ready.reject(new Error(`${spec.name} exited (${howItEnded(proc)}) before it was ready`));
      if (!this.stopping && this.children.includes(r)) void this.exited(r);
    });
    try {
      r.ready = await ready.promise;
      isReady = true;
    } finally {
      clearTimeout(timeout);
    }
  }

  /** A running child died on its own: restart it, or give up on everything. */
  private async exited(r: Running) {
    const { name } = r.spec;
    const how = howItEnded(r.proc);
    if (r.spec.essential) {
      this.essentialLost = true;
      this.log.error(`${name} exited (${how}); Orrery cannot run without it: stopping everything`);
      this.onFatal(`${name} exited (${how}); Orrery cannot run without it`);
      return;
    }
    r.restarts = Date.now() - r.startedAt > UNSTABLE_MS ? 1 : r.restarts + 1;
    if (r.restarts > MAX_RESTARTS) {
      this.log.error(`${name} exited (${how}) ${r.restarts} times in a row: stopping everything`);
      this.onFatal(`${name} keeps exiting (${how}, ${r.restarts} times in a row)`);
      return;
    }
    const wait = Math.min(30_000, this.firstBackoffMs * 2 ** Math.min(r.restarts - 1, 6));
    this.log.warn(`${name} exited (${how}); restarting in ${wait} ms`, { restarts: r.restarts });
    await Bun.sleep(wait);
    if (this.stopping) return;
    // A failed restart (it died again before it was ready) comes back through exited() with one more restart counted.
    await this.spawn(r).catch((e) => this.stopping || this.log.error(`${name} restart failed`, { error: String(e) }));
  }

  /** pids of the running children, in start order */
  pids(): { name: string; pid: number }[] {
    return this.children.filter((r) => r.proc.exitCode === null && r.proc.signalCode === null).map((r) => ({ name: r.spec.name, pid: r.proc.pid }));
  }

  /**
   * Stops the children one at a time in reverse start order (services, then the ClickHouse owner, nats-server last);
   * all at once when an essential child is already gone. Each gets `graceMs` after SIGTERM, then SIGKILL.
   */
  async stop(graceMs = 10_000): Promise<StopReport> {
    this.stopping = true;
    const killed: string[] = [];
    const stopOne = async (r: Running) => {
      if (r.proc.exitCode !== null || r.proc.signalCode !== null) return;
      const t0 = performance.now();
      r.proc.kill("SIGTERM");
      const done = await Promise.race([r.proc.exited.then(() => true), Bun.sleep(graceMs).then(() => false)]);
      if (!done) {
        this.log.warn(`${r.spec.name} did not stop in ${graceMs / 1000} s; killing`, { pid: r.proc.pid });
        killed.push(r.spec.name);
        r.proc.kill("SIGKILL");
        await r.proc.exited;
      } else process.stderr.write(`[supervisor] stopped ${r.spec.name} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
    };
    if (this.essentialLost) await Promise.all(this.children.map(stopOne));
    else for (const r of [...this.children].reverse()) await stopOne(r);
    return { killed };
  }
}

/** `authorization`: the block NATS credentials are checked by (services/supervisor/nats-auth.ts), when auth is on. */
export function natsServerSpec(dataDir: string, port: number, binary: string, authorization = ""): ChildSpec {
  const dir = join(dataDir, "nats");
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, "nats.conf");
  // JetStream reserves every stream's max_bytes (~11 GiB for Orrery's streams) against max_file_store, by default 75%
  // of the free disk: without an explicit cap the demo would not start on a machine with less than ~15 GB free. The
  // streams' own limits bound what is stored.
  writeFileSync(conf, `listen: 127.0.0.1:${port}\nmax_payload: 8MB\njetstream { store_dir: "${join(dir, "jetstream")}", max_file_store: 64G }\n${authorization}`);
  return {
    name: "nats",
    cmd: [binary, "-c", conf],
    env: {},
    essential: true,
    readyFrom: (line) => (/Server is ready/.test(line) ? { url: `nats://127.0.0.1:${port}` } : null),
  };
}

export const serviceSpec = (name: string, env: Record<string, string>, readyTimeoutMs?: number): ChildSpec => ({
  name,
  cmd: [BUN, "run", join(ROOT, "services", name, "main.ts")],
  env,
  readyTimeoutMs,
});
