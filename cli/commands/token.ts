/**
 * `orrery login` and `orrery token …`: API tokens through the gateway (/api/login, /api/tokens).
 *
 *   orrery login --user alice                  password from ORRERY_PASSWORD or stdin (not echoed at a terminal);
 *                                              creates an API token for this CLI and writes it (and the URL) to the
 *                                              config file (cli/config.ts)
 *   orrery token create --name ci [--role viewer] [--ttl-days 30]
 *   orrery token create --kind kiosk --name lobby-tv        (admin) → open <gateway>/kiosk?token=… on the TV
 *   orrery token create --kind ingest --source alertmanager --name am   (admin) → Alertmanager http_config
 *   orrery token list | orrery token revoke <id>
 *
 * A token is printed once, when it is created; the gateway keeps only its hash.
 * Exit codes: 0 done, 1 refused or unreachable (the reason on stderr), 2 bad arguments.
 */
import { hostname } from "node:os";
import { defineCommand } from "citty";
import type { CreatedToken, TokenInfo } from "../../pipelines/contracts/identity.ts";
import { bearer, CliConfigError, gatewayTarget, readConfig, writeConfig } from "../config.ts";
import { PromptInterrupted, readSecret } from "../prompt.ts";

export interface TokenIo {
  out: (s: string) => void;
  err: (s: string) => void;
  fetch: typeof fetch;
}

const stdio: TokenIo = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), fetch };

async function call(io: TokenIo, url: string, path: string, init: RequestInit): Promise<{ ok: true; body: unknown; res: Response } | { ok: false }> {
  const endpoint = `${url.replace(/\/+$/, "")}${path}`;
  let res: Response;
  try {
    res = await io.fetch(endpoint, { ...init, redirect: "manual", signal: AbortSignal.timeout(30_000) });
  } catch (e) {
    io.err(`error: cannot reach the gateway at ${endpoint}: ${(e as Error).message}\n`);
    return { ok: false };
  }
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: said below as text
  }
  if (!res.ok) {
    const msg = body && typeof body === "object" && "error" in body ? String((body as { error: unknown }).error) : text.slice(0, 300);
    io.err(`error: ${msg} (HTTP ${res.status})\n`);
    return { ok: false };
  }
  return { ok: true, body, res };
}

/** Logs in with a password, creates an API token named for this machine, stores URL and token in the config file. */
export async function runLogin(o: { url: string; user: string; password: string; ttlDays?: number }, io: TokenIo = stdio): Promise<number> {
  const login = await call(io, o.url, "/api/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ login: o.user, password: o.password }) });
  if (!login.ok) return 1;
  const cookie = (login.res.headers.get("set-cookie") ?? "").split(";")[0]!;
  const created = await call(io, o.url, "/api/tokens", {
    method: "POST",
    headers: { "content-type": "application/json", cookie },
    body: JSON.stringify({ kind: "api", name: `cli@${hostname()}`, ...(o.ttlDays ? { ttlDays: o.ttlDays } : {}) }),
  });
  // the session was only a means to the token
  await call(io, o.url, "/api/logout", { method: "POST", headers: { cookie } });
  if (!created.ok) return 1;
  const t = created.body as CreatedToken;
  const file = writeConfig({ ...readConfig(), url: o.url, token: t.token });
  io.out(`logged in as ${o.user} (${t.role}); token ${t.id} saved in ${file}${t.expiresAt ? `, valid until ${new Date(t.expiresAt).toISOString()}` : ""}\n`);
  return 0;
}

export async function runTokenCreate(
  o: { url: string; token?: string; kind: string; name: string; role?: string; source?: string; ttlDays?: number | null },
  io: TokenIo = stdio,
): Promise<number> {
  const body = { kind: o.kind, name: o.name, ...(o.role ? { role: o.role } : {}), ...(o.source ? { source: o.source } : {}), ...(o.ttlDays !== undefined ? { ttlDays: o.ttlDays } : {}) };
  const r = await call(io, o.url, "/api/tokens", { method: "POST", headers: { "content-type": "application/json", ...bearer(o.token) }, body: JSON.stringify(body) });
  if (!r.ok) return 1;
  const t = r.body as CreatedToken;
  io.out(`${t.token}\n`);
  const hint =
    t.kind === "kiosk"
      ? `open ${o.url.replace(/\/+$/, "")}/kiosk?token=<the token> on the wallboard`
      : t.kind === "ingest"
        ? `${t.source === "prometheus" ? "Prometheus remote_write" : `webhook /api/alerts/${t.source}`}: http_config authorization { type: Bearer, credentials: <the token> }`
        : "use it with --token, ORRERY_TOKEN, or Authorization: Bearer";
  io.err(`token ${t.id} (${t.kind}, ${t.role}${t.source ? `, source ${t.source}` : ""}) created; it is shown only this once. ${hint}\n`);
  return 0;
}

export async function runTokenList(o: { url: string; token?: string; json: boolean }, io: TokenIo = stdio): Promise<number> {
  const r = await call(io, o.url, "/api/tokens", { headers: bearer(o.token) });
  if (!r.ok) return 1;
  const tokens = (r.body as { tokens: TokenInfo[] }).tokens;
  if (o.json) io.out(JSON.stringify(tokens, null, 2) + "\n");
  else
    for (const t of tokens)
      io.out(`${t.id}  ${t.kind.padEnd(6)}  ${t.role.padEnd(8)}  ${(t.source ?? "-").padEnd(12)}  ${t.owner.padEnd(16)}  ${t.expiresAt ? new Date(t.expiresAt).toISOString() : "never expires".padEnd(24)}  ${t.name}\n`);
  return 0;
}

export async function runTokenRevoke(o: { url: string; token?: string; id: string }, io: TokenIo = stdio): Promise<number> {
  const r = await call(io, o.url, `/api/tokens/${encodeURIComponent(o.id)}`, { method: "DELETE", headers: bearer(o.token) });
  if (!r.ok) return 1;
  io.out(`revoked ${o.id}\n`);
  return 0;
}

const common = {
  url: { type: "string", description: "gateway base URL (env ORRERY_URL, the config file, default http://127.0.0.1:7070)" },
  token: { type: "string", description: "API token (env ORRERY_TOKEN, or the config file)" },
} as const;

/** the target, or exit 2 with the config file's problem */
function target(args: { url?: string; token?: string }) {
  try {
    return gatewayTarget(args);
  } catch (e) {
    if (!(e instanceof CliConfigError)) throw e;
    process.stderr.write(`error: ${e.message}\n`);
    process.exit(2);
  }
}

function ttl(v: string | undefined): number | null | undefined {
  if (v === undefined || v === "") return undefined;
  if (v === "never") return null;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) {
    process.stderr.write(`error: --ttl-days must be a positive integer or "never" (got "${v}")\n`);
    process.exit(2);
  }
  return n;
}

