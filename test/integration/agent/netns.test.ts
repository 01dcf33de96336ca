// The agent in a container (the host's /proc mounted at /host/proc) and processes in other network namespaces:
// a fake /proc tree with real-format files, then the real kernel with a listener started inside a new network
// namespace (`unshare --net`, as root).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { parseFibTrieLocal, parseIfInet6 } from "../../../services/agent/procfs.ts";
import { readHostname, scanHost } from "../../../services/agent/scan.ts";
import { emptyAgentState, scanToBatches } from "../../../pipelines/stages/agent-diff.ts";
import { spawnUntilReady } from "../../helpers/process.ts";

// /proc/1/net/fib_trie of a VM with eth0 192.0.2.2/24 (copied from one).
const HOST_FIB = `Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
        +-- 192.0.2.0/30 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
`;
const HOST_IF6 = `fd000000000000000000000000000002 04 40 00 82     eth0
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
`;
// A docker bridge container: eth0 172.17.0.2/16, with docker's default IPv6 off but a ULA added.
const CONTAINER_FIB = `Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 172.17.0.0/16 2 0 2
        +-- 172.17.0.0/30 2 0 2
           |-- 172.17.0.0
              /16 link UNICAST
           |-- 172.17.0.2
              /32 host LOCAL
        |-- 172.17.255.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 172.17.0.0/16 2 0 2
        +-- 172.17.0.0/30 2 0 2
           |-- 172.17.0.0
              /16 link UNICAST
           |-- 172.17.0.2
              /32 host LOCAL
        |-- 172.17.255.255
           /32 link BROADCAST
`;
const CONTAINER_IF6 = `fd000000001700000000000000000002 1b 40 00 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
`;

const HDR = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
const HDR6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
const row = (sl: number, local: string, remote: string, st: string, uid: number, inode: number) =>
  `   ${sl}: ${local} ${remote} ${st} 00000000:00000000 00:00000000 00000000 ${String(uid).padStart(5)}        0 ${inode} 1 0000000000000000 100 0 0 10 0\n`;

// Host netns (what /proc/1/net shows): sshd on 0.0.0.0:22 with one client.
const HOST_TCP = HDR + row(0, "00000000:0016", "00000000:0000", "0A", 0, 1001) + row(1, "0200000C:0016", "6300000C:C350", "01", 0, 1002);
// The agent's own netns (what /proc/net = /proc/self/net shows inside its container): only its NATS connection.
const AGENT_TCP = HDR + row(0, "050011AC:A000", "0A0011AC:108E", "01", 0, 9001);
// The web container: nginx on 0.0.0.0:80 serving 10.0.2.99:51000, a metrics port on 127.0.0.1:9113 (inside only),
// its upstream connection to 10.0.0.9:5432, and :: 8443 (dual-stack).
const WEB_TCP =
  HDR +
  row(0, "00000000:0050", "00000000:0000", "0A", 101, 5001) +
  row(1, "020011AC:0050", "6302000A:C738", "01", 101, 5002) +
  row(2, "0100007F:2399", "00000000:0000", "0A", 101, 5003) +
  row(3, "020011AC:B000", "0900000A:1538", "01", 101, 5006) +
  row(4, "0100007F:2399", "0100007F:D000", "01", 101, 5007);
const WEB_TCP6 = HDR6 + row(0, "00000000000000000000000000000000:20FB", "00000000000000000000000000000000:0000", "0A", 101, 5004);
const WEB_UDP = HDR + row(0, "020011AC:14E9", "00000000:0000", "07", 101, 5005);

describe("procfs address files", () => {
  test("fib_trie: the /32 host LOCAL leaves, once each (Main and Local both list them)", () => {
    expect(parseFibTrieLocal(HOST_FIB).sort()).toEqual(["127.0.0.1", "192.0.2.2"]);
    expect(parseFibTrieLocal(CONTAINER_FIB).sort()).toEqual(["127.0.0.1", "172.17.0.2"]);
    expect(parseFibTrieLocal("")).toEqual([]);
  });

  test("if_inet6: network-order hex, loopback (host scope) left out, link-local kept", () => {
    expect(parseIfInet6(HOST_IF6)).toEqual(["fd00::2", "fe80::fc:ff:fe00:1"]);
    expect(parseIfInet6(CONTAINER_IF6)).toEqual(["fd00:0:17::2"]);
    expect(parseIfInet6("garbage\n")).toEqual([]);
  });
});

