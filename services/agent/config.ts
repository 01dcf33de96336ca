/**
 * The agent's configuration: defaults < JSON config file < environment < command-line flags. Pure: argv, env and the
 * file reader come in, a validated config (or a clear error naming the key) comes out; main.ts does the I/O.
 */
import { parseArgs } from "node:util";
import { z } from "zod";

export const AgentConfig = z
  .object({
    natsUrl: z.string().min(1).default("nats://127.0.0.1:4222"),
    natsUser: z.string().optional(),
    natsPass: z.string().optional(),
    natsToken: z.string().optional(),
    /** an nkey user's seed, as a broker binding hands it out (credentials.nats.seed) */
    natsNkeySeed: z.string().regex(/^SU[A-Z2-7]+$/, "an nkey user seed (SU…, a binding's credentials.nats.seed)").optional(),
    /**
     * The broker tenant this agent publishes as: its subjects are `<prefix>.{discovery,metrics}.v1.<tenant>.…` and its
     * host and services carry the prop tenant=<id>. A binding's graph_source (`tenant:<id>`) is accepted as well.
     */
    tenant: z
      .string()
      .transform((t) => (t.startsWith("tenant:") ? t.slice("tenant:".length) : t))
      .pipe(z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "a tenant id (letters, digits, _ and -; up to 64), e.g. the token after discovery.v1 in a binding's discovery_subject"))
      .optional(),
    prefix: z.string().regex(/^[a-zA-Z0-9_-]+$/, "letters, digits, _ and - only").default("orrery"),
    /** the host id every event is about; the machine's hostname when unset */
    hostId: z.string().min(1).max(255).optional(),
    intervalMs: z.number().int().min(200).max(3_600_000).default(5000),
    fullEvery: z.number().int().min(1).max(10_000).default(12),
    procRoot: z.string().min(1).default("/proc"),
    etcRoot: z.string().min(1).default("/etc"),
    quiet: z.boolean().default(false),
    /** scan and publish once, then exit */
    once: z.boolean().default(false),
  })
  .strict();
export type AgentConfig = z.infer<typeof AgentConfig>;

export class AgentConfigError extends Error {
  override readonly name = "AgentConfigError";
}

export const USAGE = `orrery-agent — Orrery's host agent: reports this host's facts, listening sockets and connections (with the
owning processes) to NATS JetStream as discovery.v1, and per-process CPU/RSS and connection counts as metrics.v1.

Usage: orrery-agent [options]

Options (each also settable in the config file, key in brackets, and the environment):
  -c, --config <file>       JSON config file                       env ORRERY_AGENT_CONFIG
      --nats-url <url>      NATS server [natsUrl]                   env NATS_URL           (nats://127.0.0.1:4222)
      --nats <url>          same as --nats-url
      --nats-user <user>    [natsUser]                              env NATS_USER
      --nats-pass <pass>    [natsPass]                              env NATS_PASS
      --nats-token <token>  [natsToken]                             env NATS_TOKEN
      --nats-nkey-seed-file <file>  file holding an nkey seed (SU…)    env NATS_NKEY_SEED_FILE
                            the seed itself: [natsNkeySeed]         env NATS_NKEY_SEED
      --tenant <id>         broker tenant to publish as [tenant]    env ORRERY_TENANT
      --prefix <p>          subject/stream prefix [prefix]          env ORRERY_PREFIX      (orrery)
      --host-id <id>        host id [hostId]                        env ORRERY_HOST_ID     (hostname)
      --interval-ms <ms>    scan interval [intervalMs]              env ORRERY_AGENT_INTERVAL_MS (5000)
      --interval <ms>       same as --interval-ms
      --full-every <n>      every nth scan is a full state [fullEvery] env ORRERY_AGENT_FULL_EVERY (12)
      --proc-root <dir>     procfs to read [procRoot]               env ORRERY_PROC_ROOT   (/proc)
      --etc-root <dir>      where passwd/os-release/hostname are [etcRoot] env ORRERY_ETC_ROOT (/etc)
      --quiet               warnings and errors only [quiet]        env ORRERY_LOG_QUIET=1
      --once                one scan, publish, exit [once]
  -h, --help                this help

In a container, mount the host's /proc and /etc (e.g. at /host/proc, /host/etc) and point these at them: with a
proc root other than /proc the agent reads the host's network namespace (pid 1's), not its own.
Precedence: flags > environment > config file > defaults. Runs unprivileged: processes of other users are then
reported as blind spots (log line and the agent_unreadable_processes metric); run as root to see every owner.
As a broker tenant (a binding's credentials): NATS_URL=<nats.url> ORRERY_PREFIX=<subject_prefix>
ORRERY_TENANT=<graph_source> and the seed (<nats.seed>) in NATS_NKEY_SEED_FILE; the agent then publishes under the
tenant's subjects only, and its host and services carry tenant=<id> (the binding's dashboard view filters on it).
Exit codes: 0 ok, 1 runtime failure (e.g. NATS unreachable), 2 bad flags or configuration.`;

