// The host agent's /proc parsers against fixture text copied from real kernels, the scanner against a fake procfs
// tree, and the scanner against this machine with real sockets this test opens.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import * as net from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import {
  decodeIPv6Hex,
  parseCgroup,
  parseCmdline,
  parseLoadavg,
  parseMeminfo,
  parseOsRelease,
  parsePasswd,
  parseProcNetTcp,
  parseProcStat,
  parseStatusUid,
  parseSystemStat,
  socketInodeFromLink,
} from "../../../services/agent/procfs.ts";
import type { HostScan, SocketInfo } from "../../../pipelines/contracts/host-scan.ts";
import { scanHost } from "../../../services/agent/scan.ts";

const TCP4 = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 23456 1 0000000000000000 100 0 0 10 0
   1: 0F02000A:0016 0100000A:D431 01 00000000:00000000 02:000A7D5E 00000000     0        0 31337 4 0000000000000000 20 4 31 10 -1
   2: 0F02000A:0016 0100000A:D432 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   3: 00000000:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 19001 1 0000000000000000 100 0 0 10 0
`;

const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 40001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000    33        0 40002 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000F02000A:E0F1 01 00000000:00000000 00:00000000 00000000  1000        0 40003 1 0000000000000000 20 4 30 10 -1
   3: B80D0120000000000000000001000000:01BB 000080FE00000000FF3B2A1C6F5E4DFE:C001 01 00000000:00000000 00:00000000 00000000     0        0 40004 1 0000000000000000 20 4 30 10 -1
`;

const UDP4 = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 18211 2 0000000000000000 0
  456: 0100007F:A1B2 0100007F:0035 01 00000000:00000000 00:00000000 00000000  1000        0 18300 2 0000000000000000 0
`;

const UDP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  301: 00000000000000000000000000000000:14E9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   105        0 17950 2 0000000000000000 0
`;

describe("parseProcNetTcp", () => {
  test("IPv4: little-endian addresses, hex ports, state, uid, inode", () => {
    const rows = parseProcNetTcp(TCP4, 4);
    expect(rows).toHaveLength(4);
    expect(rows[0]).toEqual({
      proto: "tcp",
      family: 4,
      localIp: "127.0.0.1",
      localPort: 8080,
      remoteIp: "0.0.0.0",
      remotePort: 0,
      state: "listen",
      stateCode: 0x0a,
      uid: 1000,
      inode: 23456,
    });
    expect(rows[1]).toMatchObject({
      localIp: "10.0.2.15",
      localPort: 22,
      remoteIp: "10.0.0.1",
      remotePort: 54321,
      state: "established",
      uid: 0,
      inode: 31337,
    });
    // TIME_WAIT: no owner any more, inode 0.
    expect(rows[2]).toMatchObject({ state: "other", stateCode: 6, inode: 0 });
    expect(rows[3]).toMatchObject({ localIp: "0.0.0.0", localPort: 3306, uid: 999, state: "listen" });
  });

  test("IPv6: loopback, any, IPv4-mapped normalised to dotted IPv4, global and link-local", () => {
    const rows = parseProcNetTcp(TCP6, 6);
    expect(rows.map((r) => [r.localIp, r.localPort, r.remoteIp, r.remotePort, r.state])).toEqual([
      ["::1", 8080, "::", 0, "listen"],
      ["::", 80, "::", 0, "listen"],
      ["127.0.0.1", 8080, "10.0.2.15", 57585, "established"],
      ["2001:db8::1", 443, "fe80::1c2a:3bff:fe4d:5e6f", 49153, "established"],
    ]);
    expect(rows.every((r) => r.family === 6 && r.proto === "tcp")).toBe(true);
  });

  test("UDP: bound unconnected is listen, connected is established", () => {
    const v4 = parseProcNetTcp(UDP4, 4, "udp");
    expect(v4.map((r) => [r.proto, r.localIp, r.localPort, r.remoteIp, r.remotePort, r.state, r.inode])).toEqual([
      ["udp", "0.0.0.0", 68, "0.0.0.0", 0, "listen", 18211],
      ["udp", "127.0.0.1", 41394, "127.0.0.1", 53, "established", 18300],
    ]);
    const v6 = parseProcNetTcp(UDP6, 6, "udp");
    expect(v6).toEqual([
      expect.objectContaining({ localIp: "::", localPort: 5353, state: "listen", uid: 105, inode: 17950 }),
    ]);
  });

  test("header-only and garbage lines yield nothing", () => {
    expect(parseProcNetTcp(TCP4.split("\n")[0]!, 4)).toEqual([]);
    expect(parseProcNetTcp("", 6)).toEqual([]);
    expect(parseProcNetTcp("header\n   0: ZZZZ:0000 nonsense\n", 4)).toEqual([]);
  });
});

