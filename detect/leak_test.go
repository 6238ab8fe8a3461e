package detect

import (
	"strings"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"google.golang.org/protobuf/encoding/protojson"
)

func TestIdentifierLeakSeverity(t *testing.T) {
	c := quiet()
	c.IdentifierLeak.Enabled = true
	c.Policy.Groups = map[string]GroupPolicy{"india-retail": {DenyCountries: []string{"CN"}}}
	cases := []struct {
		name string
		opts []func(*flowpb.FlowRecord)
		want flowpb.Severity
	}{
		{"imei raw cleartext", []func(*flowpb.FlowRecord){match("imei", "raw", "http.path", true)}, flowpb.Severity_SEVERITY_CRITICAL},
		{"imei raw tls", []func(*flowpb.FlowRecord){match("imei", "raw", "snippet.out", false)}, flowpb.Severity_SEVERITY_HIGH},
		{"imei sha1 tls", []func(*flowpb.FlowRecord){match("imei", "sha1-hex-upper", "snippet.out", false)}, flowpb.Severity_SEVERITY_MEDIUM},
		{"aaid raw tls", []func(*flowpb.FlowRecord){match("aaid", "raw", "snippet.out", false)}, flowpb.Severity_SEVERITY_LOW},
		{"aaid md5 tls clamps at low", []func(*flowpb.FlowRecord){match("aaid", "md5-hex", "snippet.out", false)}, flowpb.Severity_SEVERITY_LOW},
		{"unknown type uses default", []func(*flowpb.FlowRecord){match("weird", "raw", "snippet.out", false)}, flowpb.Severity_SEVERITY_MEDIUM},
		{"sni is cleartext", []func(*flowpb.FlowRecord){match("wifi_mac", "raw", "tls.sni", false)}, flowpb.Severity_SEVERITY_HIGH},
		{"denied country escalates", []func(*flowpb.FlowRecord){group("india-retail"), geo("CN", 4134, "Chinanet"),
			match("imei", "sha256-hex", "snippet.out", false)}, flowpb.Severity_SEVERITY_HIGH},
		{"allowed country does not", []func(*flowpb.FlowRecord){group("india-retail"), geo("IN", 9829, "BSNL"),
			match("imei", "sha256-hex", "snippet.out", false)}, flowpb.Severity_SEVERITY_MEDIUM},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, c)
			var s sink
			e.Process(flow("dev1", at(time.Minute), "203.0.113.9", tc.opts...), s.emit)
			got := s.by("identifier_leak")
			if len(got) != 1 {
				t.Fatalf("got %d alerts, want 1", len(got))
			}
			if got[0].Severity != tc.want {
				t.Fatalf("severity %v, want %v", got[0].Severity, tc.want)
			}
		})
	}
}

func TestIdentifierLeakNoMatchNoAlert(t *testing.T) {
	c := quiet()
	c.IdentifierLeak.Enabled, c.Cleartext.Enabled = true, true
	e := newEngine(t, c)
	var s sink
	e.Process(flow("dev1", at(time.Minute), "203.0.113.9", func(r *flowpb.FlowRecord) { r.Enrichment.Cleartext = true }), s.emit)
	if len(s.alerts) != 0 {
		t.Fatalf("alerts without matches: %v", s.alerts)
	}
}