const FLAGS = {
  config: { type: "string", short: "c" },
  "nats-url": { type: "string" },
  nats: { type: "string" },
  "nats-user": { type: "string" },
  "nats-pass": { type: "string" },
  "nats-token": { type: "string" },
  "nats-nkey-seed-file": { type: "string" },
  tenant: { type: "string" },
  prefix: { type: "string" },
  "host-id": { type: "string" },
  "interval-ms": { type: "string" },
  interval: { type: "string" },
  "full-every": { type: "string" },
  "proc-root": { type: "string" },
  "etc-root": { type: "string" },
  quiet: { type: "boolean" },
  once: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const ENV: Record<string, keyof AgentConfig> = {
  NATS_URL: "natsUrl",
  NATS_USER: "natsUser",
  NATS_PASS: "natsPass",
  NATS_TOKEN: "natsToken",
  NATS_NKEY_SEED: "natsNkeySeed",
  ORRERY_TENANT: "tenant",
  ORRERY_PREFIX: "prefix",
  ORRERY_HOST_ID: "hostId",
  ORRERY_AGENT_INTERVAL_MS: "intervalMs",
  ORRERY_AGENT_FULL_EVERY: "fullEvery",
  ORRERY_PROC_ROOT: "procRoot",
  ORRERY_ETC_ROOT: "etcRoot",
  ORRERY_LOG_QUIET: "quiet",
};
const NUMERIC = new Set<keyof AgentConfig>(["intervalMs", "fullEvery"]);

export type Resolved = { help: true } | { help: false; config: AgentConfig };

/** Resolves the configuration, or throws AgentConfigError saying which flag, variable or key is wrong. */
export function resolveAgentConfig(argv: string[], env: Record<string, string | undefined>, readFile: (path: string) => string): Resolved {
  let flags: ReturnType<typeof parseArgs<{ options: typeof FLAGS; strict: true; allowPositionals: false }>>["values"];
  try {
    flags = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new AgentConfigError(`${(e as Error).message} (see --help)`);
  }
  if (flags.help) return { help: true };
  // Short spellings of two long flags; both at once would leave one silently ignored.
  for (const [short, long] of [["nats", "nats-url"], ["interval", "interval-ms"]] as const)
    if (flags[short] !== undefined && flags[long] !== undefined) throw new AgentConfigError(`--${short} and --${long} are the same setting: give one (see --help)`);

  let file: Record<string, unknown> = {};
  const path = flags.config ?? env.ORRERY_AGENT_CONFIG;
  if (path) {
    let text: string;
    try {
      text = readFile(path);
    } catch (e) {
      throw new AgentConfigError(`cannot read config file ${path}: ${(e as Error).message}`);
    }
    try {
      file = JSON.parse(text);
    } catch (e) {
      throw new AgentConfigError(`config file ${path} is not valid JSON: ${(e as Error).message}`);
    }
    if (typeof file !== "object" || file === null || Array.isArray(file)) throw new AgentConfigError(`config file ${path} must hold a JSON object`);
  }

  const merged: Record<string, unknown> = { ...file };
  const origin: Record<string, string> = Object.fromEntries(Object.keys(file).map((k) => [k, `config file ${path} key "${k}"`]));
  const set = (key: keyof AgentConfig, raw: string | boolean, from: string) => {
    let v: unknown = raw;
    if (NUMERIC.has(key) && typeof raw === "string") v = raw.trim() === "" ? NaN : Number(raw);
    if (key === "quiet" && typeof raw === "string") v = raw === "1" || raw === "true";
    merged[key] = v;
    origin[key] = from;
  };
  for (const [name, key] of Object.entries(ENV)) {
    const v = env[name];
    if (v !== undefined && v !== "") set(key, v, `environment variable ${name}`);
  }
  const flagKey: Record<string, keyof AgentConfig> = {
    nats: "natsUrl",
    "nats-url": "natsUrl",
    "nats-user": "natsUser",
    "nats-pass": "natsPass",
    "nats-token": "natsToken",
    tenant: "tenant",
    prefix: "prefix",
    "host-id": "hostId",
    interval: "intervalMs",
    "interval-ms": "intervalMs",
    "full-every": "fullEvery",
    "proc-root": "procRoot",
    "etc-root": "etcRoot",
    quiet: "quiet",
    once: "once",
  };
  for (const [flag, key] of Object.entries(flagKey)) {
    const v = (flags as Record<string, string | boolean | undefined>)[flag];
    if (v !== undefined) set(key, v, `flag --${flag}`);
  }

  // A seed file (mode 0600) keeps the seed out of the process's environment and argv; it wins over NATS_NKEY_SEED.
  const seedFile = flags["nats-nkey-seed-file"] ?? (env.NATS_NKEY_SEED_FILE || undefined);
  if (seedFile !== undefined) {
    const from = flags["nats-nkey-seed-file"] !== undefined ? `flag --nats-nkey-seed-file ${seedFile}` : `environment variable NATS_NKEY_SEED_FILE (${seedFile})`;
    try {
      set("natsNkeySeed", readFile(seedFile).trim(), from);
    } catch (e) {
      throw new AgentConfigError(`cannot read the nkey seed file ${seedFile}: ${(e as Error).message}`);
    }
  }
  const r = AgentConfig.safeParse(merged);
  if (!r.success) {
    const msg = r.error.issues
      .map((i) => {
        const key = String(i.path[0] ?? (i.code === "unrecognized_keys" ? i.keys.join(", ") : ""));
        const where = origin[key] ?? (i.code === "unrecognized_keys" ? `config file ${path}` : key);
        return `${where}: ${i.message}`;
      })
      .join("; ");
    throw new AgentConfigError(`invalid configuration: ${msg}`);
  }
  return { help: false, config: r.data };
}
