/** Starts a real nats-server with JetStream on a random port and its own store dir; stops and cleans up after. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

export interface NatsServer {
  url: string;
  port: number;
  dir: string;
  proc: Subprocess;
  stop(): Promise<void>;
}

export function natsServerBinary(): string {
  const found = Bun.which("nats-server") ?? Bun.which("nats-server", { PATH: "/usr/sbin:/usr/bin:/usr/local/bin" });
  if (!found) throw new Error("nats-server is not installed: run `npm test` (it installs Debian's nats-server) or apt-get install nats-server");
  return found;
}

export async function startNats(opts: { dir?: string; port?: number } = {}): Promise<NatsServer> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "orrery-nats-"));
  const conf = join(dir, "nats.conf");
  // Every prefix declares its streams with production limits (~11 GiB of max_bytes), and JetStream reserves them
  // against max_file_store (by default 75% of the free disk): a test server holds many prefixes and little data.
  writeFileSync(conf, `listen: 127.0.0.1:${opts.port ?? -1}\njetstream { store_dir: "${join(dir, "js")}", max_file_store: 100T }\n`);
  const proc = Bun.spawn([natsServerBinary(), "-c", conf], { stdout: "pipe", stderr: "pipe" });
  const port = await waitForPort(proc);
  const url = `nats://127.0.0.1:${port}`;
  return {
    url,
    port,
    dir,
    proc,
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function waitForPort(proc: Subprocess): Promise<number> {
  const decoder = new TextDecoder();
  let log = "";
  const deadline = Date.now() + 15_000;
  for (const stream of [proc.stderr, proc.stdout] as ReadableStream<Uint8Array>[]) {
    const reader = stream.getReader();
    while (Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      log += decoder.decode(value);
      const m = /Listening for client connections on [^\s]+:(\d+)/.exec(log);
      if (m && /Server is ready/.test(log)) {
        reader.releaseLock();
        // keep draining so the pipe never fills
        void stream.pipeTo(new WritableStream()).catch(() => undefined);
        return Number(m[1]);
      }
    }
    reader.releaseLock();
  }
  proc.kill();
  throw new Error(`nats-server did not start:\n${log}`);
}
