package clickhouse

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are labelled by destination table (flows, matches, alerts).
var (
	rowsInserted = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_sink_clickhouse_rows_inserted_total",
		Help: "Rows the ClickHouse server acknowledged, per table.",
	}, []string{"table"})
	batchesSent = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_sink_clickhouse_batches_total",
		Help: "INSERT blocks the ClickHouse server acknowledged, per table.",
	}, []string{"table"})
	insertSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "exfilwatch_sink_clickhouse_insert_seconds",
		Help:    "Duration of one successful INSERT block (prepare, append, send), per table.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
	}, []string{"table"})
	insertRetries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_sink_clickhouse_retries_total",
		Help: "INSERT attempts that failed with a transient error and were retried, per table.",
	}, []string{"table"})
	blocksNotResent = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_sink_clickhouse_blocks_not_resent_total",
		Help: "Blocks whose INSERT failed without a server answer but which were found stored, so not sent again, per table.",
	}, []string{"table"})
	insertErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_sink_clickhouse_errors_total",
		Help: "INSERT attempts that failed (transient or permanent), per table.",
	}, []string{"table"})
	migrationsApplied = promauto.NewCounter(prometheus.CounterOpts{
		Name: "exfilwatch_sink_clickhouse_migrations_applied_total",
		Help: "Schema migrations applied by this process.",
	})
)