describe("decodeIPv6Hex", () => {
  // Encodes network-order bytes the way the kernel prints them: four host-order (little-endian) u32 words.
  const kernelHex = (bytes: number[]): string => {
    let out = "";
    for (let w = 0; w < 4; w++) {
      const b = bytes.slice(w * 4, w * 4 + 4).reverse();
      out += b.map((x) => x.toString(16).padStart(2, "0")).join("").toUpperCase();
    }
    return out;
  };
  const ip6 = (groups: number[]): number[] => groups.flatMap((g) => [g >> 8, g & 0xff]);

  test("RFC 5952: longest zero run compressed, first on a tie, single zero group kept", () => {
    expect(decodeIPv6Hex(kernelHex(ip6([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1])))).toBe("2001:db8::1:0:0:1");
    expect(decodeIPv6Hex(kernelHex(ip6([0x2001, 0xdb8, 0, 1, 1, 1, 1, 1])))).toBe("2001:db8:0:1:1:1:1:1");
    expect(decodeIPv6Hex(kernelHex(ip6([0x2001, 0, 0, 1, 0, 0, 0, 1])))).toBe("2001:0:0:1::1");
    expect(decodeIPv6Hex(kernelHex(ip6([0, 0, 0, 0, 0, 0, 0, 0])))).toBe("::");
    expect(decodeIPv6Hex(kernelHex(ip6([0xfd00, 0, 0, 0, 0, 0, 0, 0])))).toBe("fd00::");
  });

  test("mapped addresses become IPv4; the bare ::ffff prefix alone does not", () => {
    expect(decodeIPv6Hex(kernelHex(ip6([0, 0, 0, 0, 0, 0xffff, 0xc0a8, 0x0101])))).toBe("192.168.1.1");
    expect(decodeIPv6Hex(kernelHex(ip6([0, 0, 0, 0, 1, 0xffff, 0xc0a8, 0x0101])))).toBe("::1:ffff:c0a8:101");
  });

  test("hand-encoded kernel text", () => {
    // fe80::fc:ff:fe00:1 as /proc/net/if_inet6 shows it (network order) is 00fc00ff fe000001 in the last 8 bytes.
    expect(decodeIPv6Hex("0000000000000000FFFF00000100007F")).toBe("127.0.0.1");
    expect(decodeIPv6Hex("000080FE00000000FF00FC00010000FE")).toBe("fe80::fc:ff:fe00:1");
    expect(decodeIPv6Hex("short")).toBeNull();
  });
});

describe("parseProcStat", () => {
  const tail =
    "S 1 1234 1234 0 -1 1077936448 46 0 0 0 7 3 0 0 20 0 1 0 1520 26718208 1250 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0";

  test("plain comm, ppid, utime+stime, starttime (field 22)", () => {
    expect(parseProcStat(`4698 (cat) R 4691 4691 4061 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 18818 3133440 382 0\n`))
      .toEqual({ pid: 4698, comm: "cat", state: "R", ppid: 4691, utime: 0, stime: 0, starttime: 18818 });
  });

  test("comm with parentheses and spaces", () => {
    expect(parseProcStat(`1234 (sd-pam) ${tail}`)).toMatchObject({
      pid: 1234,
      comm: "sd-pam",
      ppid: 1,
      utime: 7,
      stime: 3,
      starttime: 1520,
    });
    expect(parseProcStat(`1234 ((sd-pam)) ${tail}`)).toMatchObject({ comm: "(sd-pam)", ppid: 1, starttime: 1520 });
    expect(parseProcStat(`77 (a b) c) ${tail}`)).toMatchObject({ pid: 77, comm: "a b) c", ppid: 1, starttime: 1520 });
    expect(parseProcStat(`78 () ) ${tail}`)).toMatchObject({ comm: ") ", ppid: 1 });
  });

  test("truncated or empty text is null", () => {
    expect(parseProcStat("")).toBeNull();
    expect(parseProcStat("12 (x) S 1 2 3")).toBeNull();
  });
});

