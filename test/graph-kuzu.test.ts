import { rmSync } from "node:fs";
import { join } from "node:path";
import { graphStoreContract } from "../services/graph/contract.ts";
import { KuzuGraphStore } from "../services/graph/kuzu.ts";
import { tempDir } from "./helpers/tmp.ts";

graphStoreContract("kuzu", async () => {
  const { dir, cleanup } = tempDir("orrery-kuzu-");
  const store = new KuzuGraphStore(join(dir, "db"));
  return {
    store,
    cleanup: async () => {
      await store.close();
      cleanup();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
