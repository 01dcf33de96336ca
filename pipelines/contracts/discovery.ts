/**
 * discovery.v1 — what a source (host agent, discovery job) saw. One message carries a batch of events of one scan,
 * so a scan with thousands of sockets is a handful of messages, not thousands.
 */
import { z } from "zod";
import { EpochMs, Id, Ip, Port, ProcessIdentity } from "./common.ts";

export const HostSeen = z.object({
  type: z.literal("host.seen"),
  hostname: z.string().min(1).max(255),
  os: z.string().max(256),
  kernel: z.string().max(256),
  cpus: z.number().int().nonnegative(),
  memTotalBytes: z.number().nonnegative(),
  ips: z.array(Ip).max(256),
});
export type HostSeen = z.infer<typeof HostSeen>;

export const Proto = z.enum(["tcp", "udp"]);
export type Proto = z.infer<typeof Proto>;

export const ListenerSeen = z.object({
  type: z.literal("listener.seen"),
  proto: Proto,
  ip: Ip,
  port: Port,
  process: ProcessIdentity.nullable(),
});
export type ListenerSeen = z.infer<typeof ListenerSeen>;

export const ListenerGone = z.object({
  type: z.literal("listener.gone"),
  proto: Proto,
  ip: Ip,
  port: Port,
});
export type ListenerGone = z.infer<typeof ListenerGone>;

export const ConnectionSeen = z.object({
  type: z.literal("connection.seen"),
  proto: Proto,
  localIp: Ip,
  localPort: Port,
  remoteIp: Ip,
  remotePort: Port,
  process: ProcessIdentity.nullable(),
});
export type ConnectionSeen = z.infer<typeof ConnectionSeen>;

export const ConnectionGone = z.object({
  type: z.literal("connection.gone"),
  proto: Proto,
  localIp: Ip,
  localPort: Port,
  remoteIp: Ip,
  remotePort: Port,
});
export type ConnectionGone = z.infer<typeof ConnectionGone>;

/**
 * CMDB facts about an entity that discovery cannot see (owner, team, tier…), from an inventory, a registry or a job.
 * `match` names a host, or the service listening on host:port. The source owns its annotations: when it stops
 * reporting them (a full batch without them, or aging), the props go with them.
 */
export const EntityAnnotated = z.object({
  type: z.literal("entity.annotated"),
  match: z.object({ host: z.string().min(1).max(255), port: Port.optional(), proto: Proto.optional() }),
  props: z.record(z.string().min(1).max(64), z.string().max(1024)).refine((p) => Object.keys(p).length <= 32, { message: "at most 32 props" }),
});
export type EntityAnnotated = z.infer<typeof EntityAnnotated>;

/** A name a resolver knows for an address (DNS job, inventory): external endpoints at that IP are named by it. */
export const NameSeen = z.object({
  type: z.literal("name.seen"),
  ip: Ip,
  name: z.string().min(1).max(255),
});
export type NameSeen = z.infer<typeof NameSeen>;

export const DiscoveryEvent = z.discriminatedUnion("type", [HostSeen, ListenerSeen, ListenerGone, ConnectionSeen, ConnectionGone, EntityAnnotated, NameSeen]);
export type DiscoveryEvent = z.infer<typeof DiscoveryEvent>;

export const MAX_DISCOVERY_EVENTS = 2000;

export const DiscoveryBatch = z.object({
  schema: z.literal("discovery.v1"),
  /** Who reported it: scoped cleanup removes only what this source reported. */
  source: Id,
  /** The host the events are about (agent: its own host id). */
  host: Id,
  scanId: z.number().int().nonnegative(),
  /** Part k of n of one scan. */
  part: z.number().int().nonnegative(),
  parts: z.number().int().positive(),
  /** A full batch carries the whole state of the source: what it does not list is gone. */
  full: z.boolean(),
  at: EpochMs,
  /**
   * How often this source reports (ms), when it is not every few seconds — e.g. a job's schedule. Aging judges the
   * source by it: silent for staleAfter × intervalMs → stale, removeAfter × intervalMs → removed.
   */
  intervalMs: z.number().int().min(1000).max(31 * 86_400_000).optional(),
  events: z.array(DiscoveryEvent).max(MAX_DISCOVERY_EVENTS),
});
export type DiscoveryBatch = z.infer<typeof DiscoveryBatch>;
