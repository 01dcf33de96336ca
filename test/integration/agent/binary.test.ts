// The agent as users ship it: one executable from scripts/build-agent.sh, run with an environment that has no Bun or
// Node on PATH, against a real nats-server. Plus its flags, config file and error handling.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { join } from "node:path";
import { DeliverPolicy } from "@nats-io/jetstream";
import { decode } from "../../../pipelines/codec.ts";
import { DiscoveryBatch } from "../../../pipelines/contracts/discovery.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { AgentConfigError, resolveAgentConfig } from "../../../services/agent/config.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { spawnUntilReady } from "../../helpers/process.ts";
import { tempDir, uniquePrefix } from "../../helpers/tmp.ts";

const ROOT = join(import.meta.dir, "../../..");
let tmp: { dir: string; cleanup: () => void };
let bin: string;
let nats: NatsServer;

beforeAll(async () => {
  tmp = tempDir("orrery-agent-bin-");
  const built = join(tmp.dir, "build", "orrery-agent");
  const b = Bun.spawnSync(["sh", join(ROOT, "scripts/build-agent.sh"), built], { cwd: ROOT, stderr: "pipe", stdout: "pipe" });
  if (b.exitCode !== 0) throw new Error(`build failed: ${b.stderr.toString()}`);
  // Alone in its own directory: the PATH it runs with holds nothing else.
  bin = join(tmp.dir, "bin", "orrery-agent");
  Bun.spawnSync(["mkdir", "-p", join(tmp.dir, "bin")]);
  copyFileSync(built, bin);
  Bun.spawnSync(["chmod", "+x", bin]);
  nats = await startNats();
}, 120_000);
afterAll(async () => {
  await nats?.stop();
  tmp?.cleanup();
});

