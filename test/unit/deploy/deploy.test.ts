/**
 * deploy/ checked without a cluster: every file parses; the Compose file validates against (a subset of) the Compose
 * Specification's schema and each Kubernetes object against (a subset of) its kind's schema, both vendored beside this
 * test with their sources; every service has a workload; every probe path is one the code serves; every environment
 * key given to a service is one that service's configuration declares (in a file its main.ts imports).
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import Ajv from "ajv";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { METRICS_PORTS, metricsPortSetting, type ObservedService } from "../../../services/shared/metrics-registry.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const DEPLOY = join(ROOT, "deploy");
const read = (p: string) => readFileSync(join(ROOT, p), "utf8");

/** Services with a main.ts that production does not run as a workload of its own, and why. */
const NOT_DEPLOYED: Record<string, string> = {
  supervisor: "the demo's process supervisor; a cluster's scheduler does its job",
  clickhouse: "the embedded chDB owner; production points CLICKHOUSE_URL at the ClickHouse cluster",
  simulator: "a simulated estate for the demo and benches",
};
const services = readdirSync(join(ROOT, "services")).filter((d) => existsSync(join(ROOT, "services", d, "main.ts")));

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec?: { template?: { spec: { containers: Container[] } } };
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  env?: { name: string; value?: string }[];
  ports?: { name?: string; containerPort: number }[];
  livenessProbe?: { httpGet?: { path: string; port: number | string } };
  readinessProbe?: { httpGet?: { path: string; port: number | string } };
}

