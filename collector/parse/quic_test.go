package parse

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestQUICInitialKeys checks key derivation against the published vectors
// (RFC 9001 Appendix A.1 and A.2 for v1, RFC 9369 Appendix A.1 for v2).
func TestQUICInitialKeys(t *testing.T) {
	dcid := unhex(t, "8394c8f03e515708")
	tests := []struct {
		version      uint32
		key, iv, hp  string
		sample, mask string
	}{
		{quicV1, "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2",
			"d1b1c98dd7689fb8ec11d242b123dc9b", "437b9aec36"},
		{quicV2, "8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f", "45b95e15235d6f45a6b19cbcb0294ba9", "", ""},
	}
	for _, tc := range tests {
		var k initialKeys
		if err := deriveClientInitial(tc.version, dcid, &k); err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(k.key[:]) != tc.key || hex.EncodeToString(k.iv[:]) != tc.iv || hex.EncodeToString(k.hpKey[:]) != tc.hp {
			t.Errorf("version %#x: key %x iv %x hp %x; want %s %s %s", tc.version, k.key, k.iv, k.hpKey, tc.key, tc.iv, tc.hp)
		}
		if tc.sample != "" {
			var mask [16]byte
			k.hp.Encrypt(mask[:], unhex(t, tc.sample))
			if hex.EncodeToString(mask[:5]) != tc.mask {
				t.Errorf("header protection mask %x, want %s", mask[:5], tc.mask)
			}
		}
	}
}

// quicGoInitials dials a local UDP socket with quic-go and returns the first
// client datagrams (the server never answers, so these are the client's
// Initial flight, possibly spread over several datagrams).
func quicGoInitials(t testing.TB, sni string, alpn []string, version quic.Version) [][]byte {
	t.Helper()
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		cfg := &quic.Config{Versions: []quic.Version{version}, HandshakeIdleTimeout: 3 * time.Second}
		_, _ = quic.DialAddr(ctx, srv.LocalAddr().String(), &tls.Config{ServerName: sni, NextProtos: alpn}, cfg)
	}()
	var out [][]byte
	buf := make([]byte, 65536)
	for len(out) < 4 {
		_ = srv.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, _, err := srv.ReadFromUDP(buf)
		if err != nil {
			if len(out) > 0 {
				break // the first flight is complete; retransmissions follow later
			}
			if ctx.Err() != nil {
				t.Fatal("no datagram from quic-go")
			}
			continue
		}
		out = append(out, slices.Clone(buf[:n]))
	}
	cancel()
	<-done
	return out
}

func udpRecord(datagrams [][]byte, snaplen int) *flowpb.FlowRecord {
	rec := &flowpb.FlowRecord{Protocol: protoUDP, SrcPort: 50000, DstPort: 443, Direction: flowpb.Direction_DIRECTION_OUTBOUND}
	for i, d := range datagrams {
		trunc := false
		if snaplen > 0 && len(d) > snaplen {
			d, trunc = d[:snaplen], true
		}
		rec.Snippets = append(rec.Snippets, &flowpb.Snippet{Direction: flowpb.Direction_DIRECTION_OUTBOUND, PacketIndex: uint32(i), Data: d, Truncated: trunc})
	}
	return rec
}

func TestQUICFromQuicGo(t *testing.T) {
	for _, v := range []quic.Version{quic.Version1, quic.Version2} {
		t.Run(v.String(), func(t *testing.T) {
			const sni = "exfil-test.example.org"
			alpn := []string{"h3", "doq"}
			dgrams := quicGoInitials(t, sni, alpn, v)
			t.Logf("quic-go sent %d datagrams (%d bytes first)", len(dgrams), len(dgrams[0]))
			check := func(t *testing.T, got *flowpb.TLSInfo, what string) {
				t.Helper()
				if got == nil || got.Sni != sni || !slices.Equal(got.Alpn, alpn) || got.Version != tls.VersionTLS13 || !got.Quic {
					t.Fatalf("%s: got %v; want sni %q alpn %q version 0x0304 quic", what, got, sni, alpn)
				}
			}
			rec := udpRecord(dgrams, 0)
			Fill(rec)
			check(t, rec.Tls, "Fill")

			// The first datagram alone: quic-go, like Chromium, scatters
			// the ClientHello's CRYPTO frames over the first flight (the
			// bytes around the SNI travel in the second datagram), so only
			// a partial ClientHello can be expected here.
			var first flowpb.TLSInfo
			err := QUICInitial(dgrams[0], &first)
			if err != nil && !errors.Is(err, ErrTruncated) {
				t.Fatalf("QUICInitial: %v", err)
			}
			if !first.Quic || first.Version == 0 {
				t.Fatalf("QUICInitial first datagram: %v", &first)
			}

			// Snippets cut by the capture are decrypted without
			// authentication (AES-CTR under GCM): every CRYPTO byte
			// recovered from a cut datagram must equal the authenticated
			// decryption of the whole one.
			for _, snap := range []int{100, 400, 900} {
				var whole, cut scratch
				if err := whole.quicDatagram(dgrams[0], true); err != nil {
					t.Fatal(err)
				}
				if err := cut.quicDatagram(dgrams[0][:snap], true); err != nil {
					t.Fatalf("cut at %d: %v", snap, err)
				}
				got := 0
				for _, r := range cut.ranges[:cut.nr] {
					if string(cut.asm[r[0]:r[1]]) != string(whole.asm[r[0]:r[1]]) {
						t.Fatalf("cut at %d: CRYPTO bytes %d..%d differ from authenticated decryption", snap, r[0], r[1])
					}
					got += r[1] - r[0]
				}
				if got < snap-100 {
					t.Fatalf("cut at %d: only %d CRYPTO bytes recovered", snap, got)
				}
			}
			cut := udpRecord(dgrams, 400)
			Fill(cut)
			if cut.Tls == nil || !cut.Tls.Quic || cut.Tls.Sni != "" && cut.Tls.Sni != sni {
				t.Fatalf("Fill on 400-byte snippets: %v", cut.Tls)
			}

			// The first two datagrams coalesced into one (two Initial
			// packets back to back) carry the whole ClientHello.
			if len(dgrams) >= 2 {
				var co flowpb.TLSInfo
				if err := QUICInitial(slices.Concat(dgrams[0], dgrams[1]), &co); err != nil {
					t.Fatalf("coalesced Initials: %v", err)
				}
				check(t, &co, "coalesced")
			}

			// A flipped payload bit fails authentication.
			bad := slices.Clone(dgrams[0])
			bad[len(bad)-20] ^= 1
			var b flowpb.TLSInfo
			if err := QUICInitial(bad, &b); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("tampered Initial: err = %v, want ErrDecrypt", err)
			}
			// Prefixes never panic and report a clean error.
			for n := 0; n < len(dgrams[0]); n += 7 {
				var p flowpb.TLSInfo
				if err := QUICInitial(dgrams[0][:n], &p); err != nil && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
					t.Fatalf("prefix %d: %v", n, err)
				}
			}
		})
	}
}

