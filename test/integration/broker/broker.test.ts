/**
 * The Open Service Broker API broker over HTTP against a real nats-server (its state in JetStream KV), each test on
 * its own prefix. Comments cite the sections of the spec (openservicebrokerapi/servicebroker spec.md, v2.13–v2.17)
 * whose behaviour a check pins down.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { nkeyAuthenticator } from "@nats-io/nats-core";
import { Broker } from "../../../services/broker/broker.ts";
import { SERVICE_ID, PLANS } from "../../../services/broker/catalog.ts";
import { startBrokerServer } from "../../../services/broker/http.ts";
import { openKioskTokens } from "../../../services/broker/kiosk.ts";
import { newSecretKey, parseSecretKey, SealedSecretError, secretBox } from "../../../services/broker/seal.ts";
import { BrokerStore } from "../../../services/broker/store.ts";
import { purgeTenant } from "../../../services/broker/tenant-data.ts";
import { DEFAULT_STRATEGY } from "../../../services/broker/tenant.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { Kvm } from "@nats-io/kv";
import { createHash } from "node:crypto";
import { IdentityStore } from "../../../services/identity/store.ts";
import type { Strategy } from "../../../pipelines/strategy/schema.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { spawnJobsProcess } from "../../helpers/jobs.ts";
import { spawnUntilReady } from "../../helpers/process.ts";
import { requestRun, watchStatuses } from "../../../services/jobs/client.ts";
import { uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const PASSWORD = "broker-test-password";
/** the key binding credentials are sealed with (ORRERY_BROKER_SECRET_KEY) */
const KEY = newSecretKey();
const BOX = secretBox(parseSecretKey(KEY));
const USER = "platform";
const plan = (name: string) => PLANS.find((p) => p.name === name)!.id;
const HOST = plan("host-agents");
const PROBES = plan("agentless-probes");
const WALL = plan("wallboard");
const log = makeLogger("broker-test", true);
/** "Provisioning": organization_guid and space_guid are deprecated but still REQUIRED */
const ORG = { organization_guid: "org-1", space_guid: "space-1" };

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats?.stop();
});

interface Started {
  url: string;
  bus: Bus;
  broker: Broker;
  identity: IdentityStore;
  stop(): Promise<void>;
}

async function startBroker(o: { strategy?: Strategy; stepDelayMs?: number; prefix?: string; key?: string } = {}): Promise<Started> {
  const bus = await connectBus({ url: nats.url, prefix: o.prefix ?? uniquePrefix("brk"), name: "broker-test" });
  const store = await BrokerStore.open(bus, o.key ? secretBox(parseSecretKey(o.key)) : BOX);
  // a kiosk needs the identity bucket the gateway creates: opened here by the identity module itself, which then
  // follows what the broker writes into it exactly as a gateway would
  const identity = await IdentityStore.open(bus, log);
  const kiosk = await openKioskTokens(bus, "http://dash.example:7070");
  const broker = new Broker({
    store,
    log,
    prefix: bus.topo.prefix,
    natsUrl: nats.url,
    gatewayUrl: "http://dash.example:7070",
    strategy: o.strategy ?? DEFAULT_STRATEGY,
    purgeTenant: (t) => purgeTenant(bus, t),
    kiosk: kiosk ?? undefined,
    stepDelayMs: o.stepDelayMs ?? 0,
  });
  await broker.resume();
  const server = startBrokerServer({ broker, log, user: USER, password: PASSWORD, host: "127.0.0.1", port: 0 });
  return {
    url: `http://127.0.0.1:${server.port}`,
    bus,
    broker,
    identity,
    stop: async () => {
      await server.stop(true);
      await broker.stop();
      await identity.close();
      await bus.close();
    },
  };
}

