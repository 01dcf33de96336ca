/**
 * Pure pieces of reading a directory: DN comparison, Active Directory's GUID layout, and nested group membership
 * resolved from the edges a snapshot read (no I/O, unit-tested in test/unit/identity/directory.test.ts).
 */

/** Characters that must stay escaped in a DN value; they are written as `\xx` in the normal form. */
const SPECIAL = new Set([...',+"\\<>;=# '].map((c) => c.charCodeAt(0)));

/**
 * A DN in a form two spellings of the same name share: lower case, no spaces around the separators, one spelling of
 * each escape. Directories return the same DN differently (a user's own DN vs. a group's `member` value vs.
 * `memberOf`; OpenLDAP answers `\2C` where the entry was added as `\,`). Escaped separators stay escaped, so an
 * escaped comma is never taken for one; escaped bytes of other characters (`\c3\a9`) become the character.
 */
export function normDn(dn: string): string {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  let out = "";
  let run: number[] = [];
  let pendingSpace = false;
  const flush = () => {
    if (run.length) out += dec.decode(Uint8Array.from(run));
    run = [];
  };
  const lit = (s: string) => {
    for (const b of enc.encode(s)) run.push(b);
  };
  // a space is kept only inside a value: not at the start, not next to a separator
  const space = () => {
    const last = run.length > 0 ? "x" : out.slice(-1);
    if (pendingSpace && last !== "" && !",=+".includes(last)) lit(" ");
    pendingSpace = false;
  };
  for (let i = 0; i < dn.length; i++) {
    const cp = dn.codePointAt(i)!;
    const ch = String.fromCodePoint(cp);
    if (cp > 0xffff) i++;
    if (ch === "\\" && i + 1 < dn.length) {
      space();
      const hex = dn.slice(i + 1, i + 3);
      let byte: number;
      if (/^[0-9a-fA-F]{2}$/.test(hex)) {
        byte = parseInt(hex, 16);
        i += 2;
      } else {
        const next = dn.codePointAt(i + 1)!;
        i += next > 0xffff ? 2 : 1;
        if (next > 0x7f) {
          lit(String.fromCodePoint(next));
          continue;
        }
        byte = next;
      }
      if (SPECIAL.has(byte)) {
        flush();
        out += `\\${byte.toString(16).padStart(2, "0")}`;
      } else run.push(byte);
      continue;
    }
    if (ch === " ") {
      pendingSpace = true;
      continue;
    }
    if (ch === "," || ch === "=" || ch === "+") {
      flush();
      out += ch;
      pendingSpace = false;
      continue;
    }
    space();
    lit(ch);
  }
  flush();
  return out.toLowerCase();
}

/**
 * Active Directory's objectGUID (16 bytes) as the string AD shows: the first three fields are little-endian
 * (`{3F2504E0-4F89-11D3-9A0C-0305E82C3301}` is stored as E0 04 25 3F 89 4F D3 11 9A 0C …). Lower case, no braces.
 */
export function adGuidToString(b: Uint8Array): string | null {
  if (b.length !== 16) return null;
  const h = (i: number) => b[i]!.toString(16).padStart(2, "0");
  const part = (idx: number[]) => idx.map(h).join("");
  return [part([3, 2, 1, 0]), part([5, 4]), part([7, 6]), part([8, 9]), part([10, 11, 12, 13, 14, 15])].join("-");
}

export interface MemberNode {
  dn: string;
  /** memberOf values: the groups this entry is directly in (AD and OpenLDAP's memberof overlay keep them) */
  memberOf: readonly string[];
}
export interface GroupNode extends MemberNode {
  /** member values: the users and groups directly in this group */
  member: readonly string[];
}

/** How deep nesting is followed; a directory deeper than this has a loop or a mistake (both are cut, not fatal). */
export const MAX_NESTING = 32;

/**
 * For each user, every group it is in, directly or through nested groups. The direct edges are the union of the
 * groups' `member` and the entries' `memberOf` (either alone can be missing: a plain LDAP server without the memberof
 * overlay has no memberOf; Active Directory hands a group's `member` over 1500 values back in ranges, as another
 * attribute). Loops are harmless. Groups the snapshot did not read (outside the group base) still count: their DN
 * is known from memberOf, their own parents are not. Returns group DNs as the group's entry spells them when known.
 */
export function resolveMembership(users: readonly MemberNode[], groups: readonly GroupNode[]): Map<string, string[]> {
  const spelling = new Map<string, string>();
  const parents = new Map<string, Set<string>>();
  const edge = (child: string, parent: string) => {
    const c = normDn(child);
    const p = normDn(parent);
    if (!spelling.has(p)) spelling.set(p, parent);
    let s = parents.get(c);
    if (!s) parents.set(c, (s = new Set()));
    s.add(p);
  };
  for (const g of groups) spelling.set(normDn(g.dn), g.dn);
  for (const g of groups) {
    for (const m of g.member) edge(m, g.dn);
    for (const p of g.memberOf) edge(g.dn, p);
  }
  for (const u of users) for (const p of u.memberOf) edge(u.dn, p);

  const out = new Map<string, string[]>();
  for (const u of users) {
    const start = normDn(u.dn);
    const seen = new Set<string>();
    let frontier = [...(parents.get(start) ?? [])];
    for (let depth = 0; frontier.length > 0 && depth < MAX_NESTING; depth++) {
      const next: string[] = [];
      for (const g of frontier) {
        if (seen.has(g) || g === start) continue;
        seen.add(g);
        for (const p of parents.get(g) ?? []) if (!seen.has(p)) next.push(p);
      }
      frontier = next;
    }
    out.set(u.dn, [...seen].map((g) => spelling.get(g) ?? g).sort());
  }
  return out;
}
