/**
 * The broker's verbs: provision, update, deprovision, bind, unbind, fetch and last_operation, each answering the
 * status and body the Open Service Broker API prescribes (sections of spec.md named in the comments). Answers are
 * values (`Reply`), never thrown: only a failure nobody expected escapes as an exception (500 at the HTTP layer).
 *
 * Operations: every mutation is recorded on its instance or binding (`op`) before it is answered. A synchronous
 * request runs the operation's steps at once; an asynchronous one (accepts_incomplete=true) is answered 202 and run
 * by `OperationRunner` in the background. Each step is idempotent and the record says which step is next, so a broker
 * restarted mid-operation resumes it (`resume()` at start) and last_operation answers from the record.
 */
import { randomBytes } from "node:crypto";
import type { z } from "zod";
import {
  AgentlessProbesParams,
  BindParams,
  BindRequest,
  type BindingRecord,
  type InstanceRecord,
  type Operation,
  PlacementParams,
  ProvisionRequest,
  UpdateRequest,
  type Tenant,
} from "../../pipelines/contracts/broker.ts";
import { formatIssues } from "../../pipelines/issues.ts";
import type { PickMode, Redundancy, Strategy } from "../../pipelines/strategy/schema.ts";
import { failureKind } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";
import { planById, SERVICE_ID, type PlanDef } from "./catalog.ts";
import { BrokerStore, StaleWriteError, type Versioned } from "./store.ts";
import { credentialsFor, natsUserFor, placeTenant, tenantFor } from "./tenant.ts";

export interface Reply {
  status: number;
  body: Record<string, unknown>;
  headers?: Record<string, string>;
}

const reply = (status: number, body: Record<string, unknown> = {}): Reply => ({ status, body });
const bad = (description: string) => reply(400, { error: "BadRequest", description });
/** "Service Broker Errors": error codes the spec names, always with a description. */
const asyncRequired = (what: string) => reply(422, { error: "AsyncRequired", description: `${what} requires accepts_incomplete=true (it runs asynchronously)` });
const concurrency = (what: string) => reply(422, { error: "ConcurrencyError", description: `another operation is in progress on ${what}; retry when it has finished` });

/** Kiosk URLs for bindings (identity tokens of kind kiosk); absent when the broker cannot write identity tokens. */
export interface KioskTokens {
  create(name: string): Promise<{ id: string; url: string }>;
  revoke(id: string): Promise<void>;
}

export interface BrokerDeps {
  store: BrokerStore;
  log: Logger;
  /** the install's subject prefix */
  prefix: string;
  /** the NATS URL agents are told to use */
  natsUrl: string;
  /** the gateway's public URL (dashboard links) */
  gatewayUrl: string;
  strategy: Strategy;
  /** removes what a tenant published (its subjects in DISCOVERY and METRICS) */
  purgeTenant(t: Tenant): Promise<void>;
  kiosk?: KioskTokens;
  /**
   * asks the jobs service's scheduler for a run (agentless-probes: a tcp-scan of the targets); absent, that step is
   * skipped. A caller-chosen runId makes a step redone after a restart submit the same run again, not a second one.
   */
  submitRun?(r: { job: string; params: Record<string, unknown>; runId: string }): Promise<{ ok: true; runs: number } | { ok: false; error: string }>;
  /** pause before each step of an asynchronous operation (lets a platform's polling, and the tests, see it run) */
  stepDelayMs?: number;
  now?: () => number;
  random?: () => number;
}

const newOpId = () => `op-${randomBytes(8).toString("hex")}`;
const sameJson = (a: unknown, b: unknown) => JSON.stringify(canon(a)) === JSON.stringify(canon(b));
function canon(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canon);
  if (v && typeof v === "object") return Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])]));
  return v;
}

/** A step failed for a reason retrying will not change (the operation is reported failed with it). */
export class StepFailedError extends Error {
  override readonly name = "StepFailedError";
}

type Parsed<T> = { ok: true; value: T } | { ok: false; reply: Reply };
function parse<S extends z.ZodType>(schema: S, raw: unknown, what: string): Parsed<z.output<S>> {
  const r = schema.safeParse(raw);
  return r.success ? { ok: true, value: r.data } : { ok: false, reply: bad(`${what}: ${formatIssues(r.error)}`) };
}

