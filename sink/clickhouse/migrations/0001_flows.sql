-- One row per exported flow record (flowpb.FlowRecord + Enrichment).
-- Ordered by (device_id, time) for per-device timelines; partitioned by day
-- so retention drops whole parts. `time` is first_seen truncated to seconds;
-- the *_ns columns keep full precision for exact read-back.
CREATE TABLE IF NOT EXISTS {{.DB}}.flows
(
    time             DateTime{{codec "DoubleDelta, LZ4"}},
    first_seen_ns    Int64{{codec "DoubleDelta, LZ4"}},
    last_seen_ns     Int64{{codec "DoubleDelta, LZ4"}},
    observed_ns      Int64{{codec "DoubleDelta, LZ4"}},
    id               String{{codec "ZSTD(1)"}},
    schema_version   UInt8,
    gateway          {{lc "String"}},
    interfaces       Array({{lc "String"}}),
    device_id        {{lc "String"}},
    device_model     {{lc "String"}},
    device_group     {{lc "String"}},
    device_os        {{lc "String"}},
    attributed_by    {{lc "String"}},
    direction        Enum8('unspecified' = 0, 'outbound' = 1, 'inbound' = 2, 'transit' = 3, 'internal' = 4),
    src_addr         {{addr}}{{codec "ZSTD(1)"}},
    dst_addr         {{addr}}{{codec "ZSTD(1)"}},
    src_port         UInt16,
    dst_port         UInt16,
    protocol         UInt8,
    ip_version       UInt8,
    bytes_out        UInt64{{codec "T64, LZ4"}},
    packets_out      UInt64{{codec "T64, LZ4"}},
    bytes_in         UInt64{{codec "T64, LZ4"}},
    packets_in       UInt64{{codec "T64, LZ4"}},
    tcp_flags_out    UInt16,
    tcp_flags_in     UInt16,
    src_mac          FixedString(6),
    community_id     String{{codec "ZSTD(1)"}},
    end_reason       Enum8('unspecified' = 0, 'idle_timeout' = 1, 'active_timeout' = 2, 'tcp_fin' = 3, 'tcp_rst' = 4, 'end_of_capture' = 5, 'evicted' = 6, 'shutdown' = 7),
    fragments        UInt32,
    dst_host         String{{codec "ZSTD(1)"}},
    dns_query        String{{codec "ZSTD(1)"}},
    dns_qtype        UInt16,
    dns_rcode        UInt8,
    tls_sni          String{{codec "ZSTD(1)"}},
    tls_alpn         Array({{lc "String"}}),
    tls_version      UInt16,
    tls_quic         UInt8,
    http_method      {{lc "String"}},
    http_host        String{{codec "ZSTD(1)"}},
    http_path        String{{codec "ZSTD(1)"}},
    http_user_agent  String{{codec "ZSTD(1)"}},
    http_content_type {{lc "String"}},
    dst_addr_class   Enum8('unspecified' = 0, 'public' = 1, 'private' = 2, 'loopback' = 3, 'link_local' = 4, 'multicast' = 5, 'reserved' = 6, 'lab' = 7),
    dst_country      {{lc "String"}},
    dst_city         {{lc "String"}},
    dst_asn          UInt32,
    dst_org          {{lc "String"}},
    cleartext        UInt8,
    match_count      UInt16,
    match_types      Array({{lc "String"}})
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (device_id, time)
{{ttl "time"}}{{settings}}