function yamlDocs(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  for (const d of docs) if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join("; ")}`);
  return docs.map((d) => d.toJS()).filter((d) => d !== null);
}
const k8sFiles = readdirSync(join(DEPLOY, "k8s")).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml");
const k8s = k8sFiles.flatMap((f) => yamlDocs(join(DEPLOY, "k8s", f))) as K8sObject[];
const compose = parseYaml(read("deploy/compose/docker-compose.yml")) as { services: Record<string, { command?: string[]; environment?: Record<string, string>; healthcheck?: { test: string[] } }> };

/** The service a container runs, from its command (bun run services/<name>/main.ts). */
const serviceOf = (command: string[] | undefined) => command?.join(" ").match(/services\/([a-z-]+)\/main\.ts/)?.[1];

/** Every file main.ts of `service` reaches through relative imports (services/ and pipelines/). */
function importClosure(service: string): string[] {
  const seen = new Set<string>();
  const walk = (file: string) => {
    if (seen.has(file) || !existsSync(file)) return;
    seen.add(file);
    for (const m of readFileSync(file, "utf8").matchAll(/from\s+"(\.{1,2}\/[^"]+\.ts)"/g)) walk(resolve(dirname(file), m[1]!));
  };
  walk(join(ROOT, "services", service, "main.ts"));
  return [...seen];
}
/** The environment keys a service's configuration declares: zod object keys and the agent's env → option table. */
function declaredKeys(service: string): Set<string> {
  const keys = new Set<string>();
  for (const f of importClosure(service)) for (const m of readFileSync(f, "utf8").matchAll(/\b([A-Z][A-Z0-9]*_[A-Z0-9_]+):\s/g)) keys.add(m[1]!);
  if (service in METRICS_PORTS) keys.add(metricsPortSetting(service as ObservedService));
  return keys;
}

describe("deploy/ parses", () => {
  test("every YAML and JSON file under deploy/ parses", () => {
    const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
    const files = walk(DEPLOY).filter((f) => !f.includes("/nats/"));
    let n = 0;
    for (const f of files) {
      if (/\.ya?ml$/.test(f)) (yamlDocs(f), n++);
      if (f.endsWith(".json")) (JSON.parse(readFileSync(f, "utf8")), n++);
    }
    expect(n).toBeGreaterThanOrEqual(8);
  });

  test("the Compose file validates against the Compose Specification's schema (subset)", () => {
    const ajv = new Ajv({ allErrors: true, strict: false });
    const validate = ajv.compile(JSON.parse(read("test/unit/deploy/schemas/compose.schema.json")));
    if (!validate(compose)) throw new Error(ajv.errorsText(validate.errors, { separator: "\n" }));
    // and the schema does refuse: an unknown service key
    expect(validate({ services: { x: { image: "a", replica: 2 } } })).toBe(false);
  });

  test("each Kubernetes object validates against its kind's schema (subset)", () => {
    const ajv = new Ajv({ allErrors: true, strict: false });
    const validate = ajv.compile(JSON.parse(read("test/unit/deploy/schemas/k8s.schema.json")));
    expect(k8s.length).toBeGreaterThan(20);
    for (const o of k8s) {
      const what = `${o.kind}/${o.metadata?.name}`;
      if (!validate(o)) throw new Error(`${what}: ${ajv.errorsText(validate.errors, { separator: "\n" })}`);
    }
    // a misspelt probe field is refused
    const bad = structuredClone(k8s.find((o) => o.kind === "Deployment")!);
    (bad.spec!.template!.spec.containers[0] as unknown as Record<string, unknown>).readinesProbe = {};
    expect(validate(bad)).toBe(false);
  });

  test("kustomization lists every manifest, and the files it reads exist (deploy/nats/ comes from its own change)", () => {
    const k = parseYaml(read("deploy/k8s/kustomization.yaml")) as { resources: string[]; configMapGenerator: { files: string[] }[] };
    expect(k.resources.sort()).toEqual(k8sFiles.sort());
    for (const f of k.configMapGenerator.flatMap((g) => g.files.map((x) => x.split("=").pop()!))) {
      if (f.startsWith("../nats/") && !existsSync(join(DEPLOY, "k8s", f))) continue;
      expect(existsSync(join(DEPLOY, "k8s", f))).toBe(true);
    }
  });

  test("the Grafana dashboards: unique panel ids, every Orrery query names a metric the services export", () => {
    const exported = read("services/shared/metrics-registry.ts") + services.map((s) => read(`services/${s}/main.ts`)).join("\n");
    for (const f of ["orrery.json", "estate.json"]) {
      const d = JSON.parse(read(`deploy/grafana/${f}`)) as { uid: string; panels: { id: number; targets: { expr?: string; rawSql?: string }[] }[] };
      expect(new Set(d.panels.map((p) => p.id)).size).toBe(d.panels.length);
      for (const t of d.panels.flatMap((p) => p.targets))
        for (const m of t.expr?.matchAll(/\b(orrery_[a-z_]+?)(_bucket|_count|_sum)?\b/g) ?? []) expect(exported).toContain(`"${m[1]}"`);
    }
  });
});

describe("deploy/ matches the code", () => {
  test("every service has a workload in Kubernetes and in Compose (or a reason not to)", () => {
    const k8sServices = new Set(k8s.flatMap((o) => o.spec?.template?.spec.containers.map((c) => serviceOf(c.command)) ?? []));
    const composeServices = new Set(Object.values(compose.services).map((s) => serviceOf(s.command)));
    for (const s of services) {
      if (NOT_DEPLOYED[s]) continue;
      expect(k8sServices.has(s) ? s : `${s}: no Kubernetes workload`).toBe(s);
      expect(composeServices.has(s) ? s : `${s}: no Compose service`).toBe(s);
    }
    expect(k8s.find((o) => o.kind === "DaemonSet" && serviceOf(o.spec?.template?.spec.containers[0]?.command) === "agent")).toBeDefined();
    expect(k8s.find((o) => o.kind === "Ingress")).toBeDefined();
  });

  test("the agent's DaemonSet mounts the host's /proc and /etc where ORRERY_PROC_ROOT / ORRERY_ETC_ROOT point", () => {
    const ds = k8s.find((o) => o.kind === "DaemonSet") as unknown as { spec: { template: { spec: { hostPID: boolean; containers: (Container & { volumeMounts: { name: string; mountPath: string }[] })[]; volumes: { name: string; hostPath?: { path: string } }[] } } } };
    const pod = ds.spec.template.spec;
    const c = pod.containers[0]!;
    const env = Object.fromEntries(c.env!.map((e) => [e.name, e.value]));
    for (const [key, host] of [["ORRERY_PROC_ROOT", "/proc"], ["ORRERY_ETC_ROOT", "/etc"]] as const) {
      const mount = c.volumeMounts.find((m) => m.mountPath === env[key]);
      expect(pod.volumes.find((v) => v.name === mount?.name)?.hostPath?.path).toBe(host);
    }
    expect(pod.hostPID).toBe(true);
  });

  test("every probe path of an Orrery container is served by the code, on the port its listener is told", () => {
    const source = read("services/shared/metrics-registry.ts");
    let probes = 0;
    for (const o of k8s)
      for (const c of o.spec?.template?.spec.containers ?? []) {
        const svc = serviceOf(c.command);
        if (!svc) continue;
        const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
        for (const p of [c.livenessProbe, c.readinessProbe]) {
          const get = p?.httpGet;
          expect(get ? svc : `${svc}: no HTTP probe`).toBe(svc);
          expect(source).toContain(`"${get!.path}":`);
          const port = typeof get!.port === "number" ? get!.port : c.ports?.find((x) => x.name === get!.port)?.containerPort;
          expect(String(port)).toBe(env[metricsPortSetting(svc as ObservedService)]!);
          expect(env.ORRERY_METRICS_HOST).toBe("0.0.0.0");
          probes++;
        }
      }
    expect(probes).toBeGreaterThanOrEqual(2 * (services.length - Object.keys(NOT_DEPLOYED).length));
    for (const [name, s] of Object.entries(compose.services)) {
      const svc = serviceOf(s.command);
      if (!svc || svc === "agent") continue;
      const url = s.healthcheck?.test.join(" ").match(/127\.0\.0\.1:(\d+)(\/[a-z]+)/);
      expect(url ? name : `${name}: no readiness check`).toBe(name);
      expect(source).toContain(`"${url![2]}":`);
      expect(url![1]).toBe(s.environment![metricsPortSetting(svc as ObservedService)]!);
    }
  });

  test("every environment key given to a service is one its configuration declares", () => {
    const unknown: string[] = [];
    const check = (where: string, svc: string, keys: string[]) => {
      const declared = declaredKeys(svc);
      for (const k of keys) if (!declared.has(k)) unknown.push(`${where}: ${k}`);
    };
    for (const o of k8s)
      for (const c of o.spec?.template?.spec.containers ?? []) {
        const svc = serviceOf(c.command);
        if (svc) check(`k8s ${o.kind}/${o.metadata.name}`, svc, (c.env ?? []).map((e) => e.name));
      }
    for (const [name, s] of Object.entries(compose.services)) {
      const svc = serviceOf(s.command);
      if (svc) check(`compose ${name}`, svc, Object.keys(s.environment ?? {}));
    }
    expect(unknown).toEqual([]);
    // and the check can fail: a key no service reads
    expect(declaredKeys("gateway").has("ORRERY_NO_SUCH_KEY")).toBe(false);
  });
});
