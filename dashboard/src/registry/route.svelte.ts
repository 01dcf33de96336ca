/**
 * Where the registry pages are: the URL's hash (`#/registry`, `#/registry/c/<id>/requirements`, `#/registry/import`
 * …). The map keeps its view in the query string (lib/view-url.ts), so the two never overwrite each other, and a
 * registry page is a bookmark and a step the Back button undoes.
 */
export type RegistryPage =
  | { name: "list"; q: string; tags: string[]; offset: number }
  | { name: "component"; id: string; tab: "overview" | "requirements" | "history" }
  | { name: "audit" }
  | { name: "import" }
  | { name: "readiness" }
  | { name: "drift" };

const TABS = ["overview", "requirements", "history"] as const;

/** `#/registry/...` → a page; anything else (the map) → null. */
export function parseHash(hash: string): RegistryPage | null {
  const m = /^#\/registry(\/[^?]*)?(?:\?(.*))?$/.exec(hash);
  if (!m) return null;
  const parts = (m[1] ?? "").split("/").filter(Boolean).map(decodeURIComponent);
  const p = new URLSearchParams(m[2] ?? "");
  if (parts[0] === "c" && parts[1]) {
    const tab = TABS.find((t) => t === parts[2]) ?? "overview";
    return { name: "component", id: parts[1], tab };
  }
  if (parts[0] === "audit" || parts[0] === "import" || parts[0] === "readiness" || parts[0] === "drift") return { name: parts[0] };
  const offset = Number(p.get("offset") ?? 0);
  return { name: "list", q: p.get("q") ?? "", tags: (p.get("tag") ?? "").split(",").filter(Boolean), offset: Number.isInteger(offset) && offset >= 0 ? offset : 0 };
}

export function hashFor(page: RegistryPage): string {
  switch (page.name) {
    case "list": {
      const p = new URLSearchParams();
      if (page.q) p.set("q", page.q);
      if (page.tags.length) p.set("tag", page.tags.join(","));
      if (page.offset) p.set("offset", String(page.offset));
      const s = p.toString();
      return `#/registry${s ? `?${s}` : ""}`;
    }
    case "component":
      return `#/registry/c/${encodeURIComponent(page.id)}${page.tab === "overview" ? "" : `/${page.tab}`}`;
    default:
      return `#/registry/${page.name}`;
  }
}

/** The current registry page, following the hash. */
class RegistryRoute {
  page = $state<RegistryPage | null>(typeof location === "undefined" ? null : parseHash(location.hash));

  constructor() {
    if (typeof window !== "undefined") window.addEventListener("hashchange", () => (this.page = parseHash(location.hash)));
  }

  /** `replace`: no new history step (typing in the search box). */
  go(page: RegistryPage, replace = false): void {
    const h = hashFor(page);
    if (replace) history.replaceState(null, "", `${location.pathname}${location.search}${h}`);
    else if (location.hash !== h) history.pushState(null, "", `${location.pathname}${location.search}${h}`);
    this.page = page;
  }
}

export const registryRoute = new RegistryRoute();
