-- One row per alert. ReplacingMergeTree on the alert id: the sink delivers
-- at least once, so a retried insert may store an alert twice; merges (or
-- SELECT ... FINAL) keep one row per id, the one with the highest version
-- (created_ns), so a re-emitted alert with a later count wins.
-- Partitioned by the day of window_start (part of the deterministic id), so
-- both copies of an alert always land in the same partition and collapse.
CREATE TABLE IF NOT EXISTS {{.DB}}.alerts
(
    time             DateTime,
    id               String,
    version          UInt64,
    schema_version   UInt8,
    dedup_key        String,
    detector         {{lc "String"}},
    severity         Enum8('unspecified' = 0, 'info' = 1, 'low' = 2, 'medium' = 3, 'high' = 4, 'critical' = 5),
    device_id        {{lc "String"}},
    device_model     {{lc "String"}},
    device_group     {{lc "String"}},
    summary          String,
    evidence_keys    Array(String),
    evidence_values  Array(String),
    first_seen_ns    Int64,
    last_seen_ns     Int64,
    window_start_ns  Int64,
    created_ns       Int64,
    count            UInt64,
    dst_addr         {{addr}},
    dst_port         UInt16,
    dst_host         String,
    dst_country      {{lc "String"}},
    dst_asn          UInt32,
    dst_org          {{lc "String"}},
    flow_ids         Array(String),
    bytes            UInt64,
    score            Float64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(time)
ORDER BY id
{{ttl "time"}}