describe("small parsers", () => {
  test("parseStatusUid takes the real uid", () => {
    const status = "Name:\tnginx\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t812\nPid:\t812\nPPid:\t1\nUid:\t33\t0\t33\t33\nGid:\t33\t33\t33\t33\n";
    expect(parseStatusUid(status)).toBe(33);
    expect(parseStatusUid("Name:\tx\n")).toBeNull();
  });

  test("parseCmdline splits on NUL, keeps empty args, tolerates rewritten titles", () => {
    const enc = (s: string) => new TextEncoder().encode(s);
    expect(parseCmdline(enc("/usr/bin/python3\0-m\0http.server\0\0"))).toEqual(["/usr/bin/python3", "-m", "http.server", ""]);
    expect(parseCmdline(enc("nginx: worker process"))).toEqual(["nginx: worker process"]);
    expect(parseCmdline(new Uint8Array(0))).toEqual([]);
  });

  test("parsePasswd maps uid to the first name", () => {
    const users = parsePasswd(
      "root:x:0:0:root:/root:/bin/bash\n# comment\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\ntoor:x:0:0::/:/bin/sh\nbroken\n",
    );
    expect(users.get(0)).toBe("root");
    expect(users.get(33)).toBe("www-data");
    expect(users.size).toBe(2);
  });

  test("socketInodeFromLink", () => {
    expect(socketInodeFromLink("socket:[12345]")).toBe(12345);
    expect(socketInodeFromLink("pipe:[12345]")).toBeNull();
    expect(socketInodeFromLink("anon_inode:[eventpoll]")).toBeNull();
    expect(socketInodeFromLink("/dev/null")).toBeNull();
  });

  test("meminfo, loadavg, /proc/stat, os-release", () => {
    expect(parseMeminfo("MemTotal:       24683656 kB\nMemFree:        21784396 kB\nMemAvailable:   24245028 kB\n")).toEqual({
      memTotalBytes: 24683656 * 1024,
      memAvailableBytes: 24245028 * 1024,
    });
    expect(parseLoadavg("0.36 0.31 0.13 1/81 4983\n")).toBe(0.36);
    expect(parseSystemStat("cpu  1 2 3\ncpu0 1 2 3\ncpu1 1 2 3\nintr 5\nbtime 1795314019\nprocesses 9\n")).toEqual({
      btime: 1795314019,
      cpus: 2,
    });
    expect(parseOsRelease('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')).toBe(
      "Debian GNU/Linux 12 (bookworm)",
    );
    expect(parseOsRelease("PRETTY_NAME=Alpine\n")).toBe("Alpine");
    expect(parseOsRelease("ID=x\n")).toBeNull();
  });
});

describe("parseCgroup", () => {
  const id = "3f4e2b8c9d0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829304";

  test.each([
    ["docker, cgroup v1", `12:memory:/docker/${id}\n11:cpu,cpuacct:/docker/${id}\n0::/docker/${id}\n`],
    ["docker, cgroup v2 + systemd", `0::/system.slice/docker-${id}.scope\n`],
    ["kubepods, cgroupfs driver", `4:memory:/kubepods/besteffort/pod0f1c2d3e-4b5a-6789-abcd-ef0123456789/${id}\n`],
    [
      "kubepods, systemd driver, containerd",
      `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1c2d3e_4b5a_6789_abcd_ef0123456789.slice/cri-containerd-${id}.scope\n`,
    ],
    [
      "containerd under its own service",
      `0::/system.slice/containerd.service/kubepods-besteffort-pod0f1c2d3e_4b5a.slice:cri-containerd:${id}\n`,
    ],
    ["cri-o", `0::/kubepods.slice/kubepods-pod1.slice/crio-${id}.scope\n`],
    ["podman", `0::/machine.slice/libpod-${id}.scope/container\n`],
    ["podman cgroupfs", `1:name=systemd:/libpod_parent/libpod-${id}\n`],
  ])("%s", (_name, text) => {
    expect(parseCgroup(text)).toBe(id);
  });

  test.each([
    ["host systemd session", "0::/user.slice/user-1000.slice/session-2.scope\n"],
    ["root cgroup", "9:name=systemd:/\n0::/\n"],
    ["32-hex sandbox id is not a container id", "4:memory:/process_api/0a1014b3da85e1d49956edd44ad6632a\n"],
    ["podman's conmon is not the container", `0::/machine.slice/libpod-conmon-${id}.scope\n`],
    ["65 hex chars", `0::/docker/${id}a\n`],
  ])("%s → null", (_name, text) => {
    expect(parseCgroup(text)).toBeNull();
  });
});