describe("agent in a container: host /proc mounted at a proc root that is not /proc", () => {
  let root: string;
  let proc: string;
  let etc: string;
  const cid = "c".repeat(64);

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "orrery-netns-"));
    proc = join(root, "host", "proc");
    etc = join(root, "host", "etc");
    const w = (path: string, text: string) => {
      mkdirSync(join(path, ".."), { recursive: true });
      writeFileSync(path, text);
    };
    w(join(etc, "hostname"), "realhost\n");
    w(join(etc, "passwd"), "root:x:0:0::/root:/bin/sh\nnginx:x:101:101::/:/bin/false\n");
    w(join(proc, "stat"), "cpu  1 1 1\ncpu0 1 1 1\nbtime 1700000000\n");
    w(join(proc, "meminfo"), "MemTotal: 1000 kB\nMemAvailable: 500 kB\n");
    w(join(proc, "loadavg"), "0.10 0.10 0.10 1/10 10\n");
    // UTS-namespaced: read through the mount it still answers with the reader's (the agent container's) name.
    w(join(proc, "sys/kernel/hostname"), "agent-container\n");
    w(join(proc, "sys/kernel/osrelease"), "6.1.0-test\n");
    const netDir = (dir: string, files: Record<string, string>) => {
      for (const [f, text] of Object.entries(files)) w(join(dir, f), text);
    };
    // Three network namespaces: the host's, the agent container's (procfs's net = self/net), the web container's.
    netDir(join(root, "ns", "host"), { tcp: HOST_TCP, tcp6: HDR6, udp: HDR, udp6: HDR6, fib_trie: HOST_FIB, if_inet6: HOST_IF6 });
    netDir(join(root, "ns", "agent"), { tcp: AGENT_TCP, tcp6: HDR6, udp: HDR, udp6: HDR6, fib_trie: CONTAINER_FIB.replaceAll("172.17.0.2", "172.17.0.5"), if_inet6: "" });
    netDir(join(root, "ns", "web"), { tcp: WEB_TCP, tcp6: WEB_TCP6, udp: WEB_UDP, udp6: HDR6, fib_trie: CONTAINER_FIB, if_inet6: CONTAINER_IF6 });
    symlinkSync(join(root, "ns", "agent"), join(proc, "net"));

    const pid = (n: number, comm: string, uid: number, ns: string, fds: Record<string, string>, cgroup = "0::/init.scope\n") => {
      const d = join(proc, String(n));
      mkdirSync(join(d, "fd"), { recursive: true });
      for (const [fd, target] of Object.entries(fds)) symlinkSync(target, join(d, "fd", fd));
      symlinkSync(join(root, "ns", ns), join(d, "net"));
      w(join(d, "stat"), `${n} (${comm}) S 1 ${n} ${n} 0 -1 0 0 0 0 0 10 5 0 0 20 0 1 0 100 1000 10 0\n`);
      w(join(d, "status"), `Name:\t${comm}\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\n`);
      w(join(d, "cmdline"), `/usr/sbin/${comm}\0`);
      w(join(d, "statm"), "5000 300 100 10 0 200 0\n");
      w(join(d, "cgroup"), cgroup);
      symlinkSync(`/usr/sbin/${comm}`, join(d, "exe"));
    };
    pid(1, "systemd", 0, "host", { "3": "socket:[700]" }); // a unix socket
    pid(20, "sshd", 0, "host", { "3": "socket:[1001]", "4": "socket:[1002]" });
    pid(30, "orrery-agent", 0, "agent", { "3": "socket:[9001]" });
    const web = `0::/system.slice/docker-${cid}.scope\n`;
    pid(40, "nginx", 101, "web", { "3": "socket:[5001]", "4": "socket:[5003]", "5": "socket:[5004]", "6": "socket:[5005]", "7": "socket:[710]" }, web);
    // a second process of the web container (its own netns is read once, through pid 40): the upstream client
    pid(41, "php-fpm", 101, "web", { "3": "socket:[5002]", "4": "socket:[5006]", "5": "socket:[5007]" }, web);
  });

  afterAll(() => rmSync(root, { recursive: true, force: true }));

  test("sockets, IPs and hostname are the host's, not the agent container's", async () => {
    const scan = await scanHost({ procRoot: proc, etcRoot: etc });
    expect(scan.facts.hostname).toBe("realhost");
    expect(readHostname({ procRoot: proc, etcRoot: etc })).toBe("realhost");
    expect(scan.facts.ips.sort()).toEqual(["192.0.2.2", "fd00::2", "fe80::fc:ff:fe00:1"]);
    const host = scan.sockets.filter((s) => s.netns === undefined);
    expect(host.map((s) => [s.localIp, s.localPort, s.remoteIp, s.remotePort, s.state, s.pid])).toEqual([
      ["0.0.0.0", 22, "0.0.0.0", 0, "listen", 20],
      ["12.0.0.2", 22, "12.0.0.99", 50000, "established", 20],
    ]);
    // The agent's own container is just another container on the host: its NATS connection is in its own netns.
    expect(scan.sockets.find((s) => s.inode === 9001)).toMatchObject({ localIp: "172.17.0.5", netns: expect.any(Number), pid: 30 });
  });

  test("a container's network namespace is read once; wildcard listeners get its addresses, loopback stays inside", async () => {
    const scan = await scanHost({ procRoot: proc, etcRoot: etc });
    const webNs = scan.sockets.find((s) => s.inode === 5001)!.netns;
    expect(new Set(scan.sockets.map((s) => s.netns))).toEqual(new Set([undefined, webNs, scan.sockets.find((s) => s.inode === 9001)!.netns]));
    const web = scan.sockets.filter((s) => s.netns === webNs);
    expect(web.map((s) => [s.proto, s.localIp, s.localPort, s.remoteIp, s.remotePort, s.state, s.pid]).sort()).toEqual(
      [
        ["tcp", "172.17.0.2", 80, "0.0.0.0", 0, "listen", 40],
        ["tcp", "172.17.0.2", 80, "10.0.2.99", 51000, "established", 41],
        ["tcp", "172.17.0.2", 45056, "10.0.0.9", 5432, "established", 41],
        ["tcp", "172.17.0.2", 8443, "::", 0, "listen", 40],
        ["tcp", "fd00:0:17::2", 8443, "::", 0, "listen", 40],
        ["udp", "172.17.0.2", 5353, "0.0.0.0", 0, "listen", 40],
      ].sort(),
    );
    expect(scan.processes.get(40)).toMatchObject({ comm: "nginx", user: "nginx", containerId: cid });
    expect(scan.processes.get(41)).toMatchObject({ comm: "php-fpm", containerId: cid });

    // What the agent publishes: the container's listeners by its address, under its processes.
    const r = scanToBatches(emptyAgentState(), scan, { source: "agent:realhost", host: "realhost", scanId: 0, full: true });
    const events = r.batches.flatMap((b) => b.events);
    const listeners = events.filter((e) => e.type === "listener.seen").map((e) => e.type === "listener.seen" && `${e.ip}:${e.port}:${e.process?.pid}`);
    expect(listeners.sort()).toEqual(["0.0.0.0:22:20", "172.17.0.2:5353:40", "172.17.0.2:80:40", "172.17.0.2:8443:40", "fd00:0:17::2:8443:40"].sort());
    expect(events.find((e) => e.type === "host.seen")).toMatchObject({ hostname: "realhost", ips: expect.arrayContaining(["192.0.2.2"]) });
  });

  test('hostNetns "self" keeps the old view: /proc/net and the kernel hostname', async () => {
    const scan = await scanHost({ procRoot: proc, etcRoot: etc, hostNetns: "self" });
    expect(scan.facts.hostname).toBe("agent-container");
    expect(scan.sockets.filter((s) => s.netns === undefined).map((s) => s.inode)).toEqual([9001]);
    // the host's namespace is then just another one
    expect(scan.sockets.find((s) => s.inode === 1001)).toMatchObject({ localIp: "192.0.2.2", pid: 20 });
  });
});

