/**
 * Starting a child process and waiting for its ready line, for tests and benches. The child's stdout and stderr are
 * read in the background from the start (so a chatty child never blocks on a full pipe) and kept, capped, for the
 * error message when it does not get ready: it exits first, or the deadline passes (then it is killed).
 */
import type { Subprocess } from "bun";

type Stdin = "ignore" | "pipe" | "inherit";
export type PipedProcess<In extends Stdin = Stdin> = Subprocess<In, "pipe", "pipe">;

export interface ReadyProcess<In extends Stdin = "ignore"> {
  proc: PipedProcess<In>;
  /** the ready pattern's match */
  match: RegExpExecArray;
  /** what the child wrote so far: stdout, stderr, or both (stdout first) */
  stdout(): string;
  stderr(): string;
  log(): string;
  /** waits until `re` matches the stream's text after `from` (a length of that text earlier); rejects as spawnUntilReady does */
  until(re: RegExp, opts?: { timeoutMs?: number; stream?: Stream; from?: number }): Promise<RegExpExecArray>;
}

type Stream = "stdout" | "stderr" | "either";

export interface SpawnUntilReadyOptions<In extends Stdin = "ignore"> {
  /** the ready line: matched against all the text of `stream` so far */
  ready: RegExp;
  timeoutMs: number;
  /** which output the ready line comes on (default stdout) */
  stream?: Stream;
  cwd?: string;
  env?: Record<string, string | undefined>;
  stdin?: In;
  /** its own process group (kill it with process.kill(-pid)) */
  detached?: boolean;
  /** what the child is, for error messages (default: the command) */
  name?: string;
  /** a file for its stderr instead of memory (a long-running child with a large log); stderr() is then empty */
  stderrFile?: string;
}

/** Output kept per stream: the ready line comes early, and an error message needs only the tail. */
const KEEP = 1 << 20;

export class NotReadyError extends Error {
  override readonly name = "NotReadyError";
  constructor(
    readonly child: string,
    readonly reason: "exited" | "timeout",
    readonly output: string,
  ) {
    super(`${child} ${reason === "exited" ? "exited before it was ready" : "was not ready in time"}:\n${output.slice(-8000)}`);
  }
}

export async function spawnUntilReady<In extends Stdin = "ignore">(cmd: string[], opts: SpawnUntilReadyOptions<In>): Promise<ReadyProcess<In>> {
  const proc = Bun.spawn(cmd, {
    cwd: opts.cwd,
    env: opts.env,
    stdin: opts.stdin ?? "ignore",
    stdout: "pipe",
    stderr: opts.stderrFile ? Bun.file(opts.stderrFile) : "pipe",
    detached: opts.detached,
  }) as unknown as PipedProcess<In>;
  const child = watch(proc, opts.name ?? cmd.slice(0, 3).join(" "));
  try {
    const match = await child.until(opts.ready, { timeoutMs: opts.timeoutMs, stream: opts.stream });
    return { ...child, proc, match };
  } catch (err) {
    proc.kill("SIGKILL");
    throw err;
  }
}

/** Reads a running child's stdout and stderr in the background, for `until` and the logs. */
export function watch<In extends Stdin>(proc: PipedProcess<In>, name = `pid ${proc.pid}`): Omit<ReadyProcess<In>, "match"> {
  const text = { stdout: "", stderr: "" };
  let waiters: (() => void)[] = [];
  const wake = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  const drain = async (which: "stdout" | "stderr") => {
    const decoder = new TextDecoder();
    const stream = proc[which] as ReadableStream<Uint8Array> | number | undefined;
    if (!(stream instanceof ReadableStream)) return; // not piped (stderrFile)
    try {
      for await (const chunk of stream) {
        const t = text[which] + decoder.decode(chunk, { stream: true });
        text[which] = t.length > 2 * KEEP ? t.slice(-KEEP) : t;
        wake();
      }
    } catch {
      // the stream errors when the child is killed mid-read: what was read is kept
    }
  };
  const done = Promise.all([drain("stdout"), drain("stderr")]);
  const log = () => (text.stderr ? `${text.stdout}\n--- stderr ---\n${text.stderr}` : text.stdout);
  let ended = false;
  void done.then(() => {
    ended = true;
    wake();
  });
  const find = (re: RegExp, stream: Stream, from: number) => {
    for (const s of stream === "either" ? (["stdout", "stderr"] as const) : [stream]) {
      const m = re.exec(text[s].slice(from));
      if (m) return m;
    }
    return null;
  };
  const until = async (re: RegExp, o: { timeoutMs?: number; stream?: Stream; from?: number } = {}) => {
    const deadline = Date.now() + (o.timeoutMs ?? 30_000);
    for (;;) {
      const m = find(re, o.stream ?? "stdout", o.from ?? 0);
      if (m) return m;
      if (ended) throw new NotReadyError(name, "exited", log());
      const left = deadline - Date.now();
      if (left <= 0) throw new NotReadyError(name, "timeout", log());
      // woken by new output, the end of both streams, or the deadline
      await new Promise<void>((r) => {
        const timer = setTimeout(r, left);
        waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
  };
  return { proc, stdout: () => text.stdout, stderr: () => text.stderr, log, until };
}
