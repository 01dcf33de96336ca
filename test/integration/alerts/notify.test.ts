/**
 * `orrery notify` as Nagios/Icinga would run it: a child process with NAGIOS_* / ICINGA_* environment macros →
 * the ingest service (real HTTP) → JetStream (alert.v1). Bad macros and an unreachable ingest give their exit codes.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { resolve } from "node:path";
import { DeliverPolicy } from "@nats-io/jetstream";
import { decode } from "../../../pipelines/codec.ts";
import { AlertBatch, type Alert } from "../../../pipelines/contracts/alerts.ts";
import { alertPublisher } from "../../../services/alerts/publish.ts";
import { startIngestServer } from "../../../services/ingest/server.ts";
// ORRERY_AUTH=off explicitly: these tests are not about who may pass (test/integration/identity/ is)
import { ingestAuthOff } from "../../../services/identity/client.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix } from "../../helpers/tmp.ts";

const ROOT = resolve(import.meta.dir, "../../..");
let nats: NatsServer;
let bus: Bus;
let ingest: ReturnType<typeof startIngestServer>;

beforeAll(async () => {
  nats = await startNats();
  bus = await connectBus({ url: nats.url, prefix: uniquePrefix("notify"), name: "test" });
  ingest = startIngestServer({ auth: ingestAuthOff(), publishAlerts: alertPublisher(bus), log: makeLogger("test", true), host: "127.0.0.1", port: 0 });
});
afterAll(async () => {
  await ingest.stop(true);
  await bus.close();
  await nats.stop();
});

/** Runs the command the way a monitoring core does: no terminal, macros in the environment. */
async function notify(env: Record<string, string>, args: string[] = []) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(NAGIOS|ICINGA)_/.test(k)));
  const p = Bun.spawn([process.execPath, "cli/commands/notify.ts", ...args], { cwd: ROOT, env: { ...clean, ...env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [code, stdout, stderr] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code, stdout, stderr };
}

async function stored(): Promise<Alert[]> {
  const info = await bus.jsm.streams.info(bus.topo.streams.alerts.name);
  if (!info.state.messages) return [];
  const c = await bus.js.consumers.get(bus.topo.streams.alerts.name, { deliver_policy: DeliverPolicy.All });
  const out: Alert[] = [];
  for await (const m of await c.fetch({ max_messages: info.state.messages, expires: 2000 })) {
    expect(m.subject).toBe(bus.topo.subjects.alerts(JSON.parse(new TextDecoder().decode(m.data)).source));
    out.push(...decode(AlertBatch, "alert.v1", m.data).alerts);
    if (m.info.pending === 0) break;
  }
  return out;
}

test("a Nagios service PROBLEM then RECOVERY from environment macros lands on JetStream, stored before the command exits", async () => {
  const url = `http://127.0.0.1:${ingest.port}`;
  const macros = {
    ORRERY_INGEST_URL: url,
    NAGIOS_NOTIFICATIONTYPE: "PROBLEM",
    NAGIOS_HOSTNAME: "db1",
    NAGIOS_HOSTADDRESS: "10.0.0.5",
    NAGIOS_SERVICEDESC: "check_tcp!5432",
    NAGIOS_SERVICESTATE: "CRITICAL",
    NAGIOS_SERVICESTATETYPE: "HARD",
    NAGIOS_SERVICEOUTPUT: "Connection refused",
    NAGIOS_TIMET: "1795315423",
  };
  const r = await notify(macros);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout)).toMatchObject({ accepted: 1 });
  // the ingest answered 2xx only after JetStream stored it: it is there as soon as the command returned
  const [problem] = await stored();
  expect(problem).toMatchObject({
    source: "nagios",
    fingerprint: "nagios:db1!check_tcp!5432",
    severity: "critical",
    state: "firing",
    summary: "Connection refused",
    target: { host: "db1", address: "10.0.0.5", service: "check_tcp!5432" },
    labels: { notification_type: "PROBLEM", state_type: "hard" },
    at: 1795315423000,
  });

  const rec = await notify({ ...macros, NAGIOS_NOTIFICATIONTYPE: "RECOVERY", NAGIOS_SERVICESTATE: "OK", NAGIOS_SERVICEOUTPUT: "TCP OK", NAGIOS_TIMET: "1795315483" });
  expect(rec.code).toBe(0);
  // an Icinga2 host notification with ICINGA_* variables and a flag override
  const host = await notify({ ORRERY_INGEST_URL: url, ICINGA_NOTIFICATIONTYPE: "Problem", ICINGA_HOSTNAME: "web1", ICINGA_HOSTSTATE: "DOWN", ICINGA_HOSTOUTPUT: "PING CRITICAL" }, ["--source", "icinga"]);
  expect(host.code).toBe(0);
  const all = await stored();
  expect(all.map((a) => [a.fingerprint, a.state, a.severity])).toEqual([
    ["nagios:db1!check_tcp!5432", "firing", "critical"],
    ["nagios:db1!check_tcp!5432", "resolved", "ok"],
    ["icinga:web1", "firing", "critical"],
  ]);
  expect(all[2]!.summary).toBe("PING CRITICAL");
  // the same notification sent twice (a retry) is stored once: same event id → Nats-Msg-Id dedup
  expect((await notify(macros)).code).toBe(0);
  expect(await stored()).toHaveLength(3);
}, 60_000);

test("missing macros exit 2 with the reason; an unreachable ingest exits 1 with the reason", async () => {
  const bad = await notify({ NAGIOS_SERVICEDESC: "x", NAGIOS_SERVICESTATE: "CRITICAL" }, ["--url", `http://127.0.0.1:${ingest.port}`]);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain("HOSTNAME is required");
  const badState = await notify({ NAGIOS_HOSTNAME: "db1", NAGIOS_SERVICEDESC: "x", NAGIOS_SERVICESTATE: "MELTED" }, ["--url", `http://127.0.0.1:${ingest.port}`]);
  expect(badState.code).toBe(2);
  expect(badState.stderr).toContain('state "MELTED"');

  const closed = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = closed.port;
  await closed.stop(true);
  const down = await notify({ NAGIOS_HOSTNAME: "db1", NAGIOS_HOSTSTATE: "DOWN" }, ["--url", `http://127.0.0.1:${port}`, "--retries", "1"]);
  expect(down.code).toBe(1);
  expect(down.stderr).toContain("not delivered");
  expect(down.stderr).toContain(`127.0.0.1:${port}`);
}, 60_000);
