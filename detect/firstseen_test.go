package detect

import (
	"testing"
	"time"
)

func TestFirstSeenDestination(t *testing.T) {
	c := quiet()
	c.FirstSeen.Enabled = true
	c.FirstSeen.Learning = time.Hour
	e := newEngine(t, c)
	var s sink
	e.Process(flow("d1", at(0), "8.8.8.8", geo("US", 15169, "Google")), s.emit)
	e.Process(flow("d2", at(59*time.Minute), "85.1.1.1", geo("DE", 3320, "DTAG")), s.emit)
	if len(s.alerts) != 0 {
		t.Fatal("alerted while learning")
	}
	// Just after learning: known destinations stay quiet.
	e.Process(flow("d1", at(time.Hour), "85.1.1.2", geo("DE", 3320, "DTAG")), s.emit)
	if len(s.alerts) != 0 {
		t.Fatal("known destination alerted")
	}
	// New country and new ASN: two alerts, once.
	e.Process(flow("d2", at(2*time.Hour), "36.110.1.1", geo("CN", 4134, "Chinanet")), s.emit)
	e.Process(flow("d1", at(3*time.Hour), "36.110.1.2", geo("CN", 4134, "Chinanet")), s.emit)
	if len(s.alerts) != 2 || evidence(s.alerts[0], "value") != "CN" || evidence(s.alerts[1], "value") != "AS4134" {
		t.Fatalf("first-seen alerts: %v", s.alerts)
	}
	if s.alerts[0].DeviceId != "d2" || evidence(s.alerts[0], "known_countries") != "2" {
		t.Fatalf("alert %v", s.alerts[0])
	}
	// Another model has its own learning period.
	e.Process(flow("d3", at(4*time.Hour), "36.110.1.3", geo("CN", 4134, "Chinanet"), model("redmi-1s")), s.emit)
	if len(s.alerts) != 2 {
		t.Fatal("new model alerted during its learning")
	}
}

// Two detect instances learn a model separately (devices of one model sit on
// different partitions); when both raise the first-seen alert for the same
// destination on the same day, the alerts must share id, dedup key and
// window start so the ReplacingMergeTree alerts table keeps one row.
func TestFirstSeenSameIDAcrossInstances(t *testing.T) {
	c := quiet()
	c.FirstSeen.Enabled = true
	c.FirstSeen.Learning = time.Hour
	a, b := newEngine(t, c), newEngine(t, c)
	var sa, sb sink
	// Different learning starts, different devices, different trigger times.
	a.Process(flow("d1", at(0), "8.8.8.8", geo("US", 15169, "Google")), sa.emit)
	b.Process(flow("d2", at(20*time.Minute), "8.8.4.4", geo("US", 15169, "Google")), sb.emit)
	a.Process(flow("d1", at(2*time.Hour), "36.110.1.1", geo("CN", 4134, "Chinanet")), sa.emit)
	b.Process(flow("d2", at(5*time.Hour+7*time.Second), "36.110.1.2", geo("CN", 4134, "Chinanet")), sb.emit)
	if len(sa.alerts) != 2 || len(sb.alerts) != 2 {
		t.Fatalf("alerts: instance a %d, instance b %d, want 2 each (country and ASN)", len(sa.alerts), len(sb.alerts))
	}
	for i := range sa.alerts {
		x, y := sa.alerts[i], sb.alerts[i]
		if x.Id != y.Id || x.DedupKey != y.DedupKey || x.WindowStartNs != y.WindowStartNs {
			t.Errorf("alert %d: instance a id %s key %s window %d, instance b id %s key %s window %d",
				i, x.Id, x.DedupKey, x.WindowStartNs, y.Id, y.DedupKey, y.WindowStartNs)
		}
		if x.FirstSeenNs == y.FirstSeenNs || x.DeviceId == y.DeviceId {
			t.Errorf("alert %d: the instances' alerts should still carry their own device and time", i)
		}
	}
	// A different day is a different alert.
	cfg := c
	other := newEngine(t, cfg)
	var so sink
	other.Process(flow("d3", at(0), "8.8.8.8", geo("US", 15169, "Google")), so.emit)
	other.Process(flow("d3", at(26*time.Hour), "36.110.1.3", geo("CN", 4134, "Chinanet")), so.emit)
	if len(so.alerts) == 0 || so.alerts[0].Id == sa.alerts[0].Id {
		t.Fatalf("a first-seen alert a day later reused id %v", so.alerts)
	}
}
