-- Orrery's tables on the ClickHouse cluster `orrery` (cluster.xml): the same columns, order keys and TTLs as the
-- services create on the embedded engine (services/metrics/clickhouse/schema.ts, services/history/clickhouse.ts,
-- services/alerts/history.ts), on Replicated* engines with their parts coordinated by ClickHouse Keeper. Run once,
-- before the services start (the ClickHouse image runs it from /docker-entrypoint-initdb.d); the services' own
-- CREATE TABLE IF NOT EXISTS then finds the tables and leaves them. Retention below is the services' default
-- (ORRERY_METRICS_TTL_DAYS 30, ORRERY_METRICS_1M_TTL_DAYS 90, ORRERY_METRICS_1H_TTL_DAYS 730,
-- ORRERY_HISTORY_TTL_DAYS 90, ORRERY_ALERTS_TTL_DAYS 90); a service started with other values adopts them with ALTER.
--
-- Deduplication: the services insert with insert_deduplication_token (the JetStream batch id), which
-- ReplicatedMergeTree honours through Keeper across replicas (replicated_deduplication_window), so a batch redelivered
-- to another replica is not stored twice.
--
-- Rollups: block numbers are no watermark on replicated tables (given out per partition through Keeper, parts visible
-- out of order), so the metrics service keeps samples_1m / samples_1h here by the materialized views below (its
-- `views` mode, picked from the engine of `samples`): each batch-day is one insert with the token
-- metrics:<batchId>:<day>, and with deduplicate_blocks_in_dependent_materialized_views a second copy is dropped in
-- samples and in both views' inserts alike, whichever service or replica sends it. rollup_state is kept for a
-- database switched between modes.

CREATE DATABASE IF NOT EXISTS orrery ON CLUSTER orrery;

CREATE TABLE IF NOT EXISTS orrery.samples ON CLUSTER orrery (
    entity LowCardinality(String),
    metric LowCardinality(String),
    ts DateTime64(3) CODEC(DoubleDelta, ZSTD(1)),
    value Float64 CODEC(Gorilla, ZSTD(1)),
    labels Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    batch String DEFAULT '' CODEC(ZSTD(1))
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/orrery/samples', '{replica}')
PARTITION BY toYYYYMMDD(ts)
ORDER BY (metric, entity, ts)
TTL toDateTime(ts) + INTERVAL 30 DAY
SETTINGS replicated_deduplication_window = 10000, ttl_only_drop_parts = 1, enable_block_number_column = 1;

CREATE TABLE IF NOT EXISTS orrery.samples_1m ON CLUSTER orrery (
    metric LowCardinality(String),
    entity LowCardinality(String),
    t DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    sum SimpleAggregateFunction(sum, Float64) CODEC(Gorilla, ZSTD(1)),
    count SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    min SimpleAggregateFunction(min, Float64) CODEC(Gorilla, ZSTD(1)),
    max SimpleAggregateFunction(max, Float64) CODEC(Gorilla, ZSTD(1)),
    last AggregateFunction(argMax, Float64, DateTime64(3)),
    last_ts SimpleAggregateFunction(max, DateTime64(3)) CODEC(DoubleDelta, ZSTD(1))
) ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/orrery/samples_1m', '{replica}')
PARTITION BY toYYYYMM(t)
ORDER BY (metric, entity, t)
TTL t + INTERVAL 90 DAY
SETTINGS replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS orrery.samples_1h ON CLUSTER orrery (
    metric LowCardinality(String),
    entity LowCardinality(String),
    t DateTime('UTC') CODEC(DoubleDelta, ZSTD(1)),
    sum SimpleAggregateFunction(sum, Float64) CODEC(Gorilla, ZSTD(1)),
    count SimpleAggregateFunction(sum, UInt64) CODEC(T64, ZSTD(1)),
    min SimpleAggregateFunction(min, Float64) CODEC(Gorilla, ZSTD(1)),
    max SimpleAggregateFunction(max, Float64) CODEC(Gorilla, ZSTD(1)),
    last AggregateFunction(argMax, Float64, DateTime64(3)),
    last_ts SimpleAggregateFunction(max, DateTime64(3)) CODEC(DoubleDelta, ZSTD(1))
) ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/orrery/samples_1h', '{replica}')
PARTITION BY toYear(t)
ORDER BY (metric, entity, t)
TTL t + INTERVAL 730 DAY
SETTINGS replicated_deduplication_window = 10000, ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS orrery.rollup_state ON CLUSTER orrery (
    step LowCardinality(String),
    from_block UInt64,
    to_block UInt64,
    at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/orrery/rollup_state', '{replica}', to_block)
ORDER BY step;

CREATE MATERIALIZED VIEW IF NOT EXISTS orrery.samples_1m_mv ON CLUSTER orrery TO orrery.samples_1m AS
    SELECT metric, entity, toStartOfMinute(ts) AS t, sum(value) AS sum, count() AS count, min(value) AS min,
           max(value) AS max, argMaxState(value, ts) AS last, max(ts) AS last_ts
    FROM orrery.samples GROUP BY metric, entity, t;

CREATE MATERIALIZED VIEW IF NOT EXISTS orrery.samples_1h_mv ON CLUSTER orrery TO orrery.samples_1h AS
    SELECT metric, entity, toStartOfHour(ts) AS t, sum(value) AS sum, count() AS count, min(value) AS min,
           max(value) AS max, argMaxState(value, ts) AS last, max(ts) AS last_ts
    FROM orrery.samples GROUP BY metric, entity, t;

CREATE TABLE IF NOT EXISTS orrery.topology_changes ON CLUSTER orrery (
    rev UInt64,
    seq UInt32,
    ts DateTime64(3) CODEC(DoubleDelta, ZSTD(1)),
    op Enum8('upsert' = 1, 'remove' = 2),
    entity Enum8('node' = 1, 'edge' = 2),
    id String,
    kind LowCardinality(String),
    src String,
    dst String,
    name String,
    source LowCardinality(String),
    props String CODEC(ZSTD(1)),
    firstSeen Int64,
    lastSeen Int64,
    checkpoint UInt8 DEFAULT 0
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/orrery/topology_changes', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (entity, id, rev, seq)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS orrery.alerts_history ON CLUSTER orrery (
    at DateTime64(3) CODEC(DoubleDelta, ZSTD(1)),
    id String,
    source LowCardinality(String),
    fingerprint String,
    state LowCardinality(String),
    severity LowCardinality(String),
    summary String,
    labels Map(LowCardinality(String), String),
    host String,
    address String,
    service String,
    port UInt16,
    startsAt DateTime64(3),
    endsAt Nullable(DateTime64(3)),
    entities Array(String)
) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/orrery/alerts_history', '{replica}')
PARTITION BY toYYYYMM(at)
ORDER BY (fingerprint, at, id)
TTL toDateTime(at) + INTERVAL 90 DAY
SETTINGS replicated_deduplication_window = 10000;

-- With more than one shard, each table above gets a Distributed front the services read and write instead, e.g.
--   CREATE TABLE orrery.samples_all ON CLUSTER orrery AS orrery.samples
--     ENGINE = Distributed(orrery, orrery, samples, cityHash64(entity));
-- (sharding by entity keeps one entity's series, and its rollups, on one shard).
