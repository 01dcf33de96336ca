/**
 * The demo when one of its processes dies under it. A service that dies (SIGKILL) is reported and restarted, and the
 * demo goes on; nats-server dying stops everything, reported, with a non-zero exit status, within a deadline, no
 * process left — every service's shutdown ends by itself although NATS is gone.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { alive, startStack } from "../../helpers/stack.ts";
import { waitFor } from "../../helpers/tmp.ts";

/** pids below the supervisor whose command line contains `what` */
const running = (pids: number[], what: string) =>
  pids.filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(what);
    } catch {
      return false;
    }
  });

test("a service that dies is restarted and reported; nats-server dying stops the whole demo, non-zero", async () => {
  const stack = await startStack({ ORRERY_SIM_HOSTS: "3" });
  const seen = new Set<number>();
  try {
    const [metrics] = running(stack.descendants(), "services/metrics/main.ts");
    expect(metrics).toBeNumber();
    process.kill(metrics!, "SIGKILL");
    const again = await waitFor(() => running(stack.descendants(), "services/metrics/main.ts").find((p) => p !== metrics), "metrics restarted", 30_000);
    expect(alive(again)).toBe(true);
    expect(stack.logs()).toContain("metrics exited (signal SIGKILL); restarting in 1000 ms");
    // the rest of the demo did not notice
    expect((await fetch(`${stack.dashboard}/healthz`)).status).toBeLessThan(500);
    expect(stack.proc.exitCode).toBeNull();

    const family = stack.descendants();
    for (const p of family) seen.add(p);
    expect(family.length).toBeGreaterThanOrEqual(10);
    const [nats] = running(family, "nats-server");
    expect(nats).toBeNumber();
    const t0 = Date.now();
    process.kill(nats!, "SIGKILL");
    const code = await Promise.race([stack.proc.exited, Bun.sleep(30_000).then(() => "still running 30 s after nats-server died")]);
    expect(code).not.toBe(0);
    expect(code).toBeNumber();
    expect(Date.now() - t0).toBeLessThan(30_000);
    const logs = stack.logs();
    expect(logs).toContain("nats exited (signal SIGKILL); Orrery cannot run without it: stopping Orrery");
    // every service stopped by itself, none had to be killed
    expect(logs).not.toContain("did not stop");
    await waitFor(() => family.every((p) => !alive(p)), "every process of the demo gone", 5000).catch(() => {
      throw new Error(`left running: ${family.filter(alive).join(", ")}`);
    });
  } finally {
    if (stack.proc.exitCode === null) process.kill(stack.proc.pid, "SIGKILL");
    for (const p of [...seen, ...stack.descendants()]) if (alive(p)) process.kill(p, "SIGKILL");
    stack.cleanup();
  }
}, 180_000);
