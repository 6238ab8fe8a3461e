package parse

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/quic-go/quic-go"
	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// The seed corpora in testdata/fuzz/<FuzzName>/ come from the real cases of
// the other tests (pcap payloads, crypto/tls, net/http and quic-go output).
// Regenerate them with:
//
//	EXFILWATCH_PARSE_WRITE_CORPUS=1 go test -run TestWriteFuzzCorpus ./collector/parse/

func checkTLSInfo(t *testing.T, out *flowpb.TLSInfo) {
	if !utf8.ValidString(out.Sni) || len(out.Alpn) > MaxALPN {
		t.Fatalf("bad TLS output: %q %d alpn", out.Sni, len(out.Alpn))
	}
	for _, a := range out.Alpn {
		if !utf8.ValidString(a) {
			t.Fatalf("invalid UTF-8 ALPN %q", a)
		}
	}
}

func checkDNSInfo(t *testing.T, out *flowpb.DNSInfo) {
	if !utf8.ValidString(out.QueryName) || len(out.Answers) > MaxDNSAnswers {
		t.Fatalf("bad DNS output: %q %d answers", out.QueryName, len(out.Answers))
	}
	for _, a := range out.Answers {
		if len(a) != 16 {
			t.Fatalf("answer of %d bytes", len(a))
		}
	}
}

func checkHTTPInfo(t *testing.T, out *flowpb.HTTPInfo) {
	if len(out.Headers) > MaxHTTPHeaders || len(out.BodyPrefix) > MaxHTTPBodyPrefix || len(out.Path) > 4*MaxHTTPPath {
		t.Fatalf("HTTP output over bounds: %d headers, %d body, %d path", len(out.Headers), len(out.BodyPrefix), len(out.Path))
	}
	for _, s := range []string{out.Method, out.Host, out.Path, out.UserAgent, out.ContentType, out.ContentEncoding} {
		if !utf8.ValidString(s) || len(s) > 4*max(MaxHTTPPath, MaxHTTPHeaderValue) {
			t.Fatalf("invalid UTF-8 %q", s)
		}
	}
	for _, h := range out.Headers {
		if !utf8.ValidString(h.Name) || !utf8.ValidString(h.Value) || len(h.Value) > 4*MaxHTTPHeaderValue || len(h.Name) > 4*MaxHTTPHeaderName {
			t.Fatalf("bad header %q: %q", h.Name, h.Value)
		}
	}
}

func FuzzDNS(f *testing.F) {
	f.Add([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0, 0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, msg []byte) {
		var out flowpb.DNSInfo
		_ = DNS(msg, &out)
		checkDNSInfo(t, &out)
		_ = DNSTCP(msg, &out)
		checkDNSInfo(t, &out)
	})
}

func FuzzTLSClientHello(f *testing.F) {
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var out flowpb.TLSInfo
		_ = TLSClientHello(b, &out)
		checkTLSInfo(t, &out)
		// The same bytes as a bare handshake message (QUIC CRYPTO data).
		_ = clientHelloMsg(b, &out)
		checkTLSInfo(t, &out)
	})
}

func FuzzHTTPRequest(f *testing.F) {
	f.Add([]byte("GET /?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out flowpb.HTTPInfo
		_ = HTTPRequest(b, &out)
		checkHTTPInfo(t, &out)
	})
}

func FuzzQUICInitial(f *testing.F) {
	f.Add([]byte{0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x44, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var out flowpb.TLSInfo
		_ = QUICInitial(b, &out)
		checkTLSInfo(t, &out)
		// Also feed the bytes as a decrypted payload, so the frame walker
		// and CRYPTO reassembly are fuzzed past the AEAD.
		s := new(scratch)
		s.quic = true
		_ = s.frames(b, true)
		_ = s.frames(b, false)
		var o2 flowpb.TLSInfo
		_ = s.quicFinish(&o2)
		checkTLSInfo(t, &o2)
	})
}

func FuzzFill(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), uint8(protoTCP), uint16(80), uint16(5), false)
	f.Fuzz(func(t *testing.T, data []byte, ipProto uint8, port uint16, split uint16, inbound bool) {
		rec := &flowpb.FlowRecord{Protocol: uint32(ipProto), DstPort: uint32(port), SrcPort: 40000}
		if inbound {
			rec.Direction = flowpb.Direction_DIRECTION_INBOUND
			rec.SrcPort, rec.DstPort = rec.DstPort, rec.SrcPort
		}
		client, server := flowpb.Direction_DIRECTION_OUTBOUND, flowpb.Direction_DIRECTION_INBOUND
		if inbound {
			client, server = server, client
		}
		cut := min(int(split), len(data))
		// Two client snippets, contiguous in the stream, plus the second
		// half echoed by the server (DNS responses, for instance).
		rec.Snippets = []*flowpb.Snippet{
			{Direction: client, PacketIndex: 0, StreamOffset: 1, Data: data[:cut]},
			{Direction: client, PacketIndex: 1, StreamOffset: uint32(1 + cut), Data: data[cut:]},
			{Direction: server, PacketIndex: 0, Data: data[cut:]},
		}
		Fill(rec)
		if rec.Dns != nil {
			checkDNSInfo(t, rec.Dns)
		}
		if rec.Tls != nil {
			checkTLSInfo(t, rec.Tls)
		}
		if rec.Http != nil {
			checkHTTPInfo(t, rec.Http)
		}
		// The record must stay exportable: proto3 strings must be UTF-8.
		if _, err := proto.Marshal(rec); err != nil {
			t.Fatalf("marshal after Fill: %v", err)
		}
		Fill(rec) // refill with reused sub-messages
	})
}

