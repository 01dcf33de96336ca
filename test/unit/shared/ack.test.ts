/** toAckDecision and failureKind: typed errors (instanceof, never class-name strings) → what JetStream is told. */
import { describe, expect, test } from "bun:test";
import { ContractError } from "../../../pipelines/codec.ts";
import { GraphStoreError } from "../../../services/graph/port.ts";
import { HistoryStoreError } from "../../../services/history/port.ts";
import { SeriesStoreError } from "../../../services/metrics/port.ts";
import { backoffMs, DEFAULT_MAX_ATTEMPTS, maxAttemptsOf, MAX_BACKOFF_MS, toAckDecision } from "../../../services/shared/bus.ts";
import { failureKind, PermanentError, TransientError } from "../../../services/shared/errors.ts";

describe("failureKind", () => {
  test("each port's codes: unavailable is transient, bad input permanent, the rest unknown", () => {
    expect(failureKind(new GraphStoreError("unavailable", "down"))).toBe("transient");
    expect(failureKind(new GraphStoreError("bad_request", "bad"))).toBe("permanent");
    expect(failureKind(new GraphStoreError("read_only", "no"))).toBe("permanent");
    expect(failureKind(new GraphStoreError("write_failed", "?"))).toBe("unknown");
    expect(failureKind(new HistoryStoreError("unavailable", "down"))).toBe("transient");
    expect(failureKind(new HistoryStoreError("bad_input", "refused"))).toBe("permanent");
    expect(failureKind(new HistoryStoreError("write_failed", "?"))).toBe("unknown");
    expect(failureKind(new SeriesStoreError("unavailable", "down"))).toBe("transient");
    expect(failureKind(new SeriesStoreError("bad_input", "refused"))).toBe("permanent");
    expect(failureKind(new SeriesStoreError("write_failed", "?"))).toBe("unknown");
  });

  test("by class, not by name: an untyped error that only looks like a port's is unknown", () => {
    const lookalike = Object.assign(new Error("down"), { name: "GraphStoreError", code: "unavailable" });
    expect(failureKind(lookalike)).toBe("unknown");
    expect(failureKind(Object.assign(new Error("x"), { name: "TransientError" }))).toBe("unknown");
    expect(failureKind("a string")).toBe("unknown");
    expect(failureKind(undefined)).toBe("unknown");
  });

  test("an untyped error wrapping a typed one takes its cause's kind", () => {
    expect(failureKind(new Error("rebuild failed", { cause: new GraphStoreError("unavailable", "down") }))).toBe("transient");
    expect(failureKind(new Error("context", { cause: new Error("more", { cause: new PermanentError("bad") }) }))).toBe("permanent");
    expect(failureKind(new Error("context", { cause: "not an error" }))).toBe("unknown");
  });
});

describe("toAckDecision", () => {
  test("success acks", () => {
    expect(toAckDecision(undefined)).toEqual({ kind: "ack" });
  });

  test("permanent errors (ContractError, PermanentError, a port's bad-input code) go to the DLQ on the first try", () => {
    expect(toAckDecision(new ContractError("invalid", "x.v1", "x.v1: n: expected number"))).toEqual({ kind: "term", reason: "handler: ContractError: x.v1: n: expected number" });
    expect(toAckDecision(new PermanentError("unknown host kind"), { deliveryCount: 1 })).toEqual({ kind: "term", reason: "handler: PermanentError: unknown host kind" });
    expect(toAckDecision(new GraphStoreError("bad_request", "bad"), { deliveryCount: 1, alone: false }).kind).toBe("term");
    expect(toAckDecision(new SeriesStoreError("bad_input", "CANNOT_PARSE"), { deliveryCount: 1 }).kind).toBe("term");
  });

  test("transient errors are retried without limit, shared, with a capped backoff (or the delay the error names)", () => {
    for (const n of [1, 5, 20, 21, 1000]) {
      const d = toAckDecision(new GraphStoreError("unavailable", "down"), { deliveryCount: n, maxAttempts: 3, alone: true });
      expect(d).toEqual({ kind: "nak", delayMs: backoffMs(n), shared: true });
    }
    expect(toAckDecision(new TransientError("clickhouse down", 250), { deliveryCount: 99, maxAttempts: 5 })).toEqual({ kind: "nak", delayMs: 250, shared: true });
    expect(toAckDecision(new TransientError("clickhouse down"), { deliveryCount: 10_000 })).toEqual({ kind: "nak", delayMs: MAX_BACKOFF_MS, shared: true });
    expect([1, 2, 3, 4, 5, 6, 7, 50].map(backoffMs)).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
  });

  test("unknown errors: nak'ed with backoff; dead-lettered once the message failed maxAttempts times, the last alone", () => {
    const err = new GraphStoreError("write_failed", "io");
    expect(toAckDecision(err, { deliveryCount: 1, maxAttempts: 5 })).toEqual({ kind: "nak", delayMs: 1000, shared: false });
    expect(toAckDecision(err, { deliveryCount: 3, maxAttempts: 5 })).toEqual({ kind: "nak", delayMs: 4000, shared: false });
    expect(toAckDecision(err, { deliveryCount: 5, maxAttempts: 5 })).toEqual({ kind: "term", reason: "handler: GraphStoreError: io (attempt 5 of 5)" });
    // in a batch a neighbour may be the cause: never dead-lettered there
    expect(toAckDecision(err, { deliveryCount: 9, maxAttempts: 5, alone: false })).toEqual({ kind: "nak", delayMs: 30_000, shared: false });
    // an untyped error counts as unknown, with the default limit
    expect(toAckDecision(new Error("x"), { deliveryCount: DEFAULT_MAX_ATTEMPTS - 1 }).kind).toBe("nak");
    expect(toAckDecision(new Error("x"), { deliveryCount: DEFAULT_MAX_ATTEMPTS }).kind).toBe("term");
  });

  test("the attempts limit: the spec's maxAttempts, capped by a finite max_deliver (past which JetStream would drop the message)", () => {
    const spec = { stream: "S", durable: "d", filterSubject: "x.>", ackWaitMs: 30_000 };
    expect(maxAttemptsOf({ ...spec, maxDeliver: -1 })).toBe(DEFAULT_MAX_ATTEMPTS);
    expect(maxAttemptsOf({ ...spec, maxDeliver: -1, maxAttempts: 12 })).toBe(12);
    expect(maxAttemptsOf({ ...spec, maxDeliver: 3, maxAttempts: 12 })).toBe(3);
  });
});
