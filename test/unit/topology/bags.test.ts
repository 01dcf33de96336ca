import { expect, test } from "bun:test";
import { addTo, bagAdd, bagDelete, countAdd, countKeys, removeFrom, slotAdd, slotDelete, slotSize, slotValues, type Bag, type Counts, type Slot } from "../../../pipelines/stages/topology/bags.ts";

test("a bag is an array in insertion order, without duplicates, and becomes a Set past 48 elements", () => {
  let b: Bag = [];
  for (let i = 0; i < 48; i++) b = bagAdd(b, `v${i}`);
  b = bagAdd(b, "v0");
  expect(Array.isArray(b)).toBe(true);
  expect((b as string[]).length).toBe(48);
  b = bagAdd(b, "v48");
  expect(b).toBeInstanceOf(Set);
  expect([...b].slice(0, 3)).toEqual(["v0", "v1", "v2"]);
  expect(bagDelete(b, "v1")).toBe(true);
  expect(bagDelete(b, "v1")).toBe(false);
  expect((b as Set<string>).has("v48")).toBe(true);
});

test("a slot holds one element alone, several as a bag", () => {
  let s: Slot = undefined;
  s = slotAdd(s, "a");
  expect(s).toBe("a");
  expect(slotAdd(s, "a")).toBe("a");
  s = slotAdd(s, "b");
  expect([...slotValues(s)]).toEqual(["a", "b"]);
  s = slotDelete(s, "a");
  expect([...slotValues(s)]).toEqual(["b"]);
  expect(slotSize(slotDelete("b", "b"))).toBe(0);
});

test("counts add and drop keys at zero; a map past 48 keys", () => {
  let c: Counts = [];
  ({ c } = countAdd(c, "x", 1));
  expect(countAdd(c, "x", 2).n).toBe(3);
  expect(countAdd(c, "x", -3).n).toBe(0);
  expect([...countKeys(c)]).toEqual([]);
  for (let i = 0; i < 49; i++) ({ c } = countAdd(c, `k${i}`, 1));
  expect(c).toBeInstanceOf(Map);
  expect([...countKeys(c)].length).toBe(49);
});

test("addTo / removeFrom keep a map of bags; an emptied entry stays only when asked", () => {
  const m = new Map<string, Bag>();
  addTo(m, "k", "a");
  addTo(m, "k", "b");
  removeFrom(m, "k", "a");
  expect(m.get("k")).toEqual(["b"]);
  removeFrom(m, "k", "b", false);
  expect(m.get("k")).toEqual([]);
  removeFrom(m, "k", "x");
  expect(m.has("k")).toBe(false);
});