describe("scanHost on a fake /proc tree", () => {
  let root: string;
  const btime = 1_700_000_000;
  const cid = "a".repeat(64);

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "orrery-procfs-"));
    const proc = join(root, "proc");
    const etc = join(root, "etc");
    const w = (path: string, text: string) => {
      mkdirSync(join(path, ".."), { recursive: true });
      writeFileSync(path, text);
    };
    w(join(etc, "os-release"), 'PRETTY_NAME="Testix 1.0"\n');
    w(join(etc, "passwd"), "root:x:0:0::/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n");
    w(join(proc, "stat"), `cpu  1 1 1\ncpu0 1 1 1\ncpu1 1 1 1\ncpu2 1 1 1\nbtime ${btime}\n`);
    w(join(proc, "meminfo"), "MemTotal: 1000 kB\nMemAvailable: 500 kB\n");
    w(join(proc, "loadavg"), "1.50 1.00 0.50 2/100 999\n");
    w(join(proc, "sys/kernel/hostname"), "fakehost\n");
    w(join(proc, "sys/kernel/osrelease"), "6.1.0-test\n");
    w(join(proc, "net/tcp"), TCP4);
    w(join(proc, "net/tcp6"), TCP6);
    w(join(proc, "net/udp"), UDP4);
    // net/udp6 deliberately missing: a kernel without IPv6 has none.

    // pid 100 owns the 8080 listener and a UDP socket; pid 150 (forked child) shares the listener; pid 200 owns the
    // ssh connection and lives in a container; pid 300 has only a pipe.
    const pid = (n: number, comm: string, uid: number, fds: Record<string, string>, extra: Record<string, string> = {}) => {
      const d = join(proc, String(n));
      mkdirSync(join(d, "fd"), { recursive: true });
      for (const [fd, target] of Object.entries(fds)) symlinkSync(target, join(d, "fd", fd));
      w(join(d, "stat"), `${n} (${comm}) S 1 ${n} ${n} 0 -1 0 0 0 0 0 120 30 0 0 20 0 1 0 250 1000 10 0\n`);
      w(join(d, "status"), `Name:\t${comm}\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\n`);
      w(join(d, "cmdline"), `/usr/bin/${comm}\0--flag\0`);
      w(join(d, "statm"), "5000 300 100 10 0 200 0\n");
      w(join(d, "cgroup"), extra.cgroup ?? "0::/system.slice/x.service\n");
      symlinkSync(`/usr/bin/${comm}`, join(d, "exe"));
    };
    pid(100, "web server", 1000, { "0": "/dev/null", "3": "socket:[23456]", "4": "socket:[18300]", "5": "socket:[999999]" });
    pid(150, "web server", 1000, { "3": "socket:[23456]" });
    pid(200, "sshd", 0, { "3": "socket:[31337]" }, { cgroup: `0::/system.slice/docker-${cid}.scope\n` });
    pid(300, "cat", 0, { "1": "pipe:[42]", "2": "socket:[777]" }); // a unix socket: not in net/*, not an owner
    // Another user's process: its fd dir denies us (only effective when this test is not root).
    pid(400, "secret", 0, { "3": "socket:[40002]" });
    chmodSync(join(proc, "400", "fd"), 0o000);
  });

  afterAll(() => {
    chmodSync(join(root, "proc", "400", "fd"), 0o755);
    rmSync(root, { recursive: true, force: true });
  });

  test("facts, sockets with owners, owning processes only", async () => {
    const scan = await scanHost({ procRoot: join(root, "proc"), etcRoot: join(root, "etc") });
    expect(scan.facts).toMatchObject({
      hostname: "fakehost",
      os: "Testix 1.0",
      kernel: "6.1.0-test",
      cpus: 3,
      memTotalBytes: 1000 * 1024,
      memAvailableBytes: 500 * 1024,
      load1: 1.5,
    });
    expect(scan.sockets).toHaveLength(4 + 4 + 2);
    const byInode = new Map(scan.sockets.map((s) => [s.inode, s]));
    expect(byInode.get(23456)).toMatchObject({ state: "listen", localPort: 8080, pid: 100 });
    expect(byInode.get(18300)).toMatchObject({ proto: "udp", state: "established", pid: 100 });
    expect(byInode.get(31337)).toMatchObject({ state: "established", pid: 200 });
    expect(byInode.get(40001)).toMatchObject({ family: 6, localIp: "::1", pid: null }); // no process holds it
    expect(scan.sockets.find((s) => s.inode === 0)?.pid).toBeNull();

    expect([...scan.processes.keys()].filter((p) => p !== 400).sort()).toEqual([100, 200]);
    expect(scan.processes.get(100)).toEqual({
      pid: 100,
      ppid: 1,
      comm: "web server",
      exe: "/usr/bin/web server",
      cmdline: ["/usr/bin/web server", "--flag"],
      uid: 1000,
      user: "web",
      startTime: (btime + 2.5) * 1000,
      containerId: null,
      cpuTicks: 150,
      rssBytes: 300 * 4096,
    });
    expect(scan.processes.get(200)).toMatchObject({ user: "root", containerId: cid });
    if (process.getuid!() === 0) {
      console.log("running as root: permission bits do not deny us, so the unreadable-pid case is not exercised");
      expect(scan.unreadablePids).toEqual([]);
      expect(byInode.get(40002)?.pid).toBe(400);
    } else {
      expect(scan.unreadablePids).toEqual([400]);
      expect(byInode.get(40002)?.pid).toBeNull();
    }
  });
});

