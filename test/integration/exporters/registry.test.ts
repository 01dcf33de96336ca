/**
 * Registry components reach an ITSM vendor like discovered entities do: the real registry service (its record of
 * truth, the REGISTRY stream) edited over its NATS API and fed CSV imports of more than one part, the real exporter
 * service following it to a ServiceNow receiver (IRE shape, receivers.ts), killed mid-import and restarted. Every
 * component is created once, an import's updates, a declared dependency (as a relation, made and removed) and a
 * delete reach the vendor, and nothing is sent twice.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { encode } from "../../../pipelines/codec.ts";
import type { Caller, Component, ComponentDetail, ImportReport } from "../../../pipelines/contracts/registry.ts";
import { ExportersStatus } from "../../../pipelines/contracts/exporters.ts";
import { TopologySnapshot } from "../../../pipelines/contracts/topology.ts";
import { callRegistry } from "../../../services/registry/client.ts";
import { connectBus } from "../../../services/shared/bus.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { spawnUntilReady } from "../../helpers/process.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";
import { startReceiver } from "./receivers.ts";

let nats: NatsServer;
beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => {
  await nats.stop();
});

const admin: Caller = { login: "dave", role: "admin", groups: [] };
const csv = (rows: string[][]) => Buffer.from(rows.map((r) => r.join(",")).join("\n") + "\n").toString("base64");

test("registry edits and CSV imports (several parts) become CIs once, through a kill mid-import", async () => {
  const rx = startReceiver("servicenow", { delayMs: 2 });
  const prefix = uniquePrefix("exregi");
  const { dir, cleanup } = tempDir();
  const bus = await connectBus({ url: nats.url, prefix, name: "exporter-registry-test" });
  // the topology service's part: an empty snapshot (this test is about the registry)
  const snap = { schema: "topology.snapshot.v1" as const, rev: 0, at: Date.now(), nodes: [], edges: [] };
  const sub = bus.nc.subscribe(bus.topo.subjects.snapshotRpc, { callback: (_e, m) => void m.respond(encode(TopologySnapshot.extend({ part: z.number(), parts: z.number() }), "topology.snapshot.v1", { ...snap, part: 0, parts: 1 })) });
  const base = { ...process.env, NATS_URL: nats.url, ORRERY_PREFIX: prefix, ORRERY_LOG_QUIET: "1" };
  const registry = await spawnUntilReady(["node_modules/.bin/bun", "run", "services/registry/main.ts"], { ready: /"service":"registry"/, timeoutMs: 30_000, env: { ...base, ORRERY_REGISTRY_ANNOTATE: "off" }, name: "registry" });
  const file = join(dir, "exporters.json");
  const components = { class: "cmdb_ci_business_app", attributes: { name: "name", lifecycle: "props.lifecycle", category: "props.category" }, keys: ["name"] };
  writeFileSync(file, JSON.stringify({ exporters: [{ name: "snow", vendor: "servicenow", url: rx.url, auth: { type: "basic", user: "orrery", passwordEnv: "SNOW_PW" }, classes: {}, components, relations: { DEPENDS_ON: "Depends on::Used by" }, ratePerSecond: 400, timeoutMs: 2000 }] }));
  const start = () => spawnUntilReady(["node_modules/.bin/bun", "run", "services/exporters/main.ts"], { ready: /"service":"exporters","url":"([^"]+)"/, timeoutMs: 30_000, env: { ...base, ORRERY_EXPORTERS_CONFIG: file, ORRERY_EXPORTERS_PORT: "0", SNOW_PW: "pw" }, name: "exporters" });
  let exporter: Awaited<ReturnType<typeof start>> | undefined;
  try {
    // before the exporter exists: one component by hand, 1500 by import (two import.part events and a commit)
    await callRegistry<Component>(bus, "components.create", admin, { name: "Billing", category: "service", lifecycle: "mature" });
    const N = 1500;
    const rows = Array.from({ length: N }, (_, i) => [`svc-${i}`, "service", "new"]);
    const first = await callRegistry<ImportReport>(bus, "import", admin, { format: "csv", base64: csv([["name", "category", "lifecycle"], ...rows]), dryRun: false, file: "estate.csv" });
    expect(first).toMatchObject({ applied: true, created: N });
    const parts = await bus.jsm.streams.info(bus.topo.streams.registry.name, { subjects_filter: bus.topo.subjects.registry("import.part") });
    expect(parts.state.subjects?.[bus.topo.subjects.registry("import.part")]).toBeGreaterThan(1);

    // the exporter's first run replays the stream; killed halfway through the import's 1500 creates
    exporter = await start();
    await waitFor(() => rx.creates.size >= 300, "part of the import exported", 60_000, 5);
    exporter.proc.kill("SIGKILL");
    await exporter.proc.exited;
    // at 400 requests/s the import takes seconds: the kill fell in the middle of it
    expect(rx.creates.size).toBeLessThan(N);
    exporter = await start();
    await waitFor(() => rx.creates.size === N + 1, `all ${N + 1} components exported (had ${rx.creates.size})`, 90_000);
    expect([...rx.creates.values()].every((n) => n === 1)).toBe(true);

    // live: an import that changes two, adds one depending on svc-1 and leaves the rest alone; a delete by hand
    const before = rx.requests;
    const second = await callRegistry<ImportReport>(bus, "import", admin, {
      format: "csv",
      base64: csv([["name", "category", "lifecycle", "depends_on"], ["svc-1", "service", "legacy", ""], ["svc-2", "service", "legacy", ""], ["svc-3", "service", "new", ""], ["svc-new", "service", "new", "svc-1"]]),
      dryRun: false,
      file: "changes.csv",
    });
    expect(second).toMatchObject({ applied: true, created: 1, updated: 2 });
    const billing = await callRegistry<ComponentDetail>(bus, "components.get", admin, { id: "billing" });
    await callRegistry(bus, "components.delete", admin, { id: "billing", rev: billing.component.rev });
    await waitFor(() => rx.creates.size === N + 2 && rx.retired.size === 1, "the new component created and billing retired", 30_000);
    const url = exporter.match[1]!;
    const lagZero = async () => ExportersStatus.parse(await (await fetch(`${url}/status`)).json()).exporters[0]!.lag.registry === 0;
    await waitFor(lagZero, "registry lag 0", 20_000);
    // exactly: two updates, one create, its declared dependency as a relation, one retirement; svc-3 and the other
    // 1497 are unchanged and not sent
    expect(rx.requests - before).toBe(5);
    const rels = [...rx.writes].filter(([k]) => k.startsWith("rel:"));
    expect(rels.length).toBe(1);
    expect(rels[0]![0]).toContain(":Depends on::Used by:");
    expect(rels[0]![1]).toBe(1);
    expect([...rx.creates.values()].every((n) => n === 1)).toBe(true);
    expect([...rx.retired.values()]).toEqual([1]);

    // the dependency dropped: the relation is deleted at the vendor, the component itself is not sent (unchanged)
    const svcNew = await callRegistry<ComponentDetail>(bus, "components.get", admin, { id: "svc-new" });
    await callRegistry(bus, "components.patch", admin, { id: "svc-new", body: { dependsOn: [], rev: svcNew.component.rev } });
    await waitFor(() => rx.unrelated.size === 1, "the relation deleted", 20_000);
    await waitFor(lagZero, "registry lag 0", 20_000);
    expect(rx.requests - before).toBe(6);
    expect([...rx.unrelated.keys()]).toEqual([rels[0]![0]]);
    expect(rx.violations).toEqual([]);
  } finally {
    exporter?.proc.kill("SIGTERM");
    await exporter?.proc.exited;
    registry.proc.kill("SIGTERM");
    await registry.proc.exited;
    sub.unsubscribe();
    await bus.close();
    rx.stop();
    cleanup();
  }
}, 240_000);
