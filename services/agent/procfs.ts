// Pure parsers for the Linux /proc and /etc files the host agent reads. No I/O here: scan.ts reads, these decode,
// so every quirk (little-endian addresses, comm with parentheses, cgroup layouts) is testable from fixture text.

export type NetProto = "tcp" | "udp";
export type SocketState = "listen" | "established" | "other";

export interface ProcNetRow {
  proto: NetProto;
  family: 4 | 6;
  localIp: string;
  localPort: number;
  remoteIp: string;
  remotePort: number;
  state: SocketState;
  /** Raw kernel state code, e.g. 0x0A for TCP_LISTEN. */
  stateCode: number;
  uid: number;
  inode: number;
}

const TCP_ESTABLISHED = 0x01;
const TCP_CLOSE = 0x07;
const TCP_LISTEN = 0x0a;

/**
 * Parses /proc/net/{tcp,tcp6,udp,udp6}. The kernel prints each address as 32-bit words in host byte order (so
 * little-endian on every platform we run on) and the port already in network order, hence the byte swap on
 * addresses only. UDP has no LISTEN: a bound, unconnected UDP socket is TCP_CLOSE with a zero remote, and a
 * connect()ed one is TCP_ESTABLISHED.
 */
export function parseProcNetTcp(text: string, family: 4 | 6, proto: NetProto = "tcp"): ProcNetRow[] {
  // Hot path (one row per socket, thousands per scan): fields are found by scanning for blanks rather than by
  // splitting each line with a regex, and each distinct address is decoded once (a host has few).
  const rows: ProcNetRow[] = [];
  const ips = new Map<string, string | null>();
  const endpoint = (s: string) => {
    const colon = s.indexOf(":");
    if (colon < 0) return null;
    const hex = s.slice(0, colon);
    let ip = ips.get(hex);
    if (ip === undefined) ips.set(hex, (ip = family === 4 ? decodeIPv4Hex(hex) : decodeIPv6Hex(hex)));
    const port = parseInt(s.slice(colon + 1), 16);
    return ip === null || !Number.isFinite(port) ? null : { ip, port };
  };
  const f: string[] = new Array(10);
  let pos = text.indexOf("\n") + 1; // the header line
  if (pos === 0) return rows;
  while (pos < text.length) {
    let end = text.indexOf("\n", pos);
    if (end < 0) end = text.length;
    let n = 0;
    let i = pos;
    while (n < 10) {
      while (i < end && (text.charCodeAt(i) === 32 || text.charCodeAt(i) === 9)) i++;
      if (i >= end) break;
      const start = i;
      while (i < end && text.charCodeAt(i) !== 32 && text.charCodeAt(i) !== 9) i++;
      f[n++] = text.slice(start, i);
    }
    pos = end + 1;
    if (n < 10) continue;
    const local = endpoint(f[1]!);
    const remote = endpoint(f[2]!);
    if (!local || !remote) continue;
    const stateCode = parseInt(f[3]!, 16);
    const uid = Number(f[7]);
    const inode = Number(f[9]);
    if (!Number.isFinite(stateCode) || !Number.isFinite(uid) || !Number.isFinite(inode)) continue;
    rows.push({
      proto,
      family,
      localIp: local.ip,
      localPort: local.port,
      remoteIp: remote.ip,
      remotePort: remote.port,
      state: socketState(proto, stateCode, remote),
      stateCode,
      uid,
      inode,
    });
  }
  return rows;
}

function socketState(proto: NetProto, code: number, remote: { ip: string; port: number }): SocketState {
  if (proto === "tcp") {
    if (code === TCP_LISTEN) return "listen";
    if (code === TCP_ESTABLISHED) return "established";
    return "other";
  }
  if (code === TCP_ESTABLISHED) return "established";
  if (code === TCP_CLOSE && remote.port === 0 && isUnspecified(remote.ip)) return "listen";
  return "other";
}

function isUnspecified(ip: string): boolean {
  return ip === "0.0.0.0" || ip === "::";
}

/** "0100007F" → "127.0.0.1" (one little-endian 32-bit word). */
export function decodeIPv4Hex(hex: string): string | null {
  if (hex.length !== 8) return null;
  const n = parseInt(hex, 16);
  if (!Number.isFinite(n)) return null;
  return `${n & 0xff}.${(n >>> 8) & 0xff}.${(n >>> 16) & 0xff}.${n >>> 24}`;
}

