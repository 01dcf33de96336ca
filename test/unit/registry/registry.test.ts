/** The registry's pure parts, no servers: files, match rules, drift, the fold, ownership and readiness. */
import { describe, expect, test } from "bun:test";
import { componentIdOf, ComponentInput, type Component, type RegistryEvent } from "../../../pipelines/contracts/registry.ts";
import type { TopoEdge, TopoNode } from "../../../pipelines/contracts/topology.ts";
import { defuse, joinList, parseCsv, parseRule, readXlsx, ruleText, rowsToInputs, splitList, writeCsv, writeXlsx } from "../../../services/registry/files.ts";
import { computeDrift, computeMatches, driftKey, glob, ruleMatches } from "../../../services/registry/match.ts";
import { applyEvent, diffFields, emptyState } from "../../../services/registry/model.ts";
import { isParty, readinessOf } from "../../../services/registry/registry.ts";
import { progressBar, formatReport } from "../../../cli/commands/registry.ts";

describe("CSV", () => {
  test("quotes, doubled quotes, commas and newlines inside fields, CRLF and LF, a BOM", () => {
    expect(parseCsv('\ufeffa,b,c\r\n"x, y","say ""hi""","two\nlines"\nlast,,\n')).toEqual([
      ["a", "b", "c"],
      ["x, y", 'say "hi"', "two\nlines"],
      ["last", "", ""],
    ]);
    expect(() => parseCsv('a\n"open')).toThrow("never closed");
  });

  test("writing then reading gives the same cells; formulas are defused with an apostrophe and restored", () => {
    const rows = [["name", "description"], ["a", '=HYPERLINK("x")'], ["b", "plain, with comma"], ["c", "-1"], ["d", "@cmd"]];
    const csv = writeCsv(rows);
    expect(csv).toContain(`"'=HYPERLINK(""x"")"`);
    expect(csv).toContain("'-1");
    const back = rowsToInputs([{ name: "components", rows: parseCsv(csv) }]);
    expect(back.problems).toEqual([]);
    expect(back.rows.map((r) => r.input.description)).toEqual(['=HYPERLINK("x")', "plain, with comma", "-1", "@cmd"]);
    expect(defuse("safe")).toBe("safe");
  });

  test("lists and rules keep their separators when escaped", () => {
    const items = ["a;b", "c\\d", "plain"];
    expect(splitList(joinList(items))).toEqual(items);
    const rule = { fingerprint: "java:a&b.jar", label: { key: "team", value: "x=y;z" } };
    expect(parseRule(ruleText(rule))).toEqual(rule);
    expect(splitList(joinList([ruleText(rule), "port=80"])).map(parseRule)).toEqual([rule, { port: 80 }]);
    expect(() => parseRule("colour=blue")).toThrow('unknown match key "colour"');
    expect(() => parseRule("port=eighty")).toThrow("port must be a number");
  });
});

describe("rows to components", () => {
  test("every problem of every row, with the row number and the column", () => {
    const r = rowsToInputs([
      {
        name: "components",
        rows: [
          ["name", "owners", "match", "colour"],
          ["ok", "user:bob", "fingerprint=java:a.jar", ""],
          ["", "", "", ""],
          ["bad", "bob;group:", "port=0", ""],
          ["", "user:x", "", ""],
        ],
      },
    ]);
    expect(r.count).toBe(3);
    expect(r.rows.map((x) => x.input.name)).toEqual(["ok"]);
    expect(r.problems.map((p) => `${p.row}:${p.column}`)).toEqual(["1:colour", "4:match", "4:owners", "4:owners", "5:name"]);
  });

  test("a from,to sheet is declared dependencies", () => {
    const r = rowsToInputs([{ name: "dependencies", rows: [["from", "to"], ["Orders API", "orders-db"], ["x", ""]] }]);
    expect(r.deps).toEqual([{ from: "orders-api", to: "orders-db", row: 2, sheet: "dependencies" }]);
    expect(r.problems).toEqual([{ sheet: "dependencies", row: 3, column: "to", message: "required" }]);
  });

  test("XLSX round trip keeps strings as strings (no formula is ever written)", async () => {
    const rows = [["name", "description"], ["a", "=1+1"], ["b", "42"]];
    const back = await readXlsx(await writeXlsx([{ name: "components", rows }]));
    expect(back[0]!.rows).toEqual([["name", "description"], ["a", "'=1+1"], ["b", "42"]]);
  });

  test("component ids come from names", () => {
    expect(componentIdOf("  Orders API (v2) ")).toBe("orders-api-v2-");
    expect(componentIdOf("--x")).toBe("x");
  });
});

