/**
 * Kuzu's side of the registry part of the graph (GraphStore.putRegistry / loadRegistry): its tables, the statements
 * that write a diff, and the read. The adapter (kuzu.ts) runs them on its own connection, in its own transaction.
 */
import { sortRegistry, toComponent, type RegistryDiff, type RegistryGraphRows } from "./port.ts";

/** Components, what they match among discovery's entities, what they declare. */
export const REGISTRY_DDL = [
  "CREATE NODE TABLE IF NOT EXISTS Component(id STRING, name STRING, category STRING, lifecycle STRING, privacy STRING, location STRING, language STRING, framework STRING, team STRING, owners STRING[], maintainers STRING[], tags STRING[], rev INT64, PRIMARY KEY(id))",
  "CREATE REL TABLE IF NOT EXISTS MATCHES(FROM Component TO Entity)",
  "CREATE REL TABLE IF NOT EXISTS DECLARES_DEPENDENCY(FROM Component TO Component)",
];

const COMPONENT_COLS =
  "c.id AS id, c.name AS name, c.category AS category, c.lifecycle AS lifecycle, c.privacy AS privacy, c.location AS location, c.language AS language, c.framework AS framework, c.team AS team, c.owners AS owners, c.maintainers AS maintainers, c.tags AS tags, c.rev AS rev";

type Each = (cypher: string, rows: Record<string, unknown>[]) => Promise<void>;
type All = (cypher: string) => Promise<Record<string, unknown>[]>;

/** Few rows (a registry changes by hand or by import): one prepared statement per row, endpoints by key. */
export async function writeRegistryDiff(each: Each, d: RegistryDiff): Promise<void> {
  await each(`MATCH (a:Component {id: $src})-[r:DECLARES_DEPENDENCY]->(b:Component {id: $dst}) DELETE r`, d.delDeclares);
  await each(`MATCH (a:Component {id: $component})-[r:MATCHES]->(b:Entity {id: $entity}) DELETE r`, d.delMatches);
  await each("MATCH (c:Component {id: $id}) DETACH DELETE c", d.remove.map((id) => ({ id })));
  await each(
    "MERGE (c:Component {id: $id}) SET c.name = $name, c.category = $category, c.lifecycle = $lifecycle, c.privacy = $privacy, c.location = $location, c.language = $language, c.framework = $framework, c.team = $team, c.owners = CAST($owners AS STRING[]), c.maintainers = CAST($maintainers AS STRING[]), c.tags = CAST($tags AS STRING[]), c.rev = $rev",
    d.upsert.map((c) => ({ ...c })),
  );
  await each("MATCH (a:Component {id: $component}), (b:Entity {id: $entity}) MERGE (a)-[:MATCHES]->(b)", d.addMatches);
  await each("MATCH (a:Component {id: $src}), (b:Component {id: $dst}) MERGE (a)-[:DECLARES_DEPENDENCY]->(b)", d.addDeclares);
}

export async function readRegistry(all: All): Promise<RegistryGraphRows> {
  const components = (await all(`MATCH (c:Component) RETURN ${COMPONENT_COLS}`)).map(toComponent);
  const matches = (await all("MATCH (a:Component)-[:MATCHES]->(b:Entity) RETURN a.id AS component, b.id AS entity")) as { component: string; entity: string }[];
  const declares = (await all("MATCH (a:Component)-[:DECLARES_DEPENDENCY]->(b:Component) RETURN a.id AS src, b.id AS dst")) as { src: string; dst: string }[];
  return sortRegistry({ components, matches, declares });
}
