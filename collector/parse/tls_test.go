package parse

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// goClientHello returns the first TLS record(s) a crypto/tls client sends,
// i.e. a real ClientHello from an independent implementation.
func goClientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	cli, srv := net.Pipe()
	defer srv.Close()
	go func() {
		c := tls.Client(cli, cfg)
		_ = c.Handshake() // fails when srv closes; we only want its first flight
		c.Close()
	}()
	_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(srv, hdr); err != nil {
		t.Fatalf("read record header: %v", err)
	}
	body := make([]byte, be16(hdr[3:]))
	if _, err := io.ReadFull(srv, body); err != nil {
		t.Fatalf("read record: %v", err)
	}
	return append(hdr, body...)
}

// refragment re-encodes the handshake message of one record into records of
// at most size bytes (legal TLS, rarely seen but used by evasion tools).
func refragment(rec []byte, size int) []byte {
	msg := rec[5:]
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func TestTLSClientHelloFromGo(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *tls.Config
		version uint32
	}{
		{"tls13", &tls.Config{ServerName: "Upload.Example.COM", NextProtos: []string{"h2", "http/1.1", "x-custom/7"}}, tls.VersionTLS13},
		{"tls12 only", &tls.Config{ServerName: "legacy.example.net", NextProtos: []string{"http/1.1"}, MaxVersion: tls.VersionTLS12}, tls.VersionTLS12},
		{"no sni no alpn", &tls.Config{InsecureSkipVerify: true}, tls.VersionTLS13},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := goClientHello(t, tc.cfg)
			check := func(t *testing.T, got *flowpb.TLSInfo) {
				t.Helper()
				// crypto/tls sends the SNI as given; DNS names compare case-insensitively.
				if !strings.EqualFold(got.Sni, tc.cfg.ServerName) || !slices.Equal(got.Alpn, tc.cfg.NextProtos) && len(tc.cfg.NextProtos) > 0 || got.Version != uint32(tc.version) || got.Quic {
					t.Errorf("got sni=%q alpn=%q version=%#x quic=%v; want %q %q %#x", got.Sni, got.Alpn, got.Version, got.Quic, tc.cfg.ServerName, tc.cfg.NextProtos, tc.version)
				}
			}
			var got flowpb.TLSInfo
			if err := TLSClientHello(rec, &got); err != nil {
				t.Fatalf("TLSClientHello: %v", err)
			}
			check(t, &got)
			for _, size := range []int{1, 7, 100, 512} {
				var frag flowpb.TLSInfo
				if err := TLSClientHello(refragment(rec, size), &frag); err != nil {
					t.Fatalf("fragmented into %d-byte records: %v", size, err)
				}
				check(t, &frag)
			}
			// Prefixes: never a panic; an error wrapping ErrTruncated; and
			// once the server_name extension is complete, the SNI.
			sniEnd := sniExtensionEnd(t, rec)
			if (sniEnd == 0) != (tc.cfg.ServerName == "") {
				t.Fatalf("test could not locate the server_name extension (end %d)", sniEnd)
			}
			t.Logf("record %d bytes, server_name ends at %d", len(rec), sniEnd)
			for n := 0; n < len(rec); n++ {
				var p flowpb.TLSInfo
				err := TLSClientHello(rec[:n], &p)
				if !errors.Is(err, ErrTruncated) {
					t.Fatalf("prefix %d/%d: err = %v, want ErrTruncated", n, len(rec), err)
				}
				if sniEnd > 0 && n >= sniEnd && !strings.EqualFold(p.Sni, tc.cfg.ServerName) {
					t.Fatalf("prefix %d (sni complete at %d): sni %q", n, sniEnd, p.Sni)
				}
			}
		})
	}
}

