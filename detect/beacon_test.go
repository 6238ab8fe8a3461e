package detect

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

func beaconConfig() Config {
	c := quiet()
	c.Beacon.Enabled = true
	return c
}

// Hand computation for hourly connections of 1000 bytes starting at t0
// (records last 1 s, so the engine's dataset starts at t0+1s):
// after the 6th connection (hour 5) the deltas are all 3600 -> TS 1; sizes are
// equal -> DS 1; 6 of 24 bins hold 1 -> CV = sqrt(3) > 1 and 6 < 11 bars ->
// HIST 0; 6 bars reach duration_min_hours_seen and the pair spans the whole
// dataset (5 h of 5 h) -> DUR 1. Score = 0.25·(1+1+0+1) = 0.75.
func hourlyBeacon(t *testing.T, threshold float64, n int) *sink {
	c := beaconConfig()
	c.Beacon.Threshold = threshold
	e := newEngine(t, c)
	var s sink
	for i := 0; i < n; i++ {
		e.Process(flow("dev1", at(time.Duration(i)*time.Hour+time.Second), "203.0.113.7", sni("c2.example.net")), s.emit)
	}
	return &s
}

func TestBeaconScoreHand(t *testing.T) {
	s := hourlyBeacon(t, 0.75, 6)
	got := s.by("beaconing")
	// Both scoops fire: the IP pair and the SNI pair.
	if len(got) != 2 {
		t.Fatalf("got %d beacon alerts, want 2 (ip and sni)", len(got))
	}
	for _, a := range got {
		if a.Score != 0.75 || evidence(a, "timestamp_score") != "1.000" || evidence(a, "data_size_score") != "1.000" ||
			evidence(a, "histogram_score") != "0.000" || evidence(a, "duration_score") != "1.000" || evidence(a, "connections") != "6" {
			t.Fatalf("score %v evidence %v", a.Score, a.Evidence)
		}
		if a.Severity != flowpb.Severity_SEVERITY_LOW {
			t.Fatal(a.Severity)
		}
	}
	if got[0].DedupKey != "beaconing|dev1|203.0.113.7" || got[1].DedupKey != "beaconing|dev1|c2.example.net" {
		t.Fatalf("keys %q %q", got[0].DedupKey, got[1].DedupKey)
	}
	// With 5 connections only 5 bars exist: DUR 0 -> 0.5, no alert.
	if s := hourlyBeacon(t, 0.75, 5); len(s.alerts) != 0 {
		t.Fatalf("5 connections alerted: %v", s.alerts[0].Evidence)
	}
	// Threshold just above the score: no alert.
	if s := hourlyBeacon(t, 0.751, 6); len(s.alerts) != 0 {
		t.Fatal("score 0.75 alerted at threshold 0.751")
	}
}

func TestBeaconMinimumConnections(t *testing.T) {
	c := beaconConfig()
	c.Beacon.Threshold = 0.01
	e := newEngine(t, c)
	var s sink
	for i := 0; i < 3; i++ {
		e.Process(flow("dev1", at(time.Duration(i)*time.Minute), "203.0.113.7"), s.emit)
	}
	e.Flush(at(time.Hour), s.emit)
	if len(s.alerts) != 0 {
		t.Fatal("scored with 3 unique timestamps")
	}
	e.Process(flow("dev1", at(3*time.Minute), "203.0.113.7"), s.emit)
	e.Flush(at(2*time.Hour), s.emit)
	if len(s.by("beaconing")) != 1 {
		t.Fatal("4 unique timestamps not scored")
	}
}