/**
 * Four little-endian 32-bit words → canonical RFC 5952 text. IPv4-mapped addresses (::ffff:a.b.c.d, what a dual-stack
 * socket reports for an IPv4 peer) come back as plain "a.b.c.d" so one host has one spelling across families.
 */
export function decodeIPv6Hex(hex: string): string | null {
  if (hex.length !== 32) return null;
  const bytes = new Uint8Array(16);
  for (let w = 0; w < 4; w++) {
    const word = parseInt(hex.slice(w * 8, w * 8 + 8), 16);
    if (!Number.isFinite(word)) return null;
    bytes[w * 4] = word & 0xff;
    bytes[w * 4 + 1] = (word >>> 8) & 0xff;
    bytes[w * 4 + 2] = (word >>> 16) & 0xff;
    bytes[w * 4 + 3] = word >>> 24;
  }
  let mapped = bytes[10] === 0xff && bytes[11] === 0xff;
  for (let i = 0; i < 10 && mapped; i++) if (bytes[i] !== 0) mapped = false;
  if (mapped) return `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  return formatIPv6Groups(groups);
}

function formatIPv6Groups(groups: number[]): string {
  // Longest run of two or more zero groups becomes "::" (first run wins a tie), per RFC 5952 §4.2.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

export interface ProcStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  utime: number;
  stime: number;
  /** Clock ticks after boot (field 22). */
  starttime: number;
}

/**
 * Parses /proc/<pid>/stat. comm may contain spaces and parentheses ("a b) c"), so it runs from the first "(" to the
 * last ")"; the numbered fields are counted from there.
 */
export function parseProcStat(text: string): ProcStat | null {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) return null;
  const pid = Number(text.slice(0, open).trim());
  const comm = text.slice(open + 1, close);
  // rest[0] is field 3 (state), so field n is rest[n - 3].
  const rest = text.slice(close + 2).trim().split(" ");
  if (rest.length < 20 || !Number.isInteger(pid)) return null;
  return {
    pid,
    comm,
    state: rest[0]!,
    ppid: Number(rest[1]),
    utime: Number(rest[11]),
    stime: Number(rest[12]),
    starttime: Number(rest[19]),
  };
}

/** Real uid from /proc/<pid>/status ("Uid:\treal\teffective\tsaved\tfs"). */
export function parseStatusUid(text: string): number | null {
  const m = /^Uid:\s+(\d+)/m.exec(text);
  return m ? Number(m[1]) : null;
}

/** /proc/<pid>/cmdline: NUL-separated argv with a trailing NUL; empty for kernel threads and zombies. */
export function parseCmdline(buf: Uint8Array): string[] {
  if (buf.length === 0) return [];
  const text = new TextDecoder().decode(buf);
  const parts = text.split("\0");
  if (parts[parts.length - 1] === "") parts.pop();
  return parts;
}

/** /etc/passwd → uid → login name. The first entry for a uid wins, as getpwuid does. */
export function parsePasswd(text: string): Map<number, string> {
  const users = new Map<number, string>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const f = line.split(":");
    if (f.length < 3) continue;
    const uid = Number(f[2]);
    if (f[0] && Number.isInteger(uid) && !users.has(uid)) users.set(uid, f[0]);
  }
  return users;
}

// A 64-hex container id as the runtimes spell it in cgroup paths:
//   /docker/<id>                                   cgroup v1, docker
//   /system.slice/docker-<id>.scope                cgroup v2 + systemd, docker
//   /kubepods/besteffort/pod<uid>/<id>             cgroup v1, kubelet (cgroupfs driver)
//   /kubepods.slice/…/cri-containerd-<id>.scope    systemd driver; also crio-<id>.scope
//   /system.slice/containerd.service/…:cri-containerd:<id>
//   /machine.slice/libpod-<id>.scope, /libpod_parent/libpod-<id>   podman
// "libpod-conmon-<id>" is podman's monitor process, not the container, so it does not count.
const CONTAINER_ID = /(?:^|[/:-])([0-9a-f]{64})(?:\.scope)?(?=$|\/)/;

/** /proc/<pid>/cgroup → container id, or null for a process outside any container we recognise. */
export function parseCgroup(text: string): string | null {
  for (const line of text.split("\n")) {
    // "hierarchy-ID:controllers:path"; the path itself may contain ':' (containerd's systemd-driver names).
    const first = line.indexOf(":");
    const second = first < 0 ? -1 : line.indexOf(":", first + 1);
    if (second < 0) continue;
    const path = line.slice(second + 1);
    for (const seg of path.split("/").reverse()) {
      if (seg.includes("conmon")) continue;
      const m = CONTAINER_ID.exec(seg);
      if (m) return m[1]!;
    }
  }
  return null;
}

/** "socket:[12345]" (readlink of /proc/<pid>/fd/N) → 12345; anything else (files, pipes, anon inodes) → null. */
export function socketInodeFromLink(link: string): number | null {
  if (!link.startsWith("socket:[") || !link.endsWith("]")) return null;
  const n = Number(link.slice(8, -1));
  return Number.isInteger(n) ? n : null;
}

/** /proc/meminfo → bytes for the keys asked for ("MemTotal: 24683656 kB"). */
export function parseMeminfo(text: string): { memTotalBytes: number; memAvailableBytes: number } {
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { memTotalBytes: kb("MemTotal"), memAvailableBytes: kb("MemAvailable") };
}

/** /proc/loadavg → 1-minute load. */
export function parseLoadavg(text: string): number {
  const n = Number(text.trim().split(/\s+/)[0]);
  return Number.isFinite(n) ? n : 0;
}

/** /proc/stat → boot time (seconds since epoch) and the number of cpuN lines (online CPUs). */
export function parseSystemStat(text: string): { btime: number; cpus: number } {
  let btime = 0;
  let cpus = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("btime ")) btime = Number(line.slice(6));
    else if (line.startsWith("cpu") && line.charCodeAt(3) >= 48 && line.charCodeAt(3) <= 57) cpus++;
  }
  return { btime, cpus };
}

/** /etc/os-release → PRETTY_NAME (unquoted), or null. */
export function parseOsRelease(text: string): string | null {
  const m = /^PRETTY_NAME=(.*)$/m.exec(text);
  if (!m) return null;
  let v = m[1]!.trim();
  if (v.length >= 2 && (v[0] === '"' || v[0] === "'") && v[v.length - 1] === v[0]) v = v.slice(1, -1);
  return v.replace(/\\(.)/g, "$1");
}

/** /proc/<pid>/statm → resident set in pages (second field). */
export function parseStatmRssPages(text: string): number {
  const n = Number(text.split(" ")[1]);
  return Number.isFinite(n) ? n : 0;
}

/**
 * /proc/<pid>/net/fib_trie → the IPv4 addresses local to that network namespace: the leaves marked "/32 host LOCAL"
 * (the kernel's local routing table, what `ip addr` shows). Each appears under both the Main and Local tables, and
 * network/broadcast leaves ("/24 link UNICAST", "/32 link BROADCAST") are not addresses of the host.
 */
export function parseFibTrieLocal(text: string): string[] {
  const out = new Set<string>();
  let leaf: string | null = null;
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (t.startsWith("|-- ")) leaf = t.slice(4);
    else if (t.startsWith("+-- ") || t.endsWith(":")) leaf = null;
    else if (leaf !== null && t.startsWith("/32 host LOCAL")) out.add(leaf);
  }
  return [...out];
}

const IFA_SCOPE_HOST = 0x10;

/**
 * /proc/<pid>/net/if_inet6 ("addr ifindex prefixlen scope flags name", the address as 32 hex digits in network
 * order) → that namespace's IPv6 addresses, loopback (host scope) excluded, as os.networkInterfaces() lists them.
 */
export function parseIfInet6(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || f[0]!.length !== 32 || !/^[0-9a-fA-F]{32}$/.test(f[0]!)) continue;
    if (parseInt(f[3]!, 16) === IFA_SCOPE_HOST) continue;
    const groups: number[] = [];
    for (let i = 0; i < 32; i += 4) groups.push(parseInt(f[0]!.slice(i, i + 4), 16));
    out.push(formatIPv6Groups(groups));
  }
  return [...new Set(out)];
}
