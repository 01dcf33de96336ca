/**
 * NATS credentials: one user per service and per agent host, each limited to the subjects it uses, rendered as the
 * `authorization { users = [...] }` block of nats-server's config (the demo's supervisor writes it; deploy/nats holds
 * the production layout's).
 *
 * Users with bcrypt-hashed passwords rather than nkeys: every service, the agent and the CLI already take
 * NATS_USER/NATS_PASS, the server's config holds only hashes, and the permission model is the same one nkey users get
 * (the service broker's nkey tenants can sit in the same users list).
 *
 * What each may do:
 * - an agent publishes only its own host's discovery subject and its own metrics subject (`agent:<host>`), and reads
 *   only the replies of its own requests (JetStream publish acks, under its own inbox prefix). No JetStream API: it
 *   cannot declare, read or purge a stream, so the topology stream is out of its reach;
 * - a service publishes the stream subjects it writes, the JetStream API (it declares streams and pulls its durables),
 *   acks, requests under <prefix>.rpc and answers to the requests it got (allow_responses), and reads <prefix>.> and
 *   its inboxes;
 * - `admin` (the CLI, an operator's `nats` tool) may do anything.
 */
import { randomBytes } from "node:crypto";
import { z } from "zod";
import { subjectToken, type Topology } from "../../pipelines/streams.ts";

export interface Permissions {
  publish: string[];
  subscribe: string[];
  /** may answer requests it received (reply subjects outside its publish list) */
  allowResponses: boolean;
}

/** The services the supervisor starts, each with its own user. */
export const SERVICES = ["topology", "metrics", "history", "alerts", "registry", "ingest", "gateway", "jobs", "simulator", "exporters", "broker", "clickhouse"] as const;
export type ServiceName = (typeof SERVICES)[number];

/** The inbox prefix an agent's client uses (its user may read replies there only). */
export const agentInboxPrefix = (host: string) => `_INBOX_agent_${subjectToken(host)}`;
export const agentUser = (host: string) => `agent-${subjectToken(host)}`;
export const serviceUser = (name: string) => `svc-${name}`;

export function agentPermissions(topo: Topology, host: string): Permissions {
  return {
    publish: [topo.subjects.discovery(host), topo.subjects.metrics(`agent:${host}`)],
    subscribe: [`${agentInboxPrefix(host)}.>`],
    allowResponses: false,
  };
}

const bucketSubjects = (bucket: string) => [`$KV.${bucket}.>`];

export function servicePermissions(topo: Topology, name: ServiceName): Permissions {
  const s = topo.subjects;
  const p = topo.prefix;
  const P = p.toUpperCase().replace(/-/g, "_");
  const discovery = `${p}.discovery.v1.>`;
  const metrics = `${p}.metrics.v1.>`;
  const alerts = `${p}.alerts.v1.>`;
  const identity = bucketSubjects(topo.buckets.identity);
  const own: Record<ServiceName, string[]> = {
    topology: [s.topologyDelta, ...bucketSubjects(topo.buckets.leases)],
    metrics: [],
    history: [],
    // the active alerts instance holds its own key of the leases bucket
    alerts: [s.health, alerts, `$KV.${topo.buckets.leases}.alerts`],
    // annotations (owner/team of a registered component's hosts) go out as discovery of source registry:<host>
    registry: [`${p}.registry.v1.>`, s.drift, s.registryGraph, discovery],
    ingest: [discovery, metrics, alerts, ...identity],
    gateway: [alerts, ...identity],
    jobs: [discovery, metrics, s.jobs.all, `${p}.workers.v1.>`, `${p}.jobs.status.v1.>`, s.jobs.placements],
    simulator: [discovery, metrics, alerts],
    exporters: bucketSubjects(`${P}_EXPORTERS`),
    broker: [...identity, ...bucketSubjects(topo.buckets.broker)],
    // the ClickHouse owner does not use NATS: a user with nothing to publish
    clickhouse: [],
  };
  if (name === "clickhouse") return { publish: [], subscribe: [], allowResponses: false };
  return {
    publish: ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", `${p}.rpc.>`, `${p}.dlq.>`, ...own[name]],
    subscribe: ["_INBOX.>", `${p}.>`],
    allowResponses: true,
  };
}

