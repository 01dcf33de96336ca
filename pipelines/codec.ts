/** Decoding at the boundary: bytes → JSON → schema. Every failure is a typed error carrying the reason. */
import type { z } from "zod";
import { formatIssues } from "./issues.ts";

export class ContractError extends Error {
  override readonly name = "ContractError";
  constructor(
    readonly code: "oversized" | "not_json" | "invalid",
    readonly schema: string,
    message: string,
  ) {
    super(message);
  }
}

/** Per-message byte limit, below NATS's default 1 MiB max_payload. */
export const MAX_MESSAGE_BYTES = 900 * 1024;

export function decode<S extends z.ZodType>(schema: S, name: string, bytes: Uint8Array, maxBytes = MAX_MESSAGE_BYTES): z.infer<S> {
  if (bytes.byteLength > maxBytes) {
    throw new ContractError("oversized", name, `${name}: message is ${bytes.byteLength} bytes, limit is ${maxBytes}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new ContractError("not_json", name, `${name}: not JSON (${(e as Error).message})`);
  }
  return validate(schema, name, json);
}

export function validate<S extends z.ZodType>(schema: S, name: string, value: unknown): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) {
    const issues = formatIssues(r.error, { limit: 10 });
    throw new ContractError("invalid", name, `${name}: ${issues}`);
  }
  return r.data;
}

/** Validate what we publish too: a bug in a producer must not poison a stream. */
export function encode<S extends z.ZodType>(schema: S, name: string, value: z.input<S>, maxBytes = MAX_MESSAGE_BYTES): Uint8Array {
  const checked = validate(schema, name, value);
  const bytes = new TextEncoder().encode(JSON.stringify(checked));
  if (bytes.byteLength > maxBytes) {
    throw new ContractError("oversized", name, `${name}: message is ${bytes.byteLength} bytes, limit is ${maxBytes}`);
  }
  return bytes;
}
