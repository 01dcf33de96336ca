/**
 * Where the CLI finds its gateway and its token: a flag, else the environment (ORRERY_URL, ORRERY_TOKEN; `orrery
 * notify`: ORRERY_INGEST_URL, ORRERY_INGEST_TOKEN), else the config file `orrery login` writes ($ORRERY_CONFIG, or
 * $XDG_CONFIG_HOME/orrery/cli.json, or ~/.config/orrery/cli.json; mode 0600, since it holds a token).
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { z } from "zod";
import { formatIssues } from "../pipelines/issues.ts";

export const CliConfig = z
  .object({
    url: z.string().url().optional(),
    token: z.string().min(1).optional(),
    ingestUrl: z.string().url().optional(),
    ingestToken: z.string().min(1).optional(),
  })
  .strict();
export type CliConfig = z.infer<typeof CliConfig>;

export class CliConfigError extends Error {
  override readonly name = "CliConfigError";
}

export function configPath(env: Record<string, string | undefined> = process.env): string {
  if (env.ORRERY_CONFIG) return env.ORRERY_CONFIG;
  return join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config"), "orrery", "cli.json");
}

/** The config file's contents; {} when there is none. A file that is there but wrong is an error, never ignored. */
export function readConfig(env: Record<string, string | undefined> = process.env): CliConfig {
  const file = configPath(env);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new CliConfigError(`${file}: cannot read: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CliConfigError(`${file}: not JSON: ${(e as Error).message}`);
  }
  const r = CliConfig.safeParse(raw);
  if (!r.success) throw new CliConfigError(`${file}: ${formatIssues(r.error, { root: "(file)" })}`);
  return r.data;
}

export function writeConfig(c: CliConfig, env: Record<string, string | undefined> = process.env): string {
  const file = configPath(env);
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  writeFileSync(file, JSON.stringify(CliConfig.parse(c), null, 2) + "\n", { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}

const DEFAULT_GATEWAY = "http://127.0.0.1:7070";
const DEFAULT_INGEST = "http://127.0.0.1:7071";

/** The gateway's URL and the token for it: flag, environment, config file, in that order. */
export function gatewayTarget(flags: { url?: string; token?: string }, env: Record<string, string | undefined> = process.env): { url: string; token?: string } {
  const needFile = !(flags.url || env.ORRERY_URL) || !(flags.token || env.ORRERY_TOKEN);
  const file = needFile ? readConfig(env) : {};
  return { url: flags.url || env.ORRERY_URL || file.url || DEFAULT_GATEWAY, token: flags.token || env.ORRERY_TOKEN || file.token };
}

/** The ingest service's URL and the ingest token for `orrery notify`. */
export function ingestTarget(flags: { url?: string; token?: string }, env: Record<string, string | undefined> = process.env): { url: string; token?: string } {
  const needFile = !(flags.url || env.ORRERY_INGEST_URL) || !(flags.token || env.ORRERY_INGEST_TOKEN);
  const file = needFile ? readConfig(env) : {};
  return { url: flags.url || env.ORRERY_INGEST_URL || file.ingestUrl || DEFAULT_INGEST, token: flags.token || env.ORRERY_INGEST_TOKEN || file.ingestToken };
}

export const bearer = (token: string | undefined): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});
