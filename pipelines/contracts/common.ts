/** Shared building blocks of every event contract. Limits are part of the contract: an event past them is refused. */
import { z } from "zod";

export const Id = z.string().min(1).max(512);
export const EpochMs = z.number().int().nonnegative();
export const Port = z.number().int().min(0).max(65535);
export const Ip = z.string().min(2).max(64);
export const Labels = z.record(z.string().max(256), z.string().max(4096)).refine((l) => Object.keys(l).length <= 64, {
  message: "at most 64 labels",
});

/** Identity of the process that owns a socket, as the agent saw it. */
export const ProcessIdentity = z.object({
  pid: z.number().int().positive(),
  exe: z.string().max(4096).nullable(),
  comm: z.string().max(256),
  cmdline: z.array(z.string().max(4096)).max(256),
  user: z.string().max(256),
  /** -1 when the agent could not read it */
  uid: z.number().int().min(-1),
  startTime: EpochMs,
  containerId: z.string().max(128).nullable().default(null),
  /** Container image (e.g. `registry/orders:1.4`) where the source knows it; part of the service's identity. */
  containerImage: z.string().max(512).nullish(),
});
export type ProcessIdentity = z.infer<typeof ProcessIdentity>;
