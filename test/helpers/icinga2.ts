/**
 * A real Icinga2 (Debian's icinga2) as a plain child process, no systemd: its own config, paths, CA and API
 * certificate (made by `icinga2 pki`) under a test's temp dir, an API listener on a free port and an ApiUser.
 * `env` reaches the daemon, e.g. libfaketime's LD_PRELOAD/FAKETIME to run it on a skewed clock.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { waitFor } from "./tmp.ts";

export const ICINGA2_BIN = Bun.which("icinga2", { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" }) ?? "/usr/sbin/icinga2";
/** libfaketime's preload library (Debian package libfaketime), when installed */
export const LIBFAKETIME = ["/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"].find((p) => Bun.file(p).size > 0);

export interface TestIcinga2 {
  node: string;
  user: string;
  password: string;
  apiPort: number;
  url: string;
  /** PEM of its CA */
  ca(): string;
  /** POST to its API (object queries as GET with a body, as Icinga2's docs recommend); throws on non-2xx */
  api(path: string, body: unknown): Promise<{ results: Record<string, unknown>[] }>;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** what the daemon printed since it was last started */
  output(): string;
}

async function freePort(): Promise<number> {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const p = s.port!;
  await s.stop(true);
  return p;
}

/** Sets up (does not start) an Icinga2 under `dir`: `objects` is Icinga2 config for its hosts, services etc. */
export async function makeIcinga2(dir: string, opts: { objects: string; permissions?: string[]; env?: Record<string, string> }): Promise<TestIcinga2> {
  const node = "orrery-test-node";
  const user = "orrery";
  const password = "s3cret-" + Math.random().toString(36).slice(2);
  const dirs = { etc: join(dir, "etc"), data: join(dir, "data"), log: join(dir, "log"), cache: join(dir, "cache"), spool: join(dir, "spool"), run: join(dir, "run") };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
  const id = (flag: string) => new TextDecoder().decode(Bun.spawnSync(["id", flag]).stdout).trim();
  // path constants instead of /etc, /var/lib, /var/log…: the daemon writes only under the test's temp dir
  const defines = [
    `-DConfigDir=${dirs.etc}`,
    `-DDataDir=${dirs.data}`,
    `-DLogDir=${dirs.log}`,
    `-DCacheDir=${dirs.cache}`,
    `-DSpoolDir=${dirs.spool}`,
    `-DInitRunDir=${dirs.run}`,
    `-DRunAsUser=${id("-un")}`,
    `-DRunAsGroup=${id("-gn")}`,
    `-DNodeName=${node}`,
    `-DZoneName=${node}`,
  ];
  const run = (args: string[]) => {
    const r = Bun.spawnSync([ICINGA2_BIN, ...args], { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`icinga2 ${args.join(" ")} failed: ${r.stdout.toString()}${r.stderr.toString()}`);
  };
  // CA and the API certificate of the node, as `icinga2 node setup` would make them
  run(["pki", "new-ca", ...defines]);
  const certs = join(dirs.data, "certs");
  mkdirSync(certs, { recursive: true });
  run(["pki", "new-cert", ...defines, "--cn", node, "--key", join(certs, `${node}.key`), "--csr", join(certs, `${node}.csr`)]);
  run(["pki", "sign-csr", ...defines, "--csr", join(certs, `${node}.csr`), "--cert", join(certs, `${node}.crt`)]);
  copyFileSync(join(dirs.data, "ca", "ca.crt"), join(certs, "ca.crt"));
  const apiPort = await freePort();
  const permissions = opts.permissions ?? ["events/*", "actions/*", "objects/query/*"];
  writeFileSync(
    join(dirs.etc, "icinga2.conf"),
    `include <itl>
object Endpoint NodeName { }
object Zone ZoneName { endpoints = [ NodeName ] }
object ApiListener "api" {
  bind_host = "127.0.0.1"
  bind_port = ${apiPort}
}
object ApiUser "${user}" {
  password = "${password}"
  permissions = ${JSON.stringify(permissions)}
}
object CheckerComponent "checker" { }
${opts.objects}
`,
  );

  const ca = () => readFileSync(join(certs, "ca.crt"), "utf8");
  const url = `https://127.0.0.1:${apiPort}`;
  const api = async (path: string, body: unknown) => {
    const r = await fetch(`${url}${path}`, {
      method: "POST",
      headers: {
        Authorization: `Basic ${btoa(`${user}:${password}`)}`,
        Accept: "application/json",
        "Content-Type": "application/json",
        "X-HTTP-Method-Override": path.startsWith("/v1/objects") ? "GET" : "POST",
      },
      body: JSON.stringify(body),
      tls: { ca: ca(), serverName: node },
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`icinga2 ${path}: ${r.status} ${text}`);
    return JSON.parse(text);
  };

  let proc: Subprocess | null = null;
  let out = "";
  const start = async () => {
    out = "";
    const p = Bun.spawn([ICINGA2_BIN, "daemon", ...defines, "-c", join(dirs.etc, "icinga2.conf")], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...opts.env } });
    proc = p;
    for (const s of [p.stdout, p.stderr] as ReadableStream<Uint8Array>[]) {
      void (async () => {
        for await (const c of s) out += new TextDecoder().decode(c);
      })();
    }
    await waitFor(async () => {
      if (p.exitCode !== null) throw new Error(`icinga2 exited ${p.exitCode}:\n${out}`);
      return (await api("/v1/objects/hosts", { attrs: ["name"] })).results.length > 0;
    }, "icinga2 API up", 30_000, 250).catch((e) => {
      throw new Error(`${(e as Error).message}\n${out.slice(-3000)}`);
    });
  };
  const stop = async () => {
    const p = proc;
    if (!p || p.exitCode !== null) return;
    p.kill("SIGTERM");
    const code = await Promise.race([p.exited, Bun.sleep(15_000).then(() => "timeout")]);
    if (code === "timeout") {
      p.kill("SIGKILL");
      await p.exited;
    }
    // the daemon's worker processes exit with it; wait until the port is free again
    await waitFor(async () => {
      try {
        await fetch(`${url}/v1`, { tls: { rejectUnauthorized: false } });
        return false;
      } catch {
        return true;
      }
    }, "icinga2 API down", 15_000, 200);
  };
  return { node, user, password, apiPort, url, ca, api, start, stop, output: () => out };
}
