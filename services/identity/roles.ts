/** Directory groups → a role, by configuration (RoleMap in pipelines/contracts/identity.ts). */
import { ROLES, rank, type Role, type RoleMap } from "../../pipelines/contracts/identity.ts";

/** The CN of a DN ("cn=Ops,ou=groups,dc=x" → "ops"), or the name itself, lower-cased. */
const cnOf = (dn: string): string => (/^\s*cn\s*=\s*((?:\\.|[^,])+)/i.exec(dn)?.[1] ?? dn).trim().toLowerCase();

/** The highest role any of `groups` (DNs) gives, else the map's default; null: no role at all. */
export function roleOf(groups: readonly string[], map: RoleMap): Role | null {
  const dns = new Set(groups.map((g) => g.trim().toLowerCase()));
  const cns = new Set(groups.map(cnOf));
  let best: Role | null = null;
  for (const role of ROLES) {
    const hit = map[role].some((g) => dns.has(g.trim().toLowerCase()) || (!g.includes("=") && cns.has(g.trim().toLowerCase())));
    if (hit && (best === null || rank(role) > rank(best))) best = role;
  }
  return best ?? map.default;
}