func TestIdentifierLeakEvidenceHasNoPlaintext(t *testing.T) {
	c := quiet()
	c.IdentifierLeak.Enabled, c.Cleartext.Enabled = true, true
	e := newEngine(t, c)
	var s sink
	const imei = "356938035643809"
	r := flow("dev1", at(time.Minute), "203.0.113.9", match("imei", "raw", "http.path", true), func(r *flowpb.FlowRecord) {
		r.Http = &flowpb.HTTPInfo{Method: "GET", Host: "api.tracker.example.com", Path: "/v1/reg?imei=" + imei}
		r.Enrichment.Matches[0].DeviceId = "dev9"
	})
	e.Process(r, s.emit)
	if len(s.alerts) != 2 {
		t.Fatalf("got %d alerts, want identifier_leak + identifiers_over_cleartext", len(s.alerts))
	}
	for _, a := range s.alerts {
		js, _ := protojson.Marshal(a)
		if strings.Contains(string(js), imei) {
			t.Fatalf("alert carries the identifier: %s", js)
		}
		if evidence(a, "identifier_type") != "imei" || evidence(a, "field") != "http.path" || evidence(a, "owner_device") != "dev9" {
			t.Fatalf("evidence %v", a.Evidence)
		}
		if a.SchemaVersion != schema.Version || a.DeviceId != "dev1" || a.Destination.Host != "api.tracker.example.com" {
			t.Fatalf("alert fields: %v", a)
		}
		if a.Id != AlertID(a.DedupKey, a.WindowStartNs) || len(a.Id) != 32 {
			t.Fatalf("id %q not derived from key %q", a.Id, a.DedupKey)
		}
	}
	leak := s.by("identifier_leak")[0]
	if leak.DedupKey != "identifier_leak|dev1|example.com|imei|dev9" {
		t.Fatalf("dedup key %q", leak.DedupKey)
	}
	if evidence(leak, "form") != "raw" || evidence(leak, "transport") != "cleartext" {
		t.Fatalf("evidence %v", leak.Evidence)
	}
}

func TestCleartextDetector(t *testing.T) {
	c := quiet()
	c.Cleartext.Enabled = true
	e := newEngine(t, c)
	var s sink
	// TLS flow, payload match: not cleartext.
	e.Process(flow("dev1", at(time.Minute), "203.0.113.9", sni("a.example.com"), match("imei", "raw", "snippet.out", false)), s.emit)
	if len(s.alerts) != 0 {
		t.Fatalf("TLS match raised %v", s.alerts)
	}
	// Plain HTTP.
	e.Process(flow("dev1", at(2*time.Minute), "203.0.113.9", match("imsi", "base64-url", "http.header.x-id", true)), s.emit)
	// DNS query label: readable by every resolver on path.
	e.Process(flow("dev1", at(3*time.Minute), "10.0.0.53", dnsQuery("x.leak.example.net"), match("msisdn", "raw", "dns.query", false)), s.emit)
	got := s.by("identifiers_over_cleartext")
	if len(got) != 2 {
		t.Fatalf("got %d cleartext alerts, want 2", len(got))
	}
	if got[0].Severity != flowpb.Severity_SEVERITY_CRITICAL {
		t.Fatalf("imsi in cleartext severity %v", got[0].Severity)
	}
}

func TestSuppressionAndUpdate(t *testing.T) {
	c := quiet()
	c.IdentifierLeak.Enabled = true
	c.Suppression = time.Hour
	e := newEngine(t, c)
	var s sink
	leak := func(ts int64) *flowpb.FlowRecord {
		return flow("dev1", ts, "203.0.113.9", sni("api.example.com"), match("imei", "raw", "snippet.out", false))
	}
	e.Process(leak(at(0)), s.emit)
	e.Process(leak(at(10*time.Minute)), s.emit)
	e.Process(leak(at(59*time.Minute)), s.emit)
	if len(s.alerts) != 1 {
		t.Fatalf("repeats within suppression raised %d alerts", len(s.alerts))
	}
	first := s.alerts[0]
	if first.Count != 1 {
		t.Fatalf("first alert count %d", first.Count)
	}
	// Window still open just before it ends: no update yet.
	e.Flush(at(time.Hour)-1, s.emit)
	if len(s.alerts) != 1 {
		t.Fatalf("flush before close emitted %d", len(s.alerts)-1)
	}
	e.Flush(at(time.Hour), s.emit)
	if len(s.alerts) != 2 {
		t.Fatalf("close did not emit the update")
	}
	upd := s.alerts[1]
	if upd.Id != first.Id || upd.Count != 3 || upd.LastSeenNs != at(59*time.Minute) || upd.FirstSeenNs != at(0) || len(upd.FlowIds) != 3 {
		t.Fatalf("update: id %s/%s count %d last %d flows %d", upd.Id, first.Id, upd.Count, upd.LastSeenNs, len(upd.FlowIds))
	}
	// Emitted messages are copies: later updates do not change them.
	if first.Count != 1 {
		t.Fatal("emitted alert was mutated")
	}
	// After the window: a new alert with a new id.
	e.Process(leak(at(61*time.Minute)), s.emit)
	if len(s.alerts) != 3 || s.alerts[2].Id == first.Id || s.alerts[2].Count != 1 {
		t.Fatalf("no fresh alert after suppression: %v", s.alerts)
	}
	// A repeat exactly at closeAt is a new alert too (boundary belongs to the next window).
	e2 := newEngine(t, c)
	var s2 sink
	e2.Process(leak(at(0)), s2.emit)
	e2.Process(leak(at(time.Hour)), s2.emit)
	if n := len(s2.by("identifier_leak")); n != 2 {
		t.Fatalf("repeat at the boundary: %d alerts", n)
	}
}

