// One pass over /proc: host facts, every TCP/UDP socket, which process owns each socket, and the identity and cost
// of those processes. The agent turns this into discovery events; the parsing lives in procfs.ts.
//
// I/O choices, measured under Bun 1.4 on a 2-CPU VM: the fd walk (readdir + readlink per fd of every process) runs as
// async fs calls in parallel, ~25% faster than sync with 1,500 processes and no slower with one 6,000-fd process. The
// socket tables are read concurrently with it because each /proc/net/tcp{,6} read walks the kernel's whole
// established hash (~4 ms here even when nearly empty, more with thousands of TIME_WAITs). Per-process identity files
// are few (socket owners only) and read synchronously.

import { readdirSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { readdir, readFile, readlink } from "node:fs/promises";
import { cpus as osCpus, hostname as osHostname, networkInterfaces } from "node:os";
import {
  parseCgroup,
  parseCmdline,
  parseFibTrieLocal,
  parseIfInet6,
  parseLoadavg,
  parseMeminfo,
  parseOsRelease,
  parsePasswd,
  parseProcNetTcp,
  parseProcStat,
  parseStatmRssPages,
  parseStatusUid,
  parseSystemStat,
  socketInodeFromLink,
  type NetProto,
  type ProcNetRow,
  type ProcStat,
} from "./procfs.ts";
import { CLK_TCK, type HostFacts, type HostScan, type ProcessInfo, type SocketInfo, type WorkerCost } from "../../pipelines/contracts/host-scan.ts";

/** Who a blind spot is (stat and status are world-readable even when fds are not). */
export interface BlindSpot {
  pid: number;
  comm: string;
  user: string;
}

export interface ScanOptions {
  /** Where procfs is mounted; "/host/proc" when the agent runs in a container with the host's /proc mounted. */
  procRoot?: string;
  /** Where os-release, passwd and hostname are read from ("/host/etc" next to "/host/proc"). */
  etcRoot?: string;
  /**
   * Whose network namespace is the host's: "self" (the agent's own, /proc/net) or "init" (pid 1's, /proc/1/net).
   * Defaults to "init" when procRoot is not /proc: an agent in a container reading the host's /proc through a mount
   * would otherwise see /proc/net = its own namespace's sockets, and its own interfaces' IPs.
   */
  hostNetns?: "self" | "init";
}

const PAGE_SIZE = 4096;

const NET_TABLES: ReadonlyArray<{ file: string; proto: NetProto; family: 4 | 6 }> = [
  { file: "tcp", proto: "tcp", family: 4 },
  { file: "tcp6", proto: "tcp", family: 6 },
  { file: "udp", proto: "udp", family: 4 },
  { file: "udp6", proto: "udp", family: 6 },
];

export async function scanHost(opts: ScanOptions = {}): Promise<HostScan> {
  const proc = opts.procRoot ?? "/proc";
  const etc = opts.etcRoot ?? "/etc";
  const mode = opts.hostNetns ?? (proc === "/proc" ? "self" : "init");
  const at = Date.now();
  // pid 1's view when asked for, unless it cannot be read (hidepid): then ours, which is all we can see.
  const net = mode === "init" && netnsId(`${proc}/1/net`) !== null ? `${proc}/1/net` : `${proc}/net`;

  const systemStat = parseSystemStat(readText(`${proc}/stat`) ?? "");
  const facts = readFacts(proc, etc, systemStat.cpus, mode === "init" ? net : null);

  // The socket tables and the fd walk are independent; running them together overlaps the kernel's table walk
  // (milliseconds with many TIME_WAIT sockets) with the fd readlinks.
  const [tables, { owners, unreadablePids, inodesByPid }] = await Promise.all([
    Promise.all(NET_TABLES.map((t) => readTextAsync(`${net}/${t.file}`))),
    mapSocketOwners(proc),
  ]);
  const rows: (ProcNetRow & { netns?: number })[] = NET_TABLES.flatMap((t, i) => {
    const text = tables[i];
    return text == null ? [] : parseProcNetTcp(text, t.family, t.proto);
  });
  rows.push(...otherNetnsRows(proc, netnsId(net), rows, inodesByPid));
  const leaders = workerLeaders(rows, owners, inodesByPid);
  // Only a process of the same program is a worker: systemd (pid 1) holds socket-activated listeners of others.
  const stats = new Map<number, ProcStat | null>();
  const statOf = (pid: number) => {
    if (!stats.has(pid)) stats.set(pid, parseProcStat(readText(`${proc}/${pid}/stat`) ?? ""));
    return stats.get(pid) ?? null;
  };
  for (const [w, l] of leaders) if (statOf(w)?.comm !== statOf(l)?.comm) leaders.delete(w);

  const users = parsePasswd(readText(`${etc}/passwd`) ?? "");
  const processes = new Map<number, ProcessInfo>();
  // owners also holds unix sockets; only owners of listed sockets count.
  const ownerPids = new Set<number>();
  const ownerOf = (inode: number) => {
    const pid = inode === 0 ? undefined : owners.get(inode);
    return pid === undefined ? undefined : (leaders.get(pid) ?? pid);
  };
  for (const r of rows) {
    const pid = ownerOf(r.inode);
    if (pid !== undefined) ownerPids.add(pid);
  }
  for (const pid of ownerPids) {
    const info = readProcess(proc, pid, systemStat.btime, users);
    if (info) processes.set(pid, info);
  }

  const workers = new Map<number, WorkerCost>();
  for (const [w, l] of leaders) {
    const st = statOf(w);
    if (!st || !processes.has(l)) continue;
    const statm = readText(`${proc}/${w}/statm`);
    workers.set(w, {
      leader: l,
      startTime: Math.round((systemStat.btime + st.starttime / CLK_TCK) * 1000),
      cpuTicks: st.utime + st.stime,
      rssBytes: statm === null ? 0 : parseStatmRssPages(statm) * PAGE_SIZE,
    });
  }

  const sockets: SocketInfo[] = rows.map((r) => {
    const pid = ownerOf(r.inode);
    const s: SocketInfo = {
      proto: r.proto,
      family: r.family,
      localIp: r.localIp,
      localPort: r.localPort,
      remoteIp: r.remoteIp,
      remotePort: r.remotePort,
      state: r.state,
      inode: r.inode,
      uid: r.uid,
      // A process that exited between the fd walk and the identity read is not reported as an owner.
      pid: pid !== undefined && processes.has(pid) ? pid : null,
    };
    if (r.netns !== undefined) s.netns = r.netns;
    return s;
  });

  return { at, facts, sockets, processes, unreadablePids, workers };
}

/**
 * Identifies a network namespace by the inode of its tcp table: procfs gives each namespace its own entries, and
 * every /proc/<pid>/net/tcp of one namespace is the same entry. Unlike /proc/<pid>/ns/net, it can be stat'ed
 * without ptrace rights over the process (even root is denied pid 1's ns/net on some hosts, this one included).
 */
function netnsId(netDir: string): number | null {
  try {
    return statSync(`${netDir}/tcp`).ino;
  } catch {
    return null;
  }
}

/**
 * Sockets of processes in other network namespaces (containers with their own network) are not in the host's
 * tables: a process holding a socket inode the host tables lack may be in one. Each such namespace is read once,
 * through /proc/<pid>/net of the first process found in it. Its addresses are its own (a container's IP, not the
 * host's): a wildcard listener is reported once per address of the namespace, and loopback sockets are left out,
 * since they are reachable only inside it and would alias the host's own 127.0.0.1.
 */
function otherNetnsRows(proc: string, hostNs: number | null, hostRows: ProcNetRow[], inodesByPid: Map<number, number[]>): (ProcNetRow & { netns: number })[] {
  if (hostNs === null) return []; // no host table read: nothing to tell the others apart from
  const known = new Set<number>();
  for (const r of hostRows) if (r.inode !== 0) known.add(r.inode);
  const seenNs = new Set<number>();
  if (hostNs !== null) seenNs.add(hostNs);
  const out: (ProcNetRow & { netns: number })[] = [];
  for (const [pid, inodes] of inodesByPid) {
    // Most such processes hold only unix sockets (never in any table); the stat settles it, once per process.
    if (inodes.every((i) => known.has(i))) continue;
    const dir = `${proc}/${pid}/net`;
    const ns = netnsId(dir);
    if (ns === null || seenNs.has(ns)) continue;
    seenNs.add(ns);
    const ips = namespaceIps(dir);
    const v4 = ips.filter((ip) => !ip.includes(":"));
    for (const t of NET_TABLES) {
      const text = readText(`${dir}/${t.file}`);
      if (text == null) continue;
      for (const r of parseProcNetTcp(text, t.family, t.proto)) {
        if (r.inode !== 0) known.add(r.inode);
        if (isLoopbackIp(r.localIp)) continue;
        if (r.state === "listen" && (r.localIp === "0.0.0.0" || r.localIp === "::")) {
          // "::" without IPV6_V6ONLY also takes IPv4, as it does on the host.
          for (const ip of r.localIp === "::" ? ips : v4) out.push({ ...r, localIp: ip, netns: ns });
        } else out.push({ ...r, netns: ns });
      }
    }
  }
  return out;
}

const isLoopbackIp = (ip: string) => ip.startsWith("127.") || ip === "::1";

/**
 * Walks /proc/<pid>/fd/* and maps every socket inode to the lowest pid holding it (forked servers share a listener;
 * the lowest pid is usually the parent). Processes that vanish mid-walk are skipped; those we may not read are
 * returned so the caller can say what it could not see.
 */
export async function mapSocketOwners(proc: string): Promise<{ owners: Map<number, number>; unreadablePids: number[]; inodesByPid: Map<number, number[]> }> {
  const pids = listPids(proc);
  const perPid = await Promise.all(pids.map((pid) => socketInodesOf(proc, pid)));
  const owners = new Map<number, number>();
  const inodesByPid = new Map<number, number[]>();
  const unreadablePids: number[] = [];
  for (let i = 0; i < pids.length; i++) {
    const inodes = perPid[i]!;
    if (inodes === "denied") {
      unreadablePids.push(pids[i]!);
      continue;
    }
    if (inodes.length) inodesByPid.set(pids[i]!, inodes);
    for (const inode of inodes) if (!owners.has(inode)) owners.set(inode, pids[i]!);
  }
  return { owners, unreadablePids, inodesByPid };
}

/**
 * Worker processes (nginx, gunicorn, apache prefork…) inherit their parent's listening sockets. A process holding a
 * listening socket that a lower pid owns is that process's worker: its own sockets (upstream connections) are reported
 * under the leader, so one service is one owner.
 */
export function workerLeaders(rows: { state: string; inode: number }[], owners: Map<number, number>, inodesByPid: Map<number, number[]>): Map<number, number> {
  const listening = new Set<number>();
  for (const r of rows) if (r.state === "listen" && r.inode !== 0) listening.add(r.inode);
  const leaders = new Map<number, number>();
  for (const [pid, inodes] of inodesByPid) {
    for (const inode of inodes) {
      const owner = owners.get(inode);
      if (listening.has(inode) && owner !== undefined && owner !== pid) {
        leaders.set(pid, owner);
        break;
      }
    }
  }
  return leaders;
}

/** Names the processes the agent could not see into, for its log. */
export function describePids(proc: string, pids: number[], etc = "/etc"): BlindSpot[] {
  const users = parsePasswd(readText(`${etc}/passwd`) ?? "");
  const out: BlindSpot[] = [];
  for (const pid of pids) {
    const stat = parseProcStat(readText(`${proc}/${pid}/stat`) ?? "");
    if (!stat) continue;
    const uid = parseStatusUid(readText(`${proc}/${pid}/status`) ?? "") ?? -1;
    out.push({ pid, comm: stat.comm, user: users.get(uid) ?? String(uid) });
  }
  return out;
}

async function socketInodesOf(proc: string, pid: number): Promise<number[] | "denied"> {
  const dir = `${proc}/${pid}/fd`;
  let fds: string[];
  try {
    fds = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === "EACCES" || code === "EPERM" ? "denied" : []; // ENOENT/ESRCH: exited since we listed /proc
  }
  // An fd closed between readdir and readlink reads as "" and is ignored.
  const links = await Promise.all(fds.map((fd) => readlink(`${dir}/${fd}`).catch(() => "")));
  const inodes: number[] = [];
  for (const link of links) {
    const inode = socketInodeFromLink(link);
    if (inode !== null) inodes.push(inode);
  }
  return inodes;
}

function listPids(proc: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync(proc)) {
    const c = name.charCodeAt(0);
    if (c >= 48 && c <= 57) pids.push(Number(name));
  }
  return pids.sort((a, b) => a - b);
}