// sniExtensionEnd finds where the server_name extension ends in a record by
// searching for the encoded host name (test-side, independent of the parser).
func sniExtensionEnd(t *testing.T, rec []byte) int {
	t.Helper()
	for i := 0; i+9 < len(rec); i++ {
		if rec[i] == 0 && rec[i+1] == 0 && rec[i+6] == 0 { // type 0, ..., name type host_name
			l := be16(rec[i+2:])
			if l >= 5 && be16(rec[i+4:]) == l-2 && be16(rec[i+7:]) == l-5 && i+4+l <= len(rec) {
				return i + 4 + l
			}
		}
	}
	return 0
}

func TestTLSHostile(t *testing.T) {
	rec := goClientHello(t, &tls.Config{ServerName: "a.example", NextProtos: []string{"h2"}})
	tests := []struct {
		name string
		mod  func([]byte) []byte
		want error
	}{
		{"alert record", func(b []byte) []byte { b[0] = 21; return b }, ErrNotThisProtocol},
		{"server hello", func(b []byte) []byte { b[5] = 2; return b }, ErrNotThisProtocol},
		{"record length zero", func(b []byte) []byte { b[3], b[4] = 0, 0; return b }, ErrMalformed},
		{"session id too long", func(b []byte) []byte { b[5+4+34] = 200; return b }, ErrMalformed},
		{"odd cipher suite length", func(b []byte) []byte {
			p := 5 + 4 + 35 + int(b[5+4+34])
			b[p+1] |= 1
			return b
		}, ErrMalformed},
		{"huge handshake length over records", func(b []byte) []byte {
			b[6], b[7], b[8] = 0xff, 0xff, 0xff
			return refragment(b, 100)
		}, ErrUnsupported},
	}
	for _, tc := range tests {
		b := tc.mod(slices.Clone(rec))
		var out flowpb.TLSInfo
		if err := TLSClientHello(b, &out); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestTLSPcapsVsTshark rebuilds TCP flows from captures, runs Fill and
// compares SNI, ALPN and version with tshark's first ClientHello per stream.
func TestTLSPcapsVsTshark(t *testing.T) {
	for _, name := range []string{"zeek-tls-conn-with-extensions.pcap", "sv-ja4-tls.pcap", "sv-tls-malicious-c2.pcap", "sv-community-id-ipv6.pcap"} {
		t.Run(name, func(t *testing.T) {
			path := pcapPath(t, name)
			rows := tsharkFields(t, path, "tls.handshake.type == 1", nil,
				"tcp.stream", "tls.handshake.extensions_server_name", "tls.handshake.extensions_alpn_str",
				"tls.handshake.version", "tls.handshake.extensions.supported_version")
			var tcp []*flowpb.FlowRecord
			for _, r := range pcapFlows(t, path, 0) {
				if r.Protocol == protoTCP {
					tcp = append(tcp, r)
				}
			}
			if len(rows) == 0 {
				t.Fatal("tshark found no ClientHello")
			}
			done := map[string]bool{}
			for _, row := range rows {
				if done[row[0]] {
					continue
				}
				done[row[0]] = true
				stream, _ := strconv.Atoi(row[0])
				if stream >= len(tcp) {
					t.Fatalf("tshark stream %d, gopacket found %d TCP flows", stream, len(tcp))
				}
				rec := tcp[stream]
				Fill(rec)
				got := rec.Tls
				if got == nil {
					t.Fatalf("stream %d: Fill set no TLS info", stream)
				}
				versions := row[3] // legacy_version unless supported_versions is sent
				if row[4] != "" {
					versions = row[4]
				}
				want := uint64(0)
				for _, v := range strings.Split(versions, ",") {
					x, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 32)
					if err == nil && x&0x0f0f != 0x0a0a { // skip GREASE
						want = max(want, x)
					}
				}
				wantALPN := []string(nil)
				if row[2] != "" {
					wantALPN = strings.Split(row[2], ",")
				}
				if got.Sni != row[1] || !slices.Equal(got.Alpn, wantALPN) || uint64(got.Version) != want {
					t.Errorf("stream %d: sni=%q alpn=%q version=%#x; tshark sni=%q alpn=%q version=%#x",
						stream, got.Sni, got.Alpn, got.Version, row[1], wantALPN, want)
				}
			}
		})
	}
}