describe("on this machine", () => {
  const sameNetnsAsInit = (() => {
    try {
      return statSync("/proc/1/net/tcp").ino === statSync("/proc/self/net/tcp").ino;
    } catch {
      return false;
    }
  })();
  /** Whether this user may make namespaces (and, with `setup`, configure them) here: root, or user namespaces allowed. */
  const mayUnshare = (flags: string[], setup = "true") => Bun.spawnSync(["unshare", ...flags, "sh", "-c", setup], { stdout: "ignore", stderr: "ignore" }).exitCode === 0;
  const containerLike = sameNetnsAsInit && mayUnshare(["--net", "--uts", "--mount"]);
  const vethNetns = mayUnshare(["--net"], "ip link set lo up && ip link add v0 type veth peer name v1");

  test.skipIf(!sameNetnsAsInit)("pid 1's view (as from a container with /proc mounted) finds our listener and the interfaces' IPs (skipped when this test runs in another network namespace than pid 1)", async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const scan = await scanHost({ procRoot: "/proc", hostNetns: "init" });
      expect(scan.sockets.filter((s) => s.state === "listen" && s.localPort === port)).toEqual([expect.objectContaining({ localIp: "127.0.0.1", pid: process.pid })]);
      const own = Object.values(networkInterfaces())
        .flat()
        .filter((a) => a && !a.internal)
        .map((a) => a!.address);
      expect(scan.facts.ips.sort()).toEqual([...new Set(own)].sort());
    } finally {
      server.close();
    }
  });

  test.skipIf(!containerLike)("an agent in its own network and UTS namespaces with the host's /proc bind-mounted (a container) reports the host (skipped in another network namespace than pid 1, or where unshare is not permitted)", async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const dir = mkdtempSync(join(tmpdir(), "orrery-hostproc-"));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const scanTs = join(import.meta.dir, "../../..", "services", "agent", "scan.ts");
      const js = `const { scanHost } = await import(${JSON.stringify(scanTs)});
        const out = {};
        for (const procRoot of [process.argv[1], "/proc"]) {
          const s = await scanHost({ procRoot, etcRoot: "/etc" });
          out[procRoot === "/proc" ? "self" : "mounted"] = { facts: s.facts, sockets: s.sockets };
        }
        console.log(JSON.stringify(out));`;
      // As a container runtime sets one up: own network (only lo), own hostname, host /proc mounted elsewhere.
      const script = `hostname agent-ctr && mount --bind /proc "$1" && exec "$0" -e '${js}' "$1"`;
      const p = Bun.spawn(["unshare", "--net", "--uts", "--mount", "sh", "-c", script, process.execPath, dir], { stdout: "pipe", stderr: "pipe" });
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      if (code !== 0) throw new Error(`the container-like child failed (${code}): ${err}`);
      const r = JSON.parse(out) as Record<"self" | "mounted", { facts: { hostname: string; ips: string[] }; sockets: { localPort: number; state: string; pid: number | null }[] }>;
      const ours = (v: "self" | "mounted") => r[v].sockets.filter((s) => s.state === "listen" && s.localPort === port);
      expect(ours("mounted")).toEqual([expect.objectContaining({ localIp: "127.0.0.1", pid: process.pid })]);
      const own = Object.values(networkInterfaces())
        .flat()
        .filter((a) => a && !a.internal)
        .map((a) => a!.address);
      expect(r.mounted.facts.ips.sort()).toEqual([...new Set(own)].sort());
      if (existsSync("/etc/hostname")) expect(r.mounted.facts.hostname).toBe(readFileSync("/etc/hostname", "utf8").trim());
      // what the agent saw before the fix, and still sees with procRoot /proc: its own namespace
      expect(ours("self")).toEqual([]);
      expect(r.self.facts.ips).toEqual([]);
      expect(r.self.facts.hostname).toBe("agent-ctr");
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  test.skipIf(!vethNetns)("a listener and a connection inside a new network namespace (unshare --net) are reported under that process (skipped where unshare --net or veth pairs are not permitted; the fake /proc tree above covers the logic)", async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const ip = `10.254.${Math.floor(Math.random() * 250) + 1}.1`;
    // Inside the namespace: lo up, a veth pair with one address (a container's eth0), then a server on 0.0.0.0,
    // one on 127.0.0.1 (reachable only inside), and a client connecting to the first by the namespace's address.
    const js = `
      const net = require("node:net");
      const a = net.createServer(s => s.on("error", () => {})).listen(${port}, "0.0.0.0", () => {
        net.createServer().listen(${port + 1}, "127.0.0.1", () => {
          const c = net.connect(${port}, "${ip}", () => console.log("ready " + process.pid + " " + c.localPort));
        });
      });
      setTimeout(() => process.exit(0), 60000);`;
    const script = `ip link set lo up && ip link add v0 type veth peer name v1 && ip addr add ${ip}/24 dev v0 && ip link set v1 up && ip link set v0 up && exec "$0" -e '${js}'`;
    const { proc: child, match } = await spawnUntilReady(["unshare", "--net", "sh", "-c", script, process.execPath], { ready: /ready (\d+) (\d+)/, timeoutMs: 15_000, name: "namespace child" });
    try {
      const [, pidText, clientPort] = match;
      const pid = Number(pidText);
      expect(pid).toBe(child.pid);

      const scan = await scanHost();
      const mine = scan.sockets.filter((s) => s.pid === pid);
      const ns = mine[0]?.netns;
      expect(ns).toBeDefined();
      expect(ns).not.toBe(statSync("/proc/self/net/tcp").ino);
      expect(mine.every((s) => s.netns === ns)).toBe(true);
      expect(mine.filter((s) => s.state === "listen").map((s) => `${s.localIp}:${s.localPort}`)).toEqual([`${ip}:${port}`]);
      const conns = mine.filter((s) => s.state === "established").map((s) => `${s.localIp}:${s.localPort}>${s.remoteIp}:${s.remotePort}`);
      expect(conns.sort()).toEqual([`${ip}:${clientPort}>${ip}:${port}`, `${ip}:${port}>${ip}:${clientPort}`].sort());
      expect(scan.processes.get(pid)).toMatchObject({ exe: expect.stringContaining("bun") });
      // nothing of it leaks into the host namespace's view
      expect(scan.sockets.filter((s) => s.netns === undefined && s.localPort === port)).toEqual([]);
    } finally {
      child.kill();
      await child.exited;
    }
  }, 30_000);
});
