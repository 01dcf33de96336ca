/** How a service process ends: once, within a deadline, whatever state its NATS connection is in. */

const logLine = (level: string, msg: string) => process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), level, msg })}\n`);

/**
 * Runs `stop` once on SIGINT/SIGTERM — or when the parent process dies (our parent pid changes), so a service whose
 * supervisor was killed never lingers as an orphan — then exits: 0 when `stop` finished, 1 when it threw or did not
 * finish within the deadline. A second signal while stopping exits at once.
 *
 * The deadline is what holds when NATS is gone: a drain or a publish can wait for a reconnect that never comes, and
 * nobody may be left to SIGKILL us. It is just below the supervisor's grace period (10 s), so a service stuck on a dead
 * server exits by itself rather than being killed.
 */
export function onShutdown(stop: () => Promise<void>, opts: { deadlineMs?: number; watchParent?: boolean } = {}): void {
  let stopping = false;
  const handler = async () => {
    if (stopping) {
      logLine("warn", "second signal while stopping; exiting now");
      process.exit(1);
    }
    stopping = true;
    clearInterval(watch);
    setTimeout(() => {
      logLine("warn", "shutdown did not finish in time; exiting");
      process.exit(1);
    }, opts.deadlineMs ?? 9000);
    let code = 0;
    try {
      await stop();
    } catch (e) {
      logLine("error", `shutdown failed: ${e instanceof Error ? e.message : String(e)}`);
      code = 1;
    }
    process.exit(code);
  };
  const parent = process.ppid;
  const watch = setInterval(() => process.ppid !== parent && void handler(), 1000);
  watch.unref();
  if (opts.watchParent === false) clearInterval(watch);
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}