const bare = (extra: Record<string, string> = {}) => ({ PATH: join(tmp.dir, "bin"), ...extra });
async function run(args: string[], env = bare(), timeoutMs = 20_000) {
  const p = Bun.spawn([bin, ...args], { env, stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { out, err, code };
}

describe("orrery-agent executable", () => {
  test("the PATH it runs with has no bun or node", () => {
    expect(Bun.which("bun", { PATH: join(tmp.dir, "bin") })).toBeNull();
    expect(Bun.which("node", { PATH: join(tmp.dir, "bin") })).toBeNull();
  });

  test("runs standalone, scans this machine and publishes its discovery batch to JetStream; SIGTERM stops it cleanly", async () => {
    const prefix = uniquePrefix("agentbin");
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as net.AddressInfo).port;
    const cfg = join(tmp.dir, "agent.json");
    writeFileSync(cfg, JSON.stringify({ natsUrl: "nats://127.0.0.1:1", prefix, hostId: "from-file", intervalMs: 400 }));
    // flags override the file (NATS URL, host id); the file's prefix and interval stay
    const { proc: p, match } = await spawnUntilReady([bin, "--config", cfg, "--nats-url", nats.url, "--host-id", "bin-host"], { env: bare(), ready: /^(.*)\n/, timeoutMs: 20_000 });
    let bus: Bus | undefined;
    try {
      const readyLine = JSON.parse(match[1]!);
      expect(readyLine).toMatchObject({ event: "ready", service: "agent", host: "bin-host", prefix, intervalMs: 400 });
      bus = await connectBus({ url: nats.url, prefix, name: "agent-bin-test" });
      const c = await bus.js.consumers.get(bus.topo.streams.discovery.name, { deliver_policy: DeliverPolicy.All });
      const m = await c.next({ expires: 15_000 });
      expect(m).not.toBeNull();
      expect(m!.subject).toBe(bus.topo.subjects.discovery("bin-host"));
      const b = decode(DiscoveryBatch, "discovery.v1", m!.data);
      expect(b).toMatchObject({ source: "agent:bin-host", host: "bin-host", scanId: 0, full: true });
      const events = [b];
      for (let i = 1; i < b.parts; i++) events.push(decode(DiscoveryBatch, "discovery.v1", (await c.next({ expires: 5000 }))!.data));
      const all = events.flatMap((x) => x.events);
      expect(all[0]!.type).toBe("host.seen");
      const mine = all.find((e) => e.type === "listener.seen" && e.port === port);
      expect(mine).toMatchObject({ type: "listener.seen", proto: "tcp", ip: "127.0.0.1", process: { pid: process.pid } });
      p.kill("SIGTERM");
      expect(await p.exited).toBe(0);
    } finally {
      p.kill("SIGKILL");
      server.close();
      await bus?.close();
    }
  }, 60_000);

  test("the README's command line (--nats, --interval, --config) runs: short spellings of --nats-url and --interval-ms", async () => {
    const prefix = uniquePrefix("agentreadme");
    const cfg = join(tmp.dir, "readme-agent.json");
    writeFileSync(cfg, JSON.stringify({ prefix, hostId: "readme-host" }));
    const { proc: p, match } = await spawnUntilReady([bin, "--nats", nats.url, "--interval", "700", "--config", cfg], { env: bare(), ready: /^(.*)\n/, timeoutMs: 20_000 });
    let bus: Bus | undefined;
    try {
      expect(JSON.parse(match[1]!)).toMatchObject({ event: "ready", host: "readme-host", prefix, intervalMs: 700 });
      bus = await connectBus({ url: nats.url, prefix, name: "agent-readme-test" });
      const c = await bus.js.consumers.get(bus.topo.streams.discovery.name, { deliver_policy: DeliverPolicy.All });
      const m = await c.next({ expires: 15_000 });
      expect(decode(DiscoveryBatch, "discovery.v1", m!.data)).toMatchObject({ source: "agent:readme-host", scanId: 0 });
      p.kill("SIGTERM");
      expect(await p.exited).toBe(0);
    } finally {
      p.kill("SIGKILL");
      await bus?.close();
    }
  }, 60_000);

  test("--help prints usage and exits 0", async () => {
    const r = await run(["--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("Usage: orrery-agent");
    expect(r.out).toContain("--nats-url");
  });

  test("a bad flag, a bad value, a broken or unknown-key config file: a clear error and exit 2", async () => {
    const bad = await run(["--frobnicate"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("Unknown option '--frobnicate'");
    const val = await run(["--interval-ms", "fast"]);
    expect(val.code).toBe(2);
    expect(val.err).toContain("flag --interval-ms");
    const broken = join(tmp.dir, "broken.json");
    writeFileSync(broken, "{ nope");
    const b = await run(["-c", broken]);
    expect(b.code).toBe(2);
    expect(b.err).toContain("not valid JSON");
    const unknown = join(tmp.dir, "unknown.json");
    writeFileSync(unknown, JSON.stringify({ intervalMs: 1000, colour: "blue" }));
    const u = await run(["-c", unknown]);
    expect(u.code).toBe(2);
    expect(u.err).toContain("colour");
    const env = await run([], bare({ ORRERY_AGENT_FULL_EVERY: "0" }));
    expect(env.code).toBe(2);
    expect(env.err).toContain("environment variable ORRERY_AGENT_FULL_EVERY");
  });

  test("NATS unreachable: says so and exits 1", async () => {
    const r = await run(["--nats-url", "nats://127.0.0.1:1", "--once"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("cannot connect to NATS");
  });
});

describe("agent configuration precedence", () => {
  const file = JSON.stringify({ natsUrl: "nats://file:4222", intervalMs: 1000, hostId: "file-host", quiet: true });
  test("defaults < file < environment < flags", () => {
    const r = resolveAgentConfig(["--config", "a.json", "--interval-ms", "3000"], { NATS_URL: "nats://env:4222", ORRERY_AGENT_INTERVAL_MS: "2000" }, () => file);
    expect(r).toEqual({
      help: false,
      config: { natsUrl: "nats://env:4222", intervalMs: 3000, hostId: "file-host", quiet: true, prefix: "orrery", fullEvery: 12, procRoot: "/proc", etcRoot: "/etc", once: false },
    });
  });
  test("errors name where the bad value came from", () => {
    expect(() => resolveAgentConfig([], { ORRERY_AGENT_CONFIG: "x.json" }, () => JSON.stringify({ intervalMs: 5 }))).toThrow(/config file x.json key "intervalMs"/);
    expect(() => resolveAgentConfig(["-c", "missing.json"], {}, () => { throw new Error("ENOENT"); })).toThrow(AgentConfigError);
    expect(() => resolveAgentConfig(["extra"], {}, () => "")).toThrow(/positional/i);
  });
});

describe("agent flag spellings", () => {
  test("--nats and --interval are --nats-url and --interval-ms; giving both spellings of one is an error", () => {
    const r = resolveAgentConfig(["--nats", "nats://short:4222", "--interval", "2500"], {}, () => "");
    expect(r).toMatchObject({ help: false, config: { natsUrl: "nats://short:4222", intervalMs: 2500 } });
    expect(() => resolveAgentConfig(["--interval", "soon"], {}, () => "")).toThrow(/flag --interval: /);
    expect(() => resolveAgentConfig(["--nats", "nats://a:1", "--nats-url", "nats://b:1"], {}, () => "")).toThrow(/--nats and --nats-url are the same setting/);
    expect(() => resolveAgentConfig(["--interval", "1000", "--interval-ms", "1000"], {}, () => "")).toThrow(AgentConfigError);
  });
});
