/** Where the CLI finds its gateway and token: flag, then environment, then the config file (0600). */
import { afterAll, expect, test } from "bun:test";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CliConfigError, gatewayTarget, ingestTarget, readConfig, writeConfig } from "../../../cli/config.ts";
import { tempDir } from "../../helpers/tmp.ts";

const tmp = tempDir("orrery-cli-config-");
afterAll(() => tmp.cleanup());
const env = (more: Record<string, string> = {}) => ({ ORRERY_CONFIG: join(tmp.dir, "cli.json"), ...more });

test("flag over environment over file over default", () => {
  expect(gatewayTarget({}, env())).toEqual({ url: "http://127.0.0.1:7070", token: undefined });
  const file = writeConfig({ url: "http://gw:7070", token: "orr_file", ingestToken: "orr_ingest" }, env());
  expect(statSync(file).mode & 0o777).toBe(0o600);
  expect(gatewayTarget({}, env())).toEqual({ url: "http://gw:7070", token: "orr_file" });
  expect(gatewayTarget({}, env({ ORRERY_TOKEN: "orr_env" }))).toEqual({ url: "http://gw:7070", token: "orr_env" });
  expect(gatewayTarget({ token: "orr_flag", url: "http://flag" }, env({ ORRERY_TOKEN: "orr_env" }))).toEqual({ url: "http://flag", token: "orr_flag" });
  expect(ingestTarget({}, env())).toEqual({ url: "http://127.0.0.1:7071", token: "orr_ingest" });
});

test("a config file that is there but wrong is an error naming the file, never ignored", () => {
  writeFileSync(join(tmp.dir, "bad.json"), '{"token": 5}');
  expect(() => readConfig({ ORRERY_CONFIG: join(tmp.dir, "bad.json") })).toThrow(CliConfigError);
  expect(() => readConfig({ ORRERY_CONFIG: join(tmp.dir, "bad.json") })).toThrow(/bad\.json: token/);
  expect(readConfig({ ORRERY_CONFIG: join(tmp.dir, "none.json") })).toEqual({});
});