export const ADMIN_PERMISSIONS: Permissions = { publish: [">"], subscribe: [">"], allowResponses: true };

export interface NatsUserEntry {
  user: string;
  /** a bcrypt hash (never the password itself) */
  passwordHash: string;
  permissions: Permissions;
}

/** A password with 192 bits of randomness, safe in env values and URLs. */
export const newPassword = () => randomBytes(24).toString("base64url");

export const hashPassword = (password: string) => Bun.password.hash(password, { algorithm: "bcrypt", cost: 10 });

const q = (v: string) => JSON.stringify(v);
const list = (xs: string[]) => `[${xs.map(q).join(", ")}]`;

/**
 * nats-server's authorization block for `users` (nats-server 2.9+ config syntax; JSON string escapes are valid in it).
 * A user with an empty publish or subscribe list gets deny ">" for it.
 */
export function renderAuthorization(users: NatsUserEntry[]): string {
  const lines = users.map((u) => {
    const pub = u.permissions.publish.length ? `{ allow: ${list(u.permissions.publish)} }` : `{ deny: [">"] }`;
    const sub = u.permissions.subscribe.length ? `{ allow: ${list(u.permissions.subscribe)} }` : `{ deny: [">"] }`;
    const resp = u.permissions.allowResponses ? ", allow_responses: true" : "";
    return `    { user: ${q(u.user)}, password: ${q(u.passwordHash)}, permissions: { publish: ${pub}, subscribe: ${sub}${resp} } }`;
  });
  return `authorization {\n  users = [\n${lines.join(",\n")}\n  ]\n}\n`;
}

/** Credentials as stored beside the demo's nats-server (mode 0600): user → password. */
export interface NatsCredentials {
  admin: { user: string; password: string };
  services: Record<string, { user: string; password: string }>;
  agents: Record<string, { user: string; password: string }>;
}

/** New credentials for every service, the given agent hosts and the admin. */
export function generateCredentials(hosts: string[]): NatsCredentials {
  const services: NatsCredentials["services"] = {};
  for (const s of SERVICES) services[s] = { user: serviceUser(s), password: newPassword() };
  const agents: NatsCredentials["agents"] = {};
  for (const h of hosts) agents[h] = { user: agentUser(h), password: newPassword() };
  return { admin: { user: "admin", password: newPassword() }, services, agents };
}

/** The users of `creds` with their permissions under `topo`, passwords hashed (in parallel: bcrypt is slow on purpose). */
export async function usersOf(topo: Topology, creds: NatsCredentials): Promise<NatsUserEntry[]> {
  const plain: { user: string; password: string; permissions: Permissions }[] = [{ ...creds.admin, permissions: ADMIN_PERMISSIONS }];
  for (const [name, c] of Object.entries(creds.services)) {
    if (!(SERVICES as readonly string[]).includes(name)) throw new Error(`unknown service "${name}" in NATS credentials`);
    plain.push({ ...c, permissions: servicePermissions(topo, name as ServiceName) });
  }
  for (const [host, c] of Object.entries(creds.agents)) plain.push({ ...c, permissions: agentPermissions(topo, host) });
  return Promise.all(plain.map(async (u) => ({ user: u.user, passwordHash: await hashPassword(u.password), permissions: u.permissions })));
}

const Cred = z.object({ user: z.string().min(1), password: z.string().min(16) });
/** The credentials file's schema (read back at every start of the demo). */
export const NatsCredentialsFile = z.object({ admin: Cred, services: z.record(z.string(), Cred), agents: z.record(z.string(), Cred) });

/** `creds` with a user for every service and each of `hosts` it lacks (existing passwords kept). */
export function completeCredentials(creds: NatsCredentials, hosts: string[]): NatsCredentials {
  const fresh = generateCredentials(hosts);
  return { admin: creds.admin, services: { ...fresh.services, ...creds.services }, agents: { ...fresh.agents, ...creds.agents } };
}
