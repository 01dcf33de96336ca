/**
 * The identity store on a real nats-server: a directory snapshot is stored in parts and made current only by its
 * pointer, so a save that fails halfway leaves the previous users and groups current (for this process and for any
 * other that follows the bucket); a good save replaces them and removes the old parts; tokens and revocations reach
 * another process's copy.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Kvm } from "@nats-io/kv";
import { connectBus, type Bus } from "../../../services/shared/bus.ts";
import { makeLogger } from "../../../services/shared/log.ts";
import type { DirectorySnapshot, DirectoryUser } from "../../../services/identity/directory/port.ts";
import { IdentityStore } from "../../../services/identity/store.ts";
import { RevisionConflict } from "../../../services/identity/kv.ts";
import { sha256 } from "../../../services/identity/secrets.ts";
import { startNats, type NatsServer } from "../../helpers/nats.ts";
import { uniquePrefix, waitFor } from "../../helpers/tmp.ts";

const log = makeLogger("store-test", true);
let nats: NatsServer;
let a: Bus;
let b: Bus;
let writer: IdentityStore;
let follower: IdentityStore;

beforeAll(async () => {
  nats = await startNats();
  const prefix = uniquePrefix("idstore");
  a = await connectBus({ url: nats.url, prefix, name: "writer" });
  b = await connectBus({ url: nats.url, prefix, name: "follower" });
  writer = await IdentityStore.open(a, log);
  follower = await IdentityStore.open(b, log);
});
afterAll(async () => {
  await writer?.close();
  await follower?.close();
  await a?.close();
  await b?.close();
  await nats?.stop();
});

/** `n` users of ~250 bytes each: 5000 make three parts */
function snapshot(tag: string, n: number): DirectorySnapshot {
  const users: DirectoryUser[] = Array.from({ length: n }, (_, i) => ({
    id: `${tag}-${i}`,
    login: `${tag}${i}`,
    upn: `${tag}${i}@corp.example`,
    mail: `${tag}${i}@corp.example`,
    displayName: `User ${i} of ${tag}`,
    dn: `cn=${tag}${i},ou=people,dc=corp,dc=example`,
    groups: ["cn=staff,ou=groups,dc=corp,dc=example"],
    disabled: false,
  }));
  return { at: Date.now(), users, groups: [{ id: "g1", dn: "cn=staff,ou=groups,dc=corp,dc=example", name: "staff", members: users.map((u) => u.id) }] };
}

/** the directory parts that hold a value in the bucket, as any KV client lists them (deleted keys excluded) */
const partKeys = async (bus: Bus) => {
  const kv = await new Kvm(bus.js).open(bus.topo.buckets.identity);
  const out: string[] = [];
  for await (const k of await kv.keys("dir.>")) if (k !== "dir.current") out.push(k);
  return out;
};

test("a good save becomes current for every follower; a save that fails halfway leaves the previous one, with no parts left over", async () => {
  const first = await writer.saveDirectory(snapshot("old", 5000));
  expect(first.parts).toBeGreaterThanOrEqual(3);
  await waitFor(() => follower.directory().byId.size === 5000, "the follower has the first generation");
  expect(follower.directory().byLogin.get("old42@corp.example")?.id).toBe("old-42");

  // a user that does not fit the schema at the end: the first parts are written, the last one fails
  const broken = snapshot("new", 5000);
  (broken.users[4999] as unknown as { groups: unknown }).groups = "not a list";
  await expect(writer.saveDirectory(broken)).rejects.toThrow();
  await Bun.sleep(300);
  for (const s of [writer, follower]) {
    expect(s.directory().pointer?.gen).toBe(first.gen);
    expect(s.directory().byId.size).toBe(5000);
    expect(s.directory().byId.has("new-1")).toBe(false);
  }
  const left = await partKeys(a);
  expect(left.length).toBe(first.parts);
  expect(left.every((k) => k.startsWith(`dir.${first.gen}.`))).toBe(true);

  const second = await writer.saveDirectory(snapshot("new", 10));
  await waitFor(() => follower.directory().pointer?.gen === second.gen, "the follower has the second generation");
  expect(follower.directory().byId.size).toBe(10);
  // the first generation's parts are gone from the bucket
  const now = await partKeys(a);
  expect(now.length).toBe(second.parts);
  expect(now.every((k) => k.startsWith(`dir.${second.gen}.`))).toBe(true);
});

test("a token and its revocation reach another process's copy", async () => {
  const hash = sha256("orr_store_test_token");
  await writer.putToken({ id: "0123456789abcdef", kind: "api", name: "t", role: "viewer", owner: "admin", hash, createdAt: Date.now(), expiresAt: null });
  await waitFor(() => follower.tokenByHash(hash), "the follower has the token", 5000, 20);
  await writer.deleteToken("0123456789abcdef");
  await waitFor(() => !follower.tokenByHash(hash), "the follower forgot the token", 5000, 20);
  // a process that opens the bucket later sees the state, not the history
  const late = await IdentityStore.open(b, log);
  expect(late.tokenByHash(hash)).toBeUndefined();
  expect(late.directory().byId.size).toBe(10);
  await late.close();
});

test("the local admin is created once, even by two gateways at the same moment", async () => {
  const u = { login: "admin", role: "admin" as const, hash: "x", createdAt: 1 };
  const results = await Promise.all([writer.createLocalUser(u), follower.createLocalUser({ ...u, hash: "y" })]);
  expect(results.sort()).toEqual([false, true]);
});

test("two syncs that read the same pointer: the first to move it wins, the other is refused and leaves no parts", async () => {
  const before = writer.directory().pointer!;
  await waitFor(() => follower.directory().pointer?.gen === before.gen, "both copies have the same pointer");
  const results = await Promise.allSettled([writer.saveDirectory(snapshot("racea", 20)), follower.saveDirectory(snapshot("raceb", 30))]);
  const won = results.filter((r) => r.status === "fulfilled");
  const lost = results.filter((r) => r.status === "rejected");
  expect(won.length).toBe(1);
  expect(lost.length).toBe(1);
  expect((lost[0] as PromiseRejectedResult).reason).toBeInstanceOf(RevisionConflict);
  const winner = (won[0] as PromiseFulfilledResult<{ gen: string; users: number }>).value;
  await waitFor(() => writer.directory().pointer?.gen === winner.gen && follower.directory().pointer?.gen === winner.gen, "both copies follow the winner");
  expect(follower.directory().byId.size).toBe(winner.users);
  const parts = await partKeys(a);
  expect(parts.length).toBeGreaterThan(0);
  expect(parts.every((k) => k.startsWith(`dir.${winner.gen}.`))).toBe(true);
});
