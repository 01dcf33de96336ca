/**
 * The broker's launch settings for the demo supervisor: the key binding credentials are sealed with (seal.ts),
 * generated at first start into <data dir>/broker/secret-key (mode 0600) like the demo's other credentials, and
 * read back at every later start so the bindings already stored still open.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { newSecretKey, parseSecretKey } from "./seal.ts";

/** ORRERY_BROKER_SECRET_KEY for a demo in `dataDir`: the stored key, or a new one stored now. */
export function demoBrokerSecretKey(dataDir: string): { key: string; file: string } {
  const dir = join(dataDir, "broker");
  const file = join(dir, "secret-key");
  if (existsSync(file)) {
    const key = readFileSync(file, "utf8").trim();
    parseSecretKey(key, file);
    return { key, file };
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const key = newSecretKey();
  // wx: two starts racing on one data dir must not each write (and use) a different key
  writeFileSync(file, `${key}\n`, { mode: 0o600, flag: "wx" });
  chmodSync(file, 0o600);
  return { key, file };
}
