/**
 * Mapping rules config: a TypeScript module (no JSON/YAML) whose default export is validated with zod.
 *
 *   // /etc/orrery/alert-rules.ts
 *   import { defineAlertRules } from "orrery/services/alerts/rules.ts";   // or just export a plain object
 *   export default defineAlertRules({
 *     rules: [{ name: "billing-db", when: { check: "^billing", labels: { team: "payments" } }, to: { port: 6432 } }],
 *     hostAliases: { "db1.prod.example.com": "db1" },
 *   });
 *
 * ORRERY_ALERT_RULES=/etc/orrery/alert-rules.ts; without it the defaults apply (DEFAULT_RULES: well-known services →
 * ports; host-level checks → host; ports and process names in check names; host fallback).
 */
import { resolve } from "node:path";
import { validate } from "../../pipelines/codec.ts";
import { AlertRules, type AlertRulesInput } from "../../pipelines/stages/alerts/mapping.ts";

export class RulesError extends Error {
  override readonly name = "RulesError";
}

export const defineAlertRules = (r: AlertRulesInput): AlertRulesInput => r;

export async function loadAlertRules(path?: string): Promise<AlertRules> {
  if (!path) return validate(AlertRules, "alert rules", {});
  const file = resolve(path);
  let mod: Record<string, unknown>;
  try {
    mod = await import(file);
  } catch (e) {
    throw new RulesError(`ORRERY_ALERT_RULES: cannot load ${file}: ${(e as Error).message}`);
  }
  const value = mod.default ?? mod.rules;
  if (value === undefined) throw new RulesError(`ORRERY_ALERT_RULES: ${file} has no default export`);
  try {
    return validate(AlertRules, `alert rules (${file})`, value);
  } catch (e) {
    throw new RulesError(`ORRERY_ALERT_RULES: ${(e as Error).message}`);
  }
}
