package ident

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	matchesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_ident_matches_total",
		Help: "Identifier matches found in flow records, by identifier type.",
	}, []string{"type"})
	scannedBytesTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "exfilwatch_ident_scanned_bytes_total",
		Help: "Bytes scanned for identifiers, including decoded layers.",
	})
	budgetExhaustedTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "exfilwatch_ident_budget_exhausted_total",
		Help: "Records whose scan stopped early at max_scan_bytes or max_window_probes.",
	})
	// matchCounters are resolved once so counting a match does no label lookup.
	matchCounters = func() (c [numTypes]prometheus.Counter) {
		for t := range c {
			c[t] = matchesTotal.WithLabelValues(typeNames[t])
		}
		return c
	}()
)
