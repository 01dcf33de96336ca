import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { TOPOLOGY_LAUNCH_ENV, topologyLaunchEnv } from "../../../services/topology/client.ts";

const LD_SO = "/lib64/ld-linux-x86-64.so.2";

describe("the topology service's launch environment", () => {
  test("sets the JSC memory budget and glibc's malloc thresholds; an operator's own value of either wins", () => {
    expect(topologyLaunchEnv({})).toEqual({ ...TOPOLOGY_LAUNCH_ENV });
    const mine = topologyLaunchEnv({ GLIBC_TUNABLES: "glibc.malloc.arena_max=1", BUN_JSC_forceRAMSize: "" });
    expect(mine.GLIBC_TUNABLES).toBe("glibc.malloc.arena_max=1");
    // an empty variable is not a choice
    expect(mine.BUN_JSC_forceRAMSize).toBe(String(512 * 1024 * 1024));
  });

  test.skipIf(!existsSync(LD_SO))("this machine's glibc takes the malloc tunables as written (it ignores ones it cannot parse)", () => {
    const r = Bun.spawnSync([LD_SO, "--list-tunables"], { env: { GLIBC_TUNABLES: TOPOLOGY_LAUNCH_ENV.GLIBC_TUNABLES! } });
    const out = r.stdout.toString();
    expect(out).toMatch(/glibc\.malloc\.mmap_threshold: 0x20000\b/);
    expect(out).toMatch(/glibc\.malloc\.trim_threshold: 0x20000\b/);
  });
});
