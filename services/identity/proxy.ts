/**
 * The client address of a request, for the per-address limits on wrong passwords and kiosk tokens. Behind a reverse
 * proxy every request comes from the proxy, so X-Forwarded-For is read — but only when the peer is a proxy named in
 * ORRERY_TRUSTED_PROXIES: from anyone else the header is the client's own word, and believing it would let a
 * client pick a fresh address for every guess.
 */
import { BlockList, isIP } from "node:net";

/** An address or CIDR ("10.0.0.0/8", "::1", "fd00::/8"); the error says what is wrong with it. */
export function parseProxyEntry(entry: string): { address: string; prefix: number; family: "ipv4" | "ipv6" } {
  const [address = "", bits, extra] = entry.split("/");
  const v = isIP(address);
  if (!v || extra !== undefined) throw new Error(`"${entry}" is not an IP address or CIDR (e.g. 10.0.0.0/8, 127.0.0.1, ::1, fd00::/8)`);
  const max = v === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  if (!/^\d{1,3}$/.test(bits ?? String(max)) || prefix > max) throw new Error(`"${entry}": the prefix length must be 0…${max}`);
  return { address, prefix, family: v === 4 ? "ipv4" : "ipv6" };
}

export class TrustedProxies {
  private readonly list = new BlockList();
  readonly size: number;

  /** `entries`: addresses and CIDRs (parseProxyEntry); none trusts no proxy, and the peer is the client */
  constructor(entries: readonly string[] = []) {
    for (const e of entries) {
      const p = parseProxyEntry(e);
      this.list.addSubnet(p.address, p.prefix, p.family);
    }
    this.size = entries.length;
  }

  trusts(address: string): boolean {
    const v = isIP(address);
    return this.size > 0 && v !== 0 && this.list.check(address, v === 4 ? "ipv4" : "ipv6");
  }

  /**
   * The client behind `peer`: X-Forwarded-For is walked from the right (each proxy appends the address it saw) past
   * trusted proxies; the first address that is not one is the client. Entries left of it are the client's to write,
   * so they are never read. A malformed entry ends the walk at the last proxy.
   */
  clientOf(peer: string, forwardedFor: string | null): string {
    let client = unmapped(peer);
    if (!forwardedFor || !this.trusts(client)) return client;
    const hops = forwardedFor.split(",").map((h) => unmapped(h.trim()));
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!;
      if (!isIP(hop)) return client;
      client = hop;
      if (!this.trusts(hop)) return client;
    }
    return client;
  }
}

/** "::ffff:10.0.0.1" and "10.0.0.1" are one client for the limits */
const unmapped = (a: string) => (/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(a) ? a.slice(7) : a);
