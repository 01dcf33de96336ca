/**
 * The demo's NATS credentials: generated at first start into <data dir>/nats/credentials.json (mode 0600; the admin
 * user there is for the CLI and an operator's tools), completed when a service or agent host is new, and rendered into
 * the authorization block of the nats-server config the supervisor writes. Each child gets its own user through env.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { topologyFor } from "../../pipelines/streams.ts";
import { completeCredentials, generateCredentials, NatsCredentialsFile, renderAuthorization, usersOf, type NatsCredentials } from "../shared/nats-auth.ts";

export interface DemoNatsAuth {
  /** the authorization block for nats.conf */
  block: string;
  credentialsFile: string;
  /** the NATS_USER/NATS_PASS (and, for the agent, ORRERY_HOST_ID) a child gets; {} for nats-server itself */
  envFor: (child: string) => Record<string, string>;
}

export class NatsCredentialsError extends Error {
  override readonly name = "NatsCredentialsError";
}

export async function demoNatsAuth(dataDir: string, prefix: string, agentHost: string): Promise<DemoNatsAuth> {
  const dir = join(dataDir, "nats");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "credentials.json");
  let creds: NatsCredentials;
  if (existsSync(file)) {
    const r = NatsCredentialsFile.safeParse((() => {
      try {
        return JSON.parse(readFileSync(file, "utf8"));
      } catch (e) {
        throw new NatsCredentialsError(`${file} is not JSON (${(e as Error).message}): remove it to generate new NATS credentials`);
      }
    })());
    if (!r.success) throw new NatsCredentialsError(`${file} is not a credentials file (${r.error.issues[0]?.message}): remove it to generate new NATS credentials`);
    creds = completeCredentials(r.data, [agentHost]);
  } else creds = generateCredentials([agentHost]);
  writeFileSync(file, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  const block = renderAuthorization(await usersOf(topologyFor(prefix), creds));
  const agent = creds.agents[agentHost]!;
  return {
    block,
    credentialsFile: file,
    envFor: (child): Record<string, string> => {
      if (child === "nats") return {};
      if (child === "agent") return { NATS_USER: agent.user, NATS_PASS: agent.password, ORRERY_HOST_ID: agentHost };
      const c = creds.services[child];
      if (!c) throw new NatsCredentialsError(`no NATS user for the child "${child}"`);
      return { NATS_USER: c.user, NATS_PASS: c.password };
    },
  };
}
