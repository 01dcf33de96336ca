/** An import's components read back from the stream before its commit (services/exporters/registry.ts). */
import { expect, test } from "bun:test";
import type { ComponentChange, RegistryEvent } from "../../../pipelines/contracts/registry.ts";
import { componentChanges, importParts } from "../../../services/exporters/registry.ts";

const by = { login: "admin", role: "admin" as const };
const change = (id: string, lifecycle = "new"): ComponentChange => ({ id, after: { name: id, category: "", description: "", language: "", framework: "", lifecycle, privacy: "", location: "", tags: [], links: {}, owners: [], maintainers: [], productManager: null, dependsOn: [], match: [], createdAt: 1 }, changes: [] });
const part = (importId: string, n: number, components: ComponentChange[]): RegistryEvent => ({ schema: "registry.v1", at: 1, by, type: "import.part", importId, part: n, components });
const commit = (importId: string, parts: number): Extract<RegistryEvent, { type: "import.commit" }> => ({ schema: "registry.v1", at: 1, by, type: "import.commit", importId, parts, file: "x.csv", created: 0, updated: 0 });
const streamOf = (events: RegistryEvent[]) => async (seq: number) => events[seq - 1] ?? null;

test("a commit's parts are the events right before it, in order; the last change of a component wins", async () => {
  const log = [part("i1", 0, [change("a"), change("b")]), part("i1", 1, [change("c"), change("a", "legacy")])];
  const got = await importParts(commit("i1", 2), 3, streamOf(log));
  expect(got?.map((c) => [c.id, c.after?.lifecycle])).toEqual([["b", "new"], ["c", "new"], ["a", "legacy"]]);
});

test("a commit whose parts are missing, out of order or of another import exports nothing (as the registry's fold)", async () => {
  expect(await importParts(commit("i1", 2), 2, streamOf([part("i1", 1, [change("a")])]))).toBeNull();
  expect(await importParts(commit("i1", 2), 3, streamOf([part("i1", 1, [change("a")]), part("i1", 0, [change("b")])]))).toBeNull();
  expect(await importParts(commit("i1", 1), 2, streamOf([part("i0", 0, [change("a")])]))).toBeNull();
  expect(await componentChanges(commit("i1", 1), 2, streamOf([part("i0", 0, [change("a")])]))).toEqual([]);
});

test("component events carry their one component; parts and other events change nothing by themselves", async () => {
  const put: RegistryEvent = { schema: "registry.v1", at: 1, by, type: "component.put", component: change("a") };
  const none = async () => null;
  expect(await componentChanges(put, 1, none)).toEqual([change("a")]);
  expect(await componentChanges(part("i", 0, [change("a")]), 1, none)).toEqual([]);
  expect(await componentChanges({ schema: "registry.v1", at: 1, by, type: "list.put", list: "lifecycle", values: ["new"], old: [] }, 1, none)).toEqual([]);
});
