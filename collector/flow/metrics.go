package flow

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// Metrics are process-wide (all tables add to them), registered once.
var (
	exportedVec = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_collector_flows_exported_total",
		Help: "Flow records exported by the collector's flow table, by end reason.",
	}, []string{"reason"})
	metricEvicted = promauto.NewCounter(prometheus.CounterOpts{
		Name: "exfilwatch_collector_flows_evicted_total",
		Help: "Flows closed early because the flow table was full (max_flows).",
	})
	metricEmitErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "exfilwatch_collector_emit_errors_total",
		Help: "Flow records the emit callback returned an error for.",
	})
	metricTombstoneHits = promauto.NewCounter(prometheus.CounterOpts{
		Name: "exfilwatch_collector_tombstone_hits_total",
		Help: "Kernel counter reports ignored because the table had exported those counts already (live path).",
	})
	metricResumed = promauto.NewCounter(prometheus.CounterOpts{
		Name: "exfilwatch_collector_flows_resumed_total",
		Help: "Flows restarted from a tombstone: packets counted by the kernel after the table exported the flow (live path).",
	})
	// metricExported holds the per-reason children resolved once, so the
	// export path does not look labels up per record.
	metricExported [8]prometheus.Counter
)

func init() {
	for r := range metricExported {
		metricExported[r] = exportedVec.WithLabelValues(endReasonLabel(flowpb.EndReason(r)))
	}
}

func endReasonLabel(r flowpb.EndReason) string {
	switch r {
	case flowpb.EndReason_END_REASON_IDLE_TIMEOUT:
		return "idle_timeout"
	case flowpb.EndReason_END_REASON_ACTIVE_TIMEOUT:
		return "active_timeout"
	case flowpb.EndReason_END_REASON_TCP_FIN:
		return "tcp_fin"
	case flowpb.EndReason_END_REASON_TCP_RST:
		return "tcp_rst"
	case flowpb.EndReason_END_REASON_END_OF_CAPTURE:
		return "end_of_capture"
	case flowpb.EndReason_END_REASON_EVICTED:
		return "evicted"
	case flowpb.EndReason_END_REASON_SHUTDOWN:
		return "shutdown"
	}
	return "unspecified"
}
