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
