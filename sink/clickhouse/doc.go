// Package clickhouse stores flow records, identifier matches and alerts in
// ClickHouse over the native protocol (clickhouse-go/v2).
//
// The schema is created by versioned migrations embedded in the binary
// (migrations/*.sql, Go templates) and recorded in a schema_migrations
// table. The DDL adapts to the server: old servers such as Debian's 18.16
// get the portable profile (FixedString(16) addresses, no codecs, no TTL, no
// LowCardinality); current servers get IPv6, LowCardinality, codecs, TTL
// and insert deduplication. Column names and meanings are identical in both
// profiles so the saved queries in deploy/clickhouse/queries run on either.
//
// Writes are at least once: WriteFlows and WriteAlerts retry with
// exponential backoff for as long as the server is unreachable and return
// nil only once every row is stored, so the caller commits its Kafka
// offsets afterwards. A retried insert may store rows twice; the alerts
// table collapses them on merge (ReplacingMergeTree on the alert id).
package clickhouse
