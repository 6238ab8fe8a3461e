package collector

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/exfilwatch/exfilwatch/collector/decode"
)

var (
	metricPackets = promauto.NewCounter(prometheus.CounterOpts{
		Name: "exfilwatch_collector_pcap_packets_total",
		Help: "Frames read from pcap files by the replay path.",
	})
	metricBytes = promauto.NewCounter(prometheus.CounterOpts{
		Name: "exfilwatch_collector_pcap_l3_bytes_total",
		Help: "L3 bytes counted into flows by the replay path (counting rules).",
	})
	skippedVec = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_collector_pcap_skipped_packets_total",
		Help: "Frames the replay path did not count, by reason (not_ip is normal: ARP, LLC, ...).",
	}, []string{"reason"})
	metricSkipped [decode.NumReasons]prometheus.Counter
)

func init() {
	for r := 1; r < decode.NumReasons; r++ {
		metricSkipped[r] = skippedVec.WithLabelValues(decode.Reason(r).String())
	}
}

// publish adds the progress since the last call to the Prometheus counters.
// It runs every few thousand packets, not per packet.
func publish(st, last *Stats) {
	metricPackets.Add(float64(st.Packets - last.Packets))
	metricBytes.Add(float64(st.L3Bytes - last.L3Bytes))
	for r := 1; r < decode.NumReasons; r++ {
		if d := st.Skipped[r] - last.Skipped[r]; d > 0 {
			metricSkipped[r].Add(float64(d))
		}
	}
	*last = *st
}
