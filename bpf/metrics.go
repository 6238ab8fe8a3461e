package bpf

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Kernel and user-space counters are exported by a collector that reads the
// live probes at scrape time, so the per-packet path never touches
// Prometheus. Registered once at package level.
var (
	eventsDesc = prometheus.NewDesc("exfilwatch_bpf_events_total",
		"eBPF probe counters by name (kernel per-CPU counters summed, plus user-space ones).",
		[]string{"counter"}, nil)
	entriesDesc = prometheus.NewDesc("exfilwatch_bpf_flow_entries",
		"Directional flow entries in the kernel table at the last poll.", nil, nil)

	liveMu     sync.Mutex
	liveProbes = map[*Probe]struct{}{}
)

type probeCollector struct{}

func (probeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- eventsDesc
	ch <- entriesDesc
}

func (probeCollector) Collect(ch chan<- prometheus.Metric) {
	liveMu.Lock()
	defer liveMu.Unlock()
	sum := map[string]uint64{}
	for p := range liveProbes {
		for k, v := range p.Counters() {
			sum[k] += v
		}
	}
	for k, v := range sum {
		if k == "flow_entries" {
			ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(v))
			continue
		}
		ch <- prometheus.MustNewConstMetric(eventsDesc, prometheus.CounterValue, float64(v), k)
	}
}

func init() { prometheus.MustRegister(probeCollector{}) }

func register(p *Probe) {
	liveMu.Lock()
	liveProbes[p] = struct{}{}
	liveMu.Unlock()
}

func unregister(p *Probe) {
	liveMu.Lock()
	delete(liveProbes, p)
	liveMu.Unlock()
}
