/**
 * The README's NOC questions, as they are printed there (portable between Kuzu and Neo4j). The ones that walk
 * dependencies start from one host's database or load balancer: estate-wide, at 10k hosts they return most of the
 * estate (tens of thousands of rows, every path between 400 load balancers and 1,000 databases) and one of them filled
 * Kuzu's buffer pool. The contract suite (contract.ts) runs them on both engines; bench estate times them.
 */
export const NOC_QUERIES = {
  dependsOnDatabase: `MATCH (db:Entity {kind: 'process', host: $host})-[:LISTENS]->(:Entity {kind: 'listener', port: $port})
MATCH p = (d:Entity)-[:DEPENDS_ON*1..5]->(db)
RETURN d.name AS dependant, d.host AS host, min(length(p)) AS hops
ORDER BY hops, dependant, host`,
  lbToDatabase: `MATCH (lb:Entity {kind: 'process', host: $lb})-[:LISTENS]->(:Entity {port: $from})
MATCH (db:Entity {kind: 'process', host: $db})-[:LISTENS]->(:Entity {port: $to})
MATCH p = (lb)-[:DEPENDS_ON*1..6]->(db)
RETURN nodes(p) AS path, length(p) AS hops
ORDER BY hops LIMIT 20`,
  /** the names along the path need a list expression, which the two engines spell differently */
  lbToDatabaseNames: {
    kuzu: `MATCH (lb:Entity {kind: 'process', host: $lb})-[:LISTENS]->(:Entity {port: $from})
MATCH (db:Entity {kind: 'process', host: $db})-[:LISTENS]->(:Entity {port: $to})
MATCH p = (lb)-[:DEPENDS_ON*1..6]->(db)
RETURN properties(nodes(p), 'name') AS names, length(p) AS hops
ORDER BY hops LIMIT 20`,
    neo4j: `MATCH (lb:Entity {kind: 'process', host: $lb})-[:LISTENS]->(:Entity {port: $from})
MATCH (db:Entity {kind: 'process', host: $db})-[:LISTENS]->(:Entity {port: $to})
MATCH p = (lb)-[:DEPENDS_ON*1..6]->(db)
RETURN [n IN nodes(p) | n.name] AS names, length(p) AS hops
ORDER BY hops LIMIT 20`,
  } as Record<string, string>,
  callersOfDatabase: `MATCH (c:Entity)-[:CONNECTS]->(l:Entity {kind: 'listener', port: $port})<-[:LISTENS]-(db:Entity {host: $host})
RETURN c.host AS host, c.name AS caller, db.name AS database
ORDER BY host, caller`,
  servicesWithoutOwner: `MATCH (s:Entity {kind: 'process'})
WHERE s.owner = ''
RETURN s.host AS host, s.name AS service
ORDER BY host, service`,
  edgesNotSeenSince: `MATCH (a:Entity)-[e]->(b:Entity)
WHERE e.lastSeen < $since
RETURN e.id AS edge, a.name AS src, b.name AS dst, e.lastSeen AS lastSeen
ORDER BY edge`,
};
