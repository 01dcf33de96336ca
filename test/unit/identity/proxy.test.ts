/** The client address behind trusted proxies (services/identity/proxy.ts) and its config key. */
import { describe, expect, test } from "bun:test";
import { z } from "zod";
import { parseProxyEntry, TrustedProxies } from "../../../services/identity/proxy.ts";
import { ConfigError, IdentityKeys, parseEnv } from "../../../services/shared/config.ts";

describe("TrustedProxies.clientOf", () => {
  const p = new TrustedProxies(["10.0.0.0/8", "::1", "fd00::/8"]);
  test("no trusted proxies: the peer, whatever the header says", () => {
    expect(new TrustedProxies().clientOf("10.1.1.1", "203.0.113.7")).toBe("10.1.1.1");
  });
  test("an untrusted peer: the peer", () => {
    expect(p.clientOf("198.51.100.1", "203.0.113.7")).toBe("198.51.100.1");
  });
  test("a trusted peer: the right-most untrusted entry; entries left of it are never read", () => {
    expect(p.clientOf("10.1.1.1", "203.0.113.7")).toBe("203.0.113.7");
    expect(p.clientOf("10.1.1.1", "1.2.3.4, 203.0.113.7")).toBe("203.0.113.7");
    expect(p.clientOf("::1", "203.0.113.7 , 10.2.2.2, fd00::5")).toBe("203.0.113.7");
    expect(p.clientOf("::ffff:10.1.1.1", "2001:db8::1")).toBe("2001:db8::1");
  });
  test("only trusted entries: the left-most; a malformed entry stops at the last proxy", () => {
    expect(p.clientOf("10.1.1.1", "10.3.3.3, 10.2.2.2")).toBe("10.3.3.3");
    expect(p.clientOf("10.1.1.1", "evil, 10.2.2.2")).toBe("10.2.2.2");
    expect(p.clientOf("10.1.1.1", "")).toBe("10.1.1.1");
    expect(p.clientOf("10.1.1.1", null)).toBe("10.1.1.1");
  });
  test("IPv4-mapped addresses count as their IPv4 address", () => {
    expect(new TrustedProxies().clientOf("::ffff:127.0.0.1", null)).toBe("127.0.0.1");
  });
});

describe("ORRERY_TRUSTED_PROXIES", () => {
  const schema = z.object({ ORRERY_TRUSTED_PROXIES: IdentityKeys.ORRERY_TRUSTED_PROXIES });
  test("a comma-separated list of addresses and CIDRs; empty by default", () => {
    expect(parseEnv(schema, {}).ORRERY_TRUSTED_PROXIES).toEqual([]);
    expect(parseEnv(schema, { ORRERY_TRUSTED_PROXIES: " 10.0.0.0/8, 127.0.0.1,::1 ,fd00::/8" }).ORRERY_TRUSTED_PROXIES).toEqual(["10.0.0.0/8", "127.0.0.1", "::1", "fd00::/8"]);
  });
  test("a bad entry is refused with the key's name and the entry", () => {
    for (const bad of ["proxy.example", "10.0.0.0/33", "::1/129", "10.0.0.1/8/1", "10.0.0.0/x"]) {
      expect(() => parseEnv(schema, { ORRERY_TRUSTED_PROXIES: bad })).toThrow(ConfigError);
      expect(() => parseEnv(schema, { ORRERY_TRUSTED_PROXIES: bad })).toThrow(`"${bad}" is not an IP address or CIDR`);
      expect(() => parseProxyEntry(bad)).toThrow(bad);
    }
  });
});
