/**
 * The ingest service's doors with auth on (its main.ts as a child process): per-source ingest tokens made at the
 * gateway, sent as a bearer token or as basic auth's password, by a real Alertmanager (`http_config.authorization`),
 * `orrery notify --token`, and plain requests; a wrong, missing, other-source or revoked token is refused.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { DeliverPolicy } from "@nats-io/jetstream";
import type { Subprocess } from "bun";
import { decode } from "../../../pipelines/codec.ts";
import { AlertBatch, type Alert } from "../../../pipelines/contracts/alerts.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { tempDir, waitFor } from "../../helpers/tmp.ts";
import { createToken, login, startAuthStack, type AuthStack } from "./stack.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const AM_BIN = "/usr/bin/prometheus-alertmanager";
const hasAm = await Bun.file(AM_BIN).exists();
const tmp = tempDir("orrery-ingest-auth-");

let stack: AuthStack;
let bus: Bus;
let admin: Record<string, string>;
const tokens: Record<string, { id: string; token: string }> = {};

beforeAll(async () => {
  stack = await startAuthStack({ ingest: true });
  bus = await connectBus({ url: stack.nats.url, prefix: stack.prefix, name: "ingest-auth-test" });
  admin = { cookie: (await login(stack.gateway, stack.admin.login, stack.admin.password)).cookie! };
  for (const source of ["alertmanager", "prometheus", "generic"]) tokens[source] = await createToken(stack.gateway, admin, { kind: "ingest", name: `test-${source}`, source });
  tokens.viewer = await createToken(stack.gateway, admin, { kind: "api", name: "reader", role: "viewer" });
  // the ingest follows the identity bucket: the new tokens arrive within moments
  await waitFor(async () => (await fetch(`${stack.ingest}/api/alerts/rejected`, { headers: { authorization: `Bearer ${tokens.viewer!.token}` } })).status === 200, "the ingest knows the new tokens");
}, 120_000);

afterAll(async () => {
  await bus?.close();
  await stack?.stop();
  tmp.cleanup();
});

const genericAlert = (name: string) => ({ source: "nagios", severity: "critical", state: "firing", labels: { alertname: name }, target: { host: "db1", service: name }, summary: "test" });

function post(path: string, headers: Record<string, string>, body: unknown): Promise<Response> {
  return fetch(`${stack.ingest}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
}
const bearer = (name: string) => ({ authorization: `Bearer ${tokens[name]!.token}` });

async function streamAlerts(): Promise<Alert[]> {
  const info = await bus.jsm.streams.info(bus.topo.streams.alerts.name);
  if (!info.state.messages) return [];
  const c = await bus.js.consumers.get(bus.topo.streams.alerts.name, { deliver_policy: DeliverPolicy.All });
  const out: Alert[] = [];
  for await (const m of await c.fetch({ max_messages: info.state.messages, expires: 2000 })) {
    out.push(...decode(AlertBatch, "alert.v1", m.data).alerts);
    if (m.info.pending === 0) break;
  }
  return out;
}

test("alerts need an ingest token of their source: none or a made-up one 401, another source's or an API token 403, the right one stored", async () => {
  const body = { alerts: [genericAlert("door")] };
  expect((await post("/api/alerts/generic", {}, body)).status).toBe(401);
  expect((await post("/api/alerts/generic", { authorization: "Bearer orr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, body)).status).toBe(401);
  expect((await post("/api/alerts/generic", bearer("alertmanager"), body)).status).toBe(403);
  expect((await post("/api/alerts/generic", bearer("viewer"), body)).status).toBe(403);
  const ok = await post("/api/alerts/generic", bearer("generic"), body);
  expect(ok.status).toBe(202);
  // basic auth with the token as the password, as Alertmanager's and Prometheus's basic_auth send it
  const basic = await post("/api/alerts/generic", { authorization: `Basic ${btoa(`generic:${tokens.generic!.token}`)}` }, { alerts: [genericAlert("door-basic")] });
  expect(basic.status).toBe(202);
  await waitFor(async () => (await streamAlerts()).filter((a) => a.labels.alertname === "door" || a.labels.alertname === "door-basic").length === 2, "both alerts on JetStream");
});

test("remote_write needs the prometheus token; reading refusals needs an API token, not an ingest one; /healthz is open", async () => {
  const write = (h: Record<string, string>) => fetch(`${stack.ingest}/api/v1/write`, { method: "POST", headers: { "content-type": "application/x-protobuf", "content-encoding": "snappy", ...h }, body: new Uint8Array([0]) });
  expect((await write({})).status).toBe(401);
  expect((await write(bearer("alertmanager"))).status).toBe(403);
  // past the door (what it answers then is the write's own: a lone zero byte reads as an empty write)
  expect([401, 403]).not.toContain((await write(bearer("prometheus"))).status);
  expect((await fetch(`${stack.ingest}/api/alerts/rejected`)).status).toBe(401);
  expect((await fetch(`${stack.ingest}/api/alerts/rejected`, { headers: bearer("generic") })).status).toBe(403);
  expect((await fetch(`${stack.ingest}/api/alerts/rejected`, { headers: bearer("viewer") })).status).toBe(200);
  expect((await fetch(`${stack.ingest}/healthz`)).status).toBe(200);
});

test("orrery notify carries its token (flag or ORRERY_INGEST_TOKEN); without one it is refused and says so", async () => {
  const run = async (env: Record<string, string>, args: string[]) => {
    const p = Bun.spawn([process.execPath, "cli/commands/notify.ts", "--url", stack.ingest!, "--host", "web1", "--state", "DOWN", "--type", "PROBLEM", "--retries", "0", ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", HOME: tmp.dir, ...env },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
    return { code, err };
  };
  const none = await run({}, []);
  expect(none.code).toBe(1);
  expect(none.err).toContain("HTTP 401");
  expect((await run({}, ["--token", tokens.generic!.token])).code).toBe(0);
  expect((await run({ ORRERY_INGEST_TOKEN: tokens.generic!.token }, [])).code).toBe(0);
});

test.skipIf(!hasAm)("a real Alertmanager with http_config.authorization delivers; revoking its token shuts the door within moments", async () => {
  const port = await (async () => {
    const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
    const p = s.port!;
    await s.stop(true);
    return p;
  })();
  mkdirSync(join(tmp.dir, "am"), { recursive: true });
  writeFileSync(
    join(tmp.dir, "am", "alertmanager.yml"),
    [
      "route:",
      "  receiver: orrery",
      "  group_by: ['alertname']",
      "  group_wait: 0s",
      "  group_interval: 1s",
      "  repeat_interval: 1h",
      "receivers:",
      "  - name: orrery",
      "    webhook_configs:",
      `      - url: ${stack.ingest}/api/alerts/alertmanager`,
      "        send_resolved: true",
      "        http_config:",
      "          authorization:",
      "            type: Bearer",
      `            credentials: ${tokens.alertmanager!.token}`,
      "",
    ].join("\n"),
  );
  const am: Subprocess = Bun.spawn(
    [AM_BIN, `--config.file=${join(tmp.dir, "am", "alertmanager.yml")}`, `--storage.path=${join(tmp.dir, "am", "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--cluster.listen-address="],
    { stdout: "ignore", stderr: "ignore" },
  );
  try {
    const amUrl = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(`${amUrl}/-/ready`)).ok, "alertmanager ready", 20_000, 200);
    const fire = (alertname: string) =>
      fetch(`${amUrl}/api/v2/alerts`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify([{ labels: { alertname, instance: "10.0.0.5:9187", severity: "critical" }, annotations: {}, startsAt: new Date().toISOString(), endsAt: new Date(Date.now() + 300_000).toISOString() }]),
      });
    expect((await fire("AuthorizedAlert")).status).toBe(200);
    await waitFor(async () => (await streamAlerts()).find((a) => a.labels.alertname === "AuthorizedAlert"), "Alertmanager's alert on JetStream", 30_000, 250);

    // revoked at the gateway: the ingest hears of it and refuses the same token
    expect((await fetch(`${stack.gateway}/api/tokens/${tokens.alertmanager!.id}`, { method: "DELETE", headers: admin })).status).toBe(200);
    await waitFor(async () => (await post("/api/alerts/alertmanager", bearer("alertmanager"), { alerts: [] })).status === 401, "the revoked token refused at the ingest", 5000, 50);
    expect((await fire("AfterRevocation")).status).toBe(200);
    await Bun.sleep(3000);
    expect((await streamAlerts()).find((a) => a.labels.alertname === "AfterRevocation")).toBeUndefined();
  } finally {
    am.kill("SIGTERM");
    await am.exited;
  }
}, 90_000);

test("no token in the ingest's or the gateway's logs", () => {
  const logs = stack.logs();
  for (const [name, t] of Object.entries(tokens)) expect([name, logs.includes(t.token)]).toEqual([name, false]);
  expect(logs).not.toContain(stack.admin.password);
});
