/**
 * Components in spreadsheets: CSV (RFC 4180) and XLSX (exceljs) to rows and back, and rows to component inputs with
 * every problem named by row and column. Lists in a cell (tags, parties, dependencies, match rules) are separated by
 * `;`. A match rule is `key=value` pairs joined by `&`: `fingerprint=java:orders.jar`, `host=db-*&port=5432`,
 * `label=team=payments`. A backslash escapes the separator inside an item (`\;`, `\&`) and itself (`\\`).
 *
 * A cell that starts with = + - @ (or a tab or carriage return) is written with a leading apostrophe, so a
 * spreadsheet never runs it as a formula (CSV injection); reading strips that one apostrophe again.
 */
import ExcelJS from "exceljs";
import { z } from "zod";
import { COMPONENT_COLUMNS, ComponentInput, componentIdOf, MatchRule, type Component, type ComponentColumn, type ImportProblem } from "../../pipelines/contracts/registry.ts";

export interface Sheet {
  name: string;
  /** header first */
  rows: string[][];
}

export class FileError extends Error {
  override readonly name = "FileError";
}

// ---- CSV ----

/** RFC 4180: quoted fields with "" for a quote, CRLF or LF line ends, a BOM ignored. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const n = text.length;
  let quoted = false;
  while (i < n) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        i++;
        continue;
      }
      // a run of plain characters in one slice
      const next = text.indexOf('"', i);
      const end = next < 0 ? n : next;
      field += text.slice(i, end);
      i = end;
      continue;
    }
    if (ch === '"' && field === "") {
      quoted = true;
      i++;
    } else if (ch === ",") {
      row.push(field);
      field = "";
      i++;
    } else if (ch === "\n" || ch === "\r") {
      row.push(field);
      field = "";
      rows.push(row);
      row = [];
      i += ch === "\r" && text[i + 1] === "\n" ? 2 : 1;
    } else {
      let j = i;
      while (j < n) {
        const c = text.charCodeAt(j);
        if (c === 44 || c === 10 || c === 13 || c === 34) break;
        j++;
      }
      if (j === i) {
        // a quote inside an unquoted field is kept as it is
        field += ch;
        i++;
      } else {
        field += text.slice(i, j);
        i = j;
      }
    }
  }
  if (quoted) throw new FileError(`CSV: a quoted field opened on row ${rows.length + 1} is never closed`);
  if (field !== "" || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((r) => !(r.length === 1 && r[0] === ""));
}

const FORMULA = /^[=+\-@\t\r]/;
/** what a spreadsheet would run as a formula gets a leading apostrophe */
export const defuse = (s: string): string => (FORMULA.test(s) ? `'${s}` : s);
const undefuse = (s: string): string => (s.startsWith("'") && FORMULA.test(s.slice(1)) ? s.slice(1) : s);

function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function writeCsv(rows: string[][]): string {
  return rows.map((r) => r.map((c) => csvField(defuse(c))).join(",")).join("\r\n") + "\r\n";
}

// ---- XLSX ----

function cellText(v: ExcelJS.CellValue): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (v instanceof Date) return v.toISOString();
  if (typeof v === "object") {
    if ("richText" in v) return v.richText.map((t) => t.text).join("");
    if ("text" in v && typeof v.text === "string") return v.text;
    // a formula is read as its cached result, never evaluated
    if ("result" in v) return cellText((v as { result?: ExcelJS.CellValue }).result ?? null);
    if ("error" in v) return "";
  }
  return String(v);
}

export async function readXlsx(data: Uint8Array): Promise<Sheet[]> {
  const wb = new ExcelJS.Workbook();
  try {
    await wb.xlsx.load(data as unknown as ArrayBuffer);
  } catch (e) {
    throw new FileError(`XLSX: not a readable workbook (${(e as Error).message})`);
  }
  const out: Sheet[] = [];
  wb.eachSheet((ws) => {
    const rows: string[][] = [];
    ws.eachRow({ includeEmpty: true }, (r, rowNumber) => {
      const vals = r.values as ExcelJS.CellValue[];
      const cells: string[] = [];
      for (let i = 1; i < vals.length; i++) cells.push(cellText(vals[i] ?? null));
      rows[rowNumber - 1] = cells;
    });
    for (let i = 0; i < rows.length; i++) rows[i] ??= [];
    out.push({ name: ws.name, rows });
  });
  return out;
}

export async function writeXlsx(sheets: Sheet[]): Promise<Uint8Array> {
  const wb = new ExcelJS.Workbook();
  for (const s of sheets) {
    const ws = wb.addWorksheet(s.name);
    // strings stay strings (exceljs writes a formula only for {formula}); the apostrophe guards other readers
    for (const r of s.rows) ws.addRow(r.map(defuse));
    ws.getRow(1).font = { bold: true };
  }
  return new Uint8Array(await wb.xlsx.writeBuffer());
}