/** accepts_incomplete, if given, must be true or false ("URL Properties"). */
function acceptsIncomplete(q: URLSearchParams): boolean | Reply {
  const v = q.get("accepts_incomplete");
  if (v === null || v === "false") return false;
  if (v === "true") return true;
  return bad(`accepts_incomplete must be true or false, got ${JSON.stringify(v)}`);
}

export class Broker {
  private readonly now: () => number;
  private readonly runner: OperationRunner;

  constructor(private readonly d: BrokerDeps) {
    this.now = d.now ?? Date.now;
    this.runner = new OperationRunner(this, d.store, d.log, d.stepDelayMs ?? 0);
  }

  /** Picks up every operation a previous broker process left in progress. */
  async resume(): Promise<number> {
    let n = 0;
    for await (const i of this.d.store.instances()) if (i.value.op.state === "in progress") (this.runner.kick({ kind: "instance", id: i.value.instance_id }), n++);
    for await (const b of this.d.store.bindings()) if (b.value.op.state === "in progress") (this.runner.kick({ kind: "binding", id: b.value.instance_id, bindingId: b.value.binding_id }), n++);
    return n;
  }

  async stop(): Promise<void> {
    await this.runner.stop();
  }

  private plan(serviceId: string, planId: string): PlanDef | Reply {
    if (serviceId !== SERVICE_ID) return bad(`unknown service_id ${JSON.stringify(serviceId)} (see GET /v2/catalog)`);
    return planById(planId) ?? bad(`unknown plan_id ${JSON.stringify(planId)} (see GET /v2/catalog)`);
  }

  private params(plan: PlanDef, raw: Record<string, unknown> | undefined): Parsed<Record<string, unknown>> {
    return parse(plan.params, raw ?? {}, `parameters for plan ${plan.name}`) as Parsed<Record<string, unknown>>;
  }

  /** "Provisioning" — PUT /v2/service_instances/:instance_id */
  async provision(instanceId: string, rawBody: unknown, q: URLSearchParams): Promise<Reply> {
    const body = parse(ProvisionRequest, rawBody, "request body");
    if (!body.ok) return body.reply;
    const async = acceptsIncomplete(q);
    if (typeof async !== "boolean") return async;
    const b = body.value;
    // "Provisioning" request body: organization_guid and space_guid are deprecated in favour of context, but REQUIRED
    if (!b.organization_guid || !b.space_guid) return bad("organization_guid and space_guid are required (non-empty strings)");
    const plan = this.plan(b.service_id, b.plan_id);
    if ("status" in plan) return plan;
    if (b.maintenance_info && b.maintenance_info.version !== plan.maintenanceVersion)
      return reply(422, { error: "MaintenanceInfoConflict", description: `maintenance_info.version ${b.maintenance_info.version} is not the plan's (${plan.maintenanceVersion}); fetch the catalog again` });
    const params = this.params(plan, b.parameters);
    if (!params.ok) return params.reply;
    if (plan.asyncOnly && !async) return asyncRequired(`plan ${plan.name}`);
    for (;;) {
      const cur = await this.d.store.instance(instanceId);
      if (cur && cur.value.state !== "gone") {
        const r = cur.value;
        const identical = r.service_id === b.service_id && r.plan_id === b.plan_id && sameJson(r.parameters, b.parameters ?? {}) && r.organization_guid === b.organization_guid && r.space_guid === b.space_guid;
        if (!identical) return reply(409, { description: "a service instance with this id exists with different attributes" });
        if (r.state === "ready") return reply(200, { dashboard_url: r.tenant.dashboardUrl });
        // 202 only to a platform that accepts it; a synchronous request racing an operation gets ConcurrencyError
        if (r.state === "provisioning") return async ? reply(202, { dashboard_url: r.tenant.dashboardUrl, operation: r.op.id }) : concurrency(`instance ${instanceId}`);
        if (r.state === "failed") return reply(409, { description: `this instance's provisioning failed (${r.op.description ?? "no reason"}); deprovision it first` });
        return concurrency(`instance ${instanceId}`);
      }
      const tenant = tenantFor({ instanceId, plan: plan.name, params: params.value as { group_by?: string; level?: string }, prefix: this.d.prefix, gatewayUrl: this.d.gatewayUrl });
      // The wallboard plan has nothing slow to do: it answers synchronously even when the platform accepts 202 (the
      // spec lets a broker answer 201 to accepts_incomplete=true).
      const runAsync = async && plan.name !== "wallboard";
      const rec: InstanceRecord = {
        instance_id: instanceId,
        service_id: b.service_id,
        plan_id: b.plan_id,
        parameters: b.parameters ?? {},
        context: b.context,
        organization_guid: b.organization_guid,
        space_guid: b.space_guid,
        maintenance_info: b.maintenance_info,
        state: "provisioning",
        tenant,
        op: { id: newOpId(), type: "provision", state: "in progress", step: 0, startedAt: this.now() },
        createdAt: this.now(),
      };
      try {
        await this.d.store.putInstance(rec, cur ? cur.revision : null);
      } catch (e) {
        if (e instanceof StaleWriteError) continue;
        throw e;
      }
      if (runAsync) {
        this.runner.kick({ kind: "instance", id: instanceId });
        return reply(202, { dashboard_url: tenant.dashboardUrl, operation: rec.op.id });
      }
      const done = await this.runner.runNow({ kind: "instance", id: instanceId });
      if (done.state === "succeeded") return reply(201, { dashboard_url: tenant.dashboardUrl });
      return reply(500, { description: `provisioning failed: ${done.description ?? "unknown reason"}` });
    }
  }

