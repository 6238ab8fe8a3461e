package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	deliveries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_webhook_deliveries_total",
		Help: "Alerts settled per endpoint: result=delivered (2xx) or dead_lettered (refused or given up).",
	}, []string{"endpoint", "result"})
	attempts = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_webhook_attempts_total",
		Help: "HTTP attempts per endpoint by outcome (2xx, 3xx, 4xx, 5xx, timeout, error).",
	}, []string{"endpoint", "outcome"})
	retries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_webhook_retries_total",
		Help: "Attempts that failed transiently and were retried, per endpoint.",
	}, []string{"endpoint"})
	requestSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "exfilwatch_webhook_request_seconds",
		Help:    "Duration of one HTTP attempt, per endpoint.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	}, []string{"endpoint"})
)
