/** Dashboard entry: one TopologyState for the page, connected by App to the gateway's /ws. */
import { mount } from "svelte";
import App from "./App.svelte";
import { TopologyState } from "./lib/topology.svelte.ts";

const target = document.getElementById("app");
if (!target) throw new Error("#app element missing from index.html");

export default mount(App, { target, props: { topo: new TopologyState() } });
