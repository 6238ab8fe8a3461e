package parse

import (
	"crypto/tls"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

const (
	dirOut = flowpb.Direction_DIRECTION_OUTBOUND
	dirIn  = flowpb.Direction_DIRECTION_INBOUND
)

// segments cuts a client stream into TCP snippets of size bytes starting at
// stream offset 1 (after the SYN).
func segments(dir flowpb.Direction, b []byte, size int) []*flowpb.Snippet {
	var s []*flowpb.Snippet
	for off := 0; off < len(b); off += size {
		end := min(off+size, len(b))
		s = append(s, &flowpb.Snippet{Direction: dir, PacketIndex: uint32(len(s)), StreamOffset: uint32(1 + off), Data: b[off:end]})
	}
	return s
}

func TestFillTCPReassembly(t *testing.T) {
	const sni = "reassembly.example.com"
	hello := goClientHello(t, &tls.Config{ServerName: sni, NextProtos: []string{"h2"}})
	if len(hello) < 1000 {
		t.Fatalf("ClientHello only %d bytes; the test needs one spanning segments", len(hello))
	}
	segs := segments(dirOut, hello, 100) // SNI lies beyond the first segment
	tests := []struct {
		name    string
		snips   []*flowpb.Snippet
		wantSNI string
	}{
		{"in order", segs, sni},
		{"retransmission overlapping", append([]*flowpb.Snippet{segs[0], {Direction: dirOut, PacketIndex: 1, StreamOffset: 51, Data: hello[50:150]}}, segs[1:]...), sni},
		{"server data interleaved", append([]*flowpb.Snippet{segs[0], {Direction: dirIn, StreamOffset: 1, Data: []byte("\x16\x03\x03\x00\x02zz")}}, segs[1:]...), sni},
		{"gap after first segment", append([]*flowpb.Snippet{segs[0]}, segs[2:]...), ""},
		{"first segment truncated", append([]*flowpb.Snippet{{Direction: dirOut, StreamOffset: 1, Data: hello[:60], Truncated: true}}, segs[1:]...), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &flowpb.FlowRecord{Protocol: protoTCP, SrcPort: 40000, DstPort: 8443, Snippets: tc.snips}
			Fill(rec)
			if rec.Tls == nil || rec.Tls.Sni != tc.wantSNI {
				t.Fatalf("tls = %v, want sni %q", rec.Tls, tc.wantSNI)
			}
		})
	}
}

func TestFillDirectionsAndReuse(t *testing.T) {
	req := writeRequest(t, "GET", "http://10.0.0.5:8080/status?imei=1", http.Header{"User-Agent": {"probe/1"}}, nil)
	// The remote opened the flow to a device: the request is INBOUND and the
	// server port is the device's (src) port.
	rec := &flowpb.FlowRecord{Protocol: protoTCP, Direction: flowpb.Direction_DIRECTION_INBOUND, SrcPort: 8080, DstPort: 51000,
		Snippets: []*flowpb.Snippet{
			{Direction: dirOut, StreamOffset: 1, Data: []byte("HTTP/1.1 200 OK\r\n\r\n")},
			{Direction: dirIn, StreamOffset: 1, Data: req},
		}}
	Fill(rec)
	if rec.Http == nil || rec.Http.Method != "GET" || rec.Http.Path != "/status?imei=1" || rec.Http.UserAgent != "probe/1" || rec.Http.Host != "10.0.0.5:8080" {
		t.Fatalf("inbound flow: %v", rec.Http)
	}
	// Stale sub-messages of a recycled record are dropped when the new
	// payload is something else.
	rec.Tls = &flowpb.TLSInfo{Sni: "stale"}
	rec.Dns = &flowpb.DNSInfo{QueryName: "stale"}
	h := rec.Http
	Fill(rec)
	if rec.Tls != nil || rec.Dns != nil || rec.Http != h {
		t.Fatalf("recycled record: tls %v dns %v, http reused %v", rec.Tls, rec.Dns, rec.Http == h)
	}
	rec.Snippets = []*flowpb.Snippet{{Direction: dirIn, Data: []byte("\x00\x01binary")}}
	Fill(rec)
	if rec.Http != nil || rec.Tls != nil || rec.Dns != nil {
		t.Fatalf("opaque payload: %v %v %v", rec.Http, rec.Tls, rec.Dns)
	}
}

// TestFillAllocs pins the allocation budget of the collector hook: only the
// output strings of a record are allocated (scratch memory is pooled and
// sub-messages are reused).
func TestFillAllocs(t *testing.T) {
	hello := goClientHello(t, &tls.Config{ServerName: "alloc.example.com", NextProtos: []string{"h2", "http/1.1"}})
	tlsRec := &flowpb.FlowRecord{Protocol: protoTCP, DstPort: 443, Snippets: segments(dirOut, hello, 600)}
	Fill(tlsRec)
	// SNI is the only new string (ALPN ids are interned).
	if n := testing.AllocsPerRun(200, func() { Fill(tlsRec) }); n > 1 {
		t.Errorf("Fill(TLS over 3 segments): %.1f allocs, want <= 1", n)
	}
	dnsRec := pcapFlows(t, pcapPath(t, "sv-dns-udp-txt.pcap"), 0)[1]
	Fill(dnsRec)
	// The query name is decoded from both query and response but allocated once.
	if n := testing.AllocsPerRun(200, func() { Fill(dnsRec) }); n > 1 {
		t.Errorf("Fill(DNS): %.1f allocs, want <= 1", n)
	}
}

