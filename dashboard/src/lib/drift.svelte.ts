/**
 * The drift the map last read, shared with the drawer (so it says why a badged entity drifts without reading drift
 * again), and the one watch that reads it (lib/drift-watch.ts): it outlives a map that goes away for the registry
 * pages, so coming back reads again only when due or when the registry changed meanwhile.
 */
import { fetchComponent, fetchDrift, onRegistryChanged } from "../registry/api.ts";
import { DriftWatch, EMPTY_DRIFT, type DriftState } from "./drift-watch.ts";

class DriftShown {
  state = $state.raw<DriftState>(EMPTY_DRIFT);
  private watch: DriftWatch | null = null;

  /** Reads drift while a map shows; answers how to stop (the map's unmount). */
  follow(): () => void {
    this.watch ??= new DriftWatch({
      fetchDrift,
      fetchComponent: (id) => fetchComponent(id),
      registryChanged: onRegistryChanged,
      onChange: (s) => (this.state = s),
    });
    return this.watch.start();
  }
}

export const driftShown = new DriftShown();
