/** Names people use: short service names from fingerprints, host tiers from names, externals by DNS name. */
import { expect, test } from "bun:test";
import type { TopoNode } from "../../../pipelines/contracts/topology.ts";
import { nodeLabel, shortServiceName, siteOf, tierOf } from "../../../pipelines/stages/views/names.ts";

const node = (kind: TopoNode["kind"], name: string, props: TopoNode["props"] = {}): TopoNode => ({ id: `${kind}:${name}`, kind, name, source: "agent:x", props, firstSeen: 0, lastSeen: 0 });

test("a service's short name: the image's last segment, the interpreter's script or module, else the executable", () => {
  expect(shortServiceName("image:registry.example/orders")).toBe("orders");
  expect(shortServiceName("image:docker.io/library/redis")).toBe("redis");
  expect(shortServiceName("image:registry_5000/team/billing-api")).toBe("billing-api");
  expect(shortServiceName("java:orders.jar")).toBe("orders");
  expect(shortServiceName("python3:celery")).toBe("celery");
  expect(shortServiceName("bun:agent/main.ts")).toBe("agent");
  expect(shortServiceName("node:server.js")).toBe("server");
  expect(shortServiceName("java:kafka.Kafka")).toBe("Kafka");
  expect(shortServiceName("redis-server")).toBe("redis");
  expect(shortServiceName("python3:inline")).toBe("python3");
  expect(shortServiceName("postgres")).toBe("postgres");
  expect(shortServiceName("nginx")).toBe("nginx");
});

test("a host's tier: its tier or role prop, else the word before the trailing numbers of its name", () => {
  expect(tierOf(node("host", "sim-app-3"))).toBe("app");
  expect(tierOf(node("host", "sim-app-3-r2"))).toBe("app");
  expect(tierOf(node("host", "web01"))).toBe("web");
  expect(tierOf(node("host", "db.example.com"))).toBe("db");
  expect(tierOf(node("host", "sim-app-3", { tier: "payments" }))).toBe("payments");
  expect(tierOf(node("host", "x", { role: "edge" }))).toBe("edge");
  expect(siteOf(node("host", "a", { site: "fra1" }))).toBe("fra1");
  expect(siteOf(node("host", "a", { region: "eu-west-1" }))).toBe("eu-west-1");
  expect(siteOf(node("host", "a"))).toBe("unknown");
});

test("labels: a service by short name on its host, a listener by proto/port on its host, an external by DNS name", () => {
  const host = () => "sim-app-3";
  expect(nodeLabel(node("process", "image:registry.example/orders", { service: "image:registry.example/orders", host: "sim-app-3" }), host)).toEqual({ label: "orders", sublabel: "on sim-app-3" });
  expect(nodeLabel(node("listener", "tcp/8080"), host)).toEqual({ label: "tcp/8080", sublabel: "on sim-app-3" });
  expect(nodeLabel(node("host", "sim-app-3"), host)).toEqual({ label: "sim-app-3" });
  expect(nodeLabel(node("external", "203.0.113.10:443", { dnsName: "api.stripe.com", port: 443 }), host).label).toBe("api.stripe.com:443");
  expect(nodeLabel(node("external", "203.0.113.10:443", { port: 443 }), host).label).toBe("203.0.113.10:443");
});
