package detect

import (
	"fmt"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestIdleDevicesEvicted(t *testing.T) {
	c := DefaultConfig()
	c.DeviceIdleTTL = time.Hour
	e := newEngine(t, c)
	var s sink
	e.Process(flow("old", at(0), "203.0.113.7"), s.emit)
	e.Process(flow("new", at(30*time.Minute), "203.0.113.7"), s.emit)
	before := e.StateBytes()
	e.Flush(at(90*time.Minute), s.emit)
	if e.devices.get(hashID("old")) != nil {
		t.Fatal("idle device kept")
	}
	if e.devices.get(hashID("new")) == nil {
		t.Fatal("active device dropped")
	}
	if after := e.StateBytes(); after >= before || after <= 0 {
		t.Fatalf("state bytes %d -> %d", before, after)
	}
}

func TestDeviceCap(t *testing.T) {
	c := DefaultConfig()
	c.MaxDevices = 5
	e := newEngine(t, c)
	var s sink
	for i := 0; i < 20; i++ {
		e.Process(flow(fmt.Sprintf("d%d", i), at(time.Duration(i)*time.Second), "203.0.113.7"), s.emit)
	}
	if e.DeviceCount() != 5 {
		t.Fatalf("%d devices, cap 5", e.DeviceCount())
	}
	if e.devices.get(hashID("d19")) == nil {
		t.Fatal("newest device evicted")
	}
}

func TestUnattributedDevicesKeyedByAddress(t *testing.T) {
	c := quiet()
	c.IdentifierLeak.Enabled = true
	e := newEngine(t, c)
	var s sink
	e.Process(flow("", at(0), "203.0.113.7", match("imei", "raw", "http.path", true)), s.emit)
	if len(s.alerts) != 1 || s.alerts[0].DedupKey != "identifier_leak|addr:10.1.0.2|AS15169|imei|" {
		t.Fatalf("unattributed: %v", s.alerts)
	}
}

// Records that raise no alert allocate nothing once state exists.
func TestProcessSteadyStateAllocs(t *testing.T) {
	c := DefaultConfig()
	c.Policy.Groups = map[string]GroupPolicy{"lab": {DenyCountries: []string{"CN"}}}
	e := newEngine(t, c)
	var s sink
	recs := []*flowpb.FlowRecord{
		flow("dev1", 0, "203.0.113.7", sni("api.example.com")),
		flow("dev1", 0, "198.51.100.1", func(r *flowpb.FlowRecord) { r.Http = &flowpb.HTTPInfo{Host: "www.example.org"} }),
		flow("dev1", 0, "10.0.0.53", dnsQuery("www.example.com")),
		flow("dev2", 0, "8.8.8.8", geo("DE", 3320, "DTAG")),
	}
	now := at(0)
	step := func() {
		for _, r := range recs {
			now += int64(time.Second)
			r.FirstSeenNs, r.LastSeenNs = now-int64(time.Second)+1, now
			e.Process(r, s.emit)
		}
	}
	// Warm up past ring growth (max_timestamps) and a few score intervals.
	for i := 0; i < 2*c.Beacon.MaxTimestamps; i++ {
		step()
	}
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Fatalf("allocs per 4 records = %v, want 0", n)
	}
	if len(s.alerts) != 0 {
		t.Fatalf("steady-state records alerted: %v", s.alerts[0].Summary)
	}
}

func TestMetricsPublished(t *testing.T) {
	c := quiet()
	c.IdentifierLeak.Enabled = true
	e := newEngine(t, c)
	e.Name = "metrics-test"
	get := func(v *prometheus.CounterVec) float64 { return value(t, v.WithLabelValues("identifier_leak")) }
	r0, a0, s0 := get(metricRecords), get(metricAlerts), get(metricSuppressed)
	var s sink
	for i := 0; i < 5; i++ {
		e.Process(flow("dev1", at(time.Duration(i)*time.Minute), "203.0.113.9", sni("a.example.com"), match("imei", "raw", "snippet.out", false)), s.emit)
	}
	e.Process(flow("dev1", at(6*time.Minute), "203.0.113.9"), s.emit)
	e.Flush(at(7*time.Minute), s.emit)
	if d := get(metricRecords) - r0; d != 6 {
		t.Errorf("records +%v, want 6", d)
	}
	if d := get(metricAlerts) - a0; d != 1 {
		t.Errorf("alerts +%v, want 1", d)
	}
	if d := get(metricSuppressed) - s0; d != 4 {
		t.Errorf("suppressed +%v, want 4", d)
	}
	if v := value(t, metricStateBytes.WithLabelValues("metrics-test")); v <= 0 || v != float64(e.StateBytes()) {
		t.Errorf("state gauge %v, StateBytes %d", v, e.StateBytes())
	}
}

func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