  /** "Updating a Service Instance" — PATCH /v2/service_instances/:instance_id */
  async update(instanceId: string, rawBody: unknown, q: URLSearchParams): Promise<Reply> {
    const body = parse(UpdateRequest, rawBody, "request body");
    if (!body.ok) return body.reply;
    const async = acceptsIncomplete(q);
    if (typeof async !== "boolean") return async;
    const b = body.value;
    for (;;) {
      const cur = await this.d.store.instance(instanceId);
      if (!cur || cur.value.state === "gone") return reply(404, { description: `no service instance ${instanceId}` });
      const r = cur.value;
      if (b.service_id !== r.service_id) return bad(`service_id ${JSON.stringify(b.service_id)} is not this instance's`);
      if (r.op.state === "in progress") {
        // "a re-sent PATCH request MUST return a 202 Accepted ... if the requested update has not yet completed"
        const resent = r.op.type === "update" && (b.plan_id ?? r.plan_id) === r.plan_id && sameJson({ ...r.op.previous?.parameters, ...(b.parameters ?? {}) }, r.parameters);
        return resent && async ? reply(202, { dashboard_url: r.tenant.dashboardUrl, operation: r.op.id }) : concurrency(`instance ${instanceId}`);
      }
      if (r.state !== "ready") return reply(422, { error: "ConcurrencyError", description: `instance ${instanceId} is ${r.state}, not ready: it cannot be updated` });
      const plan = this.plan(r.service_id, b.plan_id ?? r.plan_id);
      if ("status" in plan) return plan;
      if (b.maintenance_info && b.maintenance_info.version !== plan.maintenanceVersion)
        return reply(422, { error: "MaintenanceInfoConflict", description: `maintenance_info.version ${b.maintenance_info.version} is not the plan's (${plan.maintenanceVersion}); fetch the catalog again` });
      // The given parameters are laid over the current ones ("if this field is not present ... MUST NOT change the
      // parameters"); a plan change keeps them too, and is refused (422) when they do not fit the new plan.
      const planChanged = plan.id !== r.plan_id;
      const merged = { ...r.parameters, ...(b.parameters ?? {}) };
      const params = this.params(plan, merged);
      if (!params.ok) return planChanged && b.parameters === undefined ? reply(422, { description: `the instance's parameters do not fit plan ${plan.name}: ${String(params.reply.body.description)}; give parameters for it` }) : params.reply;
      if (plan.asyncOnly && !async) return asyncRequired(`plan ${plan.name}`);
      const nothing = !planChanged && sameJson(merged, r.parameters) && (!b.maintenance_info || sameJson(b.maintenance_info, r.maintenance_info)) && (!b.context || sameJson(b.context, r.context));
      if (nothing) return reply(200, { dashboard_url: r.tenant.dashboardUrl });
      const tenant = { ...tenantFor({ instanceId, plan: plan.name, params: params.value as { group_by?: string }, prefix: this.d.prefix, gatewayUrl: this.d.gatewayUrl }), placement: r.tenant.placement };
      const next: InstanceRecord = {
        ...r,
        plan_id: plan.id,
        parameters: merged,
        context: b.context ?? r.context,
        maintenance_info: b.maintenance_info ?? r.maintenance_info,
        tenant,
        op: { id: newOpId(), type: "update", state: "in progress", step: 0, startedAt: this.now(), previous: { plan_id: r.plan_id, parameters: r.parameters } },
      };
      try {
        await this.d.store.putInstance(next, cur.revision);
      } catch (e) {
        if (e instanceof StaleWriteError) continue;
        throw e;
      }
      if (async) {
        this.runner.kick({ kind: "instance", id: instanceId });
        return reply(202, { dashboard_url: tenant.dashboardUrl, operation: next.op.id });
      }
      const done = await this.runner.runNow({ kind: "instance", id: instanceId });
      if (done.state === "succeeded") return reply(200, { dashboard_url: tenant.dashboardUrl });
      return reply(500, { description: `update failed: ${done.description ?? "unknown reason"}`, instance_usable: true, update_repeatable: true });
    }
  }