async function readPassword(): Promise<string> {
  if (process.env.ORRERY_PASSWORD) return process.env.ORRERY_PASSWORD;
  try {
    return await readSecret("password: ");
  } catch (e) {
    if (!(e instanceof PromptInterrupted)) throw e;
    process.exit(130);
  }
}

export const login = defineCommand({
  meta: { name: "login", description: "Log in with a password and save an API token for the CLI in the config file" },
  args: {
    url: common.url,
    user: { type: "string", description: "login (default: the local admin, admin)", default: "admin" },
    "ttl-days": { type: "string", description: "the token's lifetime in days (default: the gateway's, 90)" },
  },
  async run({ args }) {
    const t = target({ url: args.url });
    const password = await readPassword();
    if (!password) {
      process.stderr.write("error: no password (stdin or ORRERY_PASSWORD)\n");
      process.exitCode = 2;
      return;
    }
    process.exitCode = await runLogin({ url: t.url, user: String(args.user), password, ttlDays: ttl(args["ttl-days"]) ?? undefined });
  },
});

export const token = defineCommand({
  meta: { name: "token", description: "API, kiosk and ingest tokens: create, list, revoke" },
  subCommands: {
    create: defineCommand({
      meta: { name: "create", description: "Create a token; it is printed once" },
      args: {
        ...common,
        kind: { type: "string", description: "api (default) | kiosk (a wallboard's viewer login) | ingest (Alertmanager, Prometheus, orrery notify)", default: "api" },
        name: { type: "string", description: "what the token is for", required: true },
        role: { type: "string", description: "api tokens: viewer | operator | expert | admin (at most yours; default yours)" },
        source: { type: "string", description: "ingest tokens: alertmanager | generic | prometheus" },
        "ttl-days": { type: "string", description: 'lifetime in days, or "never" (default: api 90 days, kiosk and ingest never)' },
      },
      async run({ args }) {
        const t = target(args);
        process.exitCode = await runTokenCreate({ ...t, kind: String(args.kind), name: String(args.name), role: args.role, source: args.source, ttlDays: ttl(args["ttl-days"]) });
      },
    }),
    list: defineCommand({
      meta: { name: "list", description: "Tokens (an admin sees all; others their own); never the secrets" },
      args: { ...common, json: { type: "boolean", description: "as JSON", default: false } },
      async run({ args }) {
        process.exitCode = await runTokenList({ ...target(args), json: !!args.json });
      },
    }),
    revoke: defineCommand({
      meta: { name: "revoke", description: "Revoke a token by its id" },
      args: { ...common, id: { type: "positional", required: true, description: "the token's id (orrery token list)" } },
      async run({ args }) {
        process.exitCode = await runTokenRevoke({ ...target(args), id: String(args.id) });
      },
    }),
  },
});
