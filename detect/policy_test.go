package detect

import (
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

func policyEngine(t *testing.T) *Engine {
	c := quiet()
	c.Policy.Enabled = true
	c.Policy.Window = time.Hour
	c.Policy.Groups = map[string]GroupPolicy{
		"india-retail": {DenyCountries: []string{"CN"}},
		"bank":         {AllowASNs: []uint32{15169, 16509}},
		"*":            {DenyCountries: []string{"KP"}},
	}
	return newEngine(t, c)
}

func TestPolicyDenyCountryWindowCounts(t *testing.T) {
	e := policyEngine(t)
	var s sink
	cn := func(ts int64, b uint64) *flowpb.FlowRecord {
		return flow("dev1", ts, "36.110.1.1", group("india-retail"), geo("CN", 4134, "Chinanet"), bytesOut(b, 10))
	}
	e.Process(flow("dev1", at(time.Minute), "49.44.1.1", group("india-retail"), geo("IN", 55836, "Jio")), s.emit)
	if len(s.alerts) != 0 {
		t.Fatal("allowed country alerted")
	}
	e.Process(cn(at(10*time.Minute), 100), s.emit)
	e.Process(cn(at(20*time.Minute), 200), s.emit)
	e.Process(cn(at(59*time.Minute), 300), s.emit)
	if len(s.alerts) != 1 {
		t.Fatalf("%d alerts in one window, want 1", len(s.alerts))
	}
	a := s.alerts[0]
	if a.WindowStartNs != at(0) || a.Severity != flowpb.Severity_SEVERITY_HIGH || evidence(a, "rule") != ruleDenyCountry {
		t.Fatalf("alert %v", a)
	}
	e.Flush(at(time.Hour), s.emit)
	if len(s.alerts) != 2 {
		t.Fatal("window close emitted no totals")
	}
	if u := s.alerts[1]; u.Id != a.Id || u.Count != 3 || u.Bytes != 600 {
		t.Fatalf("totals: count %d bytes %d", u.Count, u.Bytes)
	}
	e.Process(cn(at(61*time.Minute), 1), s.emit)
	if len(s.alerts) != 3 || s.alerts[2].Id == a.Id || s.alerts[2].WindowStartNs != at(time.Hour) {
		t.Fatal("next window did not raise a new alert")
	}
}

func TestPolicyAllowASNsAndDefaultGroup(t *testing.T) {
	e := policyEngine(t)
	var s sink
	e.Process(flow("b1", at(time.Minute), "8.8.8.8", group("bank"), geo("US", 15169, "Google")), s.emit)
	e.Process(flow("b1", at(time.Minute), "52.1.1.1", group("bank"), geo("US", 16509, "Amazon")), s.emit)
	if len(s.alerts) != 0 {
		t.Fatalf("allowed ASNs alerted: %v", s.alerts)
	}
	e.Process(flow("b1", at(2*time.Minute), "157.240.1.1", group("bank"), geo("US", 32934, "Facebook")), s.emit)
	if len(s.alerts) != 1 || evidence(s.alerts[0], "rule") != ruleAllowASN {
		t.Fatalf("not-allowed ASN: %v", s.alerts)
	}
	// Unknown ASN is not judged.
	e.Process(flow("b1", at(3*time.Minute), "198.51.100.1", group("bank"), geo("US", 0, "")), s.emit)
	// Group without entry falls back to "*".
	e.Process(flow("x1", at(4*time.Minute), "175.45.176.1", group("other"), geo("KP", 131279, "Star JV")), s.emit)
	if len(s.alerts) != 2 || s.alerts[1].DeviceId != "x1" || evidence(s.alerts[1], "policy_group") != "*" {
		t.Fatalf("default group: %v", s.alerts)
	}
	// Private destinations are never judged.
	e.Process(flow("x1", at(5*time.Minute), "10.9.9.9", group("other"), geo("KP", 0, ""), func(r *flowpb.FlowRecord) {
		r.Enrichment.DstGeo.AddrClass = flowpb.AddrClass_ADDR_CLASS_PRIVATE
	}), s.emit)
	if len(s.alerts) != 2 {
		t.Fatal("private destination judged")
	}
}