  /** "Deprovisioning" — DELETE /v2/service_instances/:instance_id?service_id&plan_id */
  async deprovision(instanceId: string, q: URLSearchParams): Promise<Reply> {
    const async = acceptsIncomplete(q);
    if (typeof async !== "boolean") return async;
    const serviceId = q.get("service_id");
    const planId = q.get("plan_id");
    if (!serviceId || !planId) return bad("service_id and plan_id query parameters are required");
    for (;;) {
      const cur = await this.d.store.instance(instanceId);
      if (!cur || cur.value.state === "gone") return reply(410, {});
      const r = cur.value;
      if (r.op.state === "in progress") {
        if (r.op.type === "deprovision" && async) return reply(202, { operation: r.op.id });
        return concurrency(`instance ${instanceId}`);
      }
      const plan = planById(r.plan_id);
      if (plan?.asyncOnly && !async) return asyncRequired(`deprovisioning an instance of plan ${plan.name}`);
      const next: InstanceRecord = { ...r, state: "deprovisioning", op: { id: newOpId(), type: "deprovision", state: "in progress", step: 0, startedAt: this.now() } };
      try {
        await this.d.store.putInstance(next, cur.revision);
      } catch (e) {
        if (e instanceof StaleWriteError) continue;
        throw e;
      }
      if (async) {
        this.runner.kick({ kind: "instance", id: instanceId });
        return reply(202, { operation: next.op.id });
      }
      const done = await this.runner.runNow({ kind: "instance", id: instanceId });
      if (done.state === "succeeded") return reply(200, {});
      return reply(500, { description: `deprovisioning failed: ${done.description ?? "unknown reason"}` });
    }
  }

  /** "Polling Last Operation (Service Instances)" — GET /v2/service_instances/:instance_id/last_operation */
  async lastOperation(instanceId: string, q: URLSearchParams): Promise<Reply> {
    const cur = await this.d.store.instance(instanceId);
    if (!cur) return reply(404, { description: `no service instance ${instanceId}` });
    const r = cur.value;
    const asked = q.get("operation");
    if (asked !== null && asked !== r.op.id) return bad(`operation ${JSON.stringify(asked)} is not this instance's last operation`);
    // 410 Gone: "appropriate only for asynchronous delete operations" — the instance is gone.
    if (r.state === "gone") return reply(410, {});
    return { ...reply(200, opBody(r.op, r.op.type === "update" && r.op.state === "failed" ? { instance_usable: true, update_repeatable: true } : {})), headers: retryAfter(r.op) };
  }

