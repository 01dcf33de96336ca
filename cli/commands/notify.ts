/**
 * `orrery notify` — a Nagios / Icinga notification command: reads the notification macros from arguments or from the
 * environment (NAGIOS_HOSTNAME, NAGIOS_SERVICEDESC, NAGIOS_SERVICESTATE, NAGIOS_NOTIFICATIONTYPE, … or the same with
 * ICINGA_), turns them into one alert and POSTs it to the ingest service's generic endpoint, which answers only once
 * the alert is stored in JetStream.
 *
 * Nagios (environment macros are on by default, enable_environment_macros=1):
 *   define command { command_name notify-orrery  command_line /usr/local/bin/orrery notify --url http://orrery:7071 }
 * Icinga2:
 *   object NotificationCommand "orrery" { command = [ "/usr/local/bin/orrery", "notify" ]
 *     env = { ICINGA_NOTIFICATIONTYPE = "$notification.type$", ICINGA_HOSTNAME = "$host.name$",
 *             ICINGA_HOSTADDRESS = "$address$", ICINGA_HOSTSTATE = "$host.state$", ICINGA_SERVICEDESC = "$service.name$",
 *             ICINGA_SERVICESTATE = "$service.state$", ICINGA_SERVICEOUTPUT = "$service.output$" } }
 *
 * With authentication on (the default), the ingest wants an ingest token for source "generic": --token, or
 * ORRERY_INGEST_TOKEN in the command's environment (Icinga2: env = { ORRERY_INGEST_TOKEN = "…" }).
 *
 * Exit codes: 0 stored, 1 not delivered (after retries; the reason on stderr), 2 bad arguments or macros.
 */
import { defineCommand, runMain } from "citty";
import { GenericAlert } from "../../pipelines/contracts/alerts.ts";
import { validate, ContractError } from "../../pipelines/codec.ts";
import { alertFromMacros, MacroError } from "../../pipelines/stages/alerts/nagios.ts";
import { NAGIOS_MACROS, type NagiosMacros } from "../../pipelines/contracts/vendors/nagios.ts";
import { bearer, CliConfigError, ingestTarget } from "../config.ts";

/** flag → macro */
const FLAGS = {
  type: "NOTIFICATIONTYPE",
  host: "HOSTNAME",
  address: "HOSTADDRESS",
  "host-state": "HOSTSTATE",
  "host-output": "HOSTOUTPUT",
  service: "SERVICEDESC",
  state: "SERVICESTATE",
  output: "SERVICEOUTPUT",
  "state-type": "SERVICESTATETYPE",
  author: "NOTIFICATIONAUTHOR",
  comment: "NOTIFICATIONCOMMENT",
} as const satisfies Record<string, (typeof NAGIOS_MACROS)[number]>;

/** Macros from NAGIOS_* then ICINGA_* environment variables, overridden by flags. */
export function macrosFrom(env: Record<string, string | undefined>, flags: Partial<Record<keyof typeof FLAGS, string>>): NagiosMacros {
  const m: NagiosMacros = {};
  for (const k of NAGIOS_MACROS) {
    const v = env[`NAGIOS_${k}`] ?? env[`ICINGA_${k}`];
    if (v !== undefined && v !== "") m[k] = v;
  }
  for (const [flag, macro] of Object.entries(FLAGS)) {
    const v = flags[flag as keyof typeof FLAGS];
    if (v !== undefined && v !== "") m[macro] = v;
  }
  // a host notification's state comes with --state when there is no service
  if (!m.SERVICEDESC && !m.HOSTSTATE && m.SERVICESTATE) {
    m.HOSTSTATE = m.SERVICESTATE;
    delete m.SERVICESTATE;
  }
  return m;
}

export interface NotifyIo {
  out: (s: string) => void;
  err: (s: string) => void;
  fetch: typeof fetch;
  sleep: (ms: number) => Promise<unknown>;
}

