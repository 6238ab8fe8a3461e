package detect

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// detector identifies one detector; it indexes the engine's local counters.
type detector uint8

const (
	detIdentifierLeak detector = iota
	detCleartext
	detPolicy
	detVolume
	detBeacon
	detLongConn
	detStrobe
	detDNS
	detFirstSeen
	numDetectors
)

// Names as they appear in Alert.detector, dedup keys and metric labels.
var detectorNames = [numDetectors]string{
	"identifier_leak", "identifiers_over_cleartext", "destination_policy", "upload_volume",
	"beaconing", "long_connection", "strobe", "dns_tunnel", "first_seen_destination",
}

func (d detector) String() string { return detectorNames[d] }

// Package-level metrics: registered once, shared by every engine. Engines
// count locally and add to these in batches so the per-record path does no
// atomic operations on shared cache lines.
var (
	metricRecords = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_detect_records_total",
		Help: "Flow records examined, per detector.",
	}, []string{"detector"})
	metricAlerts = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_detect_alerts_total",
		Help: "New alerts emitted (not counting updates of open alerts), per detector.",
	}, []string{"detector"})
	metricUpdates = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_detect_alert_updates_total",
		Help: "Updates of open alerts emitted (escalation or close with new repeats), per detector.",
	}, []string{"detector"})
	metricSuppressed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "exfilwatch_detect_suppressed_total",
		Help: "Repeat matches folded into an open alert instead of a new alert, per detector.",
	}, []string{"detector"})
	metricStateBytes = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "exfilwatch_detect_state_bytes",
		Help: "Approximate bytes of detector state held by an engine (updated on Flush).",
	}, []string{"engine"})
	metricDevices = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "exfilwatch_detect_devices",
		Help: "Devices with state in an engine (updated on Flush).",
	}, []string{"engine"})
)

type counters struct {
	records, alerts, updates, suppressed [numDetectors]uint64
}

// publish adds the local counts to the Prometheus counters and resets them.
func (c *counters) publish() {
	for d := detector(0); d < numDetectors; d++ {
		name := d.String()
		if v := c.records[d]; v > 0 {
			metricRecords.WithLabelValues(name).Add(float64(v))
		}
		if v := c.alerts[d]; v > 0 {
			metricAlerts.WithLabelValues(name).Add(float64(v))
		}
		if v := c.updates[d]; v > 0 {
			metricUpdates.WithLabelValues(name).Add(float64(v))
		}
		if v := c.suppressed[d]; v > 0 {
			metricSuppressed.WithLabelValues(name).Add(float64(v))
		}
	}
	*c = counters{}
}
