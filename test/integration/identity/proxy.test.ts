/**
 * The per-address limit behind a reverse proxy: X-Forwarded-For names the client only when the peer is a trusted
 * proxy (ORRERY_TRUSTED_PROXIES), and only its right-most untrusted entry counts (what the proxy appended; what lies
 * left of it is the client's to write). Without the setting the header is ignored: every client is the peer.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startAuthStack, type AuthStack } from "./stack.ts";

let stack: AuthStack;

beforeAll(async () => {
  // the tests connect from loopback: that is "the proxy"
  stack = await startAuthStack({ env: { ORRERY_TRUSTED_PROXIES: "127.0.0.1, ::1", ORRERY_AUTH_FAILURES_PER_ADDRESS: "3", ORRERY_AUTH_FAILURES_PER_USER: "100" } });
}, 120_000);
afterAll(async () => {
  await stack?.stop();
});

let n = 0;
const attempt = (gateway: string, xff?: string) =>
  fetch(`${gateway}/api/login`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(xff ? { "x-forwarded-for": xff } : {}) },
    body: JSON.stringify({ login: `nobody${n++}`, password: "wrong" }),
  }).then((r) => r.status);

test("behind a trusted proxy each client has its own limit, whatever it writes left of the proxy's entry", async () => {
  for (let i = 0; i < 3; i++) expect(await attempt(stack.gateway, `198.51.100.${i}, 203.0.113.1`)).toBe(401);
  expect(await attempt(stack.gateway, "203.0.113.1")).toBe(429);
  // another client behind the same proxy is not held back by the first one's failures
  expect(await attempt(stack.gateway, "203.0.113.2")).toBe(401);
  // a chain of trusted proxies is walked past
  expect(await attempt(stack.gateway, "203.0.113.1, 127.0.0.1")).toBe(429);
});

test("without ORRERY_TRUSTED_PROXIES the header is ignored: all clients count as the peer", async () => {
  const other = await stack.anotherGateway({ ORRERY_TRUSTED_PROXIES: "" });
  for (let i = 0; i < 3; i++) expect(await attempt(other.url, `203.0.113.${10 + i}`)).toBe(401);
  expect(await attempt(other.url, "203.0.113.99")).toBe(429);
});

test("a malformed ORRERY_TRUSTED_PROXIES is refused at start, naming the entry", async () => {
  const err = await stack.anotherGateway({ ORRERY_TRUSTED_PROXIES: "10.0.0.0/8, proxy.example" }).then(
    () => "",
    (e: Error) => e.message,
  );
  expect(err).toContain("ORRERY_TRUSTED_PROXIES");
  expect(err).toContain('"proxy.example" is not an IP address or CIDR');
});