// TestWriteFuzzCorpus regenerates the seed corpora from real inputs. It only
// runs when asked to, since it rewrites files under testdata/.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("EXFILWATCH_PARSE_WRITE_CORPUS") != "1" {
		t.Skip("set EXFILWATCH_PARSE_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	write := func(target string, args ...any) {
		body := "go test fuzz v1\n"
		for _, a := range args {
			switch v := a.(type) {
			case []byte:
				body += fmt.Sprintf("[]byte(%q)\n", v)
			case uint8:
				body += fmt.Sprintf("byte(%d)\n", v)
			case uint16:
				body += fmt.Sprintf("uint16(%d)\n", v)
			case bool:
				body += fmt.Sprintf("bool(%v)\n", v)
			}
		}
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("%x", sha256.Sum256([]byte(body)))[:16]
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// DNS: a few messages from each capture.
	for _, name := range []string{"sv-dns-udp-txt.pcap", "sv-dns-udp-null.pcap", "zeek-ipv6-fragmented-dns.pcap", "elastic-dns-tunnel-iodine.pcap"} {
		n := 0
		for _, p := range readPackets(t, pcapPath(t, name)) {
			if p.proto == protoUDP && (p.sport == 53 || p.dport == 53) && n < 4 {
				write("FuzzDNS", p.payload)
				n++
			}
		}
	}
	// TLS: crypto/tls hellos (whole and fragmented) and capture payloads.
	for _, cfg := range []*tls.Config{
		{ServerName: "a.example.com", NextProtos: []string{"h2", "http/1.1"}},
		{ServerName: "b.example.net", MaxVersion: tls.VersionTLS12},
	} {
		rec := goClientHello(t, cfg)
		write("FuzzTLSClientHello", rec)
		write("FuzzTLSClientHello", refragment(rec, 200))
		write("FuzzFill", rec, uint8(protoTCP), uint16(443), uint16(300), false)
	}
	for _, name := range []string{"zeek-tls-conn-with-extensions.pcap", "sv-ja4-tls.pcap", "sv-tls-malicious-c2.pcap"} {
		for _, r := range pcapFlows(t, pcapPath(t, name), 0) {
			if s := firstOf(r.Snippets, flowpb.Direction_DIRECTION_OUTBOUND); s != nil && r.Protocol == protoTCP {
				write("FuzzTLSClientHello", s.Data)
			}
		}
	}
	// HTTP: net/http requests and capture payloads.
	write("FuzzHTTPRequest", writeRequest(t, "POST", "http://h.example/p?q=1", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "X-A": {"b"}}, []byte("a=1&b=2")))
	for _, name := range []string{"sv-http-android-dalvik-ua.pcap", "sv-http-post-file.pcap", "zeek-http-putty-upload.pcap"} {
		for _, r := range pcapFlows(t, pcapPath(t, name), 0) {
			if s := firstOf(r.Snippets, flowpb.Direction_DIRECTION_OUTBOUND); s != nil && r.Protocol == protoTCP {
				write("FuzzHTTPRequest", s.Data[:min(len(s.Data), 2048)])
				write("FuzzFill", s.Data[:min(len(s.Data), 2048)], uint8(protoTCP), uint16(r.DstPort), uint16(40), false)
			}
		}
	}
	// QUIC: quic-go datagrams (v1, v2) and the Chromium capture.
	for _, v := range []quic.Version{quic.Version1, quic.Version2} {
		d := quicGoInitials(t, "fuzz.example", []string{"h3"}, v)
		write("FuzzQUICInitial", d[0])
		write("FuzzQUICInitial", d[0][:600])
		write("FuzzFill", d[0], uint8(protoUDP), uint16(443), uint16(0), false)
	}
	for _, r := range pcapFlows(t, pcapPath(t, "zeek-quic-chromium-api-cirrus-com.pcap"), 0) {
		if s := firstOf(r.Snippets, flowpb.Direction_DIRECTION_OUTBOUND); s != nil {
			write("FuzzQUICInitial", s.Data)
		}
	}
	// Fill over DNS.
	for _, p := range readPackets(t, pcapPath(t, "sv-dns-udp-txt.pcap")) {
		write("FuzzFill", p.payload, uint8(protoUDP), uint16(53), uint16(0), p.sport == 53)
		break
	}
}