  /** "Fetching a Service Instance" — GET /v2/service_instances/:instance_id */
  async fetchInstance(instanceId: string): Promise<Reply> {
    const cur = await this.d.store.instance(instanceId);
    if (!cur || cur.value.state === "gone" || cur.value.state === "provisioning" || cur.value.state === "failed") return reply(404, {});
    const r = cur.value;
    if (r.op.type === "update" && r.op.state === "in progress") return concurrency(`instance ${instanceId} (being updated)`);
    return reply(200, {
      service_id: r.service_id,
      plan_id: r.plan_id,
      dashboard_url: r.tenant.dashboardUrl,
      parameters: r.parameters,
      ...(r.maintenance_info ? { maintenance_info: r.maintenance_info } : {}),
      metadata: { labels: { tenant: r.tenant.id }, attributes: { graph_source: r.tenant.graphSource, placement: r.tenant.placement ?? null } },
    });
  }

  /** "Binding" — PUT /v2/service_instances/:instance_id/service_bindings/:binding_id */
  async bind(instanceId: string, bindingId: string, rawBody: unknown, q: URLSearchParams): Promise<Reply> {
    const body = parse(BindRequest, rawBody, "request body");
    if (!body.ok) return body.reply;
    const async = acceptsIncomplete(q);
    if (typeof async !== "boolean") return async;
    const b = body.value;
    const params = parse(BindParams, b.parameters ?? {}, "binding parameters");
    if (!params.ok) return params.reply;
    const inst = await this.d.store.instance(instanceId);
    if (!inst || inst.value.state === "gone") return reply(404, { description: `no service instance ${instanceId}` });
    if (b.service_id !== inst.value.service_id || b.plan_id !== inst.value.plan_id) return bad("service_id and plan_id must be the instance's");
    if (inst.value.state !== "ready" || inst.value.op.state === "in progress") return concurrency(`instance ${instanceId}`);
    for (;;) {
      const cur = await this.d.store.binding(instanceId, bindingId);
      if (cur && cur.value.state !== "gone") {
        const r = cur.value;
        const identical = r.service_id === b.service_id && r.plan_id === b.plan_id && sameJson(r.parameters, b.parameters ?? {}) && r.app_guid === b.app_guid && sameJson(r.bind_resource ?? null, b.bind_resource ?? null);
        if (!identical) return reply(409, { description: "a service binding with this id exists with different attributes" });
        if (r.state === "ready") return reply(200, bindingBody(r));
        if (r.state === "binding") return async ? reply(202, { operation: r.op.id }) : concurrency(`binding ${bindingId}`);
        if (r.state === "failed") return reply(409, { description: `this binding failed (${r.op.description ?? "no reason"}); unbind it first` });
        return concurrency(`binding ${bindingId}`);
      }
      const rec: BindingRecord = {
        instance_id: instanceId,
        binding_id: bindingId,
        service_id: b.service_id,
        plan_id: b.plan_id,
        parameters: b.parameters ?? {},
        app_guid: b.app_guid,
        bind_resource: b.bind_resource,
        context: b.context,
        state: "binding",
        op: { id: newOpId(), type: "bind", state: "in progress", step: 0, startedAt: this.now() },
        createdAt: this.now(),
      };
      try {
        await this.d.store.putBinding(rec, cur ? cur.revision : null);
      } catch (e) {
        if (e instanceof StaleWriteError) continue;
        throw e;
      }
      const key = { kind: "binding", id: instanceId, bindingId } as const;
      if (async) {
        this.runner.kick(key);
        return reply(202, { operation: rec.op.id });
      }
      const done = await this.runner.runNow(key);
      if (done.state !== "succeeded") return reply(500, { description: `binding failed: ${done.description ?? "unknown reason"}` });
      const now = await this.d.store.binding(instanceId, bindingId);
      return reply(201, now ? bindingBody(now.value) : {});
    }
  }