type Res = { status: number; body: any };
function client(base: string) {
  const basic = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`;
  return async (method: string, path: string, body?: unknown, h: Record<string, string | null> = {}): Promise<Res> => {
    const headers: Record<string, string> = { "X-Broker-API-Version": "2.17", Authorization: basic, "content-type": "application/json" };
    for (const [k, v] of Object.entries(h)) {
      if (v === null) delete headers[k];
      else headers[k] = v;
    }
    const r = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body) });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : undefined };
  };
}

const inst = (id: string, q = "") => `/v2/service_instances/${id}${q}`;
const bnd = (id: string, b: string, q = "") => `/v2/service_instances/${id}/service_bindings/${b}${q}`;
const del = (planId: string, extra = "") => `?service_id=${SERVICE_ID}&plan_id=${planId}${extra}`;
const id = () => crypto.randomUUID();

async function pollLastOp(osb: ReturnType<typeof client>, path: string, until = (r: Res) => r.status !== 200 || r.body.state !== "in progress"): Promise<Res> {
  return await waitFor(async () => {
    const r = await osb("GET", path);
    return until(r) ? r : null;
  }, `last_operation ${path}`, 30_000, 50);
}

describe("API Version Header and Platform to Service Broker Authentication", () => {
  let b: Started;
  beforeAll(async () => (b = await startBroker()));
  afterAll(async () => await b.stop());

  test("Basic auth first (401 without or with a wrong password, even without a version), then the version (412)", async () => {
    const osb = client(b.url);
    expect((await osb("GET", "/v2/catalog", undefined, { Authorization: null, "X-Broker-API-Version": null })).status).toBe(401);
    const wrong = await osb("GET", "/v2/catalog", undefined, { Authorization: `Basic ${Buffer.from(`${USER}:nope`).toString("base64")}` });
    expect(wrong.status).toBe(401);
    // "API Version Header": 412 Precondition Failed for a missing header or a version the broker does not support
    for (const v of [null, "2.12", "1.14", "3.0", "two"]) {
      const r = await osb("GET", "/v2/catalog", undefined, { "X-Broker-API-Version": v });
      expect(r.status).toBe(412);
      expect(r.body.description).toContain("2.13");
    }
    for (const v of ["2.13", "2.14", "2.17"]) expect((await osb("GET", "/v2/catalog", undefined, { "X-Broker-API-Version": v })).status).toBe(200);
    // every OSB route is behind both checks
    expect((await osb("PUT", inst(id()), { ...ORG, service_id: SERVICE_ID, plan_id: HOST }, { "X-Broker-API-Version": null })).status).toBe(412);
  });

  test("Catalog Management: one CLI-named offering, plans with maintenance_info and draft-04 parameter schemas", async () => {
    const r = await client(b.url)("GET", "/v2/catalog");
    expect(r.status).toBe(200);
    const [svc] = r.body.services;
    expect(svc).toMatchObject({ name: "orrery", id: SERVICE_ID, bindable: true, instances_retrievable: true, bindings_retrievable: true, plan_updateable: true });
    expect(svc.plans.map((p: { name: string }) => p.name)).toEqual(["host-agents", "agentless-probes", "wallboard"]);
    for (const p of svc.plans) {
      expect(p.maintenance_info.version).toBe("1.0.0");
      expect(p.schemas.service_instance.create.parameters.$schema).toBe("http://json-schema.org/draft-04/schema#");
      expect(p.schemas.service_binding.create.parameters.type).toBe("object");
    }
  });
});

describe("lifecycle", () => {
  let b: Started;
  beforeAll(async () => (b = await startBroker()));
  afterAll(async () => await b.stop());

  test("synchronous: provision 201, identical 200, different 409; fetch; bind 201 / 200 / 409; unbind; deprovision; 410 after", async () => {
    const osb = client(b.url);
    const i = id();
    const body = { service_id: SERVICE_ID, plan_id: HOST, organization_guid: "org", space_guid: "space", parameters: { group_by: "team" }, context: { platform: "cloudfoundry" } };
    const created = await osb("PUT", inst(i), body);
    expect(created.status).toBe(201);
    expect(created.body.dashboard_url).toStartWith("http://dash.example:7070/?");
    expect(new URL(created.body.dashboard_url).searchParams.get("tag")).toMatch(/^tenant=t[a-f0-9]{12}$/);
    // "Provisioning" response: 200 for an identical request on an existing instance, 409 for different attributes
    expect((await osb("PUT", inst(i), body)).status).toBe(200);
    const conflict = await osb("PUT", inst(i), { ...body, parameters: { group_by: "site" } });
    expect(conflict.status).toBe(409);
    // "Fetching a Service Instance"
    const fetched = await osb("GET", inst(i));
    expect(fetched.status).toBe(200);
    expect(fetched.body).toMatchObject({ service_id: SERVICE_ID, plan_id: HOST, parameters: { group_by: "team" } });
    expect(fetched.body.metadata.attributes.placement).toEqual({ active: ["local"], standby: [], degraded: null });

    // "Binding": credentials an agent can use
    const bid = id();
    const bound = await osb("PUT", bnd(i, bid), { ...ORG, service_id: SERVICE_ID, plan_id: HOST, app_guid: "app-1", parameters: { name: "web" } });
    expect(bound.status).toBe(201);
    const c = bound.body.credentials;
    expect(c.nats.nkey).toMatch(/^U[A-Z2-7]{55}$/);
    expect(c.nats.seed).toStartWith("SU");
    const tenant = new URL(created.body.dashboard_url).searchParams.get("tag")!.slice("tenant=".length);
    expect(c.nats.permissions.publish.allow).toEqual([`${b.bus.topo.prefix}.discovery.v1.${tenant}.>`, `${b.bus.topo.prefix}.metrics.v1.${tenant}.>`]);
    expect(c.graph_source).toBe(`tenant:${tenant}`);
    expect(c.kiosk_url).toStartWith("http://dash.example:7070/kiosk?token=orr_");
    expect((await osb("PUT", bnd(i, bid), { ...ORG, service_id: SERVICE_ID, plan_id: HOST, app_guid: "app-1", parameters: { name: "web" } })).body).toEqual(bound.body);
    expect((await osb("PUT", bnd(i, bid), { ...ORG, service_id: SERVICE_ID, plan_id: HOST, app_guid: "app-1", parameters: { name: "web" } })).status).toBe(200);
    expect((await osb("PUT", bnd(i, bid), { ...ORG, service_id: SERVICE_ID, plan_id: HOST, app_guid: "app-2" })).status).toBe(409);
    // "Fetching a Service Binding"
    const fb = await osb("GET", bnd(i, bid));
    expect(fb.status).toBe(200);
    expect(fb.body.credentials.nats.nkey).toBe(c.nats.nkey);
    // the NATS operator's view: the user is in the authorization block, its kiosk token in the identity bucket
    const authz = await (await fetch(`${b.url}/broker/nats-authorization`, { headers: { Authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}` } })).text();
    expect(authz).toContain(c.nats.nkey);
    const idKv = await new Kvm(b.bus.js).open(b.bus.topo.buckets.identity);
    const tokenKeys: string[] = [];
    for await (const k of await idKv.keys("token.*")) tokenKeys.push(k);
    expect(tokenKeys.length).toBe(1);
    // the gateway's identity module knows the kiosk token: a viewer, of kind kiosk
    const kioskToken = new URL(c.kiosk_url).searchParams.get("token")!;
    const sha = createHash("sha256").update(kioskToken).digest("hex");
    expect(b.identity.tokenByHash(sha)).toMatchObject({ kind: "kiosk", role: "viewer" });

    // "Unbinding": 200, then 410 Gone; the user leaves the authorization block and the kiosk token is purged
    expect((await osb("DELETE", bnd(i, bid, del(HOST)))).status).toBe(200);
    expect((await osb("DELETE", bnd(i, bid, del(HOST)))).status).toBe(410);
    expect((await osb("GET", bnd(i, bid))).status).toBe(404);
    const after = await (await fetch(`${b.url}/broker/nats-authorization`, { headers: { Authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}` } })).text();
    expect(after).not.toContain(c.nats.nkey);
    expect((await idKv.get(tokenKeys[0]!))?.operation).toBe("PURGE");
    await waitFor(() => b.identity.tokenByHash(sha) === undefined, "the identity module to drop the revoked kiosk token", 5000, 20);

    // "Deprovisioning": 200 {}, then 410 Gone {}
    const gone = await osb("DELETE", inst(i, del(HOST)));
    expect(gone).toEqual({ status: 200, body: {} });
    expect(await osb("DELETE", inst(i, del(HOST)))).toEqual({ status: 410, body: {} });
    expect((await osb("GET", inst(i))).status).toBe(404);
    // a new instance may reuse the id once the old one is gone
    expect((await osb("PUT", inst(i), body)).status).toBe(201);
  });

  test("asynchronous: AsyncRequired, 202 + operation, last_operation polling for instance and binding, update, deprovision → 410", async () => {
    const slow = await startBroker({ stepDelayMs: 300 });
    try {
      const osb = client(slow.url);
      const i = id();
      const body = { ...ORG, service_id: SERVICE_ID, plan_id: PROBES, parameters: { targets: ["10.0.0.1", "db.example"], placement: { pick: "first", redundancy: "+0" } } };
      // "Provisioning": 422 AsyncRequired when the plan only provisions asynchronously and accepts_incomplete is absent
      const req = await osb("PUT", inst(i), body);
      expect(req).toMatchObject({ status: 422, body: { error: "AsyncRequired" } });
      expect((await osb("PUT", inst(i, "?accepts_incomplete=false"), body)).status).toBe(422);
      const accepted = await osb("PUT", inst(i, "?accepts_incomplete=true"), body);
      expect(accepted.status).toBe(202);
      expect(accepted.body.operation).toMatch(/^op-/);
      // 202 again for an identical request while provisioning is in progress; 404 on fetch until it is done
      expect(await osb("PUT", inst(i, "?accepts_incomplete=true"), body)).toEqual(accepted);
      expect((await osb("GET", inst(i))).status).toBe(404);
      const first = await osb("GET", inst(i, `/last_operation?service_id=${SERVICE_ID}&plan_id=${PROBES}&operation=${accepted.body.operation}`));
      expect(first).toMatchObject({ status: 200, body: { state: "in progress" } });
      const done = await pollLastOp(osb, inst(i, `/last_operation?operation=${accepted.body.operation}`));
      expect(done).toMatchObject({ status: 200, body: { state: "succeeded" } });
      expect((await osb("GET", inst(i))).status).toBe(200);

      // asynchronous binding: 202, then "Polling Last Operation for Service Bindings"
      const bid = id();
      const ab = await osb("PUT", bnd(i, bid, "?accepts_incomplete=true"), { ...ORG, service_id: SERVICE_ID, plan_id: PROBES });
      expect(ab.status).toBe(202);
      expect((await osb("GET", bnd(i, bid))).status).toBe(404);
      expect((await pollLastOp(osb, bnd(i, bid, `/last_operation?operation=${ab.body.operation}`))).body.state).toBe("succeeded");
      expect((await osb("GET", bnd(i, bid))).body.credentials.nats.nkey).toMatch(/^U/);

      // "Updating a Service Instance": 202; meanwhile fetch is 422 ConcurrencyError, a second update or a delete too
      const up = await osb("PATCH", inst(i, "?accepts_incomplete=true"), { service_id: SERVICE_ID, parameters: { interval_s: 60 } });
      expect(up.status).toBe(202);
      // "a re-sent PATCH request MUST return a 202 Accepted, not a 200 OK, if the requested update has not yet completed"
      expect(await osb("PATCH", inst(i, "?accepts_incomplete=true"), { service_id: SERVICE_ID, parameters: { interval_s: 60 } })).toEqual(up);
      // last_operation while in progress carries Retry-After (a duration)
      const lo = await fetch(`${slow.url}${inst(i, "/last_operation")}`, { headers: { "X-Broker-API-Version": "2.17", Authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}` } });
      expect((await lo.json()) as unknown).toMatchObject({ state: "in progress" });
      expect(lo.headers.get("Retry-After")).toBe("1");
      expect(await osb("GET", inst(i))).toMatchObject({ status: 422, body: { error: "ConcurrencyError" } });
      expect(await osb("PATCH", inst(i, "?accepts_incomplete=true"), { service_id: SERVICE_ID, parameters: { interval_s: 120 } })).toMatchObject({ status: 422, body: { error: "ConcurrencyError" } });
      expect(await osb("DELETE", inst(i, del(PROBES, "&accepts_incomplete=true")))).toMatchObject({ status: 422, body: { error: "ConcurrencyError" } });
      expect((await pollLastOp(osb, inst(i, "/last_operation"))).body.state).toBe("succeeded");
      expect((await osb("GET", inst(i))).body.parameters).toMatchObject({ interval_s: 60, targets: ["10.0.0.1", "db.example"] });

      // async unbind, then async deprovision: 202 twice (the same operation), last_operation ends in 410 Gone
      const ub = await osb("DELETE", bnd(i, bid, del(PROBES, "&accepts_incomplete=true")));
      expect(ub.status).toBe(202);
      expect((await pollLastOp(osb, bnd(i, bid, "/last_operation"), (r) => r.status === 410)).body).toEqual({});
      const d1 = await osb("DELETE", inst(i, del(PROBES, "&accepts_incomplete=true")));
      expect(d1.status).toBe(202);
      expect(await osb("DELETE", inst(i, del(PROBES, "&accepts_incomplete=true")))).toEqual(d1);
      // an asynchronous-only plan cannot be deleted synchronously either
      const gone = await pollLastOp(osb, inst(i, "/last_operation"), (r) => r.status === 410);
      expect(gone.body).toEqual({});
      expect((await osb("DELETE", inst(i, del(PROBES)))).status).toBe(410);
    } finally {
      await slow.stop();
    }
  });

  test("wallboard: 201 even with accepts_incomplete=true (a broker may answer synchronously); plan change by update", async () => {
    const osb = client(b.url);
    const i = id();
    const r = await osb("PUT", inst(i, "?accepts_incomplete=true"), { ...ORG, service_id: SERVICE_ID, plan_id: WALL, parameters: { level: "hosts" } });
    expect(r.status).toBe(201);
    expect(new URL(r.body.dashboard_url).searchParams.get("level")).toBe("hosts");
    // "Updating a Service Instance": parameters absent = unchanged; ones that do not fit the new plan make it 422
    expect((await osb("PATCH", inst(i), { service_id: SERVICE_ID, plan_id: HOST })).status).toBe(422);
    const up = await osb("PATCH", inst(i, "?accepts_incomplete=true"), { service_id: SERVICE_ID, plan_id: WALL, parameters: { group_by: "team" } });
    expect(up.status).toBe(202);
    await pollLastOp(osb, inst(i, "/last_operation"));
    expect((await osb("GET", inst(i))).body.parameters).toEqual({ level: "hosts", group_by: "team" });
    // a plan change with parameters that fit the new plan
    const i2 = id();
    expect((await osb("PUT", inst(i2), { ...ORG, service_id: SERVICE_ID, plan_id: WALL })).status).toBe(201);
    expect((await osb("PATCH", inst(i2), { service_id: SERVICE_ID, plan_id: HOST, parameters: { max_hosts: 3 } })).status).toBe(200);
    expect((await osb("GET", inst(i2))).body).toMatchObject({ plan_id: HOST, parameters: { max_hosts: 3 } });
    // an update that changes nothing is 200 as well
    expect((await osb("PATCH", inst(i), { service_id: SERVICE_ID })).status).toBe(200);
  });
});

