/** Builds the Svelte dashboard into dashboard/dist; works from the repo root (--config) and from dashboard/. */
import { fileURLToPath } from "node:url";
import { svelte } from "@sveltejs/vite-plugin-svelte";
import { defineConfig } from "vite";

const here = fileURLToPath(new URL(".", import.meta.url));
const repoRoot = fileURLToPath(new URL("..", import.meta.url));

export default defineConfig({
  root: here,
  // Relative asset URLs so the gateway can serve dist/ under any path.
  base: "./",
  plugins: [svelte({ configFile: fileURLToPath(new URL("./svelte.config.js", import.meta.url)) })],
  // The dashboard imports the shared contracts and the pure delta fold from ../pipelines.
  server: {
    fs: { allow: [repoRoot] },
    proxy: {
      "/api": process.env.ORRERY_GATEWAY ?? "http://127.0.0.1:8080",
      "/ws": { target: (process.env.ORRERY_GATEWAY ?? "http://127.0.0.1:8080").replace(/^http/, "ws"), ws: true },
    },
  },
  build: {
    outDir: fileURLToPath(new URL("./dist", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 800,
  },
});
