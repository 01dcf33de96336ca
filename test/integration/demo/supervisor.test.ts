/**
 * The supervisor's policy for children that die, on stub children (shell one-liners): a service that dies is reported
 * and restarted with backoff; one that keeps dying, or an essential one (nats-server), stops everything through
 * onFatal; stop() then ends the rest at once. And ports: the preferred one or the next free one, said in the log, and
 * a child that lost its port to a race is started again on another.
 */
import { expect, test } from "bun:test";
import type { Logger } from "../../../services/shared/log.ts";
import { EXIT_PORT_IN_USE } from "../../../services/shared/ports.ts";
import { MAX_RESTARTS, Supervisor, type ChildSpec } from "../../../services/supervisor/supervisor.ts";
import { alive } from "../../helpers/stack.ts";
import { tempDir, waitFor } from "../../helpers/tmp.ts";

function capture(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const put = (level: string) => (msg: string) => void lines.push(`${level} ${msg}`);
  return { lines, info: put("info"), warn: put("warn"), error: put("error") };
}

const READY = (name: string) => `echo '{"event":"ready","service":"${name}"}'`;
/** ready at once, then runs until killed; on SIGTERM it takes `stopS` seconds to stop */
const service = (name: string, stopS = 0, extra: Partial<ChildSpec> = {}): ChildSpec => ({
  name,
  cmd: ["sh", "-c", `trap 'sleep ${stopS}; exit 0' TERM; ${READY(name)}; while :; do sleep 0.05; done`],
  env: {},
  ...extra,
});

test("a service that dies is reported and restarted, and stop() still ends it", async () => {
  const log = capture();
  const fatal: string[] = [];
  const sup = new Supervisor(log, (r) => void fatal.push(r), 50);
  try {
    await sup.start(service("worker"));
    const [first] = sup.pids();
    process.kill(first!.pid, "SIGKILL");
    const again = await waitFor(() => sup.pids().find((p) => p.name === "worker" && p.pid !== first!.pid), "worker restarted", 10_000);
    expect(alive(again.pid)).toBe(true);
    expect(log.lines).toContain("warn worker exited (signal SIGKILL); restarting in 50 ms");
    expect(fatal).toEqual([]);
  } finally {
    const pids = sup.pids().map((p) => p.pid);
    expect(await sup.stop(2000)).toEqual({ killed: [] });
    expect(pids.filter(alive)).toEqual([]);
  }
});

test(`a service that keeps dying (more than ${MAX_RESTARTS} times in a row) stops everything`, async () => {
  const log = capture();
  const fatal = Promise.withResolvers<string>();
  const sup = new Supervisor(log, (r) => fatal.resolve(r), 20);
  await sup.start(service("steady"));
  await sup.start({ name: "flaky", cmd: ["sh", "-c", `${READY("flaky")}; sleep 0.1; exit 3`], env: {} });
  const reason = await Promise.race([fatal.promise, Bun.sleep(15_000).then(() => "no onFatal within 15 s")]);
  expect(reason).toBe(`flaky keeps exiting (code 3, ${MAX_RESTARTS + 1} times in a row)`);
  expect(log.lines.filter((l) => l.startsWith("warn flaky exited (code 3); restarting")).length).toBe(MAX_RESTARTS);
  const pids = sup.pids().map((p) => p.pid);
  expect(await sup.stop(2000)).toEqual({ killed: [] });
  expect(pids.filter(alive)).toEqual([]);
});

test("an essential child that dies stops everything, and the rest are stopped all at once", async () => {
  const log = capture();
  const fatal = Promise.withResolvers<string>();
  const sup = new Supervisor(log, (r) => fatal.resolve(r), 50);
  const nats = await sup.start(service("nats", 0, { essential: true }));
  expect(nats.service).toBe("nats");
  // each takes 1.5 s to stop: one after the other that would be 4.5 s
  for (const n of ["a", "b", "c"]) await sup.start(service(n, 1.5));
  const pids = sup.pids().map((p) => p.pid);
  process.kill(pids[0]!, "SIGKILL");
  expect(await Promise.race([fatal.promise, Bun.sleep(10_000).then(() => "no onFatal within 10 s")])).toBe("nats exited (signal SIGKILL); Orrery cannot run without it");
  expect(log.lines).toContain("error nats exited (signal SIGKILL); Orrery cannot run without it: stopping everything");
  const t0 = performance.now();
  expect(await sup.stop(5000)).toEqual({ killed: [] });
  expect(performance.now() - t0).toBeLessThan(3500);
  expect(pids.filter(alive)).toEqual([]);
});

test("startOnPort: the preferred port, else the next free one (said in the log); a port lost to a race is replaced", async () => {
  const log = capture();
  const sup = new Supervisor(log, () => undefined, 50);
  const blocker = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const tmp = tempDir("orrery-sup-port-");
  try {
    const taken = blocker.port;
    // a stub listener: reports the port it was given
    const stub = (port: number): ChildSpec => ({
      name: "web",
      cmd: ["sh", "-c", `echo '{"event":"ready","service":"web","port":${port}}'; exec sleep 60`],
      env: {},
    });
    const moved = await sup.startOnPort(taken, stub);
    expect(moved.port).not.toBe(taken);
    expect(moved.port).toBeGreaterThan(taken);
    expect(log.lines).toContain(`warn port ${taken} is in use; web listens on ${moved.port} instead`);

    // the first attempt finds its port taken (as if someone bound it after pickPort), and exits as a service does
    const marker = `${tmp.dir}/tried`;
    const racy = (port: number): ChildSpec => ({
      name: "racy",
      cmd: ["sh", "-c", `if [ ! -f ${marker} ]; then touch ${marker}; exit ${EXIT_PORT_IN_USE}; fi; echo '{"event":"ready","service":"racy","port":${port}}'; exec sleep 60`],
      env: {},
    });
    const any = await sup.startOnPort(0, racy);
    expect(typeof any.port).toBe("number");
    expect(log.lines.some((l) => l.startsWith("warn racy lost port ") && l.endsWith("before it was ready; picking another"))).toBe(true);
  } finally {
    blocker.stop(true);
    await sup.stop(2000);
    tmp.cleanup();
  }
});
