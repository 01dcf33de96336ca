/** Starts a real nats-server with JetStream on a random port and its own store dir; stops and cleans up after. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { spawnUntilReady } from "./process.ts";

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
  const { proc, match } = await spawnUntilReady([natsServerBinary(), "-c", conf], {
    ready: /Listening for client connections on [^\s]+:(\d+)[\s\S]*Server is ready/,
    stream: "either",
    timeoutMs: 15_000,
    name: "nats-server",
  });
  const port = Number(match[1]);
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