describe("Service Broker Errors", () => {
  let b: Started;
  beforeAll(async () => (b = await startBroker()));
  afterAll(async () => await b.stop());

  test("400 for malformed or missing data, each with a description", async () => {
    const osb = client(b.url);
    const i = id();
    const cases: [string, string, unknown, RegExp][] = [
      ["PUT", inst(i), "{not json", /not JSON/],
      ["PUT", inst(i), { service_id: SERVICE_ID }, /plan_id/],
      ["PUT", inst(i), { service_id: SERVICE_ID, plan_id: HOST }, /organization_guid and space_guid/],
      ["PUT", inst(i), { service_id: SERVICE_ID, plan_id: HOST, organization_guid: "", space_guid: "s" }, /organization_guid and space_guid/],
      ["PUT", inst(i), { ...ORG, service_id: "other", plan_id: HOST }, /unknown service_id/],
      ["PUT", inst(i), { ...ORG, service_id: SERVICE_ID, plan_id: "nope" }, /unknown plan_id/],
      ["PUT", inst(i), { ...ORG, service_id: SERVICE_ID, plan_id: HOST, parameters: { max_hosts: 0 } }, /max_hosts/],
      ["PUT", inst(i), { ...ORG, service_id: SERVICE_ID, plan_id: HOST, parameters: { colour: "red" } }, /colour/],
      ["PUT", inst(i, "?accepts_incomplete=true"), { ...ORG, service_id: SERVICE_ID, plan_id: PROBES, parameters: { targets: [] } }, /targets/],
      ["PUT", inst(i, "?accepts_incomplete=true"), { ...ORG, service_id: SERVICE_ID, plan_id: PROBES, parameters: { targets: ["a"], placement: { redundancy: "3:1" } } }, /redundancy/],
      ["PUT", inst(i, "?accepts_incomplete=maybe"), { ...ORG, service_id: SERVICE_ID, plan_id: HOST }, /accepts_incomplete/],
      ["DELETE", inst(i, `?plan_id=${HOST}`), undefined, /service_id and plan_id/],
      ["DELETE", bnd(i, "b1", `?service_id=${SERVICE_ID}`), undefined, /service_id and plan_id/],
    ];
    for (const [method, path, body, re] of cases) {
      const r = await client(b.url)(method, path, body);
      expect({ path, status: r.status }).toEqual({ path, status: 400 });
      expect(r.body.description).toMatch(re);
    }
    expect((await osb("GET", inst(i))).status).toBe(404);
  });

  test("422 MaintenanceInfoConflict; 404/410 for unknown instances and bindings", async () => {
    const osb = client(b.url);
    const i = id();
    expect(await osb("PUT", inst(i), { ...ORG, service_id: SERVICE_ID, plan_id: HOST, maintenance_info: { version: "0.9.0" } })).toMatchObject({ status: 422, body: { error: "MaintenanceInfoConflict" } });
    expect((await osb("PUT", inst(i), { ...ORG, service_id: SERVICE_ID, plan_id: HOST, maintenance_info: { version: "1.0.0" } })).status).toBe(201);
    expect(await osb("PATCH", inst(i), { service_id: SERVICE_ID, maintenance_info: { version: "2.0.0" } })).toMatchObject({ status: 422, body: { error: "MaintenanceInfoConflict" } });
    expect((await osb("PATCH", inst(i), { service_id: "x" })).status).toBe(400);
    const unknown = id();
    expect((await osb("GET", inst(unknown, "/last_operation"))).status).toBe(404);
    expect((await osb("GET", inst(i, "/last_operation?operation=op-other"))).status).toBe(400);
    expect((await osb("PATCH", inst(unknown), { service_id: SERVICE_ID })).status).toBe(404);
    expect((await osb("PUT", bnd(unknown, "b"), { ...ORG, service_id: SERVICE_ID, plan_id: HOST })).status).toBe(404);
    expect((await osb("PUT", bnd(i, "b"), { ...ORG, service_id: SERVICE_ID, plan_id: WALL })).status).toBe(400);
    expect((await osb("GET", bnd(i, "b"))).status).toBe(404);
    expect((await osb("GET", bnd(i, "b", "/last_operation"))).status).toBe(404);
    expect(await osb("DELETE", inst(unknown, del(HOST)))).toEqual({ status: 410, body: {} });
    expect(await osb("DELETE", bnd(i, "b", del(HOST)))).toEqual({ status: 410, body: {} });
    expect((await osb("GET", "/v2/nothing")).status).toBe(404);
  });

  test("Orphans: a provision that failed reports failed, is not fetchable, and a DELETE cleans it up (200, then 410)", async () => {
    // one pool with room for one tenant: the second provision cannot be placed
    const tight = await startBroker({ strategy: { version: 1, pools: [{ name: "p1", site: "s", provider: "x", cost: 1, capacity: 1 }] } });
    try {
      const osb = client(tight.url);
      expect((await osb("PUT", inst(id(), "?accepts_incomplete=true"), { ...ORG, service_id: SERVICE_ID, plan_id: HOST })).status).toBe(202);
      await Bun.sleep(300);
      const i = id();
      const r = await osb("PUT", inst(i, "?accepts_incomplete=true"), { ...ORG, service_id: SERVICE_ID, plan_id: HOST });
      expect(r.status).toBe(202);
      const failed = await pollLastOp(osb, inst(i, "/last_operation"));
      expect(failed.body.state).toBe("failed");
      expect(failed.body.description).toMatch(/no pool can take the tenant/);
      expect((await osb("GET", inst(i))).status).toBe(404);
      expect((await osb("PUT", inst(i, "?accepts_incomplete=true"), { ...ORG, service_id: SERVICE_ID, plan_id: HOST })).status).toBe(409);
      // orphan mitigation: the platform deletes what failed
      expect(await osb("DELETE", inst(i, del(HOST)))).toEqual({ status: 200, body: {} });
      expect((await osb("DELETE", inst(i, del(HOST)))).status).toBe(410);
      // a synchronous provision that cannot be placed fails with a description, and is deletable the same way
      const j = id();
      const sync = await osb("PUT", inst(j), { ...ORG, service_id: SERVICE_ID, plan_id: HOST });
      expect(sync.status).toBe(500);
      expect(sync.body.description).toMatch(/no pool/);
      expect((await osb("DELETE", inst(j, del(HOST)))).status).toBe(200);
    } finally {
      await tight.stop();
    }
  });
});

