#!/usr/bin/env node
// A subscriber to copy: follows Orrery's topology and prints one JSON line per event.
//   node example.mjs ws <gateway url> [token]                 the WebSocket feed (token: an API token, `orrery token create`)
//   node example.mjs js <nats url> <prefix> <durable>          a JetStream durable consumer
// Or set ORRERY_TOKEN instead of passing the token.
import { followJetStream, followWebSocket } from "./index.mjs";

const [mode, target, ...rest] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
if (mode === "ws" && target) {
  const f = followWebSocket({
    url: target,
    token: rest[0] ?? process.env.ORRERY_TOKEN,
    onSnapshot: (t) => out({ event: "snapshot", rev: t.rev, nodes: t.nodes.size, edges: t.edges.size }),
    onDelta: (d, t) => out({ event: "delta", rev: d.rev, nodes: t.nodes.size, edges: t.edges.size }),
    onResync: (why) => out({ event: "resync", why }),
  });
  process.on("SIGTERM", () => (f.stop(), process.exit(0)));
  process.on("SIGINT", () => (f.stop(), process.exit(0)));
} else if (mode === "js" && target && rest[0] && rest[1]) {
  const f = await followJetStream({ servers: target, prefix: rest[0], durable: rest[1], onDelta: (d) => out({ event: "delta", rev: d.rev, nodes: d.nodesUpserted.length }) });
  out({ event: "ready" });
  const stop = async () => (await f.stop(), process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} else {
  process.stderr.write("usage: node example.mjs ws <gateway url> [token] | js <nats url> <prefix> <durable>\n");
  process.exit(2);
}
