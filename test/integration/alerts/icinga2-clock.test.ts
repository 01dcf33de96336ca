/**
 * Icinga2 on a skewed clock (libfaketime, 30 s behind and 30 s ahead of ours): events carry Icinga2's times, and the
 * states the consumer reads from /v1/objects (after a downtime is removed, after a reconnect) are stamped on that
 * clock too, so the events that follow them are never taken for older ones. Stamped with our clock, a snapshot
 * taken while Icinga2 runs behind hid the recovery (and the next problem) that followed it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ClickHouseAlertHistory } from "../../../services/alerts/history.ts";
import { startIcinga2Consumer, type Icinga2Consumer } from "../../../services/alerts/icinga2.ts";
import { alertPublisher } from "../../../services/alerts/publish.ts";
import { startAlertsService, type AlertsService } from "../../../services/alerts/service.ts";
import { AlertRules } from "../../../pipelines/stages/alerts/mapping.ts";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import { startClickHouse, type TestClickHouse } from "../../helpers/clickhouse.ts";
import { LIBFAKETIME, makeIcinga2, type TestIcinga2 } from "../../helpers/icinga2.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const log = makeLogger("test", true);
const tmp = tempDir("orrery-icinga2-clock-");
const FP = "icinga2:db1!PostgreSQL";
const SERVICE = { type: "Service", filter: 'host.name=="db1" && service.name=="PostgreSQL"' };
const OBJECTS = `
object Host "db1" {
  address = "10.0.0.5"
  check_command = "dummy"
  enable_active_checks = false
  max_check_attempts = 1
}
object Service "PostgreSQL" {
  host_name = "db1"
  check_command = "dummy"
  enable_active_checks = false
  max_check_attempts = 1
}
`;

let nats: NatsServer | undefined;
let owner: TestClickHouse | undefined;
beforeAll(async () => {
  if (!LIBFAKETIME) return;
  nats = await startNats();
  owner = await startClickHouse(join(tmp.dir, "ch"));
}, 120_000);
afterAll(async () => {
  await owner?.stop();
  await nats?.stop();
  tmp.cleanup();
});

describe.each([
  ["30 s behind", -30],
  ["30 s ahead", 30],
])("an Icinga2 whose clock is %s of ours", (_name, skewS) => {
  let icinga: TestIcinga2;
  let bus: Bus;
  let history: ClickHouseAlertHistory;
  let alerts: AlertsService;
  let consumer: Icinga2Consumer;
  const state = () => alerts.book().entries.get(FP)?.published.state;
  const check = (exit_status: number, plugin_output: string) => icinga.api("/v1/actions/process-check-result", { ...SERVICE, exit_status, plugin_output });

  beforeAll(async () => {
    if (!LIBFAKETIME) return;
    // FAKETIME_DONT_FAKE_MONOTONIC: only the wall clock is off, as on a host whose NTP is broken
    const env = { LD_PRELOAD: LIBFAKETIME, FAKETIME: `${skewS > 0 ? "+" : ""}${skewS}s`, FAKETIME_DONT_FAKE_MONOTONIC: "1" };
    icinga = await makeIcinga2(join(tmp.dir, `icinga2${skewS}`), { objects: OBJECTS, env });
    await icinga.start();
    bus = await connectBus({ url: nats!.url, prefix: uniquePrefix("icclock"), name: "test" });
    history = new ClickHouseAlertHistory(owner!.client(), { database: uniquePrefix("icc").replace(/-/g, "_"), ttlDays: 7 });
    alerts = await startAlertsService({ bus, topology: { synced: () => true, rev: () => 1, nodes: () => [] }, rules: AlertRules.parse({}), history, log, tickMs: 200, flap: { threshold: 50 } });
    consumer = startIcinga2Consumer(
      { url: icinga.url, user: icinga.user, password: icinga.password, ca: icinga.ca(), serverName: icinga.node, queue: "orrery-clock", initialBackoffMs: 200, maxBackoffMs: 1000 },
      { publish: alertPublisher(bus), log },
    );
    await waitFor(() => consumer.status().connected, "icinga2 event stream connected", 20_000);
  }, 120_000);

  afterAll(async () => {
    await consumer?.stop();
    await icinga?.stop();
    await alerts?.stop();
    await history?.close();
    await bus?.close();
  });

  test.skipIf(!LIBFAKETIME)("a state read after a downtime is removed, then the recovery: resolved; after a reconnect the next problem fires (libfaketime needed)", async () => {
    await check(2, "CRITICAL - connection refused");
    await waitFor(() => state() === "firing", "firing");
    // the events are on Icinga2's clock, which really is off
    expect(Math.abs(alerts.book().entries.get(FP)!.last.at - (Date.now() + skewS * 1000))).toBeLessThan(10_000);

    // a downtime, removed: the consumer re-reads the service's state (still critical) from /v1/objects
    const icingaNow = Math.floor(Date.now() / 1000) + skewS;
    await icinga.api("/v1/actions/schedule-downtime", { ...SERVICE, author: "ops", comment: "maintenance", start_time: icingaNow - 5, end_time: icingaNow + 600, fixed: true });
    await waitFor(() => state() === "downtime", "downtime");
    const resyncsBefore = consumer.status().types.DowntimeRemoved?.resyncs ?? 0;
    await icinga.api("/v1/actions/remove-downtime", SERVICE);
    await waitFor(() => (consumer.status().types.DowntimeRemoved?.resyncs ?? 0) > resyncsBefore && state() === "firing", "state re-read after the downtime: firing");
    expect(alerts.book().entries.get(FP)!.last.labels.icinga2_event).toBe("ObjectState");

    // recovers right after: a recovery event stamped on Icinga2's clock must not look older than the state re-read
    await check(0, "OK - accepting connections");
    await waitFor(() => state() === "resolved", "resolved after the re-read state", 20_000);

    // Icinga2 restarts: the consumer reconnects and re-reads every state (no event yet to tell it Icinga2's clock)
    const { connects, resyncs } = consumer.status();
    await icinga.stop();
    await icinga.start();
    await waitFor(() => consumer.status().connected && consumer.status().connects > connects, "reconnected", 30_000);
    // published in order with the events after it, so the alerts service folds the re-read state first
    await waitFor(() => consumer.status().resyncs > resyncs, "states re-read after the reconnect", 20_000);
    await check(2, "CRITICAL - connection refused again");
    await waitFor(() => state() === "firing", "the next problem fires", 20_000);

    // Nothing that mattered was ignored. One exception, seen once in CI under load: Icinga2 may stamp one of a
    // downtime's events (added / started) a few ms before a state already folded; it is ignored as older, and the
    // downtime itself was reached above.
    expect(alerts.book().ignored.recent.filter((i) => !(i.state === "downtime" && i.lastAt - i.at < 1000))).toEqual([]);
  }, 120_000);
});
