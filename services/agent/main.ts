/**
 * orrery-agent: reads config (flags > env > JSON file > defaults), connects to NATS, scans on an interval.
 * Built into one executable by scripts/build-agent.sh (`bun build --compile`); runs with no Bun or Node installed.
 */
import { readFileSync } from "node:fs";
import { connectBus } from "../shared/bus.ts";
import { agentInboxPrefix } from "../shared/nats-auth.ts";
import { onShutdown } from "../shared/lifecycle.ts";
import { makeLogger, ready } from "../shared/log.ts";
import { natsConnected, startObservability } from "../shared/metrics-registry.ts";
import { makeAgent } from "./agent.ts";
import { AgentConfigError, resolveAgentConfig, USAGE } from "./config.ts";
import { describePids, readHostname, scanHost } from "./scan.ts";

let resolved;
try {
  resolved = resolveAgentConfig(process.argv.slice(2), process.env, (p) => readFileSync(p, "utf8"));
} catch (e) {
  if (!(e instanceof AgentConfigError)) throw e;
  process.stderr.write(`orrery-agent: ${e.message}\n`);
  process.exit(2);
}
if (resolved.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const cfg = resolved.config;
const log = makeLogger("agent", cfg.quiet);
// The host's name, not the container's when the agent runs in one with the host's /proc and /etc mounted.
const host = cfg.hostId ?? readHostname({ procRoot: cfg.procRoot, etcRoot: cfg.etcRoot });
let bus;
try {
  // With credentials of its own an agent may only publish its host's subjects (services/shared/nats-auth.ts): the
  // platform's services declare the streams, and replies come to the inbox its user may read. A broker tenant's user
  // (services/broker/tenant.ts) may publish its tenant's subjects and read `_INBOX.>`, the client's default inbox.
  const ownCredentials = cfg.natsUser !== undefined || cfg.natsToken !== undefined || cfg.natsNkeySeed !== undefined || cfg.tenant !== undefined;
  bus = await connectBus({
    url: cfg.natsUrl,
    prefix: cfg.prefix,
    name: `orrery-agent-${host}`,
    user: cfg.natsUser,
    pass: cfg.natsPass,
    token: cfg.natsToken,
    nkeySeed: cfg.natsNkeySeed,
    declare: !ownCredentials,
    inboxPrefix: cfg.tenant === undefined ? agentInboxPrefix(host) : undefined,
  });
} catch (e) {
  log.error("cannot connect to NATS", { url: cfg.natsUrl, error: String(e) });
  process.exit(1);
}
const agent = makeAgent(bus, log, {
  host,
  intervalMs: cfg.intervalMs,
  fullEvery: cfg.fullEvery,
  tenant: cfg.tenant,
  scan: () => scanHost({ procRoot: cfg.procRoot, etcRoot: cfg.etcRoot }),
  describe: (pids) => describePids(cfg.procRoot, pids, cfg.etcRoot),
});
const shutdown = async (code: number) => {
  await agent.stop();
  await bus.close();
  process.exit(code);
};
if (cfg.once) {
  try {
    const r = await agent.scanOnce();
    ready("agent", { host, once: true, ...(cfg.tenant === undefined ? {} : { tenant: cfg.tenant }), ...r });
    await shutdown(0);
  } catch (e) {
    log.error("scan failed", { error: String(e) });
    await shutdown(1);
  }
}
// Stops within a deadline whatever state NATS is in (a publish in flight may wait 30 s for a dead server). A standalone
// agent (systemd, a container) has no supervisor whose death it should follow.
const obs = startObservability("agent", process.env, log);
onShutdown(async () => {
  await agent.stop();
  await bus.close();
  obs.stop();
}, { watchParent: false });
obs.markReady(natsConnected(bus));
agent.start();
ready("agent", { host, intervalMs: cfg.intervalMs, prefix: cfg.prefix, ...(cfg.tenant === undefined ? {} : { tenant: cfg.tenant }) });