/** Builds and delivers the alert; returns the exit code. */
export async function runNotify(
  opts: { url: string; token?: string; source: string; macros: NagiosMacros; dryRun: boolean; retries: number; timeoutMs: number },
  io: NotifyIo,
): Promise<number> {
  let body;
  try {
    body = validate(GenericAlert, "notification", alertFromMacros(opts.macros, opts.source));
  } catch (e) {
    if (e instanceof MacroError || e instanceof ContractError) {
      io.err(`orrery notify: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (opts.dryRun) {
    io.out(JSON.stringify(body) + "\n");
    return 0;
  }
  const endpoint = `${opts.url.replace(/\/+$/, "")}/api/alerts/generic`;
  let last = "";
  for (let attempt = 0; attempt <= opts.retries; attempt++) {
    if (attempt) await io.sleep(Math.min(10_000, 500 * 2 ** (attempt - 1)));
    try {
      const res = await io.fetch(endpoint, {
        method: "POST",
        headers: { "content-type": "application/json", ...bearer(opts.token) },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(opts.timeoutMs),
      });
      const text = await res.text();
      if (res.ok) {
        io.out(text + "\n");
        return 0;
      }
      last = `HTTP ${res.status} from ${endpoint}: ${text.slice(0, 1000)}`;
      // the ingest refused this alert: retrying the same body cannot help
      if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) break;
    } catch (e) {
      last = `${endpoint}: ${(e as Error).message}`;
    }
  }
  io.err(`orrery notify: not delivered: ${last}\n`);
  return 1;
}

export const notify = defineCommand({
  meta: { name: "notify", description: "Nagios/Icinga notification command: send the notification macros to Orrery as an alert" },
  args: {
    url: { type: "string", description: "ingest service URL (env ORRERY_INGEST_URL, the config file, default http://127.0.0.1:7071)" },
    token: { type: "string", description: "ingest token for source generic (env ORRERY_INGEST_TOKEN, or the config file)" },
    source: { type: "string", description: "source name of the alert (default nagios)", default: "nagios" },
    type: { type: "string", description: "notification type: PROBLEM, RECOVERY, ACKNOWLEDGEMENT, DOWNTIMESTART, … (NOTIFICATIONTYPE)" },
    host: { type: "string", description: "host name (HOSTNAME)" },
    address: { type: "string", description: "host address (HOSTADDRESS)" },
    "host-state": { type: "string", description: "UP, DOWN, UNREACHABLE (HOSTSTATE)" },
    "host-output": { type: "string", description: "host check output (HOSTOUTPUT)" },
    service: { type: "string", description: "service description (SERVICEDESC); omit for a host notification" },
    state: { type: "string", description: "OK, WARNING, CRITICAL, UNKNOWN (SERVICESTATE)" },
    output: { type: "string", description: "service check output (SERVICEOUTPUT)" },
    "state-type": { type: "string", description: "HARD or SOFT (SERVICESTATETYPE)" },
    author: { type: "string", description: "acknowledgement/downtime author (NOTIFICATIONAUTHOR)" },
    comment: { type: "string", description: "acknowledgement/downtime comment (NOTIFICATIONCOMMENT)" },
    "dry-run": { type: "boolean", description: "print the alert instead of sending it" },
    retries: { type: "string", description: "retries when the ingest is unreachable or answers 5xx (default 3)" },
    timeout: { type: "string", description: "per-attempt timeout in ms (default 10000)" },
  },
  async run({ args }) {
    const int = (name: string, v: string | undefined, dflt: number) => {
      if (v === undefined || v === "") return dflt;
      const n = Number(v);
      if (!Number.isSafeInteger(n) || n < 0) {
        process.stderr.write(`orrery notify: --${name} must be a non-negative integer (got "${v}")\n`);
        process.exit(2);
      }
      return n;
    };
    const flags = Object.fromEntries(Object.keys(FLAGS).map((k) => [k, args[k as keyof typeof FLAGS] as string | undefined]));
    let target;
    try {
      target = ingestTarget({ url: args.url, token: args.token });
    } catch (e) {
      if (!(e instanceof CliConfigError)) throw e;
      process.stderr.write(`orrery notify: ${e.message}\n`);
      process.exit(2);
    }
    process.exitCode = await runNotify(
      {
        url: target.url,
        token: target.token,
        source: args.source,
        macros: macrosFrom(process.env, flags),
        dryRun: !!args["dry-run"],
        retries: int("retries", args.retries, 3),
        timeoutMs: int("timeout", args.timeout, 10_000),
      },
      { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), fetch, sleep: Bun.sleep },
    );
  },
});

if (import.meta.main) await runMain(notify);
