/**
 * The registry in the whole platform as `npm run demo` runs it (the supervisor starts the registry service beside the
 * others; a simulated estate): a discovered service is registered by a match rule, the component shows the instance,
 * drift stops calling it unregistered, and its owners reach the graph store (Cypher on the embedded Kuzu) through the
 * registry's annotations. The stack stops cleanly (exit 0) with the registry in it.
 */
import { expect, test } from "bun:test";
import { startStack } from "../../helpers/stack.ts";
import { waitFor } from "../../helpers/tmp.ts";

interface Unregistered {
  id: string;
  name: string;
  host: string;
}

test("a simulated service registered by a match rule: instances, drift, owners in the graph", async () => {
  const stack = await startStack({ ORRERY_SIM_HOSTS: "6", ORRERY_REGISTRY_DRIFT_EVERY_S: "0.5" });
  try {
    const get = async (path: string) => {
      const r = await fetch(`${stack.dashboard}${path}`);
      return { status: r.status, body: (await r.json()) as any };
    };
    // a listening service discovery found and no component claims
    const target = await waitFor(async () => {
      const d = await get("/api/registry/drift");
      if (d.status !== 200) return null;
      const snap = await get("/api/snapshot");
      if (snap.status !== 200) return null;
      const ports = new Map<string, string>((snap.body.nodes as { id: string; props: { ports?: string } }[]).map((n) => [n.id, n.props.ports ?? ""]));
      return (d.body.unregistered as Unregistered[]).find((u) => /^\d/.test(ports.get(u.id) ?? "") && u.host) ?? null;
    }, "an unregistered listening service", 90_000, 500);

    const created = await fetch(`${stack.dashboard}/api/registry/components`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "demo-component", owners: ["group:payments", "user:ann"], match: [{ fingerprint: target.name, host: target.host }] }),
    });
    expect(created.status).toBe(201);

    const detail = await waitFor(async () => {
      const r = await get("/api/registry/components/demo-component");
      return r.body.instances?.some((i: { id: string }) => i.id === target.id) ? r.body : null;
    }, "the component to show its instance", 30_000);
    expect(detail.instances.every((i: { host: string }) => i.host === target.host)).toBe(true);
    expect((await get(`/api/registry/services?id=${encodeURIComponent(target.id)}`)).body.components[0].owners).toEqual(["group:payments", "user:ann"]);

    await waitFor(async () => !((await get("/api/registry/drift")).body.unregistered as Unregistered[]).some((u) => u.id === target.id), "drift to stop listing the service");

    // the registry's annotations went through discovery and the topology service into the graph store
    const owner = await waitFor(async () => {
      const r = await fetch(`${stack.dashboard}/api/cypher`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: "MATCH (s:Entity) WHERE s.id = $id RETURN s.owner AS owner, s.props AS props", params: { id: target.id } }),
      });
      const b = (await r.json()) as { ok: boolean; rows?: { owner: string; props: string }[] };
      return b.ok && b.rows?.[0]?.owner === "payments, ann" ? b.rows[0] : null;
    }, "the owner on the service in the graph", 60_000, 500);
    expect(JSON.parse(owner.props)).toMatchObject({ component: "demo-component", team: "payments" });
    expect(await stack.stop()).toBe(0);
  } finally {
    if (stack.proc.exitCode === null) process.kill(-stack.proc.pid, "SIGKILL");
    stack.cleanup();
  }
}, 300_000);