function readProcess(proc: string, pid: number, btime: number, users: Map<number, string>): ProcessInfo | null {
  const base = `${proc}/${pid}`;
  const stat = parseProcStat(readText(`${base}/stat`) ?? "");
  if (!stat) return null;
  const uid = parseStatusUid(readText(`${base}/status`) ?? "") ?? -1;
  let cmdline: string[] = [];
  try {
    cmdline = parseCmdline(readFileSync(`${base}/cmdline`));
  } catch {
    // exited; stat above already succeeded, keep what we have
  }
  let exe: string | null = null;
  try {
    exe = readlinkSync(`${base}/exe`);
  } catch {
    // kernel threads have no exe; other users' processes deny it without CAP_SYS_PTRACE
  }
  const cgroup = readText(`${base}/cgroup`);
  const statm = readText(`${base}/statm`);
  return {
    pid,
    ppid: stat.ppid,
    comm: stat.comm,
    exe,
    cmdline,
    uid,
    user: users.get(uid) ?? String(uid),
    startTime: Math.round((btime + stat.starttime / CLK_TCK) * 1000),
    containerId: cgroup === null ? null : parseCgroup(cgroup),
    cpuTicks: stat.utime + stat.stime,
    rssBytes: statm === null ? 0 : parseStatmRssPages(statm) * PAGE_SIZE,
  };
}

