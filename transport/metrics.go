package transport

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are registered once at package level; the "stage" label is the
// stage name given to Run/RunSink, the "op" label one of fetch, write,
// commit, sink, dlq.
var (
	metRecordsIn = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_transport_records_in_total",
		Help: "Records fetched by a stage.",
	}, []string{"stage"})
	metRecordsOut = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_transport_records_out_total",
		Help: "Records a stage wrote downstream and had acknowledged.",
	}, []string{"stage"})
	metBytesIn = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_transport_bytes_in_total",
		Help: "Encoded bytes of records fetched by a stage.",
	}, []string{"stage"})
	metBytesOut = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_transport_bytes_out_total",
		Help: "Encoded bytes of records a stage wrote downstream.",
	}, []string{"stage"})
	metDeadLetters = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_transport_dead_letters_total",
		Help: "Records a stage sent to the dead-letter topic, by reason class.",
	}, []string{"stage", "reason"})
	metRetries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_transport_retries_total",
		Help: "Retries of failed broker or sink operations.",
	}, []string{"op"})
	metBrokerErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_transport_broker_errors_total",
		Help: "Errors returned by Kafka operations (each retry attempt counts).",
	}, []string{"op"})
	metCommitLag = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "exfilwatch_transport_consumer_lag",
		Help: "Records between the last fetched offset and the partition end, as last reported by the consumer.",
	}, []string{"stage"})
	metBatchSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "exfilwatch_transport_batch_seconds",
		Help:    "Time from a batch being fetched to its offsets being committed.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
	}, []string{"stage"})
	metBatchRecords = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "exfilwatch_transport_batch_records",
		Help:    "Records per fetched batch.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 9),
	}, []string{"stage"})
)
