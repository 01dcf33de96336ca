/**
 * Levels of detail (pure): views of the topology for a page that holds only what it draws. The gateway keeps one
 * ViewGraph over its mirror and HealthMaps over its health overlay, computes each subscribed spec at most a few times
 * a second, and sends each socket the diff (services/gateway/views.ts).
 *   names     short names people use, tier and site of a host
 *   model     ViewGraph (the adjacency views walk, updated per delta), HealthMaps
 *   keys      which group an entity falls in
 *   compute   computeView: marks, links, layers, summary; filters and focus
 *   diff      ViewDiffer: marks and links changed since the last frame
 *   entity    one entity for a drawer, search by short name
 */
export { computeView, focusSet, keptEntities, layerMarks, LASTSEEN_GRAIN_MS, portsOf, summarize, type ViewInput, type ViewResult } from "./compute.ts";
export { ViewDiffer, type ViewChange } from "./diff.ts";
export { EXTERNAL_GROUP, groupId, groupKeyOf } from "./keys.ts";
export { HealthMaps, ViewGraph } from "./model.ts";
export { nodeLabel, shortServiceName, siteOf, tierOf } from "./names.ts";
export { entityOf, searchEntities } from "./entity.ts";
