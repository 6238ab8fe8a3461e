package detect

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

func roundTrip(t *testing.T, e *Engine, c Config) *Engine {
	t.Helper()
	var buf bytes.Buffer
	if err := e.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	e2 := newEngine(t, c)
	if err := e2.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	return e2
}

// An alert that needs state from before the restart still fires after it,
// for each stateful detector.
func TestSnapshotRestoreKeepsState(t *testing.T) {
	c := DefaultConfig()
	c.IdentifierLeak.Enabled = false
	c.Cleartext.Enabled = false
	c.Beacon.LongConnEnabled = false
	c.DNS.QueryChars = 0
	c.FirstSeen.Learning = time.Hour
	e := newEngine(t, c)
	var s sink
	// Beacon: 5 hourly connections (score 0.5), the 6th reaches 0.75.
	for i := 0; i < 5; i++ {
		e.Process(flow("dev1", at(time.Duration(i)*time.Hour+time.Second), "203.0.113.7"), s.emit)
	}
	// DNS: 60 of the 100 unique names.
	for i := 0; i < 60; i++ {
		e.Process(flow("dev1", at(time.Duration(i)*time.Second), "10.0.0.53", dnsQuery(fmt.Sprintf("n%d.exfil.example", i))), s.emit)
	}
	// Volume: 6 warm windows to 8.8.8.8 (the beacon pair's hours overlap).
	for w := 0; w < 6; w++ {
		e.Process(flow("dev2", at(time.Duration(w)*time.Hour+time.Minute), "8.8.8.8", bytesOut(10_000_000, 10_000_000)), s.emit)
	}
	if len(s.alerts) != 0 {
		t.Fatalf("alerts before restart: %v", s.alerts[0].Summary)
	}

	// Without the snapshot none of the following alerts fire.
	for _, restored := range []bool{false, true} {
		e2 := newEngine(t, c)
		if restored {
			e2 = roundTrip(t, e, c)
		}
		var s2 sink
		e2.Process(flow("dev1", at(5*time.Hour+time.Second), "203.0.113.7"), s2.emit)
		for i := 60; i < 100; i++ {
			e2.Process(flow("dev1", at(5*time.Hour+time.Duration(i)*time.Second), "10.0.0.53", dnsQuery(fmt.Sprintf("n%d.exfil.example", i))), s2.emit)
		}
		e2.Process(flow("dev2", at(6*time.Hour+time.Minute), "8.8.8.8", bytesOut(13_000_000, 13_000_000)), s2.emit)
		e2.Process(flow("dev2", at(6*time.Hour+2*time.Minute), "36.110.1.1", geo("CN", 4134, "Chinanet")), s2.emit)
		want := map[string]int{"beaconing": 1, "dns_tunnel": 1, "upload_volume": 1, "first_seen_destination": 2}
		for det, n := range want {
			got := len(s2.by(det))
			if restored && got != n {
				t.Errorf("after restore %s: %d alerts, want %d", det, got, n)
			}
			if !restored && got != 0 && det != "first_seen_destination" {
				t.Errorf("fresh engine %s alerted: the test does not need state", det)
			}
		}
	}
}

func TestSnapshotKeepsSuppression(t *testing.T) {
	c := quiet()
	c.IdentifierLeak.Enabled = true
	e := newEngine(t, c)
	var s sink
	leak := func(ts int64) {
		e.Process(flow("dev1", ts, "203.0.113.9", sni("a.example.com"), match("imei", "raw", "snippet.out", false)), s.emit)
	}
	leak(at(0))
	e = roundTrip(t, e, c)
	leak(at(10 * time.Minute))
	if len(s.alerts) != 1 {
		t.Fatal("suppression lost across restart")
	}
	e.Flush(at(2*time.Hour), s.emit)
	if len(s.alerts) != 2 || s.alerts[1].Count != 2 || s.alerts[1].Id != s.alerts[0].Id {
		t.Fatalf("update after restart: %v", s.alerts)
	}
}

func TestSnapshotDeterministicAndRejectsGarbage(t *testing.T) {
	c := DefaultConfig()
	e := newEngine(t, c)
	var s sink
	for i := 0; i < 20; i++ {
		e.Process(flow(fmt.Sprintf("d%d", i%4), at(time.Duration(i)*time.Minute), "203.0.113.7", sni("x.example.com")), s.emit)
	}
	var a, b bytes.Buffer
	if err := e.Snapshot(&a); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(t, e, c).Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("snapshot of restored state differs")
	}
	if err := newEngine(t, c).Restore(strings.NewReader("not a snapshot at all, definitely not one")); err == nil || !strings.Contains(err.Error(), "not a detect snapshot") {
		t.Fatalf("garbage accepted: %v", err)
	}
	if err := newEngine(t, c).Restore(bytes.NewReader(a.Bytes()[:len(a.Bytes())/2])); err == nil {
		t.Fatal("truncated snapshot accepted")
	}
}