func TestSeverityEscalationEmitsUpdate(t *testing.T) {
	c := quiet()
	c.IdentifierLeak.Enabled = true
	e := newEngine(t, c)
	var s sink
	// Same key (type, form, destination): first over TLS, then cleartext.
	e.Process(flow("dev1", at(0), "203.0.113.9", sni("a.example.com"), match("imei", "raw", "snippet.out", false)), s.emit)
	e.Process(flow("dev1", at(time.Minute), "203.0.113.9", sni("a.example.com"), match("imei", "raw", "snippet.out", true)), s.emit)
	if len(s.alerts) != 2 || s.alerts[1].Id != s.alerts[0].Id || s.alerts[1].Severity != flowpb.Severity_SEVERITY_CRITICAL {
		t.Fatalf("escalation: %v", s.alerts)
	}
}

func TestDeterministicIDsAcrossEngines(t *testing.T) {
	c := quiet()
	c.IdentifierLeak.Enabled = true
	var ids [2][]string
	for i := range ids {
		e := newEngine(t, c)
		var s sink
		e.Process(flow("dev1", at(0), "203.0.113.9", sni("a.example.com"), match("imei", "raw", "snippet.out", false)), s.emit)
		e.Process(flow("dev2", at(5*time.Second), "203.0.113.9", sni("a.example.com"), match("iccid", "raw", "snippet.out", false)), s.emit)
		for _, a := range s.alerts {
			ids[i] = append(ids[i], a.Id)
		}
	}
	if len(ids[0]) != 2 || ids[0][0] != ids[1][0] || ids[0][1] != ids[1][1] || ids[0][0] == ids[0][1] {
		t.Fatalf("ids %v", ids)
	}
}

// Several encodings of one identifier to one destination are one incident;
// a hash after a raw leak does not lower the severity already raised.
func TestIdentifierLeakFormsShareOneAlert(t *testing.T) {
	c := quiet()
	c.IdentifierLeak.Enabled = true
	e := newEngine(t, c)
	var s sink
	e.Process(flow("dev1", at(0), "203.0.113.7", match("imei", "digits/sha1-hex-upper", "http.path", false)), s.emit)
	e.Process(flow("dev1", at(1), "203.0.113.7", match("imei", "raw/md5-hex-lower", "http.path", false)), s.emit)
	if n := len(s.by("identifier_leak")); n != 1 {
		t.Fatalf("%d alerts for two hash forms of one identifier, want 1", n)
	}
	if !isHashForm("digits/sha1-hex-upper") || !isHashForm("md5-hex-lower") || isHashForm("raw") || isHashForm("digits/base64-std") {
		t.Fatal("isHashForm misreads composite forms")
	}
}
