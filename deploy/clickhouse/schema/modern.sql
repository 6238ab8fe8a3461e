-- Generated from sink/clickhouse/migrations (profile modern, database exfilwatch,
-- ttl_days 90) by `go test ./sink/clickhouse -run Golden -update`. Do not edit:
-- the sink applies the embedded migrations itself (exfilwatch sink migrate).
CREATE DATABASE IF NOT EXISTS exfilwatch;

-- migration 0001_flows
CREATE TABLE IF NOT EXISTS exfilwatch.flows
(
    time             DateTime CODEC(DoubleDelta, LZ4),
    first_seen_ns    Int64 CODEC(DoubleDelta, LZ4),
    last_seen_ns     Int64 CODEC(DoubleDelta, LZ4),
    observed_ns      Int64 CODEC(DoubleDelta, LZ4),
    id               String CODEC(ZSTD(1)),
    schema_version   UInt8,
    gateway          LowCardinality(String),
    interfaces       Array(LowCardinality(String)),
    device_id        LowCardinality(String),
    device_model     LowCardinality(String),
    device_group     LowCardinality(String),
    device_os        LowCardinality(String),
    attributed_by    LowCardinality(String),
    direction        Enum8('unspecified' = 0, 'outbound' = 1, 'inbound' = 2, 'transit' = 3, 'internal' = 4),
    src_addr         IPv6 CODEC(ZSTD(1)),
    dst_addr         IPv6 CODEC(ZSTD(1)),
    src_port         UInt16,
    dst_port         UInt16,
    protocol         UInt8,
    ip_version       UInt8,
    bytes_out        UInt64 CODEC(T64, LZ4),
    packets_out      UInt64 CODEC(T64, LZ4),
    bytes_in         UInt64 CODEC(T64, LZ4),
    packets_in       UInt64 CODEC(T64, LZ4),
    tcp_flags_out    UInt16,
    tcp_flags_in     UInt16,
    src_mac          FixedString(6),
    community_id     String CODEC(ZSTD(1)),
    end_reason       Enum8('unspecified' = 0, 'idle_timeout' = 1, 'active_timeout' = 2, 'tcp_fin' = 3, 'tcp_rst' = 4, 'end_of_capture' = 5, 'evicted' = 6, 'shutdown' = 7),
    fragments        UInt32,
    dst_host         String CODEC(ZSTD(1)),
    dns_query        String CODEC(ZSTD(1)),
    dns_qtype        UInt16,
    dns_rcode        UInt8,
    tls_sni          String CODEC(ZSTD(1)),
    tls_alpn         Array(LowCardinality(String)),
    tls_version      UInt16,
    tls_quic         UInt8,
    http_method      LowCardinality(String),
    http_host        String CODEC(ZSTD(1)),
    http_path        String CODEC(ZSTD(1)),
    http_user_agent  String CODEC(ZSTD(1)),
    http_content_type LowCardinality(String),
    dst_addr_class   Enum8('unspecified' = 0, 'public' = 1, 'private' = 2, 'loopback' = 3, 'link_local' = 4, 'multicast' = 5, 'reserved' = 6, 'lab' = 7),
    dst_country      LowCardinality(String),
    dst_city         LowCardinality(String),
    dst_asn          UInt32,
    dst_org          LowCardinality(String),
    cleartext        UInt8,
    match_count      UInt16,
    match_types      Array(LowCardinality(String))
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (device_id, time)
TTL time + INTERVAL 90 DAY
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000;

-- migration 0002_alerts
CREATE TABLE IF NOT EXISTS exfilwatch.alerts
(
    time             DateTime,
    id               String,
    version          UInt64,
    schema_version   UInt8,
    dedup_key        String,
    detector         LowCardinality(String),
    severity         Enum8('unspecified' = 0, 'info' = 1, 'low' = 2, 'medium' = 3, 'high' = 4, 'critical' = 5),
    device_id        LowCardinality(String),
    device_model     LowCardinality(String),
    device_group     LowCardinality(String),
    summary          String,
    evidence_keys    Array(String),
    evidence_values  Array(String),
    first_seen_ns    Int64,
    last_seen_ns     Int64,
    window_start_ns  Int64,
    created_ns       Int64,
    count            UInt64,
    dst_addr         IPv6,
    dst_port         UInt16,
    dst_host         String,
    dst_country      LowCardinality(String),
    dst_asn          UInt32,
    dst_org          LowCardinality(String),
    flow_ids         Array(String),
    bytes            UInt64,
    score            Float64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(time)
ORDER BY id
TTL time + INTERVAL 90 DAY;

-- migration 0003_matches
CREATE TABLE IF NOT EXISTS exfilwatch.matches
(
    time             DateTime CODEC(DoubleDelta, LZ4),
    time_ns          Int64 CODEC(DoubleDelta, LZ4),
    flow_id          String CODEC(ZSTD(1)),
    device_id        LowCardinality(String),
    device_model     LowCardinality(String),
    owner_device_id  LowCardinality(String),
    identifier_type  LowCardinality(String),
    form             LowCardinality(String),
    field            LowCardinality(String),
    offset           UInt32,
    layers           UInt8,
    cleartext        UInt8,
    dst_addr         IPv6 CODEC(ZSTD(1)),
    dst_port         UInt16,
    dst_host         String CODEC(ZSTD(1)),
    dst_country      LowCardinality(String),
    dst_asn          UInt32,
    dst_org          LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (owner_device_id, identifier_type, time)
TTL time + INTERVAL 90 DAY
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000;

-- migration 0004_flows_by_dst
CREATE TABLE IF NOT EXISTS exfilwatch.flows_by_dst
(
    time             DateTime CODEC(DoubleDelta, LZ4),
    first_seen_ns    Int64 CODEC(DoubleDelta, LZ4),
    dst_addr         IPv6 CODEC(ZSTD(1)),
    dst_port         UInt16,
    protocol         UInt8,
    dst_host         String CODEC(ZSTD(1)),
    dst_country      LowCardinality(String),
    dst_asn          UInt32,
    dst_org          LowCardinality(String),
    device_id        LowCardinality(String),
    device_model     LowCardinality(String),
    direction        Enum8('unspecified' = 0, 'outbound' = 1, 'inbound' = 2, 'transit' = 3, 'internal' = 4),
    bytes_out        UInt64 CODEC(T64, LZ4),
    bytes_in         UInt64 CODEC(T64, LZ4),
    match_count      UInt16
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (dst_addr, time)
TTL time + INTERVAL 90 DAY
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000;
CREATE MATERIALIZED VIEW IF NOT EXISTS exfilwatch.flows_by_dst_mv TO exfilwatch.flows_by_dst AS
SELECT time, first_seen_ns, dst_addr, dst_port, protocol, dst_host, dst_country, dst_asn, dst_org,
       device_id, device_model, direction, bytes_out, bytes_in, match_count
FROM exfilwatch.flows;