describe("concurrency and placement", () => {
  test("concurrent requests on one instance: one creation wins, identical ones agree, different ones conflict, updates serialise", async () => {
    const b = await startBroker({ stepDelayMs: 200 });
    try {
      const osb = client(b.url);
      const i = id();
      const body = { ...ORG, service_id: SERVICE_ID, plan_id: HOST, parameters: { max_hosts: 5 } };
      const same = await Promise.all(Array.from({ length: 8 }, () => osb("PUT", inst(i, "?accepts_incomplete=true"), body)));
      expect(same.every((r) => r.status === 202)).toBe(true);
      expect(new Set(same.map((r) => r.body.operation)).size).toBe(1);
      const other = await Promise.all(Array.from({ length: 4 }, (_, k) => osb("PUT", inst(i, "?accepts_incomplete=true"), { ...body, parameters: { max_hosts: 10 + k } })));
      expect(other.map((r) => r.status)).toEqual([409, 409, 409, 409]);
      await pollLastOp(osb, inst(i, "/last_operation"));

      const updates = await Promise.all(Array.from({ length: 6 }, (_, k) => osb("PATCH", inst(i, "?accepts_incomplete=true"), { service_id: SERVICE_ID, parameters: { max_hosts: 20 + k } })));
      expect(updates.filter((r) => r.status === 202).length).toBe(1);
      expect(updates.filter((r) => r.status === 422 && r.body.error === "ConcurrencyError").length).toBe(5);
      await pollLastOp(osb, inst(i, "/last_operation"));

      // two different instances created at once on a fresh id each: both succeed (no lost write in the bucket)
      const many = await Promise.all(Array.from({ length: 6 }, () => osb("PUT", inst(id()), body)));
      expect(many.map((r) => r.status)).toEqual([201, 201, 201, 201, 201, 201]);
      // concurrent binds of one binding id: one credential set for all
      const binds = await Promise.all(Array.from({ length: 5 }, () => osb("PUT", bnd(i, "same"), { ...ORG, service_id: SERVICE_ID, plan_id: HOST })));
      expect(binds.filter((r) => r.status === 201).length).toBeLessThanOrEqual(1);
      expect(binds.every((r) => [200, 201].includes(r.status) || (r.status === 422 && r.body.error === "ConcurrencyError"))).toBe(true);
      const fetched = await waitFor(async () => ((await osb("GET", bnd(i, "same"))).body?.credentials?.nats?.nkey as string | undefined) ?? null, "binding ready");
      for (const r of binds.filter((r) => r.status !== 422)) expect(r.body.credentials.nats.nkey).toBe(fetched);
    } finally {
      await b.stop();
    }
  });

  test("placement per the strategy: cheapest pool with room, 1:1 standby in another pool", async () => {
    const strategy: Strategy = {
      version: 1,
      pools: [
        { name: "eu", site: "eu", provider: "a", cost: 5, capacity: 10 },
        { name: "us", site: "us", provider: "b", cost: 1, capacity: 10 },
        { name: "ap", site: "ap", provider: "c", cost: 3, capacity: 10 },
      ],
    };
    const b = await startBroker({ strategy });
    try {
      const osb = client(b.url);
      const i = id();
      expect((await osb("PUT", inst(i), { ...ORG, service_id: SERVICE_ID, plan_id: HOST, parameters: { placement: { pick: "cheapest", redundancy: "1:1" } } })).status).toBe(201);
      const p = (await osb("GET", inst(i))).body.metadata.attributes.placement;
      expect(p.active).toEqual(["us"]);
      expect(p.standby.length).toBe(1);
      expect(p.standby[0]).not.toBe("us");
      const j = id();
      expect((await osb("PUT", inst(j), { ...ORG, service_id: SERVICE_ID, plan_id: HOST, parameters: { placement: { pick: "first" } } })).status).toBe(201);
      expect((await osb("GET", inst(j))).body.metadata.attributes.placement.active).toEqual(["eu"]);
    } finally {
      await b.stop();
    }
  });
});

