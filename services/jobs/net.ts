/** Small network helpers for the built-in jobs: target and port lists, TCP connect, TLS certificate expiry. */
import { isIP, createConnection } from "node:net";
import tls from "node:tls";
import { JobInputError } from "./sdk.ts";

const ipv4ToInt = (ip: string) => ip.split(".").reduce((n, o) => n * 256 + Number(o), 0);
const intToIpv4 = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");

/** Hosts, IPv4/IPv6 addresses and IPv4 CIDRs → the list of targets (network and broadcast addresses of a /n<31 skipped). */
export function expandTargets(targets: string[], maxHosts: number): string[] {
  const out: string[] = [];
  for (const t of targets) {
    const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(t);
    if (m) {
      const bits = Number(m[2]);
      if (isIP(m[1]!) !== 4 || bits > 32) throw new JobInputError(`targets: "${t}" is not an IPv4 CIDR`);
      const size = 2 ** (32 - bits);
      const base = ipv4ToInt(m[1]!) - (ipv4ToInt(m[1]!) % size);
      const [first, last] = size > 2 ? [base + 1, base + size - 2] : [base, base + size - 1];
      if (out.length + (last - first + 1) > maxHosts) throw new JobInputError(`targets: ${t} has ${last - first + 1} hosts, over maxHosts ${maxHosts}`);
      for (let n = first; n <= last; n++) out.push(intToIpv4(n));
    } else if (t.includes("/")) throw new JobInputError(`targets: "${t}": only IPv4 CIDRs are supported`);
    else out.push(t);
    if (out.length > maxHosts) throw new JobInputError(`targets: more than maxHosts ${maxHosts} hosts`);
  }
  return [...new Set(out)];
}

/** [22, "8000-8010"] → sorted unique ports. */
export function expandPorts(ports: (number | string)[], max = 65536): number[] {
  const out = new Set<number>();
  for (const p of ports) {
    const m = typeof p === "number" ? [String(p), String(p), String(p)] : /^(\d+)(?:-(\d+))?$/.exec(p);
    if (!m) throw new JobInputError(`ports: "${p}" is not a port or a range a-b`);
    const a = Number(m[1]);
    const b = Number(m[2] ?? m[1]);
    if (a < 1 || b > 65535 || a > b) throw new JobInputError(`ports: "${p}" is outside 1-65535`);
    for (let x = a; x <= b; x++) out.add(x);
    if (out.size > max) throw new JobInputError(`ports: more than ${max} ports`);
  }
  return [...out].sort((x, y) => x - y);
}

export type ConnectResult = { open: true; ms: number; ip: string } | { open: false; reason: "refused" | "timeout" | "error"; error: string };

/** One TCP connect: open (with latency and the address it reached), refused, or timed out. */
export function tcpConnect(host: string, port: number, timeoutMs: number): Promise<ConnectResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = createConnection({ host, port });
    const done = (r: ConnectResult) => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ open: false, reason: "timeout", error: `no answer in ${timeoutMs} ms` }), timeoutMs);
    s.once("connect", () => done({ open: true, ms: performance.now() - t0, ip: s.remoteAddress ?? host }));
    s.once("error", (e: NodeJS.ErrnoException) => done({ open: false, reason: e.code === "ECONNREFUSED" ? "refused" : "error", error: e.message }));
  });
}

/** The peer certificate's expiry (not verifying it: an expired or self-signed cert is exactly what we want to see). */
export function tlsCertificate(host: string, port: number, servername: string, timeoutMs: number): Promise<{ validTo: number; subject: string; issuer: string; authorized: boolean; error: string | null }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host, port, servername: isIP(servername) ? undefined : servername, rejectUnauthorized: false }, () => {
      const c = s.getPeerCertificate();
      clearTimeout(timer);
      s.end();
      if (!c?.valid_to) return reject(new Error("no peer certificate"));
      resolve({
        validTo: Date.parse(c.valid_to),
        subject: String(c.subject?.CN ?? ""),
        issuer: String(c.issuer?.CN ?? ""),
        authorized: s.authorized,
        error: s.authorizationError ? String(s.authorizationError) : null,
      });
    });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`TLS handshake took over ${timeoutMs} ms`));
    }, timeoutMs);
    s.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
