import { describe, expect, test } from "bun:test";
import { ageModel, applyDiscovery, emptyModel, type Changes, type TopologyModel } from "../../../pipelines/stages/topology/index.ts";
import { batch, changed, conn, hostSeen, nameSeen, proc } from "../../helpers/discovery.ts";

const job = (source: string, events: Parameters<typeof batch>[0], o: Parameters<typeof batch>[1] = {}) => batch(events, { source, host: "worker-1", ...o });
const upserted = (c: Changes) => c.nodesUpserted.map((n) => n.id).sort();

describe("name.seen", () => {
  const DNS = "job:dns:api.example.com";
  const ext = "external:93.184.216.34:443";
  const call = (m: TopologyModel, t: number) => applyDiscovery(m, batch([hostSeen(["10.0.0.1"]), conn("10.0.0.1", 40000, "93.184.216.34", 443, proc(20, "app"))]), t);

  test("an external endpoint is named by its IP's DNS name (id unchanged), whether the name comes before or after the call", () => {
    const before = emptyModel({ confirmScans: 1 });
    expect(changed(applyDiscovery(before, job(DNS, [nameSeen("93.184.216.34", "api.example.com")]), 1))).toBe(0);
    call(before, 2);
    expect(before.nodes.get(ext)).toMatchObject({ name: "api.example.com:443", props: { ip: "93.184.216.34", port: 443, dnsName: "api.example.com" } });

    const after = emptyModel({ confirmScans: 1 });
    call(after, 1);
    expect(after.nodes.get(ext)!.name).toBe("93.184.216.34:443");
    const c = applyDiscovery(after, job(DNS, [nameSeen("93.184.216.34", "api.example.com")]), 2);
    expect(upserted(c)).toEqual([ext]);
    expect(after.nodes.get(ext)!.name).toBe("api.example.com:443");
    expect(changed(applyDiscovery(after, job(DNS, [nameSeen("93.184.216.34", "api.example.com")]), 3))).toBe(0);
  });

  test("per source its latest answer, across sources the last change; a full scan without it or aging takes the name away", () => {
    const m = emptyModel({ confirmScans: 1 });
    call(m, 1);
    applyDiscovery(m, job(DNS, [nameSeen("93.184.216.34", "api.example.com")], { full: true, at: 1 }), 1);
    applyDiscovery(m, job("job:inventory-csv:edge", [nameSeen("93.184.216.34", "edge-proxy")], { full: true, at: 1 }), 1);
    expect(m.nodes.get(ext)!.name).toBe("edge-proxy:443");
    applyDiscovery(m, job("job:inventory-csv:edge", [], { full: true, at: 2 }), 2);
    expect(m.nodes.get(ext)!.name).toBe("api.example.com:443");
    applyDiscovery(m, job(DNS, [nameSeen("93.184.216.34", "api-v2.example.com")], { at: 2 }), 2);
    expect(m.nodes.get(ext)!.props.dnsName).toBe("api-v2.example.com");
    // the DNS job goes silent; the agent keeps the call open
    const aging = { intervalMs: 1, staleAfter: 3, removeAfter: 6 };
    call(m, 50);
    const c = ageModel(m, 50, aging);
    expect(c.nodesUpserted.map((n) => [n.id, n.name])).toEqual([[ext, "93.184.216.34:443"]]);
    expect(m.nodes.get(ext)!.props.dnsName).toBeUndefined();
  });
});