  /** "Unbinding" — DELETE /v2/service_instances/:instance_id/service_bindings/:binding_id?service_id&plan_id */
  async unbind(instanceId: string, bindingId: string, q: URLSearchParams): Promise<Reply> {
    const async = acceptsIncomplete(q);
    if (typeof async !== "boolean") return async;
    if (!q.get("service_id") || !q.get("plan_id")) return bad("service_id and plan_id query parameters are required");
    for (;;) {
      const cur = await this.d.store.binding(instanceId, bindingId);
      if (!cur || cur.value.state === "gone") return reply(410, {});
      const r = cur.value;
      if (r.op.state === "in progress") return r.op.type === "unbind" && async ? reply(202, { operation: r.op.id }) : concurrency(`binding ${bindingId}`);
      const next: BindingRecord = { ...r, state: "unbinding", op: { id: newOpId(), type: "unbind", state: "in progress", step: 0, startedAt: this.now() } };
      try {
        await this.d.store.putBinding(next, cur.revision);
      } catch (e) {
        if (e instanceof StaleWriteError) continue;
        throw e;
      }
      const key = { kind: "binding", id: instanceId, bindingId } as const;
      if (async) {
        this.runner.kick(key);
        return reply(202, { operation: next.op.id });
      }
      const done = await this.runner.runNow(key);
      return done.state === "succeeded" ? reply(200, {}) : reply(500, { description: `unbinding failed: ${done.description ?? "unknown reason"}` });
    }
  }

  /** "Polling Last Operation (Service Bindings)" */
  async bindingLastOperation(instanceId: string, bindingId: string, q: URLSearchParams): Promise<Reply> {
    const cur = await this.d.store.binding(instanceId, bindingId);
    if (!cur) return reply(404, { description: `no service binding ${bindingId}` });
    const asked = q.get("operation");
    if (asked !== null && asked !== cur.value.op.id) return bad(`operation ${JSON.stringify(asked)} is not this binding's last operation`);
    if (cur.value.state === "gone") return reply(410, {});
    return { ...reply(200, opBody(cur.value.op)), headers: retryAfter(cur.value.op) };
  }

  /** "Fetching a Service Binding" — 404 while it does not exist or is still being created. */
  async fetchBinding(instanceId: string, bindingId: string): Promise<Reply> {
    const cur = await this.d.store.binding(instanceId, bindingId);
    if (!cur || cur.value.state !== "ready") return reply(404, {});
    return reply(200, { ...bindingBody(cur.value), parameters: cur.value.parameters });
  }

  /** Every live binding's NATS user (for nats-server's authorization block). */
  async liveUsers() {
    const out = [];
    for await (const b of this.d.store.bindings()) if (b.value.state === "ready" && b.value.credentials) out.push(b.value.credentials.nats);
    return out;
  }

  // ---- steps (idempotent; run by the OperationRunner) ----

  /** Runs step `op.step` of an instance's operation; returns true when that was the last step. */
  async instanceStep(r: InstanceRecord): Promise<{ record: InstanceRecord; last: boolean }> {
    const op = r.op;
    const existing = async () => {
      const out: { tenant: string; placement: NonNullable<Tenant["placement"]>; pick: PickMode; redundancy: Redundancy }[] = [];
      for await (const i of this.d.store.instances()) {
        const v = i.value;
        if (v.instance_id === r.instance_id || v.state === "gone" || !v.tenant.placement) continue;
        const p = PlacementParams.parse((v.parameters.placement as object | undefined) ?? {});
        out.push({ tenant: v.tenant.id, placement: v.tenant.placement, pick: p.pick, redundancy: p.redundancy as Redundancy });
      }
      return out;
    };
    const placeMe = async (): Promise<InstanceRecord> => {
      const p = PlacementParams.parse((r.parameters.placement as object | undefined) ?? {});
      const placement = placeTenant({ strategy: this.d.strategy, tenant: r.tenant.id, pick: p.pick, redundancy: p.redundancy as Redundancy, existing: await existing(), random: this.d.random });
      if (placement.active.length === 0) throw new StepFailedError(`no pool can take the tenant: ${placement.degraded ?? "no room"}`);
      return { ...r, tenant: { ...r.tenant, placement } };
    };
    switch (op.type) {
      case "provision":
        // 0: place the tenant; 1: clear what an earlier instance with this id may have left on its subjects;
        // 2 (agentless-probes): the first scan of its targets by the jobs service
        if (op.step === 0) return { record: await placeMe(), last: false };
        if (op.step === 1) {
          await this.d.purgeTenant(r.tenant);
          return { record: r, last: false };
        }
        await this.firstScan(r);
        return { record: { ...r, state: "ready" }, last: true };
      case "update":
        return { record: { ...(await placeMe()), state: "ready" }, last: true };
      case "deprovision":
        // 0: revoke what bindings remain (the platform normally unbinds first); 1: remove the tenant's data
        if (op.step === 0) {
          for await (const b of this.d.store.bindings(r.instance_id)) if (b.value.state !== "gone") await this.revokeBinding(b);
          return { record: r, last: false };
        }
        await this.d.purgeTenant(r.tenant);
        return { record: { ...r, state: "gone" }, last: true };
      default:
        throw new StepFailedError(`operation ${op.type} does not apply to an instance`);
    }
  }

