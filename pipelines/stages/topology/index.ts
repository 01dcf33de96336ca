/**
 * The topology stage (pure): folds discovery batches into the live model and returns only what changed.
 *
 * Identity — what a thing is, not where it happens to run right now:
 *   host:<host>
 *   service:<host>:<fingerprint>:<ports|client>   (kind "process": every process of one service folds into it)
 *   listener:<host>:<proto>:<ip>:<port>            (IPv6 in brackets)
 *   external:<ip>:<port>                           (named <dns name>:<port> once a resolver reported the ip)
 * A service's fingerprint is its container image repository when the source knows the image (`image:registry/orders`,
 * tag and digest dropped), else its executable's basename (plus the main script/jar/module for interpreters such as
 * java, python or node), and its ports are the sorted listening ports of its processes (ephemeral-range ports left out
 * unless they are all it has; UDP as "53/udp"); a process that listens nowhere is a "client". So a restarted process
 * (new pid, same binary and ports) is the same service, and nginx's or postgres's several processes are one node.
 *
 * Dependencies: a connection is a flow (host, process, proto, remote ip:port); the client's ephemeral port is ignored,
 * and server-side halves (the local end is one of our listeners) are skipped since the client reports the dependency.
 * A flow's remote end resolves to the listener there: loopback and the host's own IPs → the reporting host; any other
 * IP → the host that claims it now. IP ownership is time-scoped: the newest claim wins, an older (late or replayed)
 * claim is ignored, a host that stops listing an IP loses it, and a removed host owns nothing — so an IP reused by
 * another host after a redeploy moves the flows to the new host instead of leaving phantom edges to the old one. Agents
 * are the authority on their host: a job's host.seen or listener.seen never takes an agent's IP, host node or socket.
 * Endpoints nobody here listens on become external nodes, and move onto the listener when it shows up; a call to an
 * address an agent's host holds never does (the agent sees all its host's listeners: the call waits for the listener).
 * A source back from aging is trusted again at its next full scan: until then its connections are not confirmed, as its
 * deltas cannot tell a server half of a new connection from a call.
 *
 * DEPENDS_ON service → service is derived from each (CONNECTS A → listener, LISTENS B → listener) pair with A ≠ B,
 * reference-counted per listener and kept with the edges it comes from (see deriveAdded).
 *
 * Annotations (entity.annotated: owner, team…) and names (name.seen) are facts a source owns about entities it need not
 * report itself; they are kept beside the entities and laid over them (see annotationSeen, nameSeen).
 *
 * No flicker: a flow becomes a CONNECTS edge once it was open at the end of `confirmScans` scans of its source (2 by
 * default, not necessarily consecutive), and goes only after it was closed through `graceScans` scans (2). A short-lived
 * process with one connection never reaches the graph; a client reconnecting on new ports keeps its edge. Listeners are
 * immediate: a listening socket is a deliberate service.
 *
 * Aging (`ageModel`, called on a timer): a source silent for `staleAfter` intervals has its nodes marked
 * props.health = "stale"; after `removeAfter` intervals everything it reported is removed — only what that source
 * reported (scoped cleanup). A full batch removes at once what its source no longer lists.
 *
 * Hot fields (lastSeen) are refreshed in the model; a change is a new/removed entity or a changed name/props. The store
 * gets lastSeen in a bounded trickle, at most `lastSeenPersistMs` behind (see finish).
 */
/*
 * The folder, from the bottom up (each file imports only files above it in this list, never one below):
 *   ids, identity   node and edge ids, service identity (no runtime imports: other packages use them alone)
 *   bags            the model's small collections
 *   model           TopologyModel, its options, Changes
 *   tracker         net changes of a call;  lastseen: the store's lastSeen trickle;  removals: large ones explained
 *   annotations     entity.annotated;  depends: DEPENDS_ON derivation;  graph: node and edge writes
 *   hosts           host.seen, IP ownership, where ip:port leads;  names: name.seen
 *   processes       processes folded into services;  flows: connections → CONNECTS;  listeners
 *   aging, rebuild  ageModel;  modelFromGraph and the first full scan's sweep
 *   apply           applyDiscovery, applyDiscoverySteps
 */
export { ageModel } from "./aging.ts";
export { RESERVED_PROPS } from "./annotations.ts";
export { applyDiscovery, applyDiscoverySteps } from "./apply.ts";
export { fingerprint, identityPorts, imageRepository, serviceId } from "./identity.ts";
export { EPHEMERAL_START, edgeId, externalId, hostId, hostPort, isAgentSource, isLoopback, listenerId } from "./ids.ts";
export { type AgingOptions, type Changes, DEFAULT_AGING, DEFAULT_STAGE_OPTIONS, emptyModel, isEmpty, type Removal, type RemovedEdge, type StageOptions, type TopologyModel } from "./model.ts";
export { modelFromGraph } from "./rebuild.ts";
export { LARGE_REMOVAL_ITEMS, LARGE_REMOVAL_SHARE, type RemovalSummary, summarizeRemovals } from "./removals.ts";
