-- One row per identifier match (Enrichment.matches of a flow): which
-- device's identifier (owner_device_id) left which device (device_id), in
-- which form and field, to which destination. Never holds the identifier.
-- Ordered by (owner_device_id, identifier_type, time) for "leaks by device
-- and identifier type".
CREATE TABLE IF NOT EXISTS {{.DB}}.matches
(
    time             DateTime{{codec "DoubleDelta, LZ4"}},
    time_ns          Int64{{codec "DoubleDelta, LZ4"}},
    flow_id          String{{codec "ZSTD(1)"}},
    device_id        {{lc "String"}},
    device_model     {{lc "String"}},
    owner_device_id  {{lc "String"}},
    identifier_type  {{lc "String"}},
    form             {{lc "String"}},
    field            {{lc "String"}},
    offset           UInt32,
    layers           UInt8,
    cleartext        UInt8,
    dst_addr         {{addr}}{{codec "ZSTD(1)"}},
    dst_port         UInt16,
    dst_host         String{{codec "ZSTD(1)"}},
    dst_country      {{lc "String"}},
    dst_asn          UInt32,
    dst_org          {{lc "String"}}
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(time)
ORDER BY (owner_device_id, identifier_type, time)
{{ttl "time"}}{{settings}}
