/**
 * The CLI against a gateway with auth on: `orrery login` saves a token in the config file (0600), `orrery token`
 * creates, lists and revokes with it, and `orrery cypher` carries it (without one it is refused, and says how to
 * give one). At a terminal (a pseudo-terminal from util-linux `script`) the password is not echoed.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { tempDir } from "../../helpers/tmp.ts";
import { startAuthStack, type AuthStack } from "./stack.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const tmp = tempDir("orrery-cli-auth-");
const CONFIG = join(tmp.dir, "cli.json");
let stack: AuthStack;

beforeAll(async () => {
  stack = await startAuthStack();
}, 120_000);
afterAll(async () => {
  await stack?.stop();
  tmp.cleanup();
});

async function orrery(args: string[], env: Record<string, string> = {}, stdin?: string) {
  const p = Bun.spawn([process.execPath, "cli/main.ts", ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: tmp.dir, ORRERY_CONFIG: CONFIG, NO_COLOR: "1", ...env },
    stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code, out, err };
}

test("orrery login → token in the config file; token create/list/revoke and cypher use it", async () => {
  const wrong = await orrery(["login", "--url", stack.gateway, "--user", "admin"], { ORRERY_PASSWORD: "wrong" });
  expect(wrong.code).toBe(1);
  expect(wrong.err).toContain("wrong login or password (HTTP 401)");

  const ok = await orrery(["login", "--url", stack.gateway, "--user", "admin"], {}, `${stack.admin.password}\n`);
  expect(ok.err).not.toContain("error");
  expect(ok.code).toBe(0);
  expect(ok.out).toContain("logged in as admin (admin)");
  expect(statSync(CONFIG).mode & 0o777).toBe(0o600);
  const saved = JSON.parse(readFileSync(CONFIG, "utf8")) as { url: string; token: string };
  expect(saved.url).toBe(stack.gateway);
  expect(saved.token).toMatch(/^orr_/);
  expect(ok.out).not.toContain(saved.token);

  const kiosk = await orrery(["token", "create", "--kind", "kiosk", "--name", "lobby"]);
  expect(kiosk.code).toBe(0);
  expect(kiosk.out.trim()).toMatch(/^orr_[A-Za-z0-9_-]{43}$/);
  expect(kiosk.err).toContain("/kiosk?token=<the token>");

  const list = await orrery(["token", "list", "--json"]);
  expect(list.code).toBe(0);
  const tokens = JSON.parse(list.out) as { id: string; name: string; kind: string }[];
  expect(tokens.map((t) => t.kind).sort()).toEqual(["api", "kiosk"]);
  expect(list.out).not.toContain("orr_");

  const lobby = tokens.find((t) => t.name === "lobby")!;
  expect((await orrery(["token", "revoke", lobby.id])).code).toBe(0);
  expect((await orrery(["token", "revoke", lobby.id])).err).toContain("HTTP 404");

  // cypher passes the door with the saved token (the graph store itself is not running here: 503)
  const q = await orrery(["cypher", "MATCH (n) RETURN n LIMIT 1"]);
  expect(q.code).toBe(1);
  expect(q.err).toContain("HTTP 503");
  const anon = await orrery(["cypher", "MATCH (n) RETURN n LIMIT 1", "--url", stack.gateway], { ORRERY_CONFIG: join(tmp.dir, "none.json") });
  expect(anon.code).toBe(1);
  expect(anon.err).toContain("HTTP 401");
  expect(anon.err).toContain("orrery login");
}, 180_000);

const noScript = ["/usr/bin/script", "/bin/script"].some(existsSync) ? "" : "util-linux script is not installed";

test.skipIf(!!noScript)(`at a terminal the password is read without echo${noScript ? ` (${noScript})` : ""}`, async () => {
  const config = join(tmp.dir, "tty.json");
  const sh = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
  const cmd = [process.execPath, "cli/main.ts", "login", "--url", stack.gateway, "--user", "admin"].map(sh).join(" ");
  const p = Bun.spawn(["script", "-qfec", cmd, "/dev/null"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: tmp.dir, ORRERY_CONFIG: config, NO_COLOR: "1", TERM: "dumb" },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  let screen = "";
  const reading = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of p.stdout) screen += dec.decode(chunk);
  })();
  // typed only once the prompt is up: before that the terminal is still in its echoing mode
  const deadline = Date.now() + 30_000;
  while (!screen.includes("password: ") && Date.now() < deadline) await Bun.sleep(50);
  expect(screen).toContain("password: ");
  p.stdin.write(`${stack.admin.password}\r`);
  await p.stdin.flush();
  const code = await p.exited;
  p.stdin.end();
  await reading;
  expect(screen).toContain("logged in as admin (admin)");
  expect(code).toBe(0);
  expect(screen).not.toContain(stack.admin.password);
  expect((JSON.parse(readFileSync(config, "utf8")) as { token: string }).token).toMatch(/^orr_/);
}, 60_000);
