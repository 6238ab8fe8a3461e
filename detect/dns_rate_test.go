package detect

import (
	"fmt"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// rateConfig: only the query_rate trigger can fire (the distinct-name
// threshold is out of reach of the few names used).
func rateConfig(rate int) Config {
	c := dnsConfig()
	c.DNS.QueryRate = rate
	c.DNS.UniqueSubdomains = 1000
	c.DNS.MaxTracked = 1024
	return c
}

// TestDNSQueryRateEdge: query_rate alerts at exactly query_rate queries per
// device, registrable domain and window, repeats of one name included, and
// not one query earlier.
func TestDNSQueryRateEdge(t *testing.T) {
	e := newEngine(t, rateConfig(50))
	var s sink
	for i := range 49 {
		// Three names, repeated: the distinct count stays at 3.
		e.Process(flow("dev1", at(time.Duration(i)*time.Second), "10.0.0.53", dnsQuery(fmt.Sprintf("h%d.poll.rate.example", i%3))), s.emit)
	}
	if len(s.alerts) != 0 {
		t.Fatalf("49 queries (query_rate 50) alerted: %v", s.alerts[0].Evidence)
	}
	e.Process(flow("dev1", at(49*time.Second), "10.0.0.53", dnsQuery("h0.poll.rate.example")), s.emit)
	got := s.by("dns_tunnel")
	if len(got) != 1 {
		t.Fatalf("50 queries: %d alerts, want 1", len(got))
	}
	a := got[0]
	if evidence(a, "trigger") != "query_rate" || evidence(a, "queries") != "50" || evidence(a, "unique_names") != "3" ||
		evidence(a, "domain") != "rate.example" || a.DedupKey != "dns_tunnel|dev1|rate.example" ||
		a.Severity != flowpb.Severity_SEVERITY_MEDIUM || a.WindowStartNs != at(0) || a.DeviceId != "dev1" {
		t.Fatalf("alert %s %v %v window %d", a.DedupKey, a.Severity, a.Evidence, a.WindowStartNs)
	}
	// Further queries update the open alert, they do not raise new ones.
	for i := range 20 {
		e.Process(flow("dev1", at(time.Duration(50+i)*time.Second), "10.0.0.53", dnsQuery("h1.poll.rate.example")), s.emit)
	}
	if n := len(s.by("dns_tunnel")); n != 1 {
		t.Fatalf("%d dns_tunnel alerts after more queries, want the one open alert", n)
	}
}

// TestDNSQueryRateCountsPerDomainDeviceAndWindow: queries of other domains,
// other devices or the previous window do not add up to query_rate; .arpa
// and .local names are never counted; 0 disables the trigger.
func TestDNSQueryRateCountsPerDomainDeviceAndWindow(t *testing.T) {
	q := func(e *Engine, s *sink, dev string, ts int64, name string) {
		e.Process(flow(dev, ts, "10.0.0.53", dnsQuery(name)), s.emit)
	}
	t.Run("domains_and_devices", func(t *testing.T) {
		e := newEngine(t, rateConfig(50))
		var s sink
		for i := range 49 {
			ts := at(time.Duration(i) * time.Second)
			q(e, &s, "dev1", ts, "a.one.example")
			q(e, &s, "dev1", ts, "a.two.example") // another registrable domain
			q(e, &s, "dev2", ts, "a.one.example") // another device
		}
		if len(s.alerts) != 0 {
			t.Fatalf("49 queries per (device, domain) alerted: %s %v", s.alerts[0].DedupKey, s.alerts[0].Evidence)
		}
		q(e, &s, "dev2", at(time.Minute), "b.one.example")
		if got := s.by("dns_tunnel"); len(got) != 1 || got[0].DedupKey != "dns_tunnel|dev2|one.example" || evidence(got[0], "queries") != "50" {
			t.Fatalf("dev2's 50th query of one.example: %v", got)
		}
	})
	t.Run("window", func(t *testing.T) {
		e := newEngine(t, rateConfig(50))
		var s sink
		for i := range 49 {
			q(e, &s, "dev1", at(23*time.Hour+time.Duration(i)*time.Second), "x.win.example")
		}
		for i := range 49 {
			q(e, &s, "dev1", at(24*time.Hour+time.Duration(i)*time.Second), "x.win.example")
		}
		if len(s.alerts) != 0 {
			t.Fatalf("49 + 49 queries across a window boundary alerted: %v", s.alerts[0].Evidence)
		}
		q(e, &s, "dev1", at(24*time.Hour+time.Minute), "x.win.example")
		if got := s.by("dns_tunnel"); len(got) != 1 || got[0].WindowStartNs != at(24*time.Hour) || evidence(got[0], "queries") != "50" {
			t.Fatalf("50th query of the second window: %v", got)
		}
	})
	t.Run("reverse_and_local", func(t *testing.T) {
		e := newEngine(t, rateConfig(50))
		var s sink
		for i := range 100 {
			q(e, &s, "dev1", at(time.Duration(i)*time.Second), "4.3.2.1.in-addr.arpa")
			q(e, &s, "dev1", at(time.Duration(i)*time.Second), "printer.local")
		}
		if len(s.alerts) != 0 {
			t.Fatalf("reverse/local lookups alerted: %v", s.alerts[0].Evidence)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		e := newEngine(t, rateConfig(0))
		var s sink
		for i := range 2000 {
			q(e, &s, "dev1", at(time.Duration(i)*time.Second), "h.poll.rate.example")
		}
		if len(s.alerts) != 0 {
			t.Fatalf("query_rate 0 alerted: %v", s.alerts[0].Evidence)
		}
	})
}

// TestDNSQueryRateConfig: a negative query_rate is refused.
func TestDNSQueryRateConfig(t *testing.T) {
	c := rateConfig(-1)
	if _, err := New(c); err == nil {
		t.Fatal("query_rate -1 accepted")
	}
}
