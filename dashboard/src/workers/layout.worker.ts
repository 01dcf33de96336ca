/**
 * The map's layout off the main thread: the page posts a view's marks and links (and the positions it shows now),
 * this answers with where every mark goes (lib/map-layout.ts). Requests carry a number; the page keeps the latest.
 */
import { layout, type LayoutInput, type LayoutResult } from "../lib/map-layout.ts";

export type LayoutRequest = { seq: number; input: LayoutInput };
export type LayoutReply = { seq: number; result: LayoutResult } | { seq: number; error: string };

self.onmessage = (ev: MessageEvent<LayoutRequest>) => {
  const { seq, input } = ev.data;
  let reply: LayoutReply;
  try {
    reply = { seq, result: layout(input) };
  } catch (e) {
    reply = { seq, error: e instanceof Error ? e.message : String(e) };
  }
  (self as unknown as Worker).postMessage(reply);
};
