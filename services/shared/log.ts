/** Structured JSON lines on stderr; stdout is reserved for the one "ready" line a supervisor waits for. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function makeLogger(service: string, quiet = false): Logger {
  const line = (level: string, msg: string, fields?: Record<string, unknown>) => {
    if (quiet && level === "info") return;
    process.stderr.write(JSON.stringify({ t: new Date().toISOString(), level, service, msg, ...fields }) + "\n");
  };
  return {
    info: (m, f) => line("info", m, f),
    warn: (m, f) => line("warn", m, f),
    error: (m, f) => line("error", m, f),
  };
}

export function ready(service: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ event: "ready", service, ...fields }) + "\n");
}
