/**
 * A listener has no samples of its own (agents sample hosts and services): the gateway's metric routes answer a
 * listener with the service that listens on it (`of`), found in the topology mirror, over a real ClickHouse store.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { TopoEdge, TopoNode } from "../../../pipelines/contracts/topology.ts";
import { mirrorFromSnapshot } from "../../../pipelines/stages/apply-delta.ts";
import { listenerStandIn, metricsRoutes } from "../../../services/gateway/routes/metrics.ts";
import { ClickHouseSeriesStore } from "../../../services/metrics/clickhouse.ts";
import { httpErrors } from "../../../services/shared/http.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { tempDir, uniquePrefix } from "../../helpers/tmp.ts";

const tmp = tempDir();
let owner: TestClickHouse;
let store: ClickHouseSeriesStore;
const T = Math.floor(Date.now() / 60_000) * 60_000 - 10 * 60_000;

const SVC = "service:db-1:postgres:5432";
const LISTENER = "listener:db-1:tcp:0.0.0.0:5432";
const LONELY = "listener:db-1:tcp:0.0.0.0:9999";
const node = (id: string, kind: TopoNode["kind"]): TopoNode => ({ id, kind, name: id, source: "agent:db-1", props: {}, firstSeen: T, lastSeen: T });
const edge = (kind: TopoEdge["kind"], src: string, dst: string): TopoEdge => ({ id: `${kind}:${src}->${dst}`, kind, src, dst, source: "agent:db-1", props: {}, firstSeen: T, lastSeen: T });

beforeAll(async () => {
  owner = await startClickHouse(join(tmp.dir, "owner"));
  store = new ClickHouseSeriesStore(owner.client(), { database: uniquePrefix("ml").replace(/-/g, "_"), ttlDays: 30 });
  await store.init();
  await store.insert(
    Array.from({ length: 10 }, (_, i) => ({ entity: SVC, metric: "process_rss_bytes", ts: T + i * 30_000, value: 1e8 + i, labels: { pid: "42" } })),
    "b1",
  );
});

afterAll(async () => {
  await store?.close();
  await owner?.stop();
  tmp.cleanup();
});

test("a listener's latest values and series are its service's, said in `of`; other entities answer for themselves", async () => {
  const mirror = mirrorFromSnapshot({
    rev: 1,
    nodes: [node("host:db-1", "host"), node(SVC, "process"), node(LISTENER, "listener"), node(LONELY, "listener")],
    edges: [edge("RUNS", "host:db-1", SVC), edge("LISTENS", SVC, LISTENER)],
  });
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    routes: metricsRoutes({ series: store, standIn: listenerStandIn({ mirror: () => mirror }) }),
    error: httpErrors(makeLogger("test", true)),
  });
  const base = `http://127.0.0.1:${server.port}`;
  try {
    const latest = (await (await fetch(`${base}/api/metrics/latest?entity=${encodeURIComponent(LISTENER)}`)).json()) as { entity: string; of?: string; values: Record<string, { v: number }> };
    expect(latest.entity).toBe(LISTENER);
    expect(latest.of).toBe(SVC);
    expect(latest.values.process_rss_bytes!.v).toBe(1e8 + 9);

    const series = (await (await fetch(`${base}/api/series?entity=${encodeURIComponent(LISTENER)}&metric=process_rss_bytes&from=${T}&to=${T + 300_000}&step=60`)).json()) as { of?: string; points: { v: number | null }[] };
    expect(series.of).toBe(SVC);
    expect(series.points.filter((p) => p.v !== null).length).toBe(5);

    // the service itself: no `of`
    const own = (await (await fetch(`${base}/api/metrics/latest?entity=${encodeURIComponent(SVC)}`)).json()) as { of?: string; values: object };
    expect(own.of).toBeUndefined();
    expect(Object.keys(own.values)).toEqual(["process_rss_bytes"]);
    // a listener nobody serves has nothing to stand in: empty, as before
    expect(await (await fetch(`${base}/api/metrics/latest?entity=${encodeURIComponent(LONELY)}`)).json()).toEqual({ entity: LONELY, values: {} });
  } finally {
    server.stop(true);
  }
});