func TestBeaconRegularVersusRandom(t *testing.T) {
	c := beaconConfig()
	e := newEngine(t, c)
	var s sink
	// 5-minute beacon with 300±3 s jitter and constant size for 24 h.
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 288; i++ {
		ts := at(time.Duration(i)*5*time.Minute + time.Duration(r.IntN(7)-3)*time.Second + time.Minute)
		e.Process(flow("beacon", ts, "203.0.113.7", bytesOut(420, 800)), s.emit)
	}
	// Browsing-like: random times in two bursts, random sizes.
	for i := 0; i < 288; i++ {
		h := time.Duration(r.IntN(3)) * time.Hour
		if i%2 == 0 {
			h += 14 * time.Hour
		}
		ts := at(h + time.Duration(r.IntN(3600))*time.Second)
		e.Process(flow("browser", ts, "198.51.100.4", bytesOut(uint64(200+r.IntN(200000)), 50000)), s.emit)
	}
	e.Flush(at(25*time.Hour), s.emit)
	var beacon, browser int
	for _, a := range s.by("beaconing") {
		switch a.DeviceId {
		case "beacon":
			beacon++
			if a.Score < 0.9 {
				t.Errorf("regular beacon scored %v (%v)", a.Score, a.Evidence)
			}
		case "browser":
			browser++
		}
	}
	if beacon == 0 || browser != 0 {
		t.Fatalf("beacon alerts %d, browser alerts %d", beacon, browser)
	}
}

func TestBeaconTimestampCapBoundsMemory(t *testing.T) {
	c := beaconConfig()
	c.Beacon.MaxTimestamps = 16
	e := newEngine(t, c)
	var s sink
	for i := 0; i < 500; i++ {
		e.Process(flow("dev1", at(time.Duration(i)*time.Minute), "203.0.113.7"), s.emit)
	}
	e.devices.get(hashID("dev1")).pairs.each(func(_ uint64, p *pair) {
		if len(p.ring) != 16 || cap(p.ring) > 32 {
			t.Fatalf("ring len %d cap %d", len(p.ring), cap(p.ring))
		}
	})
}

func TestLongConnectionEdge(t *testing.T) {
	c := quiet()
	c.Beacon.LongConnEnabled = true
	e := newEngine(t, c)
	var s sink
	// Active-timeout exports of one flow (same first_seen): 30 + 29 min.
	first := at(0)
	e.Process(flow("dev1", at(30*time.Minute), "203.0.113.7", func(r *flowpb.FlowRecord) { r.FirstSeenNs = first }), s.emit)
	e.Process(flow("dev1", at(59*time.Minute), "203.0.113.7", func(r *flowpb.FlowRecord) { r.FirstSeenNs = first }), s.emit)
	if len(s.alerts) != 0 {
		t.Fatal("59 min alerted")
	}
	e.Process(flow("dev1", at(60*time.Minute), "203.0.113.7", func(r *flowpb.FlowRecord) { r.FirstSeenNs = first }), s.emit)
	got := s.by("long_connection")
	if len(got) != 1 || evidence(got[0], "connection_seconds") != "3600" || got[0].Score != 0.2 || got[0].Severity != flowpb.Severity_SEVERITY_INFO {
		t.Fatalf("long connection at 1 h: %v", got)
	}
}

func TestStrobeEdge(t *testing.T) {
	c := quiet()
	c.Beacon.StrobeEnabled = true
	c.Beacon.StrobeConnections = 100
	e := newEngine(t, c)
	var s sink
	for i := 0; i < 99; i++ {
		e.Process(flow("dev1", at(time.Duration(i)*time.Second+time.Second), "203.0.113.7"), s.emit)
	}
	if len(s.alerts) != 0 {
		t.Fatal("99 connections alerted")
	}
	e.Process(flow("dev1", at(100*time.Second), "203.0.113.7"), s.emit)
	if got := s.by("strobe"); len(got) != 1 || evidence(got[0], "connections") != "100" {
		t.Fatalf("strobe: %v", s.alerts)
	}
}

func TestBeaconPairCap(t *testing.T) {
	c := beaconConfig()
	c.Beacon.MaxPairs = 10
	e := newEngine(t, c)
	var s sink
	for i := 0; i < 50; i++ {
		e.Process(flow("dev1", at(time.Duration(i)*time.Second), "203.0.113."+strconv.Itoa(i)), s.emit)
	}
	if n := e.devices.get(hashID("dev1")).pairs.len(); n != 10 {
		t.Fatalf("%d pairs kept, cap 10", n)
	}
}
