/** Binding credentials sealed with AES-256-GCM (services/broker/seal.ts) and the demo's key file (client.ts). */
import { expect, test } from "bun:test";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { demoBrokerSecretKey } from "../../../services/broker/client.ts";
import { newSecretKey, parseSecretKey, SealedSecretError, secretBox, SecretKeyFormatError } from "../../../services/broker/seal.ts";
import { tempDir } from "../../helpers/tmp.ts";

const box = secretBox(parseSecretKey(newSecretKey()));

test("a sealed value opens under its key and KV key only; the ciphertext differs each time and holds no plain text", () => {
  const a = box.seal('{"seed":"SUAAAA"}', "b.x.y");
  const b = box.seal('{"seed":"SUAAAA"}', "b.x.y");
  expect(a.ct).not.toBe(b.ct);
  expect(a.iv).not.toBe(b.iv);
  expect(JSON.stringify(a)).not.toContain("SUAAAA");
  expect(box.open(a, "b.x.y")).toBe('{"seed":"SUAAAA"}');
  // moved under another binding's key: does not open
  expect(() => box.open(a, "b.x.z")).toThrow(SealedSecretError);
  expect(() => box.open({ ...a, tag: b.tag }, "b.x.y")).toThrow(/altered/);
  const other = secretBox(parseSecretKey(newSecretKey()));
  try {
    other.open(a, "b.x.y");
    throw new Error("opened under another key");
  } catch (e) {
    expect(e).toBeInstanceOf(SealedSecretError);
    expect((e as SealedSecretError).code).toBe("wrong_key");
    expect((e as Error).message).toContain(box.kid);
    expect((e as Error).message).toContain(other.kid);
  }
});

test("the key setting: 32 bytes of base64 or base64url, anything else named and refused", () => {
  const k = newSecretKey();
  expect(parseSecretKey(k).length).toBe(32);
  expect(parseSecretKey(Buffer.from(k, "base64").toString("base64url")).equals(parseSecretKey(k))).toBe(true);
  expect(() => parseSecretKey("c2hvcnQ=")).toThrow(SecretKeyFormatError);
  expect(() => parseSecretKey("c2hvcnQ=")).toThrow("ORRERY_BROKER_SECRET_KEY: expected 32 bytes as base64 (openssl rand -base64 32), got 5 bytes");
  expect(() => parseSecretKey("not base64 at all!")).toThrow(/not base64/);
  expect(() => secretBox(new Uint8Array(16))).toThrow(SecretKeyFormatError);
});

test("the demo's key: generated once into <data dir>/broker/secret-key (0600), the same at every later start", () => {
  const { dir, cleanup } = tempDir();
  try {
    const first = demoBrokerSecretKey(dir);
    expect(first.file).toBe(join(dir, "broker", "secret-key"));
    expect(statSync(first.file).mode & 0o777).toBe(0o600);
    expect(parseSecretKey(first.key).length).toBe(32);
    expect(demoBrokerSecretKey(dir).key).toBe(first.key);
    writeFileSync(first.file, "garbage\n");
    expect(() => demoBrokerSecretKey(dir)).toThrow(`${first.file}: expected 32 bytes`);
  } finally {
    cleanup();
  }
});