  private async firstScan(r: InstanceRecord): Promise<void> {
    if (planById(r.plan_id)?.name !== "agentless-probes" || !this.d.submitRun) return;
    const p = AgentlessProbesParams.parse(r.parameters);
    const res = await this.d.submitRun({ job: "tcp-scan", params: { targets: p.targets, ports: p.ports }, runId: `broker-${r.tenant.id}-${r.op.id}` });
    if (!res.ok) throw new StepFailedError(`the jobs service did not take the probe run: ${res.error}`);
  }

  /** Marks a binding gone outside its own operations (deprovisioning an instance that still has bindings). */
  private async revokeBinding(b: Versioned<BindingRecord>): Promise<void> {
    if (b.value.kioskTokenId) await this.d.kiosk?.revoke(b.value.kioskTokenId);
    const op: Operation = { id: newOpId(), type: "unbind", state: "succeeded", step: 1, startedAt: this.now(), description: "revoked with its instance" };
    try {
      await this.d.store.putBinding({ ...b.value, state: "gone", credentials: undefined, op }, b.revision);
    } catch (e) {
      if (!(e instanceof StaleWriteError)) throw e;
    }
  }

  async bindingStep(r: BindingRecord): Promise<{ record: BindingRecord; last: boolean }> {
    if (r.op.type === "bind") {
      const inst = await this.d.store.instance(r.instance_id);
      if (!inst || inst.value.state === "gone") throw new StepFailedError("its instance is gone");
      const t = inst.value.tenant;
      const name = ((r.parameters as { name?: string }).name ?? r.binding_id).slice(0, 100);
      // the kiosk token is recorded with the credentials in one write; a crash between creating it and that write
      // leaves it unrecorded, and the redone step creates another: the first stays valid until an admin revokes it
      // (orrery token list shows it, named after the tenant and binding).
      const kiosk = r.credentials ? undefined : await this.d.kiosk?.create(`broker ${t.id} ${name}`);
      const credentials = r.credentials ?? credentialsFor(t, natsUserFor(t, this.d.natsUrl), kiosk?.url);
      return { record: { ...r, credentials, kioskTokenId: r.kioskTokenId ?? kiosk?.id, state: "ready" }, last: true };
    }
    if (r.op.type === "unbind") {
      if (r.kioskTokenId) await this.d.kiosk?.revoke(r.kioskTokenId);
      return { record: { ...r, state: "gone", credentials: undefined, kioskTokenId: undefined }, last: true };
    }
    throw new StepFailedError(`operation ${r.op.type} does not apply to a binding`);
  }

  /** An operation failed: what the record becomes. */
  failInstance(r: InstanceRecord, why: string): InstanceRecord {
    const op = { ...r.op, state: "failed" as const, description: why };
    if (r.op.type === "update" && r.op.previous) {
      // roll back to what it was: the instance stays usable (instance_usable: true in last_operation)
      const plan = planById(r.op.previous.plan_id);
      const tenant = plan ? { ...tenantFor({ instanceId: r.instance_id, plan: plan.name, params: r.op.previous.parameters as { group_by?: string }, prefix: this.d.prefix, gatewayUrl: this.d.gatewayUrl }), placement: r.tenant.placement } : r.tenant;
      return { ...r, plan_id: r.op.previous.plan_id, parameters: r.op.previous.parameters, tenant, state: "ready", op };
    }
    // a failed deprovision leaves the instance as it was; a failed provision is an orphan the platform deletes
    return { ...r, state: r.op.type === "deprovision" ? "ready" : "failed", op };
  }
}

