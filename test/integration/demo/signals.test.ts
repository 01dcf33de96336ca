/**
 * `npm run demo` stops on a signal to its own process, not only on a terminal's Ctrl-C (SIGINT to the whole process
 * group): a process manager, an IDE's stop button or `kill <pid>` signal the npm process alone, and npm forwards the
 * signal to its script's process only — which must be the supervisor itself, not a shell that ignores it.
 */
import { expect, test } from "bun:test";
import { resolve } from "node:path";
import { alive, descendantsOf } from "../../helpers/stack.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const npm = Bun.which("npm");

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  test.skipIf(!npm)(`${signal} to the npm process alone stops the whole demo, exit status 0 (needs npm)`, async () => {
    const tmp = tempDir("orrery-npm-demo-");
    const proc = Bun.spawn([npm!, "run", "demo"], {
      cwd: ROOT,
      env: {
        ...process.env,
        ORRERY_DATA_DIR: tmp.dir,
        ORRERY_PREFIX: uniquePrefix("npm"),
        ORRERY_GATEWAY_PORT: "0",
        ORRERY_NATS_PORT: "0",
        CLICKHOUSE_OWNER_PORT: "0",
        ORRERY_INGEST_PORT: "0",
        ORRERY_SIM_HOSTS: "3",
        ORRERY_LOG_QUIET: "1",
      },
      stdout: "pipe",
      stderr: "pipe",
      // its own process group, so nothing but our kill below can reach it
      detached: true,
    });
    let out = "";
    let err = "";
    void (async () => {
      for await (const c of proc.stdout as ReadableStream<Uint8Array>) out += new TextDecoder().decode(c);
    })();
    void (async () => {
      for await (const c of proc.stderr as ReadableStream<Uint8Array>) err += new TextDecoder().decode(c);
    })();
    let family: number[] = [];
    try {
      await waitFor(() => out.includes('"service":"orrery"') || proc.exitCode !== null, "the demo's ready line", 150_000, 200);
      if (proc.exitCode !== null) throw new Error(`npm run demo exited (${proc.exitCode}) before it was ready:\n${out}\n${err}`);
      family = descendantsOf(proc.pid);
      expect(family.length).toBeGreaterThanOrEqual(10); // the supervisor, nats-server, chDB owner, services, agent, simulator
      process.kill(proc.pid, signal);
      const code = await Promise.race([proc.exited, Bun.sleep(60_000).then(() => "still running 60 s after the signal")]);
      expect(code).toBe(0);
      expect(err).toContain("stopping Orrery");
      expect(err).not.toContain("did not stop");
      await waitFor(() => family.every((p) => !alive(p)), "every process of the demo gone", 5000).catch(() => {
        throw new Error(`left running: ${family.filter(alive).join(", ")}`);
      });
    } finally {
      if (proc.exitCode === null) process.kill(-proc.pid, "SIGKILL");
      for (const p of family.filter(alive)) process.kill(p, "SIGKILL");
      tmp.cleanup();
    }
  }, 240_000);
}