func TestQUICHostile(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"short header", []byte{0x40, 1, 2, 3, 4, 5, 6, 7}, ErrNotThisProtocol},
		{"unknown version", []byte{0xc0, 0xff, 0, 0, 0x1d, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x41, 0}, ErrUnsupported},
		{"cid too long", []byte{0xc0, 0, 0, 0, 1, 21, 1, 2, 3}, ErrMalformed},
		{"token length beyond datagram", []byte{0xc0, 0, 0, 0, 1, 1, 9, 0, 0x7f, 0xff, 1}, ErrTruncated},
		{"no sample", []byte{0xc0, 0, 0, 0, 1, 1, 9, 0, 0, 0x40, 0x20, 1, 2, 3}, ErrTruncated},
		{"retry", []byte{0xf0, 0, 0, 0, 1, 1, 9, 0, 1, 2, 3, 4, 5}, ErrNotThisProtocol},
	}
	for _, tc := range tests {
		var out flowpb.TLSInfo
		if err := QUICInitial(tc.in, &out); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestQUICPcapsVsTshark decrypts the client Initials of real captures and
// compares SNI and ALPN with tshark's QUIC dissector (which also decrypts).
func TestQUICPcapsVsTshark(t *testing.T) {
	for _, name := range []string{"zeek-quic-chromium-api-cirrus-com.pcap", "zeek-quic-merlinc2.pcapng"} {
		t.Run(name, func(t *testing.T) {
			path := pcapPath(t, name)
			rows := tsharkFields(t, path, "quic && tls.handshake.type == 1", nil,
				"udp.stream", "tls.handshake.extensions_server_name", "tls.handshake.extensions_alpn_str", "tls.handshake.extensions.supported_version")
			if len(rows) == 0 {
				t.Fatal("tshark found no ClientHello")
			}
			var udp []*flowpb.FlowRecord
			for _, r := range pcapFlows(t, path, 0) {
				if r.Protocol == protoUDP {
					udp = append(udp, r)
				}
			}
			stream, _ := strconv.Atoi(rows[0][0])
			if stream >= len(udp) {
				t.Fatalf("tshark stream %d, %d UDP flows", stream, len(udp))
			}
			rec := udp[stream]
			Fill(rec)
			got := rec.Tls
			wantALPN := []string(nil)
			if rows[0][2] != "" {
				wantALPN = strings.Split(rows[0][2], ",")
			}
			if got == nil || !got.Quic || got.Sni != rows[0][1] || !slices.Equal(got.Alpn, wantALPN) || !strings.Contains(rows[0][3], "0x0304") || got.Version != tls.VersionTLS13 {
				t.Fatalf("got %v; tshark sni %q alpn %q versions %q", got, rows[0][1], wantALPN, rows[0][3])
			}
			t.Logf("flow %d: sni %q alpn %q", stream, got.Sni, got.Alpn)
		})
	}
}

// TestFillQUICGarbage: cut datagrams that merely look like v1 Initials
// decrypt (unauthenticated) to garbage; Fill must not call them QUIC.
func TestFillQUICGarbage(t *testing.T) {
	accepted := 0
	for i := 0; i < 256; i++ {
		d := make([]byte, 300)
		for j := range d {
			d[j] = byte(i*131 + j*197 + j*j)
		}
		copy(d, []byte{0xc3, 0, 0, 0, 1, 8, byte(i), 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x44, 0xd0})
		rec := udpRecord([][]byte{d}, 0)
		rec.Snippets[0].Truncated = true
		Fill(rec)
		if rec.Tls != nil {
			accepted++
		}
	}
	t.Logf("%d of 256 garbage datagrams accepted", accepted)
	if accepted > 2 {
		t.Fatalf("%d of 256 garbage datagrams taken for QUIC", accepted)
	}
}