const node = (id: string, kind: TopoNode["kind"], name: string, props: TopoNode["props"], lastSeen = 1000): TopoNode => ({ id, kind, name, source: "t", props, firstSeen: 1, lastSeen });
const edge = (src: string, dst: string, lastSeen = 1000): TopoEdge => ({ id: `DEPENDS_ON:${src}->${dst}`, kind: "DEPENDS_ON", src, dst, source: "t", props: {}, firstSeen: 1, lastSeen });
const comp = (id: string, o: Partial<Component> = {}): Component => ({ ...ComponentInput.parse({ name: id }), id, rev: 1, createdAt: 1, updatedAt: 1, ...o });

describe("match rules", () => {
  const host = node("host:db-1", "host", "db-1", { hostname: "db-1", env: "prod" });
  const pg = node("service:db-1:postgres:5432,9187", "process", "postgres", { host: "db-1", service: "postgres", ports: "5432,9187", tier: "data" });

  test("every field given must hold; globs are literal apart from * and ?", () => {
    expect(ruleMatches({ fingerprint: "postgres" }, pg, host)).toBe(true);
    expect(ruleMatches({ fingerprint: "postgre" }, pg, host)).toBe(false);
    expect(ruleMatches({ port: 9187, host: "db-?" }, pg, host)).toBe(true);
    expect(ruleMatches({ port: 5433 }, pg, host)).toBe(false);
    expect(ruleMatches({ name: "post*" }, pg, host)).toBe(true);
    expect(ruleMatches({ label: { key: "tier", value: "data" } }, pg, host)).toBe(true);
    // a label on the host counts for its services
    expect(ruleMatches({ label: { key: "env", value: "prod" } }, pg, host)).toBe(true);
    expect(ruleMatches({ label: { key: "env", value: "dev" } }, pg, host)).toBe(false);
    expect(glob("a.b*").test("axb")).toBe(false);
    expect(glob("(x)[y]*").test("(x)[y]z")).toBe(true);
  });

  test("both ways: a service's components and a component's instances", () => {
    const nodes = new Map([host, pg].map((n) => [n.id, n]));
    const m = computeMatches([comp("pg", { match: [{ fingerprint: "postgres" }] }), comp("exporter", { match: [{ port: 9187 }] }), comp("none", { match: [{ fingerprint: "mysql" }] })], { rev: 1, nodes, edges: new Map() });
    expect(m.byService.get(pg.id)).toEqual(["exporter", "pg"]);
    expect(m.byComponent.get("pg")).toEqual([{ id: pg.id, name: "postgres", host: "db-1", ports: "5432,9187", rule: 0 }]);
    expect(m.byComponent.has("none")).toBe(false);
  });
});

describe("drift", () => {
  const a = node("s:a", "process", "a", { host: "h", service: "a" });
  const b = node("s:b", "process", "b", { host: "h", service: "b" });
  const c = node("s:c", "process", "c", { host: "h", service: "c" });
  const stray = node("s:stray", "process", "stray", { host: "h", service: "stray" });
  const nodes = new Map([a, b, c, stray].map((n) => [n.id, n]));
  const components = new Map(
    [
      comp("a", { match: [{ fingerprint: "a" }], dependsOn: ["b", "c"] }),
      comp("b", { match: [{ fingerprint: "b" }] }),
      comp("c", { match: [{ fingerprint: "c" }] }),
      comp("ghost", { match: [{ fingerprint: "ghost" }] }),
      comp("old", { lifecycle: "retired" }),
    ].map((x) => [x.id, x]),
  );

  test("declared but not seen within the window, seen but undeclared, not running, unregistered", () => {
    const edges = new Map([edge("s:a", "s:b", 10_000), edge("s:a", "s:c", 100), edge("s:b", "s:c", 10_000)].map((e) => [e.id, e]));
    const g = { rev: 3, nodes, edges };
    const d = computeDrift(components, g, computeMatches(components.values(), g), { now: 10_000, windowMs: 5_000 });
    expect(d.declaredNotSeen).toEqual([{ from: "a", to: "c" }]);
    expect(d.seenNotDeclared).toEqual([{ from: "b", to: "c", edges: 1 }]);
    expect(d.notRunning).toEqual(["ghost"]);
    expect(d.unregistered).toEqual([{ id: "s:stray", name: "stray", host: "h" }]);
    // the key ignores times, so an unchanged drift is not published again
    const later = computeDrift(components, g, computeMatches(components.values(), g), { now: 10_001, windowMs: 5_001 });
    expect(driftKey(later)).toBe(driftKey(d));
  });
});

