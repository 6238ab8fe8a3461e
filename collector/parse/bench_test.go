package parse

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net/http"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// Benchmarks run on real inputs (capture payloads, crypto/tls and quic-go
// output). Baselines in the same run: x/net dnsmessage for DNS and net/http's
// ReadRequest for HTTP, both doing comparable decoding work.

func benchFlow(b *testing.B, pcap string, proto uint32) *flowpb.FlowRecord {
	b.Helper()
	for _, r := range pcapFlows(b, pcapPath(b, pcap), 0) {
		if r.Protocol == proto {
			return r
		}
	}
	b.Fatalf("no flow in %s", pcap)
	return nil
}

func dnsResponse(b *testing.B) []byte {
	for _, p := range readPackets(b, pcapPath(b, "sv-dns-udp-txt.pcap")) {
		if p.sport == 53 && bytes.Contains(p.payload, []byte("whispersystems")) {
			return p.payload
		}
	}
	b.Fatal("response not found")
	return nil
}

func BenchmarkDNS(b *testing.B) {
	msg := dnsResponse(b)
	var out flowpb.DNSInfo
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		out.QueryName = ""
		if err := DNS(msg, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDNSBaselineDnsmessage(b *testing.B) {
	msg := dnsResponse(b)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		var p dnsmessage.Parser
		if _, err := p.Start(msg); err != nil {
			b.Fatal(err)
		}
		q, err := p.Question()
		if err != nil {
			b.Fatal(err)
		}
		_ = q.Name.String()
		if err := p.SkipAllQuestions(); err != nil {
			b.Fatal(err)
		}
		for {
			h, err := p.AnswerHeader()
			if err != nil {
				break
			}
			if h.Type == dnsmessage.TypeA {
				if _, err := p.AResource(); err != nil {
					b.Fatal(err)
				}
			} else if err := p.SkipAnswer(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkTLSClientHello(b *testing.B) {
	rec := goClientHello(b, &tls.Config{ServerName: "bench.example.com", NextProtos: []string{"h2", "http/1.1"}})
	var out flowpb.TLSInfo
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		out.Sni = ""
		if err := TLSClientHello(rec, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHTTPRequest(b *testing.B) {
	data := firstOf(benchFlow(b, "sv-http-android-dalvik-ua.pcap", protoTCP).Snippets, flowpb.Direction_DIRECTION_OUTBOUND).Data
	var out flowpb.HTTPInfo
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := HTTPRequest(data, &out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHTTPBaselineReadRequest(b *testing.B) {
	data := firstOf(benchFlow(b, "sv-http-android-dalvik-ua.pcap", protoTCP).Snippets, flowpb.Direction_DIRECTION_OUTBOUND).Data
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	r := bytes.NewReader(data)
	br := bufio.NewReader(r)
	for b.Loop() {
		r.Reset(data)
		br.Reset(r)
		if _, err := http.ReadRequest(br); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkQUICInitial(b *testing.B) {
	data := firstOf(benchFlow(b, "zeek-quic-chromium-api-cirrus-com.pcap", protoUDP).Snippets, flowpb.Direction_DIRECTION_OUTBOUND).Data
	var out flowpb.TLSInfo
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		out.Sni = ""
		if err := QUICInitial(data, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQUICKeyDerivation is the part of QUICInitial spent deriving keys
// (HKDF + AES/GCM setup), paid once per new destination connection ID.
func BenchmarkQUICKeyDerivation(b *testing.B) {
	dcid := []byte{0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08}
	var k initialKeys
	b.ReportAllocs()
	for b.Loop() {
		if err := deriveClientInitial(quicV1, dcid, &k); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFill(b *testing.B) {
	hello := goClientHello(b, &tls.Config{ServerName: "bench.example.com", NextProtos: []string{"h2", "http/1.1"}})
	cases := []struct {
		name string
		rec  *flowpb.FlowRecord
	}{
		{"dns", pcapFlows(b, pcapPath(b, "sv-dns-udp-txt.pcap"), 0)[1]},
		{"tls-3-segments", &flowpb.FlowRecord{Protocol: protoTCP, DstPort: 443, Snippets: segments(dirOut, hello, 600)}},
		{"http", benchFlow(b, "sv-http-android-dalvik-ua.pcap", protoTCP)},
		{"quic-chromium", benchFlow(b, "zeek-quic-chromium-api-cirrus-com.pcap", protoUDP)},
		{"opaque-tcp", &flowpb.FlowRecord{Protocol: protoTCP, DstPort: 5222, Snippets: segments(dirOut, bytes.Repeat([]byte{0x17, 0x03, 0x03, 0xfe}, 100), 200)}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			Fill(c.rec)
			b.ReportAllocs()
			for b.Loop() {
				Fill(c.rec)
			}
		})
	}
}