function readFacts(proc: string, etc: string, cpus: number, hostNet: string | null): HostFacts {
  const mem = parseMeminfo(readText(`${proc}/meminfo`) ?? "");
  const os =
    parseOsRelease(readText(`${etc}/os-release`) ?? readText(`${etc}/../usr/lib/os-release`) ?? "") ?? "Linux";
  return {
    hostname: readHostname({ procRoot: proc, etcRoot: etc, hostNetns: hostNet === null ? "self" : "init" }),
    os,
    kernel: readText(`${proc}/sys/kernel/osrelease`)?.trim() ?? "",
    cpus: cpus || osCpus().length,
    memTotalBytes: mem.memTotalBytes,
    memAvailableBytes: mem.memAvailableBytes,
    load1: parseLoadavg(readText(`${proc}/loadavg`) ?? ""),
    ips: hostNet === null ? interfaceIps() : namespaceIps(hostNet),
  };
}

/**
 * The host's name. /proc/sys/kernel/hostname answers for the reader's UTS namespace, so inside a container (host
 * /proc mounted or not) it is the container's name: there the host's /etc/hostname (etcRoot) comes first.
 */
export function readHostname(opts: ScanOptions = {}): string {
  const proc = opts.procRoot ?? "/proc";
  const etc = opts.etcRoot ?? "/etc";
  const mode = opts.hostNetns ?? (proc === "/proc" ? "self" : "init");
  const fromEtc = () => readText(`${etc}/hostname`)?.split("\n")[0]!.trim();
  const fromKernel = () => readText(`${proc}/sys/kernel/hostname`)?.trim();
  return (mode === "init" ? fromEtc() || fromKernel() : fromKernel()) || osHostname();
}

/** The agent's own interfaces' addresses (loopback excluded): the host's when the agent runs in its namespace. */
function interfaceIps(): string[] {
  const ips = new Set<string>();
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (!a.internal) ips.add(a.address);
  }
  return [...ips];
}

/** A network namespace's addresses (loopback excluded) from its procfs files, whichever namespace the agent is in. */
function namespaceIps(netDir: string): string[] {
  const v4 = parseFibTrieLocal(readText(`${netDir}/fib_trie`) ?? "").filter((ip) => !isLoopbackIp(ip));
  return [...v4, ...parseIfInet6(readText(`${netDir}/if_inet6`) ?? "")];
}

async function readTextAsync(path: string): Promise<string | null> {
  try {
    return await readFile(path, "utf8");
  } catch {
    return null;
  }
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}
