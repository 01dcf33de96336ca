#!/usr/bin/env bun
/**
 * `orrery <command>` — the operator's CLI (citty: subcommands, flags, generated --help).
 * Each command lives in cli/commands/<name>.ts and exports a citty command; add it to `subCommands` below.
 */
import { defineCommand, runMain } from "citty";
import { cypher } from "./commands/cypher.ts";
import { strategy } from "./commands/strategy.ts";
import { notify } from "./commands/notify.ts";
import { jobs } from "./commands/jobs.ts";
import { login, token } from "./commands/token.ts";
import { registry } from "./commands/registry.ts";

const main = defineCommand({
  meta: { name: "orrery", description: "Orrery: live topology and CMDB" },
  subCommands: {
    // one line per command, each file owns its command
    cypher,
    strategy,
    notify,
    jobs,
    login,
    token,
    registry,
  },
});

await runMain(main);