func TestFillDNSOverTCP(t *testing.T) {
	q := buildDNS(t, dnsmessage.Header{ID: 9}, dnsmessage.Question{Name: dnsmessage.MustNewName("AXFR.Example.org."), Type: dnsmessage.TypeAXFR, Class: dnsmessage.ClassINET})
	stream := append([]byte{byte(len(q) >> 8), byte(len(q))}, q...)
	rec := &flowpb.FlowRecord{Protocol: protoTCP, SrcPort: 41000, DstPort: 53, Snippets: segments(dirOut, stream, 2)}
	Fill(rec)
	if rec.Dns == nil || rec.Dns.QueryName != "axfr.example.org" || rec.Dns.QueryType != 252 || rec.Dns.IsResponseSeen {
		t.Fatalf("DNS over TCP: %v", rec.Dns)
	}
}

func TestTCPStream(t *testing.T) {
	sn := func(dir flowpb.Direction, off uint32, b string, trunc bool) *flowpb.Snippet {
		return &flowpb.Snippet{Direction: dir, StreamOffset: off, Data: []byte(b), Truncated: trunc}
	}
	tests := []struct {
		name  string
		snips []*flowpb.Snippet
		want  string
	}{
		{"contiguous", []*flowpb.Snippet{sn(dirOut, 1, "0123", false), sn(dirOut, 5, "4567", false), sn(dirOut, 9, "89", false)}, "0123456789"},
		{"out of order in slice", []*flowpb.Snippet{sn(dirOut, 1, "0123", false), sn(dirOut, 9, "89", false), sn(dirOut, 5, "4567", false)}, "0123456789"},
		{"overlap trimmed", []*flowpb.Snippet{sn(dirOut, 1, "0123", false), sn(dirOut, 3, "234567", false)}, "01234567"},
		{"other direction ignored", []*flowpb.Snippet{sn(dirIn, 1, "xxxx", false), sn(dirOut, 1, "0123", false), sn(dirIn, 5, "yyyy", false), sn(dirOut, 5, "45", false)}, "012345"},
		{"gap stops", []*flowpb.Snippet{sn(dirOut, 1, "0123", false), sn(dirOut, 6, "5678", false)}, "0123"},
		{"truncated stops", []*flowpb.Snippet{sn(dirOut, 1, "01", true), sn(dirOut, 5, "4567", false)}, "01"},
		{"unknown offsets (all 0) never joined", []*flowpb.Snippet{sn(dirOut, 0, "0123", false), sn(dirOut, 0, "0123456789", false)}, "0123"},
	}
	for _, tc := range tests {
		var s scratch
		if got := s.tcpStream(tc.snips, dirOut, &s.stream); string(got) != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestFillMetrics(t *testing.T) {
	hello := goClientHello(t, &tls.Config{ServerName: "metrics.example"})
	ok0, part0 := counterValue(t, tlsOutcome.ok), counterValue(t, tlsOutcome.partial)
	Fill(&flowpb.FlowRecord{Protocol: protoTCP, DstPort: 443, Snippets: segments(dirOut, hello, len(hello))})
	Fill(&flowpb.FlowRecord{Protocol: protoTCP, DstPort: 443, Snippets: []*flowpb.Snippet{{Direction: dirOut, Data: hello[:200], Truncated: true}}})
	if d := counterValue(t, tlsOutcome.ok) - ok0; d != 1 {
		t.Errorf("ok counter moved by %v, want 1", d)
	}
	if d := counterValue(t, tlsOutcome.partial) - part0; d != 1 {
		t.Errorf("partial counter moved by %v, want 1", d)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestFillConcurrent: the pooled scratch memory (including the QUIC key
// cache) is never shared between concurrent calls. Run with -race.
func TestFillConcurrent(t *testing.T) {
	hello := goClientHello(t, &tls.Config{ServerName: "concurrent.example"})
	mk := []func() *flowpb.FlowRecord{
		func() *flowpb.FlowRecord {
			return &flowpb.FlowRecord{Protocol: protoTCP, DstPort: 443, Snippets: segments(dirOut, hello, 300)}
		},
		func() *flowpb.FlowRecord { return pcapFlows(t, pcapPath(t, "sv-dns-udp-txt.pcap"), 0)[1] },
		func() *flowpb.FlowRecord {
			return pcapFlows(t, pcapPath(t, "zeek-quic-chromium-api-cirrus-com.pcap"), 0)[0]
		},
	}
	want := []string{"concurrent.example", "textsecure-service-ca.whispersystems.org", "api.cirrus-ci.com"}
	got := func(r *flowpb.FlowRecord) string {
		if r.Tls != nil {
			return r.Tls.Sni
		}
		if r.Dns != nil {
			return r.Dns.QueryName
		}
		return ""
	}
	errs := make(chan string, 16)
	done := make(chan struct{})
	for i := range mk {
		for g := 0; g < 2; g++ {
			rec := mk[i]()
			go func() {
				defer func() { done <- struct{}{} }()
				for n := 0; n < 200; n++ {
					Fill(rec)
					if s := got(rec); s != want[i] {
						errs <- s
						return
					}
				}
			}()
		}
	}
	for i := 0; i < 2*len(mk); i++ {
		<-done
	}
	close(errs)
	for e := range errs {
		t.Errorf("concurrent Fill produced %q", e)
	}
}
