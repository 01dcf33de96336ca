import { expect, test } from "bun:test";
import { NotReadyError, spawnUntilReady } from "../../helpers/process.ts";

const bun = (js: string) => [process.execPath, "-e", js];

test("resolves on the ready line with its match; later output is still read and can be awaited", async () => {
  const c = await spawnUntilReady(bun(`console.log("booting"); setTimeout(() => console.log("listening on 4242"), 50); setTimeout(() => console.log("second"), 150); setTimeout(() => {}, 5000);`), {
    ready: /listening on (\d+)/,
    timeoutMs: 10_000,
  });
  try {
    expect(c.match[1]).toBe("4242");
    expect(c.stdout()).toContain("booting");
    await c.until(/second/, { timeoutMs: 5000 });
  } finally {
    c.proc.kill();
    await c.proc.exited;
  }
});

test("the ready line may come on stderr", async () => {
  const c = await spawnUntilReady(bun(`console.error("Server is ready"); setTimeout(() => {}, 5000);`), { ready: /Server is ready/, stream: "stderr", timeoutMs: 10_000 });
  c.proc.kill();
  expect(await c.proc.exited).not.toBe(0);
});

test("a child that exits first is an error carrying what it wrote", async () => {
  const err = await spawnUntilReady(bun(`console.error("bad config: PORT"); process.exit(3);`), { ready: /ready/, timeoutMs: 10_000, name: "svc" }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(NotReadyError);
  expect((err as NotReadyError).reason).toBe("exited");
  expect((err as NotReadyError).message).toContain("bad config: PORT");
});

test("a child that stays silent past the deadline is killed and reported", async () => {
  const t0 = Date.now();
  const err = await spawnUntilReady(bun(`setTimeout(() => {}, 60000);`), { ready: /ready/, timeoutMs: 300 }).catch((e: unknown) => e);
  expect((err as NotReadyError).reason).toBe("timeout");
  expect(Date.now() - t0).toBeLessThan(5000);
});
