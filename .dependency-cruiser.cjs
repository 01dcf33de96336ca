/**
 * Layer and cycle rules, run by `npm run check` (README, "Design: how the code is laid out").
 *
 * A service's folder is private to it. Another service, the CLI or the dashboard may import only:
 * - services/shared/**: what every service uses (bus, config, HTTP helpers, logging);
 * - services/<x>/client.ts: how to talk to service x (its NATS RPC client, its publishers, its launch settings);
 * - services/<x>/port.ts: a store's interface and its typed errors (services/graph, history, metrics);
 * - an adapter of a port — a file named for the store it adapts (kuzu.ts, neo4j.ts, clickhouse.ts) — and only from a
 *   main.ts, since picking the adapter is main.ts's job.
 * services/graph and services/clickhouse are such libraries: graph is a port with its adapters and no process of
 * its own; clickhouse/client.ts is the client every ClickHouse user builds, the rest of that folder is the owner process.
 */
const ADAPTER = "^services/[^/]+/(kuzu|neo4j|clickhouse)[.]ts$";

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "An import cycle ties modules into one unit that can be neither read nor tested apart.",
      from: {},
      to: { circular: true },
    },
    {
      name: "pipelines-are-pure",
      severity: "error",
      comment: "pipelines/ holds contracts and pure stages: it imports nothing from services/.",
      from: { path: "^pipelines/" },
      to: { path: "^services/" },
    },
    {
      name: "services-meet-through-clients",
      severity: "error",
      comment: "A service imports another service only through its client.ts, a port.ts, or (from main.ts) an adapter; what two services share goes to services/shared/.",
      from: { path: "^services/([^/]+)/" },
      to: { path: "^services/", pathNot: ["^services/($1|shared)/", "^services/[^/]+/(client|port)[.]ts$", ADAPTER] },
    },
    {
      name: "adapters-chosen-in-main",
      severity: "error",
      comment: "Services depend on the port; main.ts picks the adapter.",
      from: { path: "^services/([^/]+)/", pathNot: "^services/[^/]+/main[.]ts$" },
      to: { path: ADAPTER, pathNot: "^services/$1/" },
    },
    {
      name: "cli-through-clients",
      severity: "error",
      comment: "The CLI talks to services through their client.ts (and services/shared/), never their internals.",
      from: { path: "^cli/" },
      to: { path: "^services/", pathNot: ["^services/shared/", "^services/[^/]+/client[.]ts$"] },
    },
    {
      name: "dashboard-talks-to-gateway-only",
      severity: "error",
      comment: "The dashboard reaches the platform over the gateway's HTTP/WebSocket API, never by importing a service.",
      from: { path: "^dashboard/" },
      to: { path: "^services/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "(^|/)(node_modules|dist)/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js", ".svelte"] },
  },
};
