/** registry.graph.v1 cut into parts: each within the limit, together the state, and one part when it fits. */
import { expect, test } from "bun:test";
import { encode } from "../../../pipelines/codec.ts";
import { RegistryGraph } from "../../../pipelines/contracts/registry.ts";
import { isLastPart, joinRegistryGraph, registryGraphParts } from "../../../services/registry/client.ts";

const state = (n: number): RegistryGraph => {
  const ids = Array.from({ length: n }, (_, i) => `c${i}`);
  return {
    schema: "registry.graph.v1",
    at: 1,
    seq: 2,
    topologyRev: 3,
    components: ids.map((id) => ({ id, name: `${id} ünïcode`, category: "service", lifecycle: "", privacy: "", location: "", language: "", framework: "", team: "", owners: [], maintainers: [], tags: ["t"], rev: 1 })),
    matches: ids.map((id) => ({ component: id, entity: `proc:host-${id}:svc` })),
    declares: ids.slice(1).map((id, i) => ({ src: id, dst: ids[i]! })),
  };
};

test("parts each encode within the limit, in order, and join back to the state", () => {
  const g = state(2000);
  const maxBytes = 20_000;
  const parts = registryGraphParts(g, maxBytes, "gen-1");
  expect(parts.length).toBeGreaterThan(10);
  parts.forEach((p, i) => {
    expect(encode(RegistryGraph, "registry.graph.v1", p, maxBytes).byteLength).toBeLessThanOrEqual(maxBytes);
    expect(p).toMatchObject({ generation: "gen-1", part: i, parts: parts.length });
    expect(isLastPart(p)).toBe(i === parts.length - 1);
  });
  const joined = joinRegistryGraph(parts);
  expect({ ...joined, generation: undefined, part: undefined, parts: undefined }).toEqual({ ...g, generation: undefined, part: undefined, parts: undefined });
});

test("a state that fits is one part; a row over the limit is a clear error", () => {
  const parts = registryGraphParts(state(3), 1024 * 1024, "g");
  expect(parts).toHaveLength(1);
  expect(parts[0]).toMatchObject({ part: 0, parts: 1 });
  const big = state(1);
  big.components[0]!.tags = Array.from({ length: 200 }, (_, i) => `tag-${i}-${"x".repeat(40)}`);
  expect(() => registryGraphParts(big, 4000, "g")).toThrow(/over a message's/);
});
