/**
 * What a platform run said, from the supervisor's stderr (every service's JSON log lines, and other lines prefixed
 * `[name] `): warnings and errors per service, the most frequent messages, and how each child stopped.
 */

export interface LogSummary {
  lines: number;
  /** service → { warn, error } */
  byService: Record<string, { warn: number; error: number }>;
  /** the most frequent warning and error messages, most frequent first */
  top: { service: string; level: string; msg: string; count: number }[];
  /** `[supervisor] stopped <name> (<s> s)`, in order */
  stopped: { name: string; seconds: number }[];
  /** children the supervisor had to SIGKILL (`did not stop`) */
  killed: string[];
}

export function summarizeLog(text: string, topN = 15): LogSummary {
  const byService: LogSummary["byService"] = {};
  const counts = new Map<string, { service: string; level: string; msg: string; count: number }>();
  const stopped: LogSummary["stopped"] = [];
  const killed: string[] = [];
  let lines = 0;
  for (const line of text.split("\n")) {
    if (!line) continue;
    lines++;
    let m = /^\[supervisor\] stopped (\S+) \(([\d.]+) s\)/.exec(line);
    if (m) {
      stopped.push({ name: m[1]!, seconds: Number(m[2]) });
      continue;
    }
    if (!line.startsWith("{")) continue;
    let rec: { level?: unknown; service?: unknown; msg?: unknown };
    try {
      rec = JSON.parse(line);
    } catch {
      continue;
    }
    const level = String(rec.level ?? "");
    const service = String(rec.service ?? "?");
    const msg = String(rec.msg ?? "");
    m = /^(\S+) did not stop in /.exec(msg);
    if (service === "supervisor" && m) killed.push(m[1]!);
    if (level !== "warn" && level !== "error") continue;
    const s = (byService[service] ??= { warn: 0, error: 0 });
    s[level]++;
    // numbers vary from line to line; the message's shape is what repeats
    const shape = msg.replace(/\d+(\.\d+)?/g, "N").slice(0, 160);
    const key = `${service}\0${level}\0${shape}`;
    const c = counts.get(key) ?? { service, level, msg: shape, count: 0 };
    c.count++;
    counts.set(key, c);
  }
  const top = [...counts.values()].sort((a, b) => b.count - a.count).slice(0, topN);
  return { lines, byService, top, stopped, killed };
}
