/**
 * The port every vendor adapter implements (services/exporters/vendors/*). An adapter speaks one vendor's API and
 * nothing else: what to send and when (idempotency, order, retries, rate) is the exporter's (exporter.ts). Failures are
 * VendorUnavailable (retried in place) or VendorRejected (dead-lettered with the vendor's answer), from http.ts.
 */
import type { MappedCi, MappedIncident, MappedRel } from "./map.ts";

export interface VendorAdapter {
  readonly vendor: "servicenow" | "jsm" | "itop" | "webhook";
  /** creates or updates the item; `known` is its external id from an earlier export. Resolves to its external id. */
  upsertCi(ci: MappedCi, known: string | undefined): Promise<string>;
  /**
   * The external id of an item the vendor already holds under the item's keys, when a create may have been sent
   * before a crash without its answer being recorded. Adapters whose upsert identifies by itself (IRE) omit it.
   */
  findCi?(ci: MappedCi): Promise<string | undefined>;
  /** the entity left the topology */
  retireCi(ci: { ref: string; class: string; externalId: string }): Promise<void>;
  relate(rel: MappedRel, ends: { src: { id: string; ci: MappedCi | null }; dst: { id: string; ci: MappedCi | null } }, known: string | undefined): Promise<string>;
  unrelate(rel: { ref: string; type: string; externalId: string; src: string; dst: string }): Promise<void>;
  /** undefined when the vendor takes no incidents (JSM Assets) */
  openIncident?(inc: MappedIncident, ciExternalId: string | undefined): Promise<string>;
  resolveIncident?(inc: MappedIncident, externalId: string): Promise<void>;
}
