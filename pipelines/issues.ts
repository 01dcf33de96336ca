/** zod issues as one line a person can act on: `path: message; path: message`, the same wording everywhere. */
import type { z } from "zod";

type Issue = z.core.$ZodIssue;

export interface FormatIssuesOptions {
  /** the name of what was parsed, for an issue about the whole value (no path): "query", "body", "(root)" */
  root?: string;
  /** a name every path starts with, e.g. the environment variable a JSON value came from */
  at?: string;
  /** at most this many issues (a large invalid document would otherwise make a very long line) */
  limit?: number;
}

/** One issue: its path (dotted) or `root`, a colon, the message. */
export function formatIssue(i: Issue, opts: Omit<FormatIssuesOptions, "limit"> = {}): string {
  const path = [...(opts.at ? [opts.at] : []), ...i.path.map(String)].join(".");
  return `${path || (opts.root ?? "(root)")}: ${i.message}`;
}

export function formatIssues(issues: z.ZodError | readonly Issue[], opts: FormatIssuesOptions = {}): string {
  const list = "issues" in issues ? issues.issues : issues;
  return list
    .slice(0, opts.limit ?? list.length)
    .map((i) => formatIssue(i, opts))
    .join("; ");
}
