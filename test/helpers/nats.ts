/** Starts a real nats-server with JetStream on a random port and its own store dir; stops and cleans up after. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { pickPort } from "../../services/shared/ports.ts";
import { spawnUntilReady } from "./process.ts";

export interface NatsServer {
  url: string;
  port: number;
  dir: string;
  proc: Subprocess;
  /** what the server logged so far (stdout and stderr) */
  log(): string;
  stop(): Promise<void>;
}

export function natsServerBinary(): string {
  const found = Bun.which("nats-server") ?? Bun.which("nats-server", { PATH: "/usr/sbin:/usr/bin:/usr/local/bin" });
  if (!found) throw new Error("nats-server is not installed: run `npm test` (it installs Debian's nats-server) or apt-get install nats-server");
  return found;
}

/** `config`: more of nats-server's config after the listener and JetStream (e.g. an authorization block). */
export async function startNats(opts: { dir?: string; port?: number; config?: string } = {}): Promise<NatsServer> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "orrery-nats-"));
  const conf = join(dir, "nats.conf");
  // Every prefix declares its streams with production limits (~11 GiB of max_bytes), and JetStream reserves them
  // against max_file_store (by default 75% of the free disk): a test server holds many prefixes and little data.
  writeFileSync(conf, `listen: 127.0.0.1:${opts.port ?? -1}\njetstream { store_dir: "${join(dir, "js")}", max_file_store: 100T }\n${opts.config ?? ""}`);
  const { proc, match, log } = await spawnUntilReady([natsServerBinary(), "-c", conf], {
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
    log,
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface NatsClusterNode {
  name: string;
  url: string;
  port: number;
  dir: string;
  /** the running process, or null while the node is down */
  proc: Subprocess | null;
}

export interface NatsCluster {
  nodes: NatsClusterNode[];
  /** every node's client URL, comma-separated (what NATS_URL takes) */
  url: string;
  /** SIGKILL: no shutdown, no leadership hand-over; the node's store stays as it was */
  kill(i: number): Promise<void>;
  /** starts node `i` again on the same ports and store */
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

/** Free ports on loopback, distinct (a route's address must be known before the node starts). */
function freePorts(n: number): number[] {
  const out: number[] = [];
  while (out.length < n) out.push(pickPort(0, "127.0.0.1", out).port);
  return out;
}

/**
 * A JetStream cluster of `size` nodes on loopback: random client and route ports, a store dir per node, every node
 * routed to every other, one cluster name. Resolves once JetStream has a meta leader (streams can be created).
 */
export async function startNatsCluster(opts: { size?: number; config?: string } = {}): Promise<NatsCluster> {
  const size = opts.size ?? 3;
  const root = mkdtempSync(join(tmpdir(), "orrery-natsc-"));
  const ports = freePorts(size * 2);
  const routes = Array.from({ length: size }, (_, i) => `nats-route://127.0.0.1:${ports[size + i]}`);
  const nodes: NatsClusterNode[] = Array.from({ length: size }, (_, i) => {
    const dir = join(root, `n${i}`);
    return { name: `n${i}`, url: `nats://127.0.0.1:${ports[i]}`, port: ports[i]!, dir, proc: null };
  });
  const confOf = (i: number) => {
    const n = nodes[i]!;
    const conf = join(root, `${n.name}.conf`);
    writeFileSync(
      conf,
      [
        `server_name: ${n.name}`,
        `listen: 127.0.0.1:${n.port}`,
        `jetstream { store_dir: "${join(n.dir, "js")}", max_file_store: 100T }`,
        `cluster { name: orrery-test, listen: 127.0.0.1:${ports[size + i]}, routes: [${routes.filter((_, j) => j !== i).join(", ")}] }`,
        opts.config ?? "",
      ].join("\n"),
    );
    return conf;
  };
  const start = async (i: number) => {
    const r = await spawnUntilReady([natsServerBinary(), "-c", confOf(i)], { ready: /Server is ready/, stream: "either", timeoutMs: 30_000, name: `nats-server ${nodes[i]!.name}` });
    nodes[i]!.proc = r.proc;
    // a node serves JetStream once it knows the meta leader (or is it): each says so in its log
    await r.until(/metadata leader/, { stream: "either", timeoutMs: 30_000 });
  };
  await Promise.all(nodes.map((_, i) => start(i)));
  const cluster: NatsCluster = {
    nodes,
    url: nodes.map((n) => n.url).join(","),
    kill: async (i) => {
      const p = nodes[i]!.proc;
      if (!p) return;
      p.kill("SIGKILL");
      await p.exited;
      nodes[i]!.proc = null;
    },
    restart: async (i) => {
      if (nodes[i]!.proc) throw new Error(`${nodes[i]!.name} is running`);
      await start(i);
    },
    stop: async () => {
      await Promise.all(
        nodes.map(async (n) => {
          n.proc?.kill("SIGTERM");
          await n.proc?.exited;
          n.proc = null;
        }),
      );
      rmSync(root, { recursive: true, force: true });
    },
  };
  return cluster;
}