// ---- rows ↔ components ----

/** `s` split at every `sep` not escaped by a backslash */
function splitEscaped(s: string, sep: string): string[] {
  if (!s.includes("\\")) return s.split(sep);
  const out: string[] = [];
  let cur = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === "\\" && (s[i + 1] === sep || s[i + 1] === "\\")) cur += s[++i];
    else if (c === sep) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}
const escape = (x: string, sep: string) => x.replace(/\\/g, "\\\\").replaceAll(sep, `\\${sep}`);

/** a `;`-separated cell → its items */
export const splitList = (s: string): string[] =>
  splitEscaped(s, ";")
    .map((x) => x.trim())
    .filter(Boolean);
export const joinList = (items: readonly string[]): string => items.map((x) => escape(x, ";")).join(";");
const list = splitList;

export function ruleText(r: MatchRule): string {
  const parts: string[] = [];
  if (r.fingerprint !== undefined) parts.push(`fingerprint=${r.fingerprint}`);
  if (r.name !== undefined) parts.push(`name=${r.name}`);
  if (r.port !== undefined) parts.push(`port=${r.port}`);
  if (r.host !== undefined) parts.push(`host=${r.host}`);
  if (r.label !== undefined) parts.push(`label=${r.label.key}=${r.label.value}`);
  return parts.map((p) => escape(p, "&")).join("&");
}

/** `fingerprint=java:orders.jar&port=8080` → a rule; throws with what is wrong. */
export function parseRule(s: string): MatchRule {
  const r: Record<string, unknown> = {};
  for (const part of splitEscaped(s, "&")) {
    const eq = part.indexOf("=");
    if (eq < 0) throw new FileError(`"${part}" is not key=value (keys: fingerprint, name, port, host, label)`);
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === "port") {
      if (!/^\d+$/.test(v)) throw new FileError(`port must be a number, got "${v}"`);
      r.port = Number(v);
    } else if (k === "label") {
      const e2 = v.indexOf("=");
      if (e2 <= 0) throw new FileError(`label must be label=key=value, got "${v}"`);
      r.label = { key: v.slice(0, e2), value: v.slice(e2 + 1) };
    } else if (k === "fingerprint" || k === "name" || k === "host") r[k] = v;
    else throw new FileError(`unknown match key "${k}" (keys: fingerprint, name, port, host, label)`);
  }
  const p = MatchRule.safeParse(r);
  if (!p.success) throw new FileError(p.error.issues.map((i) => i.message).join("; "));
  return p.data;
}

export function componentRow(c: Component): string[] {
  const v: Record<ComponentColumn, string> = {
    name: c.name,
    category: c.category,
    description: c.description,
    language: c.language,
    framework: c.framework,
    lifecycle: c.lifecycle,
    privacy: c.privacy,
    location: c.location,
    tags: joinList(c.tags),
    docs: c.links.docs ?? "",
    repo: c.links.repo ?? "",
    runbook: c.links.runbook ?? "",
    owners: joinList(c.owners),
    maintainers: joinList(c.maintainers),
    product_manager: c.productManager ?? "",
    depends_on: joinList(c.dependsOn),
    match: joinList(c.match.map(ruleText)),
  };
  return COMPONENT_COLUMNS.map((k) => v[k]);
}

export function componentsSheets(components: Iterable<Component>): Sheet[] {
  const rows: string[][] = [[...COMPONENT_COLUMNS]];
  const deps: string[][] = [["from", "to"]];
  for (const c of components) {
    rows.push(componentRow(c));
    for (const d of c.dependsOn) deps.push([c.id, d]);
  }
  return [
    { name: "components", rows },
    { name: "dependencies", rows: deps },
  ];
}

/** A parsed row: its component input and where it came from. */
export interface RowInput {
  row: number;
  sheet: string;
  input: z.output<typeof ComponentInput>;
}

export interface ParsedFile {
  rows: RowInput[];
  /** extra declared dependencies (a `dependencies` sheet, or a CSV with only from,to): id → ids, and where each came from */
  deps: { from: string; to: string; row: number; sheet: string }[];
  problems: ImportProblem[];
  /** data rows read */
  count: number;
  /** component ids named by any row, valid or not (a dependency on a row with a problem is not a second problem) */
  names: Set<string>;
  /** rows that failed their own checks: their dependencies are still checked against the registry */
  failed: { row: number; sheet: string; id: string; dependsOn: string[]; lists: { category: string; lifecycle: string; privacy: string; location: string } }[];
}

