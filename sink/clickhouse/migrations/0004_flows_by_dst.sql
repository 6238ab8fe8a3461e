-- The destination-ordered copy of the flow columns the per-destination
-- queries need (country egress, first-seen destinations, beacons, top
-- upload destinations), kept by a materialized view on inserts into flows.
-- Reading by destination from `flows` (ordered by device) would scan
-- everything; this table is ordered by (dst_addr, time) instead.
-- It deduplicates inserts like flows: current servers still feed the view
-- with a retried block that flows drops, and only the target table's own
-- deduplication window keeps the copy out (seen on ClickHouse 26.9).
CREATE TABLE IF NOT EXISTS {{.DB}}.flows_by_dst
(
    time             DateTime{{codec "DoubleDelta, LZ4"}},
    first_seen_ns    Int64{{codec "DoubleDelta, LZ4"}},
    dst_addr         {{addr}}{{codec "ZSTD(1)"}},
    dst_port         UInt16,
    protocol         UInt8,
    dst_host         String{{codec "ZSTD(1)"}},
    dst_country      {{lc "String"}},
    dst_asn          UInt32,
    dst_org          {{lc "String"}},
    device_id        {{lc "String"}},
    device_model     {{lc "String"}},
    direction        Enum8('unspecified' = 0, 'outbound' = 1, 'inbound' = 2, 'transit' = 3, 'internal' = 4),
    bytes_out        UInt64{{codec "T64, LZ4"}},
    bytes_in         UInt64{{codec "T64, LZ4"}},
    match_count      UInt16
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (dst_addr, time)
{{ttl "time"}}{{settings}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.flows_by_dst_mv TO {{.DB}}.flows_by_dst AS
SELECT time, first_seen_ns, dst_addr, dst_port, protocol, dst_host, dst_country, dst_asn, dst_org,
       device_id, device_model, direction, bytes_out, bytes_in, match_count
FROM {{.DB}}.flows
