/**
 * The platform as `npm run demo` starts it, auth on, with an exporter configuration: the supervisor starts the
 * exporter service, which backfills the real topology to a signed webhook; the gateway shows its status
 * (GET /api/exporters) and the AsyncAPI document; the Node client follows the topology over the gateway's WebSocket
 * with an API token (run by `node`).
 */
import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Parser } from "@asyncapi/parser";
import { ExportersStatus } from "../../../pipelines/contracts/exporters.ts";
import { startStack } from "../../helpers/stack.ts";
import { tempDir, waitFor } from "../../helpers/tmp.ts";
import { createToken, login } from "../identity/stack.ts";
import { startReceiver } from "./receivers.ts";

const node = Bun.which("node");

test.skipIf(!node)("exporters, /api/exporters, /api/asyncapi.json and the Node client on the running platform (auth on)", async () => {
  const rx = startReceiver("webhook", { secret: "platform-secret" });
  const tmp = tempDir("orrery-exp-cfg-");
  const file = join(tmp.dir, "exporters.yaml");
  writeFileSync(file, `exporters:\n  - name: hook\n    vendor: webhook\n    url: ${rx.url}/in\n    options: { secretEnv: ORRERY_TEST_HOOK_SECRET }\n    classes:\n      host: { class: host, attributes: { name: name } }\n`);
  const password = "exporters-test-password";
  const stack = await startStack({ ORRERY_AUTH: "on", ORRERY_ADMIN_PASSWORD: password, ORRERY_EXPORTERS_CONFIG: file, ORRERY_EXPORTERS_PORT: "0", ORRERY_TEST_HOOK_SECRET: "platform-secret" });
  let client: ReturnType<typeof Bun.spawn> | undefined;
  try {
    const { cookie } = await login(stack.dashboard, "admin", password);
    const { token } = await createToken(stack.dashboard, { cookie: cookie! }, { kind: "api", name: "itsm", role: "viewer" });
    const auth = { authorization: `Bearer ${token}` };
    // the real topology (this host's agent, the simulated estate) reaches the webhook: every host once
    await waitFor(() => rx.creates.size >= 5, "hosts exported to the webhook", 60_000);
    expect([...rx.creates.values()].every((n) => n === 1)).toBe(true);
    expect(rx.violations).toEqual([]);
    expect((await fetch(`${stack.dashboard}/api/exporters`)).status).toBe(401);
    const st = ExportersStatus.parse(await (await fetch(`${stack.dashboard}/api/exporters`, { headers: auth })).json());
    expect(st.exporters.map((e) => [e.name, e.vendor, e.phase])).toEqual([["hook", "webhook", "following"]]);
    const doc = await (await fetch(`${stack.dashboard}/api/asyncapi.json`, { headers: auth })).text();
    const parsed = await new Parser().parse(doc);
    expect(parsed.diagnostics.filter((d) => d.severity === 0)).toEqual([]);
    // the Node client: a snapshot, then deltas in rev order
    const p = Bun.spawn([node!, "clients/node/example.mjs", "ws", stack.dashboard, token], { stdout: "pipe", stderr: "pipe" });
    client = p;
    const lines: { event: string; rev?: number; nodes?: number }[] = [];
    void (async () => {
      let buf = "";
      for await (const c of p.stdout) {
        buf += new TextDecoder().decode(c);
        let i;
        while ((i = buf.indexOf("\n")) >= 0) (lines.push(JSON.parse(buf.slice(0, i))), (buf = buf.slice(i + 1)));
      }
    })();
    await waitFor(() => lines.filter((l) => l.event === "delta").length >= 2, "a snapshot and deltas over the WebSocket", 60_000);
    expect(lines[0]!.event).toBe("snapshot");
    expect(lines[0]!.nodes).toBeGreaterThan(0);
    const revs = lines.filter((l) => l.event === "delta").map((l) => l.rev!);
    for (let i = 1; i < revs.length; i++) expect(revs[i]).toBe(revs[i - 1]! + 1);
  } finally {
    client?.kill("SIGTERM");
    expect(await stack.stop()).toBe(0);
    stack.cleanup();
    tmp.cleanup();
    rx.stop();
  }
}, 300_000);
