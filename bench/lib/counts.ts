/** Counts per kind against an expected set (a ground truth): each kind's difference, and whether all are within a tolerance. */

export interface KindRow {
  kind: string;
  expected: number;
  actual: number;
  /** (actual − expected) / expected; actual itself when nothing was expected (any item of an unexpected kind is off) */
  off: number;
  within: boolean;
}

/**
 * One row per kind found in either set (expected kinds first, in their order). A kind is within when its relative
 * difference is at most `tolerance` (0.01 = 1%); a kind expected at 0 is within only at 0.
 */
export function compareCounts(actual: Record<string, number>, expected: Record<string, number>, tolerance: number): KindRow[] {
  const kinds = [...Object.keys(expected), ...Object.keys(actual).filter((k) => !(k in expected))];
  return kinds.map((kind) => {
    const e = expected[kind] ?? 0;
    const a = actual[kind] ?? 0;
    const off = e === 0 ? a : (a - e) / e;
    return { kind, expected: e, actual: a, off: +off.toFixed(4), within: Math.abs(off) <= tolerance };
  });
}

export const allWithin = (rows: readonly KindRow[]): boolean => rows.every((r) => r.within);

