/**
 * What a failure means to a message whose handling hit it: `transient` (something the message needs is unavailable —
 * a store that is down, unreachable or timing out: wait it out, never give the message up), `permanent` (the message
 * itself is bad: dead-letter it at once) or `unknown` (retry a few times, then dead-letter the message if it still
 * fails on its own). Adapters say which by the class they throw; `toAckDecision` (bus.ts) reads it with instanceof.
 */
import { ContractError } from "../../pipelines/codec.ts";

export type FailureKind = "transient" | "permanent" | "unknown";

/** The message is bad (refers to nothing, cannot be stored as it is): retrying can never succeed. */
export class PermanentError extends Error {
  override readonly name = "PermanentError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The message is fine, something it needs is not (a store is down): retry the whole batch, do not look for a culprit. */
export class TransientError extends Error {
  override readonly name = "TransientError";
  constructor(
    message: string,
    /** how long to wait before the next try, when the failure says (otherwise a capped backoff) */
    readonly delayMs?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * Base of a port's error class (GraphStoreError, HistoryStoreError, SeriesStoreError): a code the port defines for
 * its callers (HTTP, RPC), and what that code means to a consumer.
 */
export abstract class PortError<C extends string = string> extends Error {
  constructor(
    readonly code: C,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
  abstract get kind(): FailureKind;
}

/**
 * The kind of a failure. An untyped error that wraps a typed one (`new Error("…", { cause })`) is taken for its cause,
 * so a service may add context without losing what the adapter said.
 */
export function failureKind(err: unknown): FailureKind {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof TransientError) return "transient";
    if (e instanceof PermanentError || e instanceof ContractError) return "permanent";
    if (e instanceof PortError) return e.kind;
  }
  return "unknown";
}