const FIELD_COLUMN: Record<string, ComponentColumn> = { productManager: "product_manager", dependsOn: "depends_on", links: "docs" };

/** Rows of a components sheet → inputs, each problem with its row number and column. */
export function rowsToInputs(sheets: Sheet[], onProgress?: (done: number, total: number) => void): ParsedFile {
  const out: ParsedFile = { rows: [], deps: [], problems: [], count: 0, names: new Set(), failed: [] };
  const total = sheets.reduce((n, s) => n + Math.max(0, s.rows.length - 1), 0);
  let done = 0;
  for (const s of sheets) {
    if (!s.rows.length) continue;
    const header = s.rows[0]!.map((h) => h.trim().toLowerCase().replace(/[\s-]+/g, "_"));
    const isDeps = header.length >= 2 && header[0] === "from" && header[1] === "to" && !header.includes("name");
    if (isDeps) {
      for (let i = 1; i < s.rows.length; i++) {
        const r = s.rows[i]!.map((x) => undefuse(x.trim()));
        if (r.every((x) => x === "")) continue;
        out.count++;
        const row = i + 1;
        const [from = "", to = ""] = r;
        if (!from) out.problems.push({ sheet: s.name, row, column: "from", message: "required" });
        if (!to) out.problems.push({ sheet: s.name, row, column: "to", message: "required" });
        if (from && to) out.deps.push({ from: componentIdOf(from), to: componentIdOf(to), row, sheet: s.name });
      }
      done += s.rows.length - 1;
      continue;
    }
    const col = new Map<string, number>();
    header.forEach((h, i) => col.set(h, i));
    if (!col.has("name")) {
      out.problems.push({ sheet: s.name, row: 1, column: "name", message: `no "name" column (columns: ${COMPONENT_COLUMNS.join(", ")})` });
      continue;
    }
    for (const h of header) if (h && !(COMPONENT_COLUMNS as readonly string[]).includes(h)) out.problems.push({ sheet: s.name, row: 1, column: h, message: `unknown column (columns: ${COMPONENT_COLUMNS.join(", ")})` });
    for (let i = 1; i < s.rows.length; i++) {
      const cells = s.rows[i]!;
      if (cells.every((x) => x.trim() === "")) continue;
      out.count++;
      const row = i + 1;
      const get = (k: ComponentColumn) => {
        const j = col.get(k);
        return j === undefined ? "" : undefuse((cells[j] ?? "").trim());
      };
      if (componentIdOf(get("name"))) out.names.add(componentIdOf(get("name")));
      const match: MatchRule[] = [];
      for (const r of list(get("match"))) {
        try {
          match.push(parseRule(r));
        } catch (e) {
          out.problems.push({ sheet: s.name, row, column: "match", message: `${(e as Error).message}` });
        }
      }
      const raw = {
        name: get("name"),
        category: get("category"),
        description: get("description"),
        language: get("language"),
        framework: get("framework"),
        lifecycle: get("lifecycle"),
        privacy: get("privacy"),
        location: get("location"),
        tags: list(get("tags")),
        links: Object.fromEntries((["docs", "repo", "runbook"] as const).filter((k) => get(k)).map((k) => [k, get(k)])),
        owners: list(get("owners")),
        maintainers: list(get("maintainers")),
        productManager: get("product_manager") || null,
        dependsOn: list(get("depends_on")).map(componentIdOf),
        match,
      };
      const p = ComponentInput.safeParse(raw);
      if (!p.success) {
        out.failed.push({ row, sheet: s.name, id: componentIdOf(raw.name), dependsOn: raw.dependsOn, lists: { category: raw.category, lifecycle: raw.lifecycle, privacy: raw.privacy, location: raw.location } });
        for (const is of p.error.issues) {
          const f = String(is.path[0] ?? "name");
          const column = FIELD_COLUMN[f] === "docs" ? String(is.path[1] ?? "docs") : (FIELD_COLUMN[f] ?? f);
          out.problems.push({ sheet: s.name, row, column, message: `${is.message}${is.path.length > 1 && f !== "links" ? ` (item ${Number(is.path[1]) + 1})` : ""}` });
        }
      } else out.rows.push({ row, sheet: s.name, input: p.data });
      if (++done % 1000 === 0) onProgress?.(done, total);
    }
  }
  onProgress?.(total, total);
  return out;
}

/** A file's bytes → sheets: CSV as one sheet named "components", XLSX with all its sheets. */
export async function readSheets(format: "csv" | "xlsx", data: Uint8Array): Promise<Sheet[]> {
  if (format === "xlsx") return await readXlsx(data);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(data);
  } catch {
    throw new FileError("CSV: not UTF-8 text");
  }
  return [{ name: "components", rows: parseCsv(text) }];
}
