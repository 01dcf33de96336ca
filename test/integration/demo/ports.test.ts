/**
 * Every port the demo listens on behaves the same way: its usual port, or the next free one above it when that is
 * taken, said in the log, with the real addresses in the banner. A service told a port that is taken stops with one
 * line naming the setting (no stack trace) and the status a supervisor recognises.
 */
import { expect, test } from "bun:test";
import { resolve } from "node:path";
import { EXIT_PORT_IN_USE, pickPort } from "../../../services/shared/ports.ts";
import { startStack } from "../../helpers/stack.ts";
import { startNats } from "../../helpers/nats.ts";
import { uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const block = () => Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });

test("pickPort: the preferred port when free, else the next free one above it, else any; 0 = any", () => {
  const a = block();
  try {
    const next = pickPort(a.port);
    expect(next.moved).toBe(true);
    expect(next.port).toBeGreaterThan(a.port);
    expect(pickPort(next.port)).toEqual({ port: next.port, moved: false });
    expect(pickPort(next.port, "127.0.0.1", [next.port]).port).not.toBe(next.port);
    expect(pickPort(0).port).toBeGreaterThan(0);
  } finally {
    a.stop(true);
  }
});

test("the demo with every usual port taken: each listener moves to a free one, says so, and the banner has the real addresses", async () => {
  const blockers = { ORRERY_NATS_PORT: block(), CLICKHOUSE_OWNER_PORT: block(), ORRERY_INGEST_PORT: block(), ORRERY_GATEWAY_PORT: block() };
  const taken = Object.fromEntries(Object.entries(blockers).map(([k, b]) => [k, String(b.port)]));
  const stack = await startStack({ ...taken, ORRERY_SIMULATE: "0" });
  try {
    const port = (url: string) => Number(new URL(url).port);
    const real = { ORRERY_NATS_PORT: port(stack.nats), CLICKHOUSE_OWNER_PORT: port(stack.clickhouse), ORRERY_INGEST_PORT: port(stack.ingest), ORRERY_GATEWAY_PORT: port(stack.dashboard) };
    for (const [k, p] of Object.entries(real)) {
      expect(p).not.toBe(Number(taken[k]));
      expect(p).toBeGreaterThan(Number(taken[k]));
    }
    const logs = stack.logs();
    expect(logs).toContain(`port ${taken.ORRERY_NATS_PORT} is in use; nats listens on ${real.ORRERY_NATS_PORT} instead`);
    expect(logs).toContain(`port ${taken.CLICKHOUSE_OWNER_PORT} is in use; clickhouse listens on ${real.CLICKHOUSE_OWNER_PORT} instead`);
    expect(logs).toContain(`port ${taken.ORRERY_INGEST_PORT} is in use; ingest listens on ${real.ORRERY_INGEST_PORT} instead`);
    expect(logs).toContain(`port ${taken.ORRERY_GATEWAY_PORT} is in use; gateway listens on ${real.ORRERY_GATEWAY_PORT} instead`);
    // the banner follows the ready line
    await waitFor(() => stack.logs().includes(`Dashboard:  ${stack.dashboard}`), "the banner with the gateway's real address", 5000);
    expect(stack.logs()).toContain(`Ingest:     ${stack.ingest}`);
    expect((await fetch(`${stack.dashboard}/healthz`)).status).toBeLessThan(500);
    expect((await fetch(`${stack.clickhouse}/ping`)).ok).toBe(true);
    expect(await stack.stop()).toBe(0);
  } finally {
    if (stack.proc.exitCode === null) process.kill(stack.proc.pid, "SIGKILL");
    for (const b of Object.values(blockers)) b.stop(true);
    stack.cleanup();
  }
}, 180_000);

for (const [service, setting] of [
  ["ingest", "ORRERY_INGEST_PORT"],
  ["gateway", "ORRERY_GATEWAY_PORT"],
] as const) {
  test(`${service} told a port that is taken: one line naming ${setting}, exit ${EXIT_PORT_IN_USE}, no stack trace`, async () => {
    const nats = await startNats();
    const blocker = block();
    try {
      const proc = Bun.spawn([process.execPath, "run", `services/${service}/main.ts`], {
        cwd: ROOT,
        env: { ...process.env, NATS_URL: nats.url, ORRERY_PREFIX: uniquePrefix("port"), [setting]: String(blocker.port), ORRERY_LOG_QUIET: "1", ORRERY_AUTH: "off" },
        stdout: "pipe",
        stderr: "pipe",
      });
      const code = await Promise.race([proc.exited, Bun.sleep(60_000).then(() => "still running after 60 s")]);
      const err = await new Response(proc.stderr).text();
      expect(code).toBe(EXIT_PORT_IN_USE);
      expect(await new Response(proc.stdout).text()).toBe("");
      expect(err).toContain(`cannot listen on 127.0.0.1:${blocker.port}: the port is in use (set ${setting}; 0 picks a free port)`);
      expect(err).not.toMatch(/^\s+at /m);
    } finally {
      blocker.stop(true);
      await nats.stop();
    }
  }, 90_000);
}
