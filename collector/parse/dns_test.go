package parse

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// buildDNS builds a message with x/net's dnsmessage (name compression on),
// an encoder independent of the parser under test.
func buildDNS(t testing.TB, h dnsmessage.Header, q dnsmessage.Question, answers ...dnsmessage.Resource) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, h)
	b.EnableCompression()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.StartQuestions())
	must(b.Question(q))
	must(b.StartAnswers())
	for _, a := range answers {
		switch body := a.Body.(type) {
		case *dnsmessage.AResource:
			must(b.AResource(a.Header, *body))
		case *dnsmessage.AAAAResource:
			must(b.AAAAResource(a.Header, *body))
		case *dnsmessage.CNAMEResource:
			must(b.CNAMEResource(a.Header, *body))
		case *dnsmessage.TXTResource:
			must(b.TXTResource(a.Header, *body))
		default:
			t.Fatalf("unsupported body %T", body)
		}
	}
	msg, err := b.Finish()
	must(err)
	return msg
}

func TestDNSBuiltMessages(t *testing.T) {
	name := dnsmessage.MustNewName("Api.Example.COM.")
	cname := dnsmessage.MustNewName("edge.cdn.example.net.")
	rh := func(n dnsmessage.Name, typ dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: n, Type: typ, Class: dnsmessage.ClassINET, TTL: 60}
	}
	v4 := netip.MustParseAddr("93.184.216.34")
	v6 := netip.MustParseAddr("2606:2800:220:1:248:1893:25c8:1946")
	tests := []struct {
		name    string
		msg     []byte
		want    *flowpb.DNSInfo
		compare bool
	}{
		{
			name: "query A",
			msg: buildDNS(t, dnsmessage.Header{ID: 1, RecursionDesired: true},
				dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}),
			want: &flowpb.DNSInfo{QueryName: "api.example.com", QueryType: 1},
		},
		{
			name: "response CNAME chain with A and AAAA (compressed names)",
			msg: buildDNS(t, dnsmessage.Header{ID: 2, Response: true, RecursionAvailable: true},
				dnsmessage.Question{Name: name, Type: dnsmessage.TypeAAAA, Class: dnsmessage.ClassINET},
				dnsmessage.Resource{Header: rh(name, dnsmessage.TypeCNAME), Body: &dnsmessage.CNAMEResource{CNAME: cname}},
				dnsmessage.Resource{Header: rh(cname, dnsmessage.TypeA), Body: &dnsmessage.AResource{A: v4.As4()}},
				dnsmessage.Resource{Header: rh(cname, dnsmessage.TypeAAAA), Body: &dnsmessage.AAAAResource{AAAA: v6.As16()}},
			),
			want: &flowpb.DNSInfo{QueryName: "api.example.com", QueryType: 28, IsResponseSeen: true,
				Answers: [][]byte{schema.AddrBytes(v4), schema.AddrBytes(v6)}},
		},
		{
			name: "TXT response",
			msg: buildDNS(t, dnsmessage.Header{ID: 3, Response: true},
				dnsmessage.Question{Name: dnsmessage.MustNewName("x1.t.example.org."), Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET},
				dnsmessage.Resource{Header: rh(dnsmessage.MustNewName("x1.t.example.org."), dnsmessage.TypeTXT),
					Body: &dnsmessage.TXTResource{TXT: []string{"v=spf1 -all", strings.Repeat("z", 200)}}},
			),
			want: &flowpb.DNSInfo{QueryName: "x1.t.example.org", QueryType: 16, IsResponseSeen: true},
		},
		{
			name: "NXDOMAIN",
			msg: buildDNS(t, dnsmessage.Header{ID: 4, Response: true, RCode: dnsmessage.RCodeNameError},
				dnsmessage.Question{Name: dnsmessage.MustNewName("nope.invalid."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}),
			want: &flowpb.DNSInfo{QueryName: "nope.invalid", QueryType: 1, Rcode: 3, IsResponseSeen: true},
		},
		{
			name: "root name",
			msg: buildDNS(t, dnsmessage.Header{ID: 5},
				dnsmessage.Question{Name: dnsmessage.MustNewName("."), Type: dnsmessage.TypeNS, Class: dnsmessage.ClassINET}),
			want: &flowpb.DNSInfo{QueryName: "", QueryType: 2},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got flowpb.DNSInfo
			if err := DNS(tc.msg, &got); err != nil {
				t.Fatalf("DNS: %v", err)
			}
			assertDNS(t, &got, tc.want)
			// Every strict prefix must fail cleanly with ErrTruncated.
			for n := 0; n < len(tc.msg); n++ {
				var p flowpb.DNSInfo
				if err := DNS(tc.msg[:n], &p); !errors.Is(err, ErrTruncated) {
					t.Fatalf("prefix %d/%d: err = %v, want ErrTruncated", n, len(tc.msg), err)
				}
			}
			// TCP framing.
			tcp := append([]byte{byte(len(tc.msg) >> 8), byte(len(tc.msg))}, tc.msg...)
			var viaTCP flowpb.DNSInfo
			if err := DNSTCP(tcp, &viaTCP); err != nil {
				t.Fatalf("DNSTCP: %v", err)
			}
			assertDNS(t, &viaTCP, tc.want)
		})
	}
}

