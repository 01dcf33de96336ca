/** The registry's typed errors; one code each, mapped to HTTP once (services/registry/client.ts REGISTRY_STATUS). */
import type { RegistryErrorCode } from "../../pipelines/contracts/registry.ts";

export class RegistryError extends Error {
  override readonly name = "RegistryError";
  constructor(
    readonly code: RegistryErrorCode,
    message: string,
    /** e.g. the current record on a conflict, the problems of a refused import */
    readonly detail?: unknown,
  ) {
    super(message);
  }
}
