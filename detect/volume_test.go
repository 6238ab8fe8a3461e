package detect

import (
	"math"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// volumeCase warms a device with 6 one-hour windows of exactly 10,000,000
// bytes to Google (variance 0, so stddev is the floor 0.1·mean = 1,000,000)
// and returns the engine at the start of window 6, whose limit is
// 10e6 + 3·1e6 = 13,000,000 bytes.
func volumeCase(t *testing.T) *Engine {
	c := quiet()
	c.Volume.Enabled = true
	e := newEngine(t, c)
	var s sink
	for w := 0; w < 6; w++ {
		e.Process(flow("dev1", at(time.Duration(w)*time.Hour+time.Minute), "8.8.8.8", bytesOut(10_000_000, 10_000_000)), s.emit)
	}
	if len(s.alerts) != 0 {
		t.Fatalf("warm-up alerted: %v", s.alerts)
	}
	return e
}

func TestUploadVolumeZThresholdEdge(t *testing.T) {
	e := volumeCase(t)
	var s sink
	e.Process(flow("dev1", at(6*time.Hour+time.Minute), "8.8.8.8", bytesOut(12_999_999, 12_999_999)), s.emit)
	if len(s.alerts) != 0 {
		t.Fatalf("just below the limit alerted: %v", s.alerts[0].Summary)
	}
	e = volumeCase(t)
	// Two flows adding up to exactly the limit: the second crosses it.
	e.Process(flow("dev1", at(6*time.Hour+time.Minute), "8.8.8.8", bytesOut(6_000_000, 6_000_000)), s.emit)
	e.Process(flow("dev1", at(6*time.Hour+2*time.Minute), "8.8.8.8", bytesOut(7_000_000, 7_000_000)), s.emit)
	got := s.by("upload_volume")
	if len(got) != 1 {
		t.Fatalf("at the limit: %d alerts", len(got))
	}
	a := got[0]
	if evidence(a, "z") != "3.00" || evidence(a, "baseline_mean") != "10000000" || a.Bytes != 13_000_000 || a.WindowStartNs != at(6*time.Hour) {
		t.Fatalf("alert evidence %v bytes %d", a.Evidence, a.Bytes)
	}
	// Another destination has no baseline: never alerts.
	e.Process(flow("dev1", at(6*time.Hour+3*time.Minute), "1.1.1.1", geo("AU", 13335, "Cloudflare"), bytesOut(50_000_000, 50_000_000)), s.emit)
	if len(s.by("upload_volume")) != 1 {
		t.Fatal("cold destination alerted")
	}
}

func TestUploadVolumeWarmupAndMinBytes(t *testing.T) {
	c := quiet()
	c.Volume.Enabled = true
	e := newEngine(t, c)
	var s sink
	// Only 5 completed windows before the spike: still warming up.
	for w := 0; w < 5; w++ {
		e.Process(flow("dev1", at(time.Duration(w)*time.Hour), "8.8.8.8", bytesOut(1000, 1000)), s.emit)
	}
	e.Process(flow("dev1", at(5*time.Hour), "8.8.8.8", bytesOut(9_000_000, 9_000_000)), s.emit)
	if len(s.alerts) != 0 {
		t.Fatal("alerted during warm-up")
	}
	// Huge z but under min_bytes (5 MiB): no alert.
	c2 := quiet()
	c2.Volume.Enabled = true
	e = newEngine(t, c2)
	for w := 0; w < 6; w++ {
		e.Process(flow("dev1", at(time.Duration(w)*time.Hour), "8.8.8.8", bytesOut(1000, 1000)), s.emit)
	}
	e.Process(flow("dev1", at(6*time.Hour), "8.8.8.8", bytesOut(5<<20-1, 5<<20)), s.emit)
	if len(s.alerts) != 0 {
		t.Fatal("alerted under min_bytes")
	}
	e.Process(flow("dev1", at(6*time.Hour+time.Second), "8.8.8.8", bytesOut(1, 1)), s.emit)
	if len(s.alerts) != 1 {
		t.Fatal("no alert at min_bytes")
	}
}

func TestEWMAHand(t *testing.T) {
	// alpha 0.5: x = 10, 20 -> mean 15, var 0.5*(0 + 10*5) = 25.
	var s volState
	s.fold(10, 0.5)
	s.fold(20, 0.5)
	if s.mean != 15 || s.variance != 25 || s.windows != 2 {
		t.Fatalf("ewma mean %v var %v", s.mean, s.variance)
	}
	// third x = 15: diff 0 -> var 0.5*25 = 12.5.
	s.fold(15, 0.5)
	if s.mean != 15 || math.Abs(s.variance-12.5) > 1e-12 {
		t.Fatalf("ewma mean %v var %v", s.mean, s.variance)
	}
}

func TestUploadHeavyFlow(t *testing.T) {
	c := quiet()
	c.Volume.Enabled = true
	e := newEngine(t, c)
	var s sink
	const out = 10 << 20
	e.Process(flow("dev1", at(time.Minute), "8.8.8.8", bytesOut(out, out/10+1)), s.emit) // ratio just below 10
	e.Process(flow("dev1", at(2*time.Minute), "8.8.8.8", bytesOut(out-1, 0)), s.emit)    // bytes just below
	if len(s.alerts) != 0 {
		t.Fatalf("below edges alerted: %v", s.alerts[0].Summary)
	}
	e.Process(flow("dev1", at(3*time.Minute), "8.8.8.8", bytesOut(out, out/10)), s.emit) // exactly ratio 10
	if len(s.alerts) != 1 || evidence(s.alerts[0], "ratio") != "10.0" {
		t.Fatalf("upload-heavy flow: %v", s.alerts)
	}
	if s.alerts[0].Severity != flowpb.Severity_SEVERITY_MEDIUM {
		t.Fatal(s.alerts[0].Severity)
	}
}
