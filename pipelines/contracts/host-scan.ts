/**
 * What one scan of a host found: its facts, sockets and the processes owning them. The agent's scanner
 * (services/agent/scan.ts) and the simulator both produce it, and the agent-diff stage turns consecutive scans into
 * discovery batches. It crosses no process boundary (the batches do), so it is a type, not a zod schema.
 */

/** Clock ticks per second of `cpuTicks`: USER_HZ is 100 on every Linux ABI we target (sysconf is not reachable from JS). */
export const CLK_TCK = 100;

export interface ProcessInfo {
  pid: number;
  ppid: number;
  comm: string;
  exe: string | null;
  cmdline: string[];
  uid: number;
  user: string;
  /** Process start, ms since epoch (boot time + starttime ticks). */
  startTime: number;
  containerId: string | null;
  /** utime + stime in clock ticks; a rate needs two scans. */
  cpuTicks: number;
  rssBytes: number;
}

export interface SocketInfo {
  proto: "tcp" | "udp";
  family: 4 | 6;
  localIp: string;
  localPort: number;
  remoteIp: string;
  remotePort: number;
  state: "listen" | "established" | "other";
  inode: number;
  uid: number;
  /**
   * Set for a socket of another network namespace than the host's (a container's): the id of that namespace (the
   * inode of its tcp table in procfs). Its wildcard listeners are reported once per address of that namespace.
   */
  netns?: number;
  /** Owning process; null when it could not be read (see unreadablePids) or the socket has no inode (TIME_WAIT). */
  pid: number | null;
}

export interface HostFacts {
  hostname: string;
  os: string;
  kernel: string;
  cpus: number;
  memTotalBytes: number;
  memAvailableBytes: number;
  load1: number;
  ips: string[];
}

export interface HostScan {
  at: number;
  facts: HostFacts;
  sockets: SocketInfo[];
  /** Only processes owning at least one socket. */
  processes: Map<number, ProcessInfo>;
  /** Processes whose fds we were denied: their sockets show pid null. An unprivileged agent reports its blind spots. */
  unreadablePids: number[];
  /**
   * Worker processes folded into a socket owner (nginx, gunicorn and php-fpm workers do the serving while the master
   * idles): their cost, so the service's CPU and memory include them. Absent when the source has none to report.
   */
  workers?: Map<number, WorkerCost>;
}

export interface WorkerCost {
  /** the process (in `processes`) it is folded into */
  leader: number;
  startTime: number;
  cpuTicks: number;
  rssBytes: number;
}
