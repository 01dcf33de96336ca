/**
 * Ports, decided in one place. A supervisor (the demo) prefers each listener's usual port and, when it is taken, uses
 * the next free one above it and says so (`pickPort`); a service told a port listens there or stops with one line
 * naming the setting and exit status 98 (`listenOrExit`), so a supervisor can tell a lost port from a crash and pick
 * again. Listeners that are not ours (nats-server) get their port from `pickPort` too.
 */

/** Exit status of a service that could not listen because its address is in use (EADDRINUSE's errno on Linux). */
export const EXIT_PORT_IN_USE = 98;

/** How many ports above the preferred one are tried before any free port is taken. */
const NEXT_PORTS = 20;

export class PortInUseError extends Error {
  override readonly name = "PortInUseError";
  constructor(
    readonly host: string,
    readonly port: number,
    options?: { cause?: unknown },
  ) {
    super(`${host}:${port} is already in use`, options);
  }
}

/** Whether `err` is the operating system's "address already in use" (Bun.serve, Bun.listen, node:net). */
export const isAddressInUse = (err: unknown): boolean =>
  err instanceof PortInUseError || (typeof err === "object" && err !== null && (err as { code?: unknown }).code === "EADDRINUSE");

function bindable(host: string, port: number): number | null {
  try {
    const s = Bun.listen({ hostname: host, port, socket: { data() {} } });
    const bound = s.port;
    s.stop(true);
    return bound;
  } catch (e) {
    if (isAddressInUse(e)) return null;
    throw e;
  }
}

export interface PickedPort {
  port: number;
  /** the preferred port was taken (or excluded), so another was picked */
  moved: boolean;
}

/**
 * `preferred` when it is free, else the next free port above it, else any free port (0 = any free port). Ports in
 * `exclude` count as taken (one a child just lost to someone else). The port is free when this returns; a listener
 * that then loses it to a race reports EXIT_PORT_IN_USE and is given another.
 */
export function pickPort(preferred: number, host = "127.0.0.1", exclude: readonly number[] = []): PickedPort {
  if (preferred === 0) return { port: bindable(host, 0) ?? 0, moved: false };
  for (let p = preferred; p <= Math.min(65_535, preferred + NEXT_PORTS); p++) {
    if (exclude.includes(p)) continue;
    const got = bindable(host, p);
    if (got !== null) return { port: got, moved: p !== preferred };
  }
  const any = bindable(host, 0);
  if (any === null) throw new PortInUseError(host, 0);
  return { port: any, moved: true };
}

/**
 * Starts a listener in a service's main.ts. An address in use ends the process with one log line naming the setting
 * that chose the port, and EXIT_PORT_IN_USE; anything else propagates.
 */
export async function listenOrExit<T>(where: { service: string; host: string; port: number; setting: string }, listen: () => T | Promise<T>): Promise<T> {
  try {
    return await listen();
  } catch (e) {
    if (!isAddressInUse(e)) throw e;
    const msg = `cannot listen on ${where.host}:${where.port}: the port is in use (set ${where.setting}; 0 picks a free port)`;
    process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), level: "error", service: where.service, msg })}\n`);
    process.exit(EXIT_PORT_IN_USE);
  }
}