/** "The response MAY also include the Retry-After HTTP header" (a duration, as recommended): while in progress. */
const retryAfter = (op: Operation): Record<string, string> | undefined => (op.state === "in progress" ? { "Retry-After": "1" } : undefined);

function opBody(op: Operation, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const description = op.description ?? (op.state === "in progress" ? `${op.type}: step ${op.step + 1}` : `${op.type} ${op.state}`);
  return { state: op.state, description, ...extra };
}

function bindingBody(r: BindingRecord): Record<string, unknown> {
  return { credentials: r.credentials ?? {}, metadata: {} };
}

export type OpKey = { kind: "instance"; id: string } | { kind: "binding"; id: string; bindingId: string };

/**
 * Runs operations step by step, each step's outcome written with compare-and-set before the next starts: a second
 * runner (another broker process, or this one after a restart) that raced it reads the record again and carries on
 * from there. A step that fails transiently (NATS away) is retried with backoff; a StepFailedError or a permanent
 * error ends the operation as failed with its reason.
 */
export class OperationRunner {
  private readonly running = new Map<string, Promise<Operation>>();
  private stopped = false;

  constructor(
    private readonly broker: Broker,
    private readonly store: BrokerStore,
    private readonly log: Logger,
    private readonly stepDelayMs: number,
  ) {}

  private keyOf(k: OpKey) {
    return k.kind === "instance" ? `i:${k.id}` : `b:${k.id}:${k.bindingId}`;
  }

  /** Starts (or joins) the operation in the background. */
  kick(k: OpKey): void {
    void this.run(k, this.stepDelayMs).catch((e) => this.log.error("broker operation crashed", { key: this.keyOf(k), error: String(e) }));
  }

  /** Runs the operation to its end now (a synchronous request). */
  runNow(k: OpKey): Promise<Operation> {
    return this.run(k, 0);
  }

  private run(k: OpKey, delayMs: number): Promise<Operation> {
    const key = this.keyOf(k);
    const cur = this.running.get(key);
    if (cur) return cur;
    const p = this.loop(k, delayMs).finally(() => this.running.delete(key));
    this.running.set(key, p);
    return p;
  }

  private async loop(k: OpKey, delayMs: number): Promise<Operation> {
    const store = this.store;
    let attempt = 0;
    for (;;) {
      if (this.stopped) throw new Error("broker stopping");
      const cur = k.kind === "instance" ? await store.instance(k.id) : await store.binding(k.id, k.bindingId);
      if (!cur) throw new Error(`no record for ${this.keyOf(k)}`);
      const rec = cur.value;
      if (rec.op.state !== "in progress") return rec.op;
      if (delayMs > 0) await Bun.sleep(delayMs);
      if (this.stopped) throw new Error("broker stopping");
      let next: InstanceRecord | BindingRecord;
      try {
        const r = k.kind === "instance" ? await this.broker.instanceStep(rec as InstanceRecord) : await this.broker.bindingStep(rec as BindingRecord);
        next = { ...r.record, op: r.last ? { ...rec.op, state: "succeeded", step: rec.op.step + 1, description: undefined } : { ...rec.op, step: rec.op.step + 1 } } as typeof r.record;
        attempt = 0;
      } catch (e) {
        if (!(e instanceof StepFailedError) && failureKind(e) === "transient" && attempt < 8) {
          attempt++;
          this.log.warn("broker operation step failed; retrying", { key: this.keyOf(k), attempt, error: String(e) });
          await Bun.sleep(Math.min(10_000, 250 * 2 ** attempt));
          continue;
        }
        const why = e instanceof Error ? e.message : String(e);
        this.log.warn("broker operation failed", { key: this.keyOf(k), op: rec.op.type, error: why });
        next = k.kind === "instance" ? this.broker.failInstance(rec as InstanceRecord, why) : { ...(rec as BindingRecord), state: rec.op.type === "bind" ? "failed" : "ready", op: { ...rec.op, state: "failed", description: why } };
      }
      try {
        if (k.kind === "instance") await store.putInstance(next as InstanceRecord, cur.revision);
        else await store.putBinding(next as BindingRecord, cur.revision);
      } catch (e) {
        if (!(e instanceof StaleWriteError)) throw e;
        // another runner moved it on: read it again
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled([...this.running.values()]);
  }
}