test("deprovision removes the tenant's data from the DISCOVERY and METRICS streams", async () => {
  const b = await startBroker();
  try {
    const osb = client(b.url);
    const i = id();
    await osb("PUT", inst(i), { ...ORG, service_id: SERVICE_ID, plan_id: HOST });
    const c = (await osb("PUT", bnd(i, "x"), { ...ORG, service_id: SERVICE_ID, plan_id: HOST })).body.credentials;
    const disc = c.nats.permissions.publish.allow[0].replace(/>$/, "web01");
    const other = `${b.bus.topo.prefix}.discovery.v1.someone-else`;
    await b.bus.js.publish(disc, "{}");
    await b.bus.js.publish(c.nats.permissions.publish.allow[1].replace(/>$/, "node"), "{}");
    await b.bus.js.publish(other, "{}");
    const count = async (stream: string, filter: string) => (await b.bus.jsm.streams.info(stream, { subjects_filter: filter } as never)).state.subjects?.[filter] ?? 0;
    expect(await count(b.bus.topo.streams.discovery.name, disc)).toBe(1);
    expect((await osb("DELETE", inst(i, del(HOST)))).status).toBe(200);
    expect(await count(b.bus.topo.streams.discovery.name, disc)).toBe(0);
    expect((await b.bus.jsm.streams.info(b.bus.topo.streams.metrics.name)).state.messages).toBe(0);
    // someone else's data stays
    expect(await count(b.bus.topo.streams.discovery.name, other)).toBe(1);
    // the binding it still had is revoked with it
    expect((await osb("GET", bnd(i, "x"))).status).toBe(404);
  } finally {
    await b.stop();
  }
});

