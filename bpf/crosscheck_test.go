package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/exfilwatch/exfilwatch/collector/decode"
	"github.com/exfilwatch/exfilwatch/collector/flow"
	"github.com/exfilwatch/exfilwatch/internal/testenv"
)

// The kernel programs and the pure-Go pcap decoder (collector/decode) must
// make the same decision on every frame: same rejection class, or same flow
// key, L3 bytes, TCP flags, fragment flag, source MAC and payload bytes.

// reasonCounters maps a decoder Reason to the kernel counters that may move.
var reasonCounters = map[decode.Reason][]string{
	decode.OK:             {"packets_counted"},
	decode.NotIP:          {"packets_non_ip"},
	decode.Truncated:      {"parse_err_l2_truncated", "parse_err_l3_truncated", "parse_err_l4_truncated"},
	decode.BadIPVersion:   {"parse_err_bad_ip_version"},
	decode.BadIPHeader:    {"parse_err_bad_ihl", "parse_err_bad_ip_length"},
	decode.TooManyTags:    {"parse_err_vlan_depth"},
	decode.ExtHeaderLimit: {"parse_err_ipv6_ext_header_limit"},
	decode.BadTransport:   {"parse_err_bad_transport"},
}

// crossProbe loads a probe that snippets the first payload packet of every
// direction in full, so that payload extraction is compared too.
func crossProbe(t testing.TB) *Probe {
	cfg := DefaultConfig()
	cfg.SnippetPackets = 1
	cfg.SnippetBytes = MaxSnippetBytes
	cfg.MaxFlows = 1024
	return loadTestProbe(t, cfg)
}

// usesMPLS reports whether the frame's EtherType after up to two VLAN tags
// is MPLS, which the decoder follows and the kernel program does not (no
// MPLS on a lab gateway's interfaces).
func usesMPLS(frame []byte) bool {
	off := 12
	for i := 0; i < 3 && len(frame) >= off+2; i++ {
		switch binary.BigEndian.Uint16(frame[off:]) {
		case 0x8847, 0x8848:
			return true
		case 0x8100, 0x88a8, 0x9100:
			off += 4
			continue
		}
		return false
	}
	return false
}

// crossCheck runs frame through the ingress program and the decoder and
// reports any disagreement. It returns false when the kernel refused to run
// the frame (test-run size limits) or the frame is out of scope (MPLS).
func crossCheck(t testing.TB, p *Probe, frame []byte) bool {
	t.Helper()
	if len(frame) < 14 || usesMPLS(frame) {
		return false
	}
	var pkt flow.Packet
	reason := decode.Decode(decode.LinkEthernet, frame, len(frame), &pkt)

	before := p.Counters()
	_, err := p.objs.ExfilIngress.Run(&ebpf.RunOptions{Data: frame, Context: skbCtx{Ifindex: loIfindex}})
	if err != nil {
		return false
	}
	after := p.Counters()
	moved := map[string]uint64{}
	for _, n := range counterNames {
		if d := after[n] - before[n]; d != 0 && n != "packets_seen" && n != "fragments" && n != "flows_created" &&
			n != "snippets_sent" && n != "end_events_sent" {
			moved[n] = d
		}
	}
	ok := false
	for _, n := range reasonCounters[reason] {
		if moved[n] == 1 && len(moved) == 1 {
			ok = true
		}
	}
	if !ok {
		t.Errorf("decoder says %v, kernel counters moved %v\nframe %x", reason, moved, frame)
		p.clearFlows(t)
		p.drainNow(t)
		return true
	}
	flows := p.dumpFlows(t)
	events := p.drainNow(t)
	p.clearFlows(t)
	if reason != decode.OK {
		if len(flows) != 0 {
			t.Errorf("rejected (%v) frame created flows %v", reason, keysOf(flows))
		}
		return true
	}
	v, found := flows[pkt.Key]
	if !found || len(flows) != 1 {
		t.Errorf("decoder key %s, kernel flows %v\nframe %x", fmtKey(pkt.Key), keysOf(flows), frame)
		return true
	}
	wantFrags := uint32(0)
	if pkt.Fragment {
		wantFrags = 1
	}
	if v.Packets != 1 || v.Bytes != pkt.L3Bytes || uint8(v.TcpFlags) != pkt.TCPFlags || v.Fragments != wantFrags || v.SrcMac != pkt.SrcMAC {
		t.Errorf("%s: kernel packets=%d bytes=%d flags=%#x frags=%d mac=%x; decoder bytes=%d flags=%#x frag=%v mac=%x\nframe %x",
			fmtKey(pkt.Key), v.Packets, v.Bytes, v.TcpFlags, v.Fragments, v.SrcMac, pkt.L3Bytes, pkt.TCPFlags, pkt.Fragment, pkt.SrcMAC, frame)
	}
	// Payload: the kernel sends what the frame holds of it, like the
	// decoder's Payload view; truncated when the IP length says there is more.
	var snips []flow.PacketSnippet
	for _, e := range events.snippets {
		if e.Key == pkt.Key {
			snips = append(snips, e)
		}
	}
	switch {
	case len(pkt.Payload) == 0 && len(snips) != 0:
		t.Errorf("%s: kernel sent a %d-byte snippet, decoder sees no payload", fmtKey(pkt.Key), len(snips[0].Data))
	case len(pkt.Payload) > 0 && len(snips) != 1:
		t.Errorf("%s: decoder payload %d bytes, kernel sent %d snippets", fmtKey(pkt.Key), len(pkt.Payload), len(snips))
	case len(pkt.Payload) > 0:
		s := snips[0]
		want := pkt.Payload[:min(len(pkt.Payload), MaxSnippetBytes)]
		if !bytes.Equal(s.Data, want) || s.Truncated != (len(want) < pkt.PayloadLen) {
			t.Errorf("%s: snippet %d bytes trunc %v, decoder payload %d of %d", fmtKey(pkt.Key), len(s.Data), s.Truncated, len(want), pkt.PayloadLen)
		}
	}
	return true
}

