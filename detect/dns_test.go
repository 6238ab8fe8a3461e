package detect

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/zeebo/xxh3"
)

func dnsConfig() Config {
	c := quiet()
	c.DNS.Enabled = true
	c.DNS.QueryChars = 0
	c.DNS.EncodedQueries = 0
	return c
}

func TestDNSUniqueSubdomainsEdge(t *testing.T) {
	e := newEngine(t, dnsConfig())
	var s sink
	for i := 0; i < 99; i++ {
		e.Process(flow("dev1", at(time.Duration(i)*time.Second), "10.0.0.53", dnsQuery(fmt.Sprintf("n%d.t.exfil.co.uk", i))), s.emit)
		// Repeats of a known name never add.
		e.Process(flow("dev1", at(time.Duration(i)*time.Second), "10.0.0.53", dnsQuery("n0.t.exfil.co.uk")), s.emit)
	}
	if len(s.alerts) != 0 {
		t.Fatal("99 unique names alerted")
	}
	e.Process(flow("dev1", at(100*time.Second), "10.0.0.53", dnsQuery("n99.t.exfil.co.uk")), s.emit)
	got := s.by("dns_tunnel")
	if len(got) != 1 {
		t.Fatalf("100 unique names: %d alerts", len(got))
	}
	a := got[0]
	if evidence(a, "domain") != "exfil.co.uk" || evidence(a, "unique_names") != "100" || evidence(a, "trigger") != "unique_subdomains" ||
		a.Score != 0.2 || a.DedupKey != "dns_tunnel|dev1|exfil.co.uk" || a.WindowStartNs != at(0) {
		t.Fatalf("alert %v %v", a.DedupKey, a.Evidence)
	}
	// A different domain has its own count.
	e.Process(flow("dev1", at(101*time.Second), "10.0.0.53", dnsQuery("www.example.com")), s.emit)
	if len(s.alerts) != 1 {
		t.Fatal("other domain alerted")
	}
}

func TestDNSWindowResets(t *testing.T) {
	e := newEngine(t, dnsConfig())
	var s sink
	for i := 0; i < 60; i++ {
		e.Process(flow("dev1", at(time.Duration(i)*time.Minute), "10.0.0.53", dnsQuery(fmt.Sprintf("a%d.exfil.example", i))), s.emit)
	}
	for i := 0; i < 60; i++ {
		e.Process(flow("dev1", at(24*time.Hour+time.Duration(i)*time.Minute), "10.0.0.53", dnsQuery(fmt.Sprintf("b%d.exfil.example", i))), s.emit)
	}
	if len(s.alerts) != 0 {
		t.Fatal("counts leaked across windows")
	}
}

func TestDNSQueryCharsAndEncoded(t *testing.T) {
	c := dnsConfig()
	c.DNS.QueryChars = 1000
	c.DNS.UniqueSubdomains = 1000
	e := newEngine(t, c)
	var s sink
	// 9 queries of a 100-char subdomain + 99 chars: 999 characters.
	label := strings.Repeat("ab", 50)
	for i := 0; i < 9; i++ {
		e.Process(flow("dev1", at(time.Duration(i)*time.Second), "10.0.0.53", dnsQuery(label+".x.example")), s.emit)
	}
	e.Process(flow("dev1", at(10*time.Second), "10.0.0.53", dnsQuery(label[:99]+".x.example")), s.emit)
	if len(s.alerts) != 0 {
		t.Fatal("999 characters alerted")
	}
	e.Process(flow("dev1", at(11*time.Second), "10.0.0.53", dnsQuery("q.x.example")), s.emit)
	if len(s.alerts) != 1 || evidence(s.alerts[0], "trigger") != "query_chars" || evidence(s.alerts[0], "query_chars") != "1000" {
		t.Fatalf("query chars: %v", s.alerts)
	}

	// Encoded: long high-entropy names; low-entropy long names do not count.
	c = dnsConfig()
	c.DNS.EncodedQueries = 3
	e = newEngine(t, c)
	s = sink{}
	for i := 0; i < 5; i++ {
		e.Process(flow("dev2", at(time.Duration(i)*time.Second), "10.0.0.53", dnsQuery(strings.Repeat("a", 60)+fmt.Sprint(i)+".cdn.example")), s.emit)
	}
	enc := []string{
		"mzxw6ytboi2dsnrrgm3dkmbqgeztcmjsgq4tqnzwgu2tmobvgm4dcnbzha3q.t.example",
		"nbswy3dpeb3w64tmmqqgc3tdebqw4zbanfzsaylomrswy5lsfzqxa2lbgr3q.t.example",
		"o5uxiudkmfzxm3lhnrxw4zlsmvzxizlsgq3tqmzuhe2dmnrqgaytoobrgm3q.t.example",
	}
	for i, n := range enc {
		if h := Entropy(n[:60]); h < c.DNS.MinEntropy {
			t.Fatalf("test name %d entropy %.2f below %v", i, h, c.DNS.MinEntropy)
		}
		e.Process(flow("dev2", at(time.Duration(10+i)*time.Second), "10.0.0.53", dnsQuery(n)), s.emit)
	}
	if got := s.by("dns_tunnel"); len(got) != 1 || evidence(got[0], "trigger") != "encoded_queries" {
		t.Fatalf("encoded: %v", s.alerts)
	}
}

func TestDNSExclusionsAndSetCap(t *testing.T) {
	c := dnsConfig()
	c.DNS.UniqueSubdomains = 10
	c.DNS.MaxTracked = 10
	e := newEngine(t, c)
	var s sink
	for i := 0; i < 50; i++ {
		e.Process(flow("dev1", at(time.Duration(i)*time.Second), "10.0.0.53", dnsQuery(fmt.Sprintf("%d.1.168.192.in-addr.arpa", i))), s.emit)
		e.Process(flow("dev1", at(time.Duration(i)*time.Second), "10.0.0.53", dnsQuery(fmt.Sprintf("h%d.local", i))), s.emit)
	}
	if len(s.alerts) != 0 {
		t.Fatal(".arpa/.local counted")
	}
	for i := 0; i < 1000; i++ {
		e.Process(flow("dev1", at(time.Duration(i)*time.Second), "10.0.0.53", dnsQuery(fmt.Sprintf("n%d.big.example", i))), s.emit)
	}
	st := e.devices.get(hashID("dev1")).dns.get(xxh3.HashString("big.example"))
	if st.distinct != 10 || len(st.set) > 32 {
		t.Fatalf("set not capped: distinct %d size %d", st.distinct, len(st.set))
	}
}

func TestEntropyHand(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want float64
	}{{"", 0}, {"aaaa", 0}, {"aabb", 1}, {"abcd", 2}, {"aaab", 0.8112781244591328}} {
		if got := Entropy(tc.s); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("Entropy(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestRegistrable(t *testing.T) {
	e := newEngine(t, DefaultConfig())
	for in, want := range map[string]string{
		"a.b.example.co.uk": "example.co.uk",
		"example.com":       "example.com",
		"com":               "com",
		"1.2.3.4":           "1.2.3.4",
		"bad..name.com":     "bad..name.com",
		"x.github.io":       "x.github.io",
	} {
		if got := registrable(in); got != want {
			t.Errorf("registrable(%q) = %q, want %q", in, got, want)
		}
		if got := e.registrable(in); got != want {
			t.Errorf("cached registrable(%q) = %q, want %q", in, got, want)
		}
		if got := e.registrable("a.b.c.d.e.f.g.h." + in); got != registrable("a.b.c.d.e.f.g.h."+in) {
			t.Errorf("cached registrable of deep name under %q = %q", in, got)
		}
	}
}