describe("the fold", () => {
  const by = { login: "u", role: "admin" as const };
  const after = { ...ComponentInput.parse({ name: "x" }), createdAt: 1 };

  test("an import's parts change nothing until the commit; a commit missing a part is ignored", () => {
    const s = emptyState();
    const part = (importId: string, n: number): RegistryEvent => ({ schema: "registry.v1", type: "import.part", at: 1, by, importId, part: n, components: [{ id: `x${n}`, after: { ...after, name: `x${n}` }, changes: [{ field: "name", old: null, new: `x${n}` }] }] });
    applyEvent(s, 1, part("i1", 0));
    applyEvent(s, 2, part("i1", 1));
    expect(s.components.size).toBe(0);
    applyEvent(s, 3, { schema: "registry.v1", type: "import.commit", at: 2, by, importId: "i1", parts: 2, file: "f", created: 2, updated: 0 });
    expect([...s.components.keys()]).toEqual(["x0", "x1"]);
    expect(s.components.get("x1")!.rev).toBe(3);
    expect(s.auditBy.get("x0")!.length).toBe(1);
    expect(s.audit[0]).toMatchObject({ target: "import:i1", importId: "i1", changes: [{ field: "file", new: "f" }, { field: "created", new: 2 }, { field: "updated", new: 0 }] });
    applyEvent(s, 4, part("i2", 1));
    applyEvent(s, 5, { schema: "registry.v1", type: "import.commit", at: 2, by, importId: "i2", parts: 2, file: "f", created: 2, updated: 0 });
    expect(s.components.size).toBe(2);
    // parts left by a writer that died are dropped by the next event
    applyEvent(s, 6, part("i3", 0));
    expect(s.pending.size).toBe(1);
    applyEvent(s, 7, { schema: "registry.v1", type: "list.put", at: 3, by, list: "category", values: ["a"], old: [] });
    expect(s.pending.size).toBe(0);
    // a replayed event (seq at or below the fold's) is ignored
    applyEvent(s, 3, { schema: "registry.v1", type: "component.deleted", at: 3, by, component: { id: "x0", after: null, changes: [] } });
    expect(s.components.has("x0")).toBe(true);
  });

  test("diffFields names each changed field with old and new", () => {
    expect(diffFields({ a: 1, b: [1], c: "x" }, { a: 1, b: [1, 2], d: true })).toEqual([
      { field: "b", old: [1], new: [1, 2] },
      { field: "c", old: "x", new: null },
      { field: "d", old: null, new: true },
    ]);
  });
});

describe("owners and readiness", () => {
  test("a caller is a party as the user, or through a group by DN or CN; metacharacters are plain text", () => {
    const bob = { login: "Bob", role: "viewer" as const, groups: ["cn=Payments,ou=groups,dc=x"] };
    expect(isParty(bob, ["user:bob"])).toBe(true);
    expect(isParty(bob, ["group:payments"])).toBe(true);
    expect(isParty(bob, ["group:CN=Payments,OU=groups,DC=x"])).toBe(true);
    expect(isParty(bob, ["group:*", "user:*", "group:cn=*", null])).toBe(false);
  });

  test("readiness counts met (yes or n/a) and signed-off requirements", () => {
    const st = (status: "yes" | "no" | "na", signed: boolean) => ({ component: "c", requirement: "r", status, notes: "", links: [], signedOff: signed ? { by: "a", role: "expert" as const, at: 1 } : null, rev: 1, updatedAt: 1, updatedBy: "a" });
    const map: Record<string, ReturnType<typeof st>> = { a: st("yes", true), b: st("na", true), c: st("no", true) };
    expect(readinessOf([{ id: "a" }, { id: "b" }, { id: "c" }, { id: "d" }], (r) => map[r])).toEqual({ total: 4, yes: 1, no: 1, na: 1, unknown: 1, signedOff: 2, ready: 0.5 });
  });
});

describe("CLI output", () => {
  test("progress bar and report", () => {
    expect(progressBar({ phase: "validate", done: 5, total: 10 }, 10)).toBe("[#####.....]  50% checking 5/10");
    expect(formatReport({ dryRun: true, applied: false, rows: 2, created: 1, updated: 0, unchanged: 0, problems: [{ sheet: "components", row: 3, column: "category", message: "bad" }], moreProblems: 0, ms: 1 })).toContain("row 3, category: bad");
  });
});