// drainNow reads what is in the ring buffer without waiting.
func (p *Probe) drainNow(t testing.TB) *recSink {
	t.Helper()
	s := newRecSink()
	var rec ringbuf.Record
	for p.rd.AvailableBytes() > 0 {
		p.rd.SetDeadline(time.Now())
		if err := p.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			t.Fatal(err)
		}
		p.handleEvent(rec.RawSample, s)
	}
	return s
}

func TestCrossCheckDecoderCraftedFrames(t *testing.T) {
	p := crossProbe(t)
	n := 0
	for _, c := range runCases() {
		for _, f := range c.pkts {
			if crossCheck(t, p, f) {
				n++
			}
		}
	}
	if n < 50 {
		t.Fatalf("only %d crafted frames compared", n)
	}
}

// TestCrossCheckDecoderPcaps compares every Ethernet frame of the shared
// real-world captures (as captured: snaplen-cut frames are compared as cut).
func TestCrossCheckDecoderPcaps(t *testing.T) {
	p := crossProbe(t)
	dir := filepath.Join(testenv.SharedTestdata(t), "pcap")
	files, _ := filepath.Glob(filepath.Join(dir, "*.pcap*"))
	if len(files) == 0 {
		t.Fatalf("no captures in %s", dir)
	}
	total := 0
	for _, fn := range files {
		frames := readEthernetFrames(t, fn)
		n := 0
		for _, f := range frames {
			if crossCheck(t, p, f) {
				n++
			}
		}
		total += n
		t.Logf("%s: %d of %d Ethernet frames compared", filepath.Base(fn), n, len(frames))
	}
	if total < 1000 {
		t.Fatalf("only %d frames compared", total)
	}
}

func readEthernetFrames(t testing.TB, fn string) [][]byte {
	t.Helper()
	f, err := os.Open(fn)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	add := func(lt layers.LinkType, read func() ([]byte, error)) {
		if lt != layers.LinkTypeEthernet {
			return
		}
		for {
			b, err := read()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Logf("%s: %v", filepath.Base(fn), err)
				return
			}
			out = append(out, append([]byte(nil), b...))
		}
	}
	if strings.HasSuffix(fn, ".pcapng") {
		r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatal(err)
		}
		add(r.LinkType(), func() ([]byte, error) { b, _, err := r.ReadPacketData(); return b, err })
		return out
	}
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	add(r.LinkType(), func() ([]byte, error) { b, _, err := r.ReadPacketData(); return b, err })
	return out
}
