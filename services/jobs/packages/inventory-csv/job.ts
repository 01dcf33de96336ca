/**
 * Static inventory import: CSV rows → one full item per host: host.seen + listener.seen for the hosts the inventory
 * introduces, entity.annotated for owner/team (the host's, and each port's owner on the service listening there), and
 * name.seen for each of its addresses (so connections to them show the inventory's name).
 *
 * `annotateOnly`: the hosts are discovered by agents (they are the authority on what runs and which IPs they hold);
 * the inventory adds only ownership and names, no host.seen or listeners.
 */
import { readFile } from "node:fs/promises";
import { inventoryEvents, parseInventory } from "../../inventory.ts";
import type { JobContext, JobItem } from "../../sdk.ts";

interface Params {
  path?: string;
  csv?: string;
  annotateOnly?: boolean;
}

export async function* run(ctx: JobContext<Params>): AsyncGenerator<JobItem> {
  const text = ctx.params.csv ?? (await readFile(ctx.params.path!, "utf8"));
  for (const h of parseInventory(text)) yield { key: h.host, host: h.host, full: true, events: inventoryEvents(h, ctx.params.annotateOnly ?? false) };
}
