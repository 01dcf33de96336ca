/**
 * The demo as `npm run demo` starts it, with auth on (its default): the banner says how to log in — the local admin's
 * generated password, this once — and that password opens the dashboard's API, which is closed without it. A second
 * start on the same data directory shows no password, only where it was printed.
 */
import { expect, test } from "bun:test";
import { startStack } from "../../helpers/stack.ts";
import { tempDir, uniquePrefix, waitFor } from "../../helpers/tmp.ts";
import { login } from "./stack.ts";

/** the supervisor's stderr once its banner (written just after its ready line) is there */
const bannerOf = (s: { logs(): string }) => waitFor(() => (s.logs().includes("Ctrl-C stops everything") ? s.logs() : ""), "the banner", 5000);

test("the demo starts with auth on and prints how to log in, the password only at the first start", async () => {
  const tmp = tempDir("orrery-demo-auth-");
  // the same install twice: its data directory and its prefix
  const env = { ORRERY_AUTH: "on", ORRERY_SIMULATE: "0", ORRERY_PREFIX: uniquePrefix("demoauth") };
  try {
    const first = await startStack(env, tmp.dir);
    let password: string;
    try {
      const banner = await bannerOf(first);
      const m = /Log in: +(\S+)\/login +as admin, password (\S+)\n.*shown only this once/.exec(banner);
      expect(m?.[1]).toBe(first.dashboard);
      password = m![2]!;
      expect((await fetch(`${first.dashboard}/api/snapshot`)).status).toBe(401);
      const { cookie } = await login(first.dashboard, "admin", password);
      expect((await fetch(`${first.dashboard}/api/me`, { headers: { cookie: cookie! } })).status).toBe(200);
      // the banner also says that the ingest wants tokens
      expect(banner).toContain("orrery token create --kind ingest --source alertmanager");
      // once: no service logged it
      expect(banner.split(password).length - 1).toBe(1);
    } finally {
      expect(await first.stop()).toBe(0);
    }
    const second = await startStack(env, tmp.dir);
    try {
      expect(await bannerOf(second)).toContain("with the password printed when");
      expect(second.logs()).not.toContain(password);
      expect((await login(second.dashboard, "admin", password)).res.status).toBe(200);
    } finally {
      expect(await second.stop()).toBe(0);
    }
  } finally {
    tmp.cleanup();
  }
}, 300_000);

test("with ORRERY_AUTH=off the banner says so", async () => {
  const stack = await startStack({ ORRERY_SIMULATE: "0" });
  try {
    expect(await bannerOf(stack)).toContain("Auth:       OFF (ORRERY_AUTH=off)");
    expect((await fetch(`${stack.dashboard}/api/me`)).status).toBe(200);
  } finally {
    expect(await stack.stop()).toBe(0);
    stack.cleanup();
  }
}, 300_000);
