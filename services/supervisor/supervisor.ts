/**
 * Starts Orrery on one machine as child processes: nats-server (unless NATS_URL is given), the embedded ClickHouse
 * owner (unless CLICKHOUSE_URL is given), then topology, metrics, gateway and the local agent. Each child prints one
 * JSON "ready" line; a child that dies is restarted with backoff; stop() ends them in reverse order.
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

export interface ChildSpec {
  name: string;
  cmd: string[];
  env: Record<string, string>;
  /** fields of its ready line we need (e.g. url) */
  readyTimeoutMs?: number;
  /** parse readiness from a non-JSON log line (nats-server) */
  readyFrom?: (line: string) => Record<string, unknown> | null;
}

interface Running {
  spec: ChildSpec;
  proc: Subprocess;
  ready: Record<string, unknown>;
  restarts: number;
}

const ROOT = resolve(import.meta.dir, "../..");
export const BUN = process.execPath;
const SETPRIV = Bun.which("setpriv", { PATH: `${process.env.PATH ?? ""}:/usr/bin:/bin` });

/** The command that runs `cmd` in a child that gets SIGTERM when we die (without setpriv, `cmd` itself). */
export const withParentDeathSignal = (cmd: string[]): string[] => (SETPRIV ? [SETPRIV, "--pdeathsig", "SIGTERM", ...cmd] : cmd);

export interface StopReport {
  /** children that did not stop within the grace period and were SIGKILLed */
  killed: string[];
}

export async function freePort(preferred: number, host = "127.0.0.1"): Promise<number> {
  for (const p of [preferred, 0]) {
    try {
      const s = Bun.listen({ hostname: host, port: p, socket: { data() {} } });
      const port = s.port;
      s.stop(true);
      return port;
    } catch {
      // taken: try a random one
    }
  }
  throw new Error("no free port");
}

export class Supervisor {
  private children: Running[] = [];
  private stopping = false;
  constructor(private log: Logger) {}

  async start(spec: ChildSpec): Promise<Record<string, unknown>> {
    const r: Running = { spec, proc: null as unknown as Subprocess, ready: {}, restarts: 0 };
    await this.spawn(r);
    this.children.push(r);
    return r.ready;
  }

  private async spawn(r: Running): Promise<void> {
    const { spec } = r;
    const proc = Bun.spawn(withParentDeathSignal(spec.cmd), {
      cwd: ROOT,
      detached: true,
      stdin: "ignore",
      env: { ...process.env, ...spec.env },
      stdout: "pipe",
      stderr: "pipe",
    });
    r.proc = proc;
    const ready = Promise.withResolvers<Record<string, unknown>>();
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
    void forward(proc.stdout as ReadableStream<Uint8Array>, true);
    void forward(proc.stderr as ReadableStream<Uint8Array>, false);
    const timeout = setTimeout(() => ready.reject(new Error(`${spec.name} did not report ready within ${spec.readyTimeoutMs ?? 60_000} ms`)), spec.readyTimeoutMs ?? 60_000);
    void proc.exited.then((code) => {
      ready.reject(new Error(`${spec.name} exited with code ${code} before it was ready`));
      if (!this.stopping && this.children.includes(r)) void this.restart(r, code);
    });
    try {
      r.ready = await ready.promise;
    } finally {
      clearTimeout(timeout);
    }
  }

  private async restart(r: Running, code: number) {
    r.restarts++;
    const wait = Math.min(30_000, 500 * 2 ** Math.min(r.restarts, 6));
    this.log.warn(`${r.spec.name} exited (code ${code}); restarting in ${wait} ms`, { restarts: r.restarts });
    await Bun.sleep(wait);
    if (this.stopping) return;
    await this.spawn(r).catch((e) => this.log.error(`${r.spec.name} restart failed`, { error: String(e) }));
  }

  /** pids of the running children, in start order */
  pids(): { name: string; pid: number }[] {
    return this.children.filter((r) => r.proc.exitCode === null).map((r) => ({ name: r.spec.name, pid: r.proc.pid }));
  }

  /** Stops the children one at a time in reverse start order (services, then the ClickHouse owner, nats-server last). */
  async stop(graceMs = 10_000): Promise<StopReport> {
    this.stopping = true;
    const killed: string[] = [];
    for (const r of [...this.children].reverse()) {
      if (r.proc.exitCode !== null || r.proc.signalCode !== null) continue;
      const t0 = performance.now();
      r.proc.kill("SIGTERM");
      const done = await Promise.race([r.proc.exited.then(() => true), Bun.sleep(graceMs).then(() => false)]);
      if (!done) {
        this.log.warn(`${r.spec.name} did not stop in ${graceMs / 1000} s; killing`, { pid: r.proc.pid });
        killed.push(r.spec.name);
        r.proc.kill("SIGKILL");
        await r.proc.exited;
      } else process.stderr.write(`[supervisor] stopped ${r.spec.name} (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
    }
    return { killed };
  }
}

export function natsServerSpec(dataDir: string, port: number, binary: string): ChildSpec {
  const dir = join(dataDir, "nats");
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, "nats.conf");
  // JetStream reserves every stream's max_bytes (~11 GiB for Orrery's streams) against max_file_store, by default 75%
  // of the free disk: without an explicit cap the demo would not start on a machine with less than ~15 GB free. The
  // streams' own limits bound what is stored.
  writeFileSync(conf, `listen: 127.0.0.1:${port}\nmax_payload: 8MB\njetstream { store_dir: "${join(dir, "jetstream")}", max_file_store: 64G }\n`);
  return {
    name: "nats",
    cmd: [binary, "-c", conf],
    env: {},
    readyFrom: (line) => (/Server is ready/.test(line) ? { url: `nats://127.0.0.1:${port}` } : null),
  };
}

export const serviceSpec = (name: string, env: Record<string, string>, readyTimeoutMs?: number): ChildSpec => ({
  name,
  cmd: [BUN, "run", join(ROOT, "services", name, "main.ts")],
  env,
  readyTimeoutMs,
});
