/**
 * The broker as the demo runs it: the supervisor generates the key binding credentials are sealed with into the data
 * directory at first start (mode 0600), and reuses it when started again on that directory, so a binding made before
 * the restart still returns its credentials; the bucket never holds them in the clear.
 */
import { expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Kvm } from "@nats-io/kv";
import { SERVICE_ID, PLANS } from "../../../services/broker/catalog.ts";
import { BrokerStore } from "../../../services/broker/store.ts";
import { connectBus } from "../../../services/shared/bus.ts";
import { startStack } from "../../helpers/stack.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const PASSWORD = "demo-broker-password";
const HOST = PLANS.find((p) => p.name === "host-agents")!.id;
const ORG = { organization_guid: "org-1", space_guid: "space-1" };

function osb(base: string) {
  const headers = { "X-Broker-API-Version": "2.17", Authorization: `Basic ${Buffer.from(`orrery-broker:${PASSWORD}`).toString("base64")}`, "content-type": "application/json" };
  return async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as any };
  };
}

test("the demo's broker key: generated into the data dir at first start, the same after a restart", async () => {
  const tmp = tempDir("orrery-broker-demo-");
  const env = { ORRERY_BROKER_PASSWORD: PASSWORD, ORRERY_BROKER_PORT: "0", ORRERY_SIMULATE: "0", ORRERY_PREFIX: uniquePrefix("brkdemo") };
  const brokerUrl = (logs: () => string) => waitFor(() => /Service broker \(Open Service Broker API\): (\S+)/.exec(logs())?.[1], "the broker's banner line", 10_000);
  let stack = await startStack(env, tmp.dir);
  try {
    const keyFile = join(tmp.dir, "broker", "secret-key");
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const key = readFileSync(keyFile, "utf8").trim();
    let api = osb(await brokerUrl(stack.logs));
    const i = crypto.randomUUID();
    const b = crypto.randomUUID();
    expect((await api("PUT", `/v2/service_instances/${i}`, { ...ORG, service_id: SERVICE_ID, plan_id: HOST })).status).toBe(201);
    const bound = await api("PUT", `/v2/service_instances/${i}/service_bindings/${b}`, { ...ORG, service_id: SERVICE_ID, plan_id: HOST });
    expect(bound.status).toBe(201);
    const seed: string = bound.body.credentials.nats.seed;
    const bus = await connectBus({ url: stack.nats, prefix: env.ORRERY_PREFIX, name: "broker-demo-test", declare: false });
    try {
      const raw = (await (await new Kvm(bus.js).open(bus.topo.buckets.broker)).get(BrokerStore.bindingKey(i, b)))!.string();
      expect(raw).toContain('"alg":"A256GCM"');
      expect(raw).not.toContain(seed);
    } finally {
      await bus.close();
    }
    expect(await stack.stop()).toBe(0);

    stack = await startStack(env, tmp.dir);
    expect(readFileSync(keyFile, "utf8").trim()).toBe(key);
    api = osb(await brokerUrl(stack.logs));
    const fetched = await api("GET", `/v2/service_instances/${i}/service_bindings/${b}`);
    expect(fetched.status).toBe(200);
    expect(fetched.body.credentials.nats.seed).toBe(seed);
    expect(stack.logs()).not.toContain(key);
  } finally {
    if (stack.proc.exitCode === null) await stack.stop();
    stack.cleanup();
    tmp.cleanup();
  }
}, 300_000);
