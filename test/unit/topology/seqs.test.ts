/** FoldedSeqs: which stream sequences were folded, kept as ranges. */
import { expect, test } from "bun:test";
import { FoldedSeqs } from "../../../services/topology/seqs.ts";

test("sequences in order, with gaps and out of order, answer has() exactly", () => {
  const s = new FoldedSeqs();
  for (let i = 1; i <= 100; i++) if (i % 10 !== 0) s.add(i);
  for (let i = 1; i <= 100; i++) expect(s.has(i)).toBe(i % 10 !== 0);
  // the gaps filled late (a message retried after later ones succeeded)
  s.add(50);
  s.add(10);
  s.add(100);
  s.add(100);
  for (let i = 1; i <= 100; i++) expect(s.has(i)).toBe(i % 10 !== 0 || i === 10 || i === 50 || i === 100);
  expect(s.has(0)).toBe(false);
  expect(s.has(101)).toBe(false);
});

test("a random order of adds gives the same answers as a set, and the oldest ranges go past the cap", () => {
  const s = new FoldedSeqs();
  const ref = new Set<number>();
  let x = 7;
  for (let i = 0; i < 2000; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const n = x % 3000;
    s.add(n);
    ref.add(n);
  }
  for (let n = 0; n < 3000; n++) expect(s.has(n)).toBe(ref.has(n));
  const capped = new FoldedSeqs(3);
  for (const n of [1, 3, 5, 7, 9]) capped.add(n);
  expect([1, 3, 5, 7, 9].map((n) => capped.has(n))).toEqual([false, false, true, true, true]);
});
