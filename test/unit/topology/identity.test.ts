import { describe, expect, test } from "bun:test";
import { fingerprint, identityPorts, imageRepository, serviceId } from "../../../pipelines/stages/topology/identity.ts";
import { applyDiscovery, emptyModel } from "../../../pipelines/stages/topology/index.ts";
import { batch, hostSeen, listen, proc } from "../../helpers/discovery.ts";

describe("service identity", () => {
  test("fingerprint: the binary, plus what an interpreter runs", () => {
    expect(fingerprint(proc(1, "nginx", { exe: "/usr/sbin/nginx" }))).toBe("nginx");
    expect(fingerprint(proc(1, "java", { exe: "/usr/lib/jvm/bin/java", cmdline: ["java", "-Xmx1g", "-cp", "lib/*", "-jar", "/srv/orders.jar"] }))).toBe("java:orders.jar");
    expect(fingerprint(proc(1, "java", { exe: "/usr/bin/java", cmdline: ["java", "-cp", "a.jar", "com.acme.Billing"] }))).toBe("java:com.acme.Billing");
    expect(fingerprint(proc(1, "python3", { exe: "/usr/bin/python3.11", cmdline: ["python3", "-m", "celery", "worker"] }))).toBe("python3.11:celery");
    expect(fingerprint(proc(1, "postgres", { exe: "/usr/lib/postgresql/16/bin/postgres (deleted)" }))).toBe("postgres");
    expect(fingerprint(proc(1, "kworker", { exe: null }))).toBe("kworker");
    expect(fingerprint(proc(1, "bun", { exe: "/opt/bun/bin/bun.exe", cmdline: ["bun", "run", "/srv/orrery/services/agent/main.ts"] }))).toBe("bun:agent/main.ts");
    expect(fingerprint(proc(1, "node", { exe: "/usr/bin/node", cmdline: ["node", "--enable-source-maps", "dist/server.mjs"] }))).toBe("node:dist/server.mjs");
  });

  test("identity ports: sorted listening ports, ephemeral ones only when they are all there is", () => {
    expect(identityPorts([{ proto: "tcp", port: 443 }, { proto: "tcp", port: 80 }, { proto: "udp", port: 53 }])).toBe("53/udp,80,443");
    expect(identityPorts([{ proto: "tcp", port: 8080 }, { proto: "tcp", port: 41234 }])).toBe("8080");
    expect(identityPorts([{ proto: "tcp", port: 41234 }])).toBe("41234");
    expect(identityPorts([])).toBe("client");
  });
});

describe("container image identity", () => {
  test("the image repository (no tag, no digest) is the fingerprint, so an image upgrade is the same service", () => {
    expect(fingerprint(proc(1, "java", { containerImage: "registry.acme.io/orders:1.4" }))).toBe("image:registry.acme.io/orders");
    expect(fingerprint(proc(1, "java", { containerImage: "registry:5000/team/orders:1.5@sha256:abc" }))).toBe("image:registry_5000/team/orders");
    expect(fingerprint(proc(1, "nginx", { containerImage: "nginx" }))).toBe("image:nginx");
    expect(fingerprint(proc(1, "nginx", { containerImage: null }))).toBe("nginx");

    const m = emptyModel();
    const v1 = proc(10, "java", { containerImage: "registry/orders:1.4", containerId: "c1", cmdline: ["java", "-jar", "/app/orders-1.4.jar"] });
    applyDiscovery(m, batch([hostSeen([]), listen(8080, v1)]), 1);
    const id = "service:h1:image:registry/orders:8080";
    expect(m.nodes.get(id)!.props).toMatchObject({ containerImage: "registry/orders:1.4", containerId: "c1", pid: 10 });
    // upgrade: a new container with the next image (and a renamed jar) takes over the port
    const v2 = proc(20, "java", { containerImage: "registry/orders:1.5", containerId: "c2", cmdline: ["java", "-jar", "/app/orders-1.5.jar"], startTime: 9999 });
    const c = applyDiscovery(m, batch([listen(8080, v2)]), 2);
    expect(c.nodesUpserted.map((n) => n.id)).toEqual([id]);
    expect(c.nodesRemoved).toEqual([]);
    expect(m.nodes.get(id)!.props).toMatchObject({ containerImage: "registry/orders:1.5", containerId: "c2", pid: 20 });
  });
});

describe("service ids", () => {
  test("an image reference loses its tag and digest, not a registry port", () => {
    expect(imageRepository("registry:5000/orders:1.4@sha256:abc")).toBe("registry:5000/orders");
    expect(imageRepository("registry:5000/orders")).toBe("registry:5000/orders");
    expect(imageRepository("nginx:1.27")).toBe("nginx");
  });

  test("a service id is host, fingerprint and identity ports; a process that listens nowhere is a client", () => {
    expect(serviceId("db1", proc(10, "postgres"), [{ proto: "tcp", port: 5432 }])).toBe("service:db1:postgres:5432");
    expect(serviceId("h1", proc(20, "app"), [])).toBe("service:h1:app:client");
  });
});