func assertDNS(t *testing.T, got, want *flowpb.DNSInfo) {
	t.Helper()
	if got.QueryName != want.QueryName || got.QueryType != want.QueryType || got.Rcode != want.Rcode || got.IsResponseSeen != want.IsResponseSeen {
		t.Errorf("got name=%q type=%d rcode=%d resp=%v, want name=%q type=%d rcode=%d resp=%v",
			got.QueryName, got.QueryType, got.Rcode, got.IsResponseSeen, want.QueryName, want.QueryType, want.Rcode, want.IsResponseSeen)
	}
	if len(got.Answers) != len(want.Answers) {
		t.Fatalf("answers = %x, want %x", got.Answers, want.Answers)
	}
	for i := range want.Answers {
		if string(got.Answers[i]) != string(want.Answers[i]) {
			t.Errorf("answer %d = %x, want %x", i, got.Answers[i], want.Answers[i])
		}
	}
}

func TestDNSHostile(t *testing.T) {
	hdr := []byte{0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0}
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"pointer to itself", append(append([]byte{}, hdr...), 0xc0, 12, 0, 1, 0, 1), ErrMalformed},
		{"pointer loop of two", append(append([]byte{}, hdr...), 1, 'a', 0xc0, 16, 0xc0, 12), ErrMalformed},
		{"pointer beyond message", append(append([]byte{}, hdr...), 0xc0, 0xff), ErrMalformed},
		{"reserved label type", append(append([]byte{}, hdr...), 0x40, 0), ErrMalformed},
		{"name over 255 octets", append(append([]byte{}, hdr...), []byte(strings.Repeat("\x3f"+strings.Repeat("a", 63), 5))...), ErrMalformed},
		{"label past end", append(append([]byte{}, hdr...), 10, 'a'), ErrTruncated},
		{"opcode 2 (status)", []byte{0, 1, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrNotThisProtocol},
	}
	for _, tc := range tests {
		var out flowpb.DNSInfo
		if err := DNS(tc.msg, &out); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	// A huge answer count with a short message must stop at the data.
	msg := append(append([]byte{}, hdr...), 0, 0, 1, 0, 1)
	msg[6], msg[7] = 0xff, 0xff
	var out flowpb.DNSInfo
	if err := DNS(msg, &out); !errors.Is(err, ErrTruncated) {
		t.Errorf("huge ancount: %v", err)
	}
	// Binary label bytes become a valid UTF-8 escaped string.
	msg = append(append([]byte{}, hdr[:2]...), 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'A', 0xfe, '\\', 0, 0, 10, 0, 1)
	if err := DNS(msg, &out); err != nil {
		t.Fatal(err)
	}
	if out.QueryName != `a\254\092` || !utf8.ValidString(out.QueryName) {
		t.Errorf("binary label = %q", out.QueryName)
	}
}

