/**
 * The broker's catalog ("Catalog Management"): one service offering, Orrery, with a plan per way a platform uses it.
 * Names follow the spec's CLI-friendly form (lower-case letters, digits and hyphens); ids are fixed UUIDs, since a
 * platform keys its marketplace on them. Each plan's parameters are published as JSON Schema (draft-04, as the spec's
 * "Schema Object" asks) generated from the zod schemas the broker validates with, so the two cannot drift apart.
 */
import { z } from "zod";
import { AgentlessProbesParams, BindParams, HostAgentsParams, WallboardParams, type PlanName } from "../../pipelines/contracts/broker.ts";

export const SERVICE_ID = "3b6c4d0e-6f0a-4f7e-9a53-0b6f3c2d1e01";
export const SERVICE_NAME = "orrery";

export interface PlanDef {
  id: string;
  name: PlanName;
  description: string;
  /** provisioning only with accepts_incomplete=true (else 422 AsyncRequired) */
  asyncOnly: boolean;
  params: z.ZodType;
  maintenanceVersion: string;
}

export const PLANS: readonly PlanDef[] = [
  {
    id: "3b6c4d0e-6f0a-4f7e-9a53-0b6f3c2d1e11",
    name: "host-agents",
    description: "Orrery agents on your hosts: discovery and metrics under your tenant's subjects, a dashboard view of them",
    asyncOnly: false,
    params: HostAgentsParams,
    maintenanceVersion: "1.0.0",
  },
  {
    id: "3b6c4d0e-6f0a-4f7e-9a53-0b6f3c2d1e12",
    name: "agentless-probes",
    description: "Agentless probes of your targets by Orrery's job workers, placed per the placement strategy (asynchronous)",
    asyncOnly: true,
    params: AgentlessProbesParams,
    maintenanceVersion: "1.0.0",
  },
  {
    id: "3b6c4d0e-6f0a-4f7e-9a53-0b6f3c2d1e13",
    name: "wallboard",
    description: "A read-only wallboard view of your part of the estate, with a kiosk URL per binding",
    asyncOnly: false,
    params: WallboardParams,
    maintenanceVersion: "1.0.0",
  },
];

export const planById = (id: string): PlanDef | undefined => PLANS.find((p) => p.id === id);

/** CLI-friendly: the spec's allowed form for offering and plan names (checked by the unit tests). */
export const CLI_NAME = /^[a-z0-9][a-z0-9-]*$/;

const jsonSchema = (s: z.ZodType) => z.toJSONSchema(s, { target: "draft-04", io: "input" });

/** GET /v2/catalog's body. */
export function catalog(): Record<string, unknown> {
  return {
    services: [
      {
        name: SERVICE_NAME,
        id: SERVICE_ID,
        description: "Live topology and CMDB of your platform's estate: discovery, health and a dashboard view, per tenant",
        tags: ["orrery", "topology", "cmdb", "monitoring"],
        requires: [],
        bindable: true,
        instances_retrievable: true,
        bindings_retrievable: true,
        allow_context_updates: false,
        plan_updateable: true,
        metadata: { displayName: "Orrery", documentationUrl: "https://github.com/orrery/orrery#service-broker" },
        plans: PLANS.map((p) => ({
          id: p.id,
          name: p.name,
          description: p.description,
          free: true,
          bindable: true,
          plan_updateable: true,
          maintenance_info: { version: p.maintenanceVersion, description: `Orrery tenant layout ${p.maintenanceVersion}` },
          metadata: { asyncOnly: p.asyncOnly },
          schemas: {
            service_instance: { create: { parameters: jsonSchema(p.params) }, update: { parameters: jsonSchema(p.params) } },
            service_binding: { create: { parameters: jsonSchema(BindParams) } },
          },
        })),
      },
    ],
  };
}