test("a nats-server given the broker's authorization block holds a bound agent to its tenant's subjects", async () => {
  const b = await startBroker();
  const osb = client(b.url);
  const i = id();
  await osb("PUT", inst(i), { ...ORG, service_id: SERVICE_ID, plan_id: HOST });
  const c = (await osb("PUT", bnd(i, "agent"), { ...ORG, service_id: SERVICE_ID, plan_id: HOST })).body.credentials;
  const block = await (await fetch(`${b.url}/broker/nats-authorization`, { headers: { Authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}` } })).text();
  await b.stop();
  // a second server whose config includes the block (what a NATS operator does, then `nats-server --signal reload`)
  const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(join(tmpdir(), "orrery-nats-authz-"));
  writeFileSync(join(dir, "nats.conf"), `listen: 127.0.0.1:-1\n${block}`);
  const bin = Bun.which("nats-server") ?? "/usr/sbin/nats-server";
  const srv = await spawnUntilReady([bin, "-c", join(dir, "nats.conf")], { ready: /Listening for client connections on [^\s]+:(\d+)[\s\S]*Server is ready/, stream: "either", timeoutMs: 15_000, name: "nats-server (authz)" });
  try {
    const url = `nats://127.0.0.1:${srv.match[1]}`;
    await expect(connect({ servers: url, reconnect: false })).rejects.toThrow();
    const errors: string[] = [];
    const nc = await connect({ servers: url, reconnect: false, authenticator: nkeyAuthenticator(new TextEncoder().encode(c.nats.seed)) });
    void (async () => {
      for await (const s of nc.status()) if (s.type === "error") errors.push(String((s as { error?: unknown }).error));
    })();
    // allowed: a subscription by another user is not possible here, so the check is that the allowed publish raises
    // nothing and the forbidden one raises a permissions violation
    nc.publish(c.nats.permissions.publish.allow[0].replace(/>$/, "web01"), "{}");
    await nc.flush();
    expect(errors).toEqual([]);
    nc.publish("orrery.discovery.v1.someone-else", "{}");
    await nc.flush();
    await waitFor(() => errors.some((e) => /permission/i.test(e)), "a permissions violation", 5000, 50);
    await nc.close();
  } finally {
    srv.proc.kill("SIGTERM");
    await srv.proc.exited;
    rmSync(dir, { recursive: true, force: true });
  }
});

test("agentless-probes without a jobs scheduler: the provision reports failed with the reason (then deletable)", async () => {
  const bus = await connectBus({ url: nats.url, prefix: uniquePrefix("brkns"), name: "broker-test" });
  const broker = new Broker({
    store: await BrokerStore.open(bus, BOX),
    log,
    prefix: bus.topo.prefix,
    natsUrl: nats.url,
    gatewayUrl: "http://g",
    strategy: DEFAULT_STRATEGY,
    purgeTenant: (t) => purgeTenant(bus, t),
    submitRun: async (r) => {
      const res = await requestRun(bus, { schema: "job.submit.v1", job: r.job, params: r.params, runId: r.runId });
      return res.kind === "no_scheduler" ? { ok: false, error: `no jobs scheduler answers on ${res.subject}` } : res.reply.ok ? { ok: true, runs: res.reply.runs.length } : { ok: false, error: res.reply.error };
    },
  });
  const server = startBrokerServer({ broker, log, user: USER, password: PASSWORD, host: "127.0.0.1", port: 0 });
  try {
    const osb = client(`http://127.0.0.1:${server.port}`);
    const i = id();
    expect((await osb("PUT", inst(i, "?accepts_incomplete=true"), { ...ORG, service_id: SERVICE_ID, plan_id: PROBES, parameters: { targets: ["127.0.0.1"] } })).status).toBe(202);
    const failed = await pollLastOp(osb, inst(i, "/last_operation"));
    expect(failed.body).toMatchObject({ state: "failed" });
    expect(failed.body.description).toContain("no jobs scheduler answers");
    expect((await osb("DELETE", inst(i, del(PROBES, "&accepts_incomplete=true")))).status).toBe(202);
    expect((await pollLastOp(osb, inst(i, "/last_operation"), (r) => r.status === 410)).status).toBe(410);
  } finally {
    await server.stop(true);
    await broker.stop();
    await bus.close();
  }
});

test("a broker process killed in the middle of an asynchronous provision: a new one finishes it, last_operation answers throughout", async () => {
  const prefix = uniquePrefix("brkrs");
  // the real jobs service (scheduler and a net worker): the agentless-probes provision asks it for a tcp-scan run
  const jobs = await spawnJobsProcess("broker-net", { NATS_URL: nats.url, ORRERY_PREFIX: prefix });
  const jbus = await connectBus({ url: nats.url, prefix, name: "broker-test-jobs" });
  const statuses: { runId: string; state: string }[] = [];
  const sub = await watchStatuses(jbus, (st) => statuses.push({ runId: st.runId, state: st.state }));
  const env = { ...process.env, NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_BROKER_PASSWORD: PASSWORD, ORRERY_BROKER_USER: USER, ORRERY_BROKER_PORT: "0", ORRERY_BROKER_STEP_DELAY_MS: "800", ORRERY_BROKER_SECRET_KEY: KEY, ORRERY_LOG_QUIET: "1" };
  const main = join(import.meta.dir, "../../../services/broker/main.ts");
  const start = () => spawnUntilReady([process.execPath, "run", main], { ready: /"event":"ready".*"url":"([^"]+)"/, timeoutMs: 30_000, env, name: "broker" });
  const first = await start();
  const i = id();
  let osb = client(first.match[1]!);
  const r = await osb("PUT", inst(i, "?accepts_incomplete=true"), { ...ORG, service_id: SERVICE_ID, plan_id: PROBES, parameters: { targets: ["127.0.0.1"], ports: [1] } });
  expect(r.status).toBe(202);
  // wait until the first step (placement) is recorded, then kill the process before the second
  await waitFor(async () => /step 2/.test((await osb("GET", inst(i, "/last_operation"))).body.description), "the first step done", 10_000, 50);
  first.proc.kill("SIGKILL");
  await first.proc.exited;
  const second = await start();
  try {
    osb = client(second.match[1]!);
    const mid = await osb("GET", inst(i, `/last_operation?operation=${r.body.operation}`));
    expect(mid.status).toBe(200);
    expect(["in progress", "succeeded"]).toContain(mid.body.state);
    const done = await pollLastOp(osb, inst(i, `/last_operation?operation=${r.body.operation}`));
    expect(done.body.state).toBe("succeeded");
    const fetched = await osb("GET", inst(i));
    expect(fetched.status).toBe(200);
    expect(fetched.body.metadata.attributes.placement.active).toEqual(["local"]);
    // the identical request is now 200 (it exists and is fully provisioned)
    expect((await osb("PUT", inst(i, "?accepts_incomplete=true"), { ...ORG, service_id: SERVICE_ID, plan_id: PROBES, parameters: { targets: ["127.0.0.1"], ports: [1] } })).status).toBe(200);
    // the jobs service ran the tenant's first scan: one run, named after the provision's operation
    await waitFor(() => statuses.some((st) => st.runId.startsWith("broker-t") && st.runId.endsWith(r.body.operation) && st.state === "finished"), "the probe run to finish", 30_000);
    expect(new Set(statuses.filter((st) => st.runId.startsWith("broker-t")).map((st) => st.runId)).size).toBe(1);
  } finally {
    second.proc.kill("SIGTERM");
    await second.proc.exited;
    sub.unsubscribe();
    await jbus.close();
    jobs.proc.kill("SIGTERM");
    await jobs.proc.exited;
  }
});

describe("binding credentials at rest (AES-256-GCM under ORRERY_BROKER_SECRET_KEY)", () => {
  test("the KV value holds no secret, the binding still returns them (also after a restart); a wrong key or an altered value is a typed error", async () => {
    const prefix = uniquePrefix("brkseal");
    let b = await startBroker({ prefix });
    try {
      const osb = client(b.url);
      const i = id();
      expect((await osb("PUT", inst(i), { ...ORG, service_id: SERVICE_ID, plan_id: HOST })).status).toBe(201);
      const bid = id();
      const bound = await osb("PUT", bnd(i, bid), { ...ORG, service_id: SERVICE_ID, plan_id: HOST, app_guid: "app-1" });
      expect(bound.status).toBe(201);
      const { seed } = bound.body.credentials.nats;
      const token = new URL(bound.body.credentials.kiosk_url).searchParams.get("token")!;
      expect(seed).toStartWith("SU");
      expect(token).toStartWith("orr_");
      // what anyone reading the bucket sees: no seed, no kiosk token, anywhere in it
      const kv = await new Kvm(b.bus.js).open(b.bus.topo.buckets.broker);
      const key = BrokerStore.bindingKey(i, bid);
      const raw = (await kv.get(key))!.string();
      expect(JSON.parse(raw)).toMatchObject({ binding_id: bid, state: "ready", sealed: { alg: "A256GCM", kid: BOX.kid } });
      expect(JSON.parse(raw).credentials).toBeUndefined();
      for await (const k of await kv.keys()) {
        const v = (await kv.get(k))?.string() ?? "";
        expect(v).not.toContain(seed);
        expect(v).not.toContain(token);
      }
      // "Fetching a Service Binding" and the authorization block still have them
      const fb = await osb("GET", bnd(i, bid));
      expect(fb.status).toBe(200);
      expect(fb.body.credentials).toEqual(bound.body.credentials);
      await b.stop();
      b = await startBroker({ prefix });
      expect((await client(b.url)("GET", bnd(i, bid))).body.credentials.nats.seed).toBe(seed);

      // another key: the store says which key sealed it; over HTTP a 500 that says so (and nothing secret)
      const wrong = secretBox(parseSecretKey(newSecretKey()));
      const other = await BrokerStore.open(b.bus, wrong);
      const err = await other.binding(i, bid).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SealedSecretError);
      expect(err).toMatchObject({ code: "wrong_key" });
      expect((err as Error).message).toContain(BOX.kid);
      expect((err as Error).message).toContain("ORRERY_BROKER_SECRET_KEY");
      // a broker process started with another key stops at once and says why (no key in the message)
      const key2 = newSecretKey();
      const p = Bun.spawn([process.execPath, "run", join(import.meta.dir, "../../../services/broker/main.ts")], {
        env: { ...process.env, NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_BROKER_PASSWORD: PASSWORD, ORRERY_BROKER_PORT: "0", ORRERY_BROKER_SECRET_KEY: key2, ORRERY_LOG_QUIET: "1" },
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(await p.exited).not.toBe(0);
      const stderr = await new Response(p.stderr).text();
      expect(stderr).toContain("SealedSecretError");
      expect(stderr).toContain(`1 binding(s) sealed with broker key ${BOX.kid}`);
      expect(stderr).not.toContain(key2);
      expect(stderr).not.toContain(seed);

      // the right key, a value altered in the bucket: "damaged", not a wrong key
      const rec = JSON.parse(raw);
      const ct = Buffer.from(rec.sealed.ct, "base64url");
      ct[0]! ^= 1;
      await (await new Kvm(b.bus.js).open(b.bus.topo.buckets.broker)).put(key, JSON.stringify({ ...rec, sealed: { ...rec.sealed, ct: ct.toString("base64url") } }));
      expect(await (await BrokerStore.open(b.bus, BOX)).binding(i, bid).catch((e: unknown) => e)).toMatchObject({ name: "SealedSecretError", code: "damaged" });
      const refused = await client(b.url)("GET", bnd(i, bid));
      expect(refused.status).toBe(500);
      expect(refused.body.description).toContain("binding credentials cannot be opened (damaged)");
      expect(JSON.stringify(refused.body)).not.toContain(seed);
    } finally {
      await b.stop();
    }
  });

  test("a binding an earlier broker stored in the clear is sealed at start (sealLegacy), and still opens", async () => {
    const bus = await connectBus({ url: nats.url, prefix: uniquePrefix("brklegacy"), name: "broker-test" });
    try {
      const store = await BrokerStore.open(bus, BOX);
      const kv = await new Kvm(bus.js).open(bus.topo.buckets.broker);
      const credentials = { nats: { url: nats.url, nkey: "UABC", seed: "SUAPLAINTEXTSEED", permissions: { publish: { allow: ["p.>"] }, subscribe: { allow: [] } } }, subject_prefix: "p", discovery_subject: "p.d", metrics_subject: "p.m", graph_source: "tenant:t", dashboard_url: "http://d" };
      const legacy = { instance_id: "i1", binding_id: "b1", service_id: SERVICE_ID, plan_id: HOST, parameters: {}, state: "ready", credentials, op: { id: "op1", type: "bind", state: "succeeded", step: 0, startedAt: 1 }, createdAt: 1 };
      await kv.put(BrokerStore.bindingKey("i1", "b1"), JSON.stringify(legacy));
      expect((await store.binding("i1", "b1"))?.value.credentials).toEqual(credentials);
      expect(await store.sealLegacy()).toBe(1);
      expect((await kv.get(BrokerStore.bindingKey("i1", "b1")))!.string()).not.toContain("SUAPLAINTEXTSEED");
      expect((await store.binding("i1", "b1"))?.value.credentials).toEqual(credentials);
      expect(await store.sealLegacy()).toBe(0);
    } finally {
      await bus.close();
    }
  });

  test("a broker started with a key that is not 32 bytes of base64 exits naming the setting", async () => {
    const p = Bun.spawn([process.execPath, "run", join(import.meta.dir, "../../../services/broker/main.ts")], {
      env: { ...process.env, NATS_URL: nats.url, ORRERY_PREFIX: uniquePrefix("brkkey"), ORRERY_BROKER_PASSWORD: PASSWORD, ORRERY_BROKER_PORT: "0", ORRERY_BROKER_SECRET_KEY: "dG9vLXNob3J0", ORRERY_LOG_QUIET: "1" },
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(await p.exited).not.toBe(0);
    const err = await new Response(p.stderr).text();
    expect(err).toContain("ORRERY_BROKER_SECRET_KEY: expected 32 bytes as base64");
    expect(err).not.toContain("dG9vLXNob3J0");
  });
});