// dnsSkeleton maps a name to a form in which tshark's output (raw bytes with
// invalid UTF-8 replaced by U+FFFD, original case) and ours (lower case,
// \DDD escapes) agree: ASCII lower-cased, every run of non-ASCII replaced by
// one '?'.
func dnsSkeleton(s string, escaped bool) string {
	var raw []byte
	for i := 0; i < len(s); i++ {
		if escaped && s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.Atoi(s[i+1 : i+4]); err == nil {
				raw = append(raw, byte(n))
				i += 3
				continue
			}
		}
		raw = append(raw, s[i])
	}
	var b strings.Builder
	prevHigh := false
	for _, c := range raw {
		if c >= 0x80 {
			if !prevHigh {
				b.WriteByte('?')
			}
			prevHigh = true
			continue
		}
		prevHigh = false
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// TestDNSPcapsVsTshark decodes every DNS message of real captures and
// compares name, type and rcode with tshark's dissector.
func TestDNSPcapsVsTshark(t *testing.T) {
	for _, name := range []string{"sv-dns-udp-txt.pcap", "sv-dns-udp-null.pcap", "zeek-ipv6-fragmented-dns.pcap", "elastic-dns-tunnel-iodine.pcap", "zeek-communityid-udp.pcap"} {
		t.Run(name, func(t *testing.T) {
			path := pcapPath(t, name)
			rows := tsharkFields(t, path, "dns && udp", nil, "dns.qry.name", "dns.qry.type", "dns.flags.response", "dns.flags.rcode")
			var msgs []packet
			for _, p := range readPackets(t, path) {
				if p.proto == protoUDP && (p.sport == 53 || p.dport == 53) {
					msgs = append(msgs, p)
				}
			}
			if len(msgs) != len(rows) || len(rows) == 0 {
				t.Fatalf("%d DNS packets decoded by gopacket, %d by tshark", len(msgs), len(rows))
			}
			exact := 0
			for i, p := range msgs {
				var got flowpb.DNSInfo
				if err := DNS(p.payload, &got); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				r := rows[i]
				wantName, _, _ := strings.Cut(r[0], ",")
				if dnsSkeleton(got.QueryName, true) != dnsSkeleton(wantName, false) {
					t.Errorf("message %d: name %q, tshark %q", i, got.QueryName, wantName)
				}
				if strings.IndexFunc(wantName, func(r rune) bool { return r >= 0x80 }) < 0 {
					exact++
					if got.QueryName != strings.ToLower(wantName) {
						t.Errorf("message %d: name %q, tshark %q", i, got.QueryName, wantName)
					}
				}
				wantType, _, _ := strings.Cut(r[1], ",")
				if strconv.Itoa(int(got.QueryType)) != wantType {
					t.Errorf("message %d: type %d, tshark %s", i, got.QueryType, wantType)
				}
				resp := r[2] == "1" || r[2] == "True"
				if got.IsResponseSeen != resp {
					t.Errorf("message %d: response %v, tshark %q", i, got.IsResponseSeen, r[2])
				}
				if resp && strconv.Itoa(int(got.Rcode)) != r[3] {
					t.Errorf("message %d: rcode %d, tshark %s", i, got.Rcode, r[3])
				}
				// Answers: tshark's dns.a/dns.aaaa also list additional-
				// section glue, so the answer section comes from x/net's
				// parser instead.
				want := answerSection(t, p.payload)
				var have []string
				for _, a := range got.Answers {
					have = append(have, schema.Addr(a).String())
				}
				if !sameSet(have, want) {
					t.Errorf("message %d: answers %v, tshark %v", i, have, want)
				}
			}
			t.Logf("%d messages matched tshark (%d names compared exactly)", len(msgs), exact)
		})
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		if m[x]--; m[x] < 0 {
			return false
		}
	}
	return true
}

// answerSection returns the A/AAAA addresses of the answer section as parsed
// by golang.org/x/net/dns/dnsmessage.
func answerSection(t *testing.T, msg []byte) []string {
	t.Helper()
	var p dnsmessage.Parser
	if _, err := p.Start(msg); err != nil {
		t.Fatalf("dnsmessage: %v", err)
	}
	if err := p.SkipAllQuestions(); err != nil {
		t.Fatalf("dnsmessage: %v", err)
	}
	var out []string
	for len(out) < MaxDNSAnswers {
		h, err := p.AnswerHeader()
		if err != nil {
			break
		}
		switch {
		case h.Type == dnsmessage.TypeA && h.Class == dnsmessage.ClassINET:
			r, err := p.AResource()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, netip.AddrFrom4(r.A).String())
		case h.Type == dnsmessage.TypeAAAA && h.Class == dnsmessage.ClassINET:
			r, err := p.AAAAResource()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, netip.AddrFrom16(r.AAAA).String())
		default:
			if err := p.SkipAnswer(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// TestFillDNS runs the collector hook on flows rebuilt from a capture: query
// from the OUTBOUND snippet, answers and rcode from the INBOUND one.
func TestFillDNS(t *testing.T) {
	recs := pcapFlows(t, pcapPath(t, "sv-dns-udp-txt.pcap"), 0)
	if len(recs) != 2 {
		t.Fatalf("%d flows", len(recs))
	}
	Fill(recs[1])
	d := recs[1].Dns
	if d == nil || d.QueryName != "textsecure-service-ca.whispersystems.org" || d.QueryType != 1 || !d.IsResponseSeen || d.Rcode != 0 ||
		len(d.Answers) != 1 || schema.Addr(d.Answers[0]).String() != "34.197.178.240" {
		t.Fatalf("Fill: %v", d)
	}
	if recs[1].Tls != nil || recs[1].Http != nil {
		t.Fatalf("Fill set tls/http on DNS: %v %v", recs[1].Tls, recs[1].Http)
	}
	// Refill reuses the sub-message and gives the same result.
	prev := d
	Fill(recs[1])
	if recs[1].Dns != prev || recs[1].Dns.QueryName != "textsecure-service-ca.whispersystems.org" || len(recs[1].Dns.Answers) != 1 {
		t.Fatalf("refill: %v", recs[1].Dns)
	}
}