describe("scanHost on this machine", () => {
  let server: net.Server;
  let client: net.Socket;
  let accepted: net.Socket;
  let port: number;

  beforeAll(async () => {
    server = net.createServer();
    const acceptedP = new Promise<net.Socket>((resolve) => server.once("connection", resolve));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as net.AddressInfo).port;
    client = net.connect(port, "127.0.0.1");
    await new Promise((resolve) => client.once("connect", resolve));
    accepted = await acceptedP;
  });

  afterAll(() => {
    client.destroy();
    accepted.destroy();
    server.close();
  });

  const ours = (scan: HostScan, pred: (s: SocketInfo) => boolean) => scan.sockets.filter((s) => s.proto === "tcp" && pred(s));

  test("finds our listener and both ends of our connection, owned by this process", async () => {
    const t0 = performance.now();
    const scan = await scanHost();
    const ms = performance.now() - t0;
    console.log(
      `scanHost: ${ms.toFixed(1)} ms, ${scan.sockets.length} sockets, ${scan.processes.size} owning processes, ` +
        `${scan.unreadablePids.length} unreadable pids`,
    );

    const listeners = ours(scan, (s) => s.state === "listen" && s.localPort === port);
    expect(listeners).toHaveLength(1);
    expect(listeners[0]).toMatchObject({ family: 4, localIp: "127.0.0.1", pid: process.pid });

    const clientPort = client.localPort!;
    const clientEnd = ours(scan, (s) => s.state === "established" && s.localPort === clientPort && s.remotePort === port);
    const serverEnd = ours(scan, (s) => s.state === "established" && s.localPort === port && s.remotePort === clientPort);
    expect(clientEnd).toHaveLength(1);
    expect(serverEnd).toHaveLength(1);
    expect(clientEnd[0]!.pid).toBe(process.pid);
    expect(serverEnd[0]!.pid).toBe(process.pid);
    expect(clientEnd[0]!.remoteIp).toBe("127.0.0.1");

    const me = scan.processes.get(process.pid)!;
    expect(me).toBeDefined();
    expect(me.exe).toBe(realpathSync(process.execPath));
    expect(me.ppid).toBe(process.ppid);
    expect(me.uid).toBe(process.getuid!());
    expect(me.cmdline.length).toBeGreaterThan(0);
    expect(me.rssBytes).toBeGreaterThan(0);
    // btime has one-second resolution and drifts with NTP; a minute catches a wrong CLK_TCK or unit.
    expect(Math.abs(me.startTime - performance.timeOrigin)).toBeLessThan(60_000);

    expect(scan.facts.cpus).toBeGreaterThan(0);
    expect(scan.facts.memTotalBytes).toBeGreaterThan(scan.facts.memAvailableBytes);
    expect(scan.facts.kernel).not.toBe("");
    expect(scan.facts.ips).not.toContain("127.0.0.1");
    if (process.getuid!() !== 0) console.log(`unprivileged: ${scan.unreadablePids.length} pids unreadable`);
  });

  const hasIPv6Loopback = Object.values(networkInterfaces()).some((as) => as?.some((a) => a.address === "::1"));

  test.skipIf(!hasIPv6Loopback)("IPv6 listener on ::1 (skipped where the loopback interface has no ::1)", async () => {
    const v6 = net.createServer();
    await new Promise<void>((resolve, reject) => {
      v6.once("error", reject);
      v6.listen(0, "::1", () => resolve());
    });
    try {
      const v6port = (v6.address() as net.AddressInfo).port;
      const scan = await scanHost();
      const found = ours(scan, (s) => s.family === 6 && s.state === "listen" && s.localPort === v6port);
      expect(found).toHaveLength(1);
      expect(found[0]).toMatchObject({ localIp: "::1", remoteIp: "::", pid: process.pid });
    } finally {
      v6.close();
    }
  });
});
