import { expect, test } from "bun:test";
import { edgeId, externalId, hostId, hostPort, isAgentSource, isLoopback, listenerId } from "../../../pipelines/stages/topology/ids.ts";

test("ids name what a thing is; IPv6 addresses go in brackets", () => {
  expect(hostId("db1")).toBe("host:db1");
  expect(hostPort("10.0.0.5", 5432)).toBe("10.0.0.5:5432");
  expect(hostPort("::1", 53)).toBe("[::1]:53");
  expect(listenerId("db1", "tcp", "0.0.0.0", 5432)).toBe("listener:db1:tcp:0.0.0.0:5432");
  expect(listenerId("db1", "udp", "::", 53)).toBe("listener:db1:udp:[::]:53");
  expect(externalId("93.184.216.34", 443)).toBe("external:93.184.216.34:443");
  expect(edgeId("CONNECTS", "service:h1:app:client", "listener:db1:tcp:0.0.0.0:5432")).toBe("CONNECTS:service:h1:app:client->listener:db1:tcp:0.0.0.0:5432");
});

test("loopback is 127/8 and ::1; an agent's source starts with agent:", () => {
  expect([isLoopback("127.0.0.1"), isLoopback("127.1.2.3"), isLoopback("::1"), isLoopback("10.0.0.1"), isLoopback("::")]).toEqual([true, true, true, false, false]);
  expect([isAgentSource("agent:h1"), isAgentSource("job:tcp-scan:db1")]).toEqual([true, false]);
});

test("ids.ts loads nothing at run time (other packages import it alone)", async () => {
  const text = await Bun.file(new URL("../../../pipelines/stages/topology/ids.ts", import.meta.url)).text();
  const imports = text.split("\n").filter((l) => l.startsWith("import "));
  expect(imports.length).toBeGreaterThan(0);
  expect(imports.every((l) => l.startsWith("import type "))).toBe(true);
});
