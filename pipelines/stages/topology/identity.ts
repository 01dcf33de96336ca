/**
 * What a process is, independent of its pid: the fingerprint and identity ports that make its service id.
 */
import type { ProcessIdentity } from "../../contracts/common.ts";
import { EPHEMERAL_START } from "./ids.ts";

const INTERPRETERS = /^(java|python[0-9.]*|pypy[0-9.]*|node|nodejs|bun|deno|ruby[0-9.]*|perl[0-9.]*|php[0-9.]*|php-fpm[0-9.]*|dotnet|mono|sh|bash|dash|zsh|erl|beam\.smp)$/;
const VALUE_FLAGS = new Set(["-cp", "-classpath", "--class-path", "-p", "--module-path", "-X", "-W", "-r", "--require", "-I"]);
/** Subcommands of runtimes that come before the script (`bun run x.ts`, `deno run x.ts`, `npm exec`). */
const SUBCOMMANDS = new Set(["run", "test", "exec", "x", "start", "serve"]);
const GENERIC = /^(main|index|app|server|__main__)\.[a-z]+$/;
const base = (path: string) => path.replace(/ \(deleted\)$/, "").split("/").pop() ?? "";
/** The script's name; a generic one (main.ts, index.js) with its folder, so services/agent/main.ts is "agent/main.ts". */
const script = (path: string) => {
  const parts = path.split("/").filter(Boolean);
  const last = parts.pop() ?? "";
  return GENERIC.test(last) && parts.length ? `${parts.pop()}/${last}` : last;
};

const clean = (s: string) => s.replace(/[:\s|]/g, "_").slice(0, 96);
/** An image reference without its tag or digest: `registry:5000/orders:1.4@sha256:…` → `registry:5000/orders`. */
export function imageRepository(image: string): string {
  const noDigest = image.split("@")[0]!;
  const slash = noDigest.lastIndexOf("/");
  const colon = noDigest.lastIndexOf(":");
  return colon > slash ? noDigest.slice(0, colon) : noDigest;
}

/**
 * What a process is, independent of its pid. In a container whose image the source knows: the image repository
 * (`image:registry/orders`), so an image upgrade is the same service. Otherwise the executable's basename, plus for
 * interpreters and VMs the thing they run (`java -jar orders.jar` → "java:orders.jar", `python3 -m celery` →
 * "python3:celery", `bun run api/main.ts` → "bun:api/main.ts").
 */
export function fingerprint(p: ProcessIdentity): string {
  if (p.containerImage) return `image:${clean(imageRepository(p.containerImage))}`;
  const exe = (base(p.exe ?? "") || p.comm || "?").replace(/\.exe$/, "");
  if (!INTERPRETERS.test(exe)) return clean(exe);
  const args = p.cmdline.slice(1);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "-jar" || a === "-m" || a === "-c") {
      const v = args[i + 1];
      if (v !== undefined) return `${clean(exe)}:${a === "-c" ? "inline" : clean(base(v))}`;
      break;
    }
    if (VALUE_FLAGS.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith("-") || (i === 0 && SUBCOMMANDS.has(a))) continue;
    return `${clean(exe)}:${clean(script(a))}`;
  }
  return clean(exe);
}

/** The ports that say which service a process is: its listening ports, ephemeral ones only if that is all it has. */
export function identityPorts(listeners: Iterable<{ proto: string; port: number }>): string {
  const all = new Set<string>();
  const fixed = new Set<string>();
  for (const l of listeners) {
    const p = l.proto === "tcp" ? String(l.port) : `${l.port}/${l.proto}`;
    all.add(p);
    if (l.port < EPHEMERAL_START) fixed.add(p);
  }
  const use = fixed.size ? fixed : all;
  if (!use.size) return "client";
  return [...use].sort((a, b) => parseInt(a) - parseInt(b) || a.localeCompare(b)).join(",");
}

/** The service node id of a process on a host, given the sockets it listens on. */
export function serviceId(host: string, p: ProcessIdentity, listeners: Iterable<{ proto: string; port: number }>): string {
  return `service:${host}:${fingerprint(p)}:${identityPorts(listeners)}`;
}
