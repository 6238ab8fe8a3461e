package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/exfilwatch/exfilwatch/collector/flow"
	"github.com/exfilwatch/exfilwatch/internal/testenv"
)

// skbCtx is the prefix of struct __sk_buff that BPF_PROG_TEST_RUN lets us
// set: the kernel rejects non-zero len/pkt_type, uses ifindex to pick the
// device and copies ingress_ifindex into skb->skb_iif.
type skbCtx struct {
	Len, PktType, Mark, QueueMapping, Protocol, VlanPresent, VlanTCI, VlanProto, Priority uint32
	IngressIfindex, Ifindex, TcIndex                                                      uint32
	Cb                                                                                    [5]uint32
}

const loIfindex = 1

// loadTestProbe loads the programs and registers the loopback device (the
// device of BPF_PROG_TEST_RUN packets) as interface slot 0.
func loadTestProbe(t testing.TB, cfg Config) *Probe {
	t.Helper()
	testenv.Root(t)
	p, err := Load(cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.setSlot(loIfindex, 0); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *Probe) runPkt(t testing.TB, egress bool, iif uint32, pkt []byte) {
	t.Helper()
	prog := p.objs.ExfilIngress
	if egress {
		prog = p.objs.ExfilEgress
	}
	ret, err := prog.Run(&ebpf.RunOptions{Data: pkt, Context: skbCtx{Ifindex: loIfindex, IngressIfindex: iif}})
	if err != nil {
		t.Fatalf("prog run: %v", err)
	}
	if int32(ret) != -1 {
		t.Fatalf("program returned %d, want TC_ACT_UNSPEC/TCX_NEXT (-1)", int32(ret))
	}
}

func (p *Probe) dumpFlows(t testing.TB) map[flow.Key]flowFlowStats {
	t.Helper()
	out := map[flow.Key]flowFlowStats{}
	var k flowFlowKey
	var v flowFlowStats
	it := p.objs.Flows.Iterate()
	for it.Next(&k, &v) {
		out[toKey(&k)] = v
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (p *Probe) clearFlows(t testing.TB) {
	t.Helper()
	for k := range p.dumpFlows(t) {
		fk := flowFlowKey{Src: k.Src, Dst: k.Dst, Sport: k.SrcPort, Dport: k.DstPort, Proto: k.Proto, Ipver: k.IPVersion}
		if err := p.objs.Flows.Delete(&fk); err != nil {
			t.Fatal(err)
		}
	}
}

func key(src, dst string, sport, dport uint16, proto uint8) flow.Key {
	ver := uint8(6)
	if a := addr16(src); bytes.Equal(a[:12], []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}) {
		ver = 4
	}
	return flow.Key{Src: addr16(src), Dst: addr16(dst), SrcPort: sport, DstPort: dport, Proto: proto, IPVersion: ver}
}

type wantFlow struct {
	key     flow.Key
	packets uint64
	bytes   uint64
	flags   uint8
	frags   uint32
}

type runCase struct {
	name     string
	pkts     [][]byte
	egress   bool
	iif      uint32
	flows    []wantFlow
	counters map[string]uint64 // expected deltas beyond the implied ones
}

const (
	a4, b4 = "10.99.0.1", "10.99.0.2"
	a6, b6 = "fd00:99::1", "fd00:99::2"
)

func frames(f ...[]byte) [][]byte { return f }

func runCases() []runCase {
	tcpSYN := tcpSeg(40000, 443, 1000, flow.TCPSyn, nil)
	pl100 := payload(100)
	v4tcp := ipv4(a4, b4, tcpSeg(40000, 443, 1001, flow.TCPAck|flow.TCPPsh, pl100), v4opts{})
	dotN := func(n int) []ext6 {
		e := make([]ext6, n)
		for i := range e {
			e[i] = ext6{typ: 60, size: 8}
		}
		return e
	}
	padded := func(b []byte, n int) []byte { return append(b, make([]byte, n-len(b))...) }
	smallUDP := eth4(ipv4(a4, b4, udpSeg(5000, 6000, payload(2)), v4opts{})) // 44 bytes
	cut := func(b []byte, n int) []byte { return b[:n] }
	bigTCP := func(o v4opts) []byte {
		return eth4(ipv4(a4, b4, tcpSeg(40000, 443, 5000, flow.TCPAck, payload(1000)), o))
	}
	badDoff := ipv4(a4, b4, tcpSeg(40000, 443, 1, flow.TCPAck, nil), v4opts{})
	badDoff[20+12] = 4 << 4
	longDoff := ipv4(a4, b4, tcpSeg(40000, 443, 1, flow.TCPAck, nil), v4opts{})
	longDoff[20+12] = 15 << 4
	hugeExt := ipv6(a6, b6, udpSeg(1, 2, payload(8)), v6opts{ext: []ext6{{typ: 0, size: 8}}})
	hugeExt[40+1] = 255 // hop-by-hop claims 2048 bytes

	return []runCase{
		{name: "ipv4 tcp syn", pkts: frames(eth4(ipv4(a4, b4, tcpSYN, v4opts{}))),
			flows: []wantFlow{{key(a4, b4, 40000, 443, 6), 1, 40, flow.TCPSyn, 0}}},
		{name: "ipv4 tcp flags OR and FIN event", pkts: frames(
			eth4(ipv4(a4, b4, tcpSYN, v4opts{})),
			eth4(v4tcp),
			eth4(ipv4(a4, b4, tcpSeg(40000, 443, 1101, flow.TCPAck|flow.TCPFin, nil), v4opts{}))),
			flows:    []wantFlow{{key(a4, b4, 40000, 443, 6), 3, 40 + 140 + 40, flow.TCPSyn | flow.TCPAck | flow.TCPPsh | flow.TCPFin, 0}},
			counters: map[string]uint64{"end_events_sent": 1}},
		{name: "ipv4 udp", pkts: frames(eth4(ipv4(a4, b4, udpSeg(5353, 53, payload(50)), v4opts{}))),
			flows: []wantFlow{{key(a4, b4, 5353, 53, 17), 1, 78, 0, 0}}},
		{name: "ipv4 icmp echo", pkts: frames(eth4(ipv4(a4, b4, icmpSeg(1, 8, 0, payload(56)), v4opts{}))),
			flows: []wantFlow{{key(a4, b4, 8, 0, 1), 1, 84, 0, 0}}},
		{name: "ipv6 tcp", pkts: frames(eth6(ipv6(a6, b6, tcpSeg(40000, 80, 7, flow.TCPAck, payload(10)), v6opts{}))),
			flows: []wantFlow{{key(a6, b6, 40000, 80, 6), 1, 70, flow.TCPAck, 0}}},
		{name: "ipv6 udp x2", pkts: frames(
			eth6(ipv6(a6, b6, udpSeg(1234, 443, payload(1200)), v6opts{})),
			eth6(ipv6(a6, b6, udpSeg(1234, 443, payload(30)), v6opts{}))),
			flows: []wantFlow{{key(a6, b6, 1234, 443, 17), 2, 1248 + 78, 0, 0}}},
		{name: "icmpv6 echo", pkts: frames(eth6(ipv6(a6, b6, icmpSeg(58, 128, 0, payload(16)), v6opts{}))),
			flows: []wantFlow{{key(a6, b6, 128, 0, 58), 1, 64, 0, 0}}},
		{name: "icmp in ipv6 is parsed like icmpv6", pkts: frames(eth6(ipv6(a6, b6, icmpSeg(1, 8, 0, payload(16)), v6opts{}))),
			flows: []wantFlow{{key(a6, b6, 8, 0, 1), 1, 64, 0, 0}}},
		{name: "sctp", pkts: frames(eth4(ipv4(a4, b4, rawSeg(132, append([]byte{0x0b, 0xb8, 0x0b, 0xb9}, payload(28)...)), v4opts{}))),
			flows: []wantFlow{{key(a4, b4, 3000, 3001, 132), 1, 52, 0, 0}}},
		{name: "unknown l4 (gre)", pkts: frames(eth4(ipv4(a4, b4, rawSeg(47, payload(24)), v4opts{}))),
			flows: []wantFlow{{key(a4, b4, 0, 0, 47), 1, 44, 0, 0}}},
		{name: "vlan 802.1q", pkts: frames(eth4(ipv4(a4, b4, udpSeg(1, 2, payload(40)), v4opts{}), 0x8100)),
			flows: []wantFlow{{key(a4, b4, 1, 2, 17), 1, 68, 0, 0}}},
		{name: "double vlan 802.1ad+802.1q", pkts: frames(eth6(ipv6(a6, b6, udpSeg(1, 2, payload(40)), v6opts{}), 0x88a8, 0x8100)),
			flows: []wantFlow{{key(a6, b6, 1, 2, 17), 1, 88, 0, 0}}},
		{name: "vlan 0x9100", pkts: frames(eth4(ipv4(a4, b4, udpSeg(1, 2, payload(40)), v4opts{}), 0x9100, 0x8100)),
			flows: []wantFlow{{key(a4, b4, 1, 2, 17), 1, 68, 0, 0}}},
		{name: "triple vlan rejected", pkts: frames(eth4(ipv4(a4, b4, udpSeg(1, 2, nil), v4opts{}), 0x88a8, 0x8100, 0x8100)),
			counters: map[string]uint64{"parse_err_vlan_depth": 1}},
		{name: "vlan tag truncated", pkts: frames(cut(ether(0x8100, nil), 14), append(ether(0x8100, nil)[:14], 0, 1)),
			counters: map[string]uint64{"parse_err_l2_truncated": 2}},
		{name: "ipv4 options", pkts: frames(eth4(ipv4(a4, b4, tcpSeg(1, 2, 3, flow.TCPAck, payload(5)),
			v4opts{options: []byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0}}))),
			flows: []wantFlow{{key(a4, b4, 1, 2, 6), 1, 32 + 20 + 5, flow.TCPAck, 0}}},
		// The kernel's test-run refuses untagged IP frames shorter than an IP
		// header, so the truncated-header cases use a VLAN tag.
		{name: "ipv4 truncated header", pkts: frames(eth4(cut(v4tcp, 10), 0x8100), eth4(cut(v4tcp, 19), 0x88a8, 0x8100)),
			counters: map[string]uint64{"parse_err_l3_truncated": 2}},
		{name: "ipv4 ihl beyond frame", pkts: frames(eth4(ipv4(a4, b4, udpSeg(1, 2, nil), v4opts{ihl: 15}))),
			counters: map[string]uint64{"parse_err_l3_truncated": 1}},
		{name: "ipv4 bad ihl", pkts: frames(eth4(ipv4(a4, b4, udpSeg(1, 2, nil), v4opts{ihl: 4}))),
			counters: map[string]uint64{"parse_err_bad_ihl": 1}},
		{name: "ipv4 bad version", pkts: frames(eth4(ipv4(a4, b4, udpSeg(1, 2, nil), v4opts{version: 6}))),
			counters: map[string]uint64{"parse_err_bad_ip_version": 1}},
		{name: "ipv6 bad version", pkts: frames(eth6(ipv6(a6, b6, udpSeg(1, 2, nil), v6opts{version: 4}))),
			counters: map[string]uint64{"parse_err_bad_ip_version": 1}},
		{name: "ipv4 total length below header", pkts: frames(eth4(ipv4(a4, b4, udpSeg(1, 2, nil), v4opts{totLen: 10}))),
			counters: map[string]uint64{"parse_err_bad_ip_length": 1}},
		{name: "ipv6 truncated header", pkts: frames(eth6(cut(ipv6(a6, b6, udpSeg(1, 2, nil), v6opts{}), 30), 0x8100)),
			counters: map[string]uint64{"parse_err_l3_truncated": 1}},
		// Transport headers: only the fields read must be inside the IP
		// packet (TCP 14 bytes: ports, seq, offset, flags; UDP/SCTP 4;
		// ICMP 2); a shorter header is bad, a longer declared one just
		// leaves no payload.
		{name: "tcp shorter than 14 bytes", pkts: frames(eth4(ipv4(a4, b4, rawSeg(6, payload(13)), v4opts{}))),
			counters: map[string]uint64{"parse_err_bad_transport": 1}},
		{name: "tcp data offset < 5", pkts: frames(eth4(badDoff)),
			counters: map[string]uint64{"parse_err_bad_transport": 1}},
		{name: "tcp data offset beyond packet", pkts: frames(eth4(longDoff)),
			flows: []wantFlow{{key(a4, b4, 40000, 443, 6), 1, 40, flow.TCPAck, 0}}},
		{name: "tcp header cut short of the ip length", pkts: frames(cut(eth4(ipv4(a4, b4, tcpSeg(40000, 443, 1, 0, payload(40)), v4opts{})), 14+20+10)),
			counters: map[string]uint64{"parse_err_l4_truncated": 1}},
		{name: "udp 3 bytes", pkts: frames(eth4(ipv4(a4, b4, rawSeg(17, payload(3)), v4opts{}))),
			counters: map[string]uint64{"parse_err_bad_transport": 1}},
		{name: "udp short headers", pkts: frames(eth4(ipv4(a4, b4, rawSeg(17, []byte{0, 7, 0, 8}), v4opts{})),
			eth6(ipv6(a6, b6, rawSeg(17, []byte{0, 7, 0, 8, 0, 0, 0}), v6opts{}))),
			flows: []wantFlow{{key(a4, b4, 7, 8, 17), 1, 24, 0, 0}, {key(a6, b6, 7, 8, 17), 1, 47, 0, 0}}},
		{name: "icmp short headers", pkts: frames(eth4(ipv4(a4, b4, rawSeg(1, []byte{3, 4}), v4opts{})),
			eth6(ipv6(a6, b6, rawSeg(58, []byte{1, 4, 0, 0}), v6opts{}))),
			flows: []wantFlow{{key(a4, b4, 3, 4, 1), 1, 22, 0, 0}, {key(a6, b6, 1, 4, 58), 1, 44, 0, 0}}},
		{name: "icmp 1 byte", pkts: frames(eth4(ipv4(a4, b4, rawSeg(1, []byte{3}), v4opts{}))),
			counters: map[string]uint64{"parse_err_bad_transport": 1}},
		{name: "tiny first fragment counts to the l3 flow", pkts: frames(eth4(ipv4(a4, b4, rawSeg(6, payload(8)), v4opts{mf: true}))),
			flows:    []wantFlow{{key(a4, b4, 0, 0, 6), 1, 28, 0, 1}},
			counters: map[string]uint64{"fragments": 1}},
		{name: "ipv6 ext chain hop+routing+dstopts", pkts: frames(eth6(ipv6(a6, b6, udpSeg(7, 8, payload(20)),
			v6opts{ext: []ext6{{typ: 0, size: 8}, {typ: 43, size: 16}, {typ: 60, size: 8}}}))),
			flows: []wantFlow{{key(a6, b6, 7, 8, 17), 1, 40 + 32 + 28, 0, 0}}},
		{name: "ipv6 ah", pkts: frames(eth6(ipv6(a6, b6, tcpSeg(7, 8, 1, flow.TCPRst, nil),
			v6opts{ext: []ext6{{typ: 51, size: 24}}}))),
			flows:    []wantFlow{{key(a6, b6, 7, 8, 6), 1, 40 + 24 + 20, flow.TCPRst, 0}},
			counters: map[string]uint64{"end_events_sent": 1}},
		{name: "ipv6 8 ext headers (at the bound)", pkts: frames(eth6(ipv6(a6, b6, udpSeg(7, 8, nil), v6opts{ext: dotN(8)}))),
			flows: []wantFlow{{key(a6, b6, 7, 8, 17), 1, 40 + 64 + 8, 0, 0}}},
		{name: "ipv6 9 ext headers (beyond the bound)", pkts: frames(eth6(ipv6(a6, b6, udpSeg(7, 8, nil), v6opts{ext: dotN(9)}))),
			counters: map[string]uint64{"parse_err_ipv6_ext_header_limit": 1}},
		{name: "ipv6 mobility header is an extension header", pkts: frames(eth6(ipv6(a6, b6, udpSeg(7, 8, nil), v6opts{ext: []ext6{{typ: 135, size: 8}}}))),
			flows: []wantFlow{{key(a6, b6, 7, 8, 17), 1, 40 + 8 + 8, 0, 0}}},
		{name: "ipv6 ext header truncated", pkts: frames(eth6(cut(ipv6(a6, b6, udpSeg(7, 8, nil),
			v6opts{ext: []ext6{{typ: 0, size: 8}}}), 44))),
			counters: map[string]uint64{"parse_err_l3_truncated": 1}},
		{name: "ipv6 ext header longer than packet", pkts: frames(eth6(hugeExt)),
			counters: map[string]uint64{"parse_err_bad_transport": 1}},
		{name: "ipv4 fragments", pkts: frames(
			eth4(ipv4(a4, b4, udpSeg(1000, 53, payload(24)), v4opts{mf: true})),
			eth4(ipv4(a4, b4, rawSeg(17, payload(16)), v4opts{fragOff: 4}))),
			flows: []wantFlow{
				{key(a4, b4, 1000, 53, 17), 1, 52, 0, 1},
				{key(a4, b4, 0, 0, 17), 1, 36, 0, 1}},
			counters: map[string]uint64{"fragments": 2}},
		{name: "ipv6 fragments", pkts: frames(
			eth6(ipv6(a6, b6, udpSeg(1000, 53, payload(24)), v6opts{ext: []ext6{{typ: 44, size: 8, more: true}}})),
			eth6(ipv6(a6, b6, rawSeg(17, payload(16)), v6opts{ext: []ext6{{typ: 0, size: 8}, {typ: 44, size: 8, fragOff: 4}}}))),
			flows: []wantFlow{
				{key(a6, b6, 1000, 53, 17), 1, 40 + 8 + 32, 0, 1},
				{key(a6, b6, 0, 0, 17), 1, 40 + 16 + 16, 0, 1}},
			counters: map[string]uint64{"fragments": 2}},
		{name: "zero-length payloads", pkts: frames(eth4(ipv4(a4, b4, udpSeg(1, 2, nil), v4opts{})),
			eth6(ipv6(a6, b6, udpSeg(1, 2, nil), v6opts{}))),
			flows: []wantFlow{{key(a4, b4, 1, 2, 17), 1, 28, 0, 0}, {key(a6, b6, 1, 2, 17), 1, 48, 0, 0}}},
		{name: "padded minimum frame counts ip length", pkts: frames(padded(smallUDP, 60)),
			flows: []wantFlow{{key(a4, b4, 5000, 6000, 17), 1, countedBytes(30, 60, 14), 0, 0}}},
		{name: "frame above minimum counts frame", pkts: frames(padded(smallUDP, 61)),
			flows: []wantFlow{{key(a4, b4, 5000, 6000, 17), 1, countedBytes(30, 61, 14), 0, 0}}},
		{name: "super-packet ipv4 length 0", pkts: frames(bigTCP(v4opts{totLen: -1})),
			flows: []wantFlow{{key(a4, b4, 40000, 443, 6), 1, countedBytes(0, 1054, 14), flow.TCPAck, 0}}},
		{name: "super-packet ipv4 small length", pkts: frames(bigTCP(v4opts{totLen: 40})),
			flows: []wantFlow{{key(a4, b4, 40000, 443, 6), 1, countedBytes(40, 1054, 14), flow.TCPAck, 0}}},
		{name: "ipv4 length below its header in a super-packet", pkts: frames(bigTCP(v4opts{totLen: 10})),
			counters: map[string]uint64{"parse_err_bad_ip_length": 1}},
		{name: "super-packet ipv6 payload length 0", pkts: frames(eth6(ipv6(a6, b6, udpSeg(9, 9, payload(500)), v6opts{plen: -1}), 0x8100)),
			flows: []wantFlow{{key(a6, b6, 9, 9, 17), 1, countedBytes(0, 18+548, 18), 0, 0}}},
		{name: "arp is not ip", pkts: frames(ether(0x0806, payload(28))),
			counters: map[string]uint64{"packets_non_ip": 1}},
		{name: "egress locally originated is counted", egress: true, iif: 0,
			pkts:  frames(eth4(ipv4(a4, b4, udpSeg(1, 2, payload(10)), v4opts{}))),
			flows: []wantFlow{{key(a4, b4, 1, 2, 17), 1, 38, 0, 0}}},
		{name: "egress from unattached interface is counted", egress: true, iif: 9999,
			pkts:  frames(eth4(ipv4(a4, b4, udpSeg(1, 2, payload(10)), v4opts{}))),
			flows: []wantFlow{{key(a4, b4, 1, 2, 17), 1, 38, 0, 0}}},
		{name: "egress forwarded from attached interface is not counted", egress: true, iif: loIfindex,
			pkts:     frames(eth4(ipv4(a4, b4, udpSeg(1, 2, payload(10)), v4opts{}))),
			counters: map[string]uint64{"packets_egress_forwarded": 1}},
	}
}

// kernelCounterNames lists the Counters keys that come from the kernel.
func kernelCounterNames() []string { return counterNames[:] }

func TestProgTestRun(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SnippetPackets = 0 // snippets are covered by TestProgTestRunSnippets
	p := loadTestProbe(t, cfg)
	for _, c := range runCases() {
		t.Run(c.name, func(t *testing.T) {
			p.clearFlows(t)
			before := p.Counters()
			t0 := time.Now().UnixNano()
			for _, pkt := range c.pkts {
				p.runPkt(t, c.egress, c.iif, pkt)
			}
			t1 := time.Now().UnixNano()
			after := p.Counters()

			want := map[string]uint64{"packets_seen": uint64(len(c.pkts))}
			for _, f := range c.flows {
				want["packets_counted"] += f.packets
				want["flows_created"]++
			}
			for k, v := range c.counters {
				want[k] += v
			}
			for _, name := range kernelCounterNames() {
				if got := after[name] - before[name]; got != want[name] {
					t.Errorf("counter %s: delta %d, want %d", name, got, want[name])
				}
			}

			got := p.dumpFlows(t)
			if len(got) != len(c.flows) {
				t.Errorf("flow table has %d entries, want %d: %v", len(got), len(c.flows), keysOf(got))
			}
			for _, w := range c.flows {
				v, ok := got[w.key]
				if !ok {
					t.Errorf("missing flow %s; have %v", fmtKey(w.key), keysOf(got))
					continue
				}
				if v.Packets != w.packets || v.Bytes != w.bytes || uint8(v.TcpFlags) != w.flags || v.Fragments != w.frags {
					t.Errorf("flow %s: packets=%d bytes=%d flags=%#x frags=%d, want %d %d %#x %d",
						fmtKey(w.key), v.Packets, v.Bytes, v.TcpFlags, v.Fragments, w.packets, w.bytes, w.flags, w.frags)
				}
				if v.SrcMac != testSrcMAC {
					t.Errorf("flow %s: src mac %x, want %x", fmtKey(w.key), v.SrcMac, testSrcMAC)
				}
				if v.IfMask != 1 {
					t.Errorf("flow %s: if mask %#x, want 1 (slot 0)", fmtKey(w.key), v.IfMask)
				}
				ds := p.toStats(&v)
				// timestamps come from the coarse clock (one tick behind at
				// most) and a once-computed offset: allow 20 ms of slack
				if ds.FirstNs < t0-20e6 || ds.LastNs > t1+20e6 || ds.FirstNs > ds.LastNs {
					t.Errorf("flow %s: first %d last %d outside [%d, %d]", fmtKey(w.key), ds.FirstNs, ds.LastNs, t0, t1)
				}
			}
		})
	}
	p.drainForTest(t)
}

// TestIngressThenForwardedEgressCountsOnce runs the same packet through the
// ingress hook and then the egress hook as a forwarded packet.
func TestIngressThenForwardedEgressCountsOnce(t *testing.T) {
	p := loadTestProbe(t, DefaultConfig())
	pkt := eth4(ipv4(a4, b4, udpSeg(1, 2, payload(10)), v4opts{}))
	p.runPkt(t, false, 0, pkt)
	p.runPkt(t, true, loIfindex, pkt)
	got := p.dumpFlows(t)
	v, ok := got[key(a4, b4, 1, 2, 17)]
	if !ok || len(got) != 1 || v.Packets != 1 || v.Bytes != 38 || v.IfMask != 1 {
		t.Fatalf("got %+v, want one flow with 1 packet, 38 bytes, mask 1", got)
	}
}

func keysOf(m map[flow.Key]flowFlowStats) []string {
	var s []string
	for k := range m {
		s = append(s, fmtKey(k))
	}
	sort.Strings(s)
	return s
}

func fmtKey(k flow.Key) string {
	return fmt.Sprintf("%x>%x %d>%d p%d v%d", k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto, k.IPVersion)
}

// recSink records sink calls, copying snippet data.
type recSink struct {
	mu       sync.Mutex
	updates  map[flow.Key]flow.DirStats // totals over all kernel entries of a key
	cur      map[flow.Key]flow.DirStats // last report of the current kernel entry
	snippets []flow.PacketSnippet
	ends     []endEvent
}

type endEvent struct {
	k   flow.Key
	rst bool
}

func newRecSink() *recSink {
	return &recSink{updates: map[flow.Key]flow.DirStats{}, cur: map[flow.Key]flow.DirStats{}}
}

// UpdateFlow keeps per-key totals the way the collector's table does:
// reports are cumulative per kernel entry, and an entry deleted on
// idleness restarts from zero with a new FirstNs.
func (s *recSink) UpdateFlow(k flow.Key, d flow.DirStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, tot := s.cur[k], s.updates[k]
	restarted := prev.FirstNs != 0 && d.FirstNs != prev.FirstNs || d.Packets < prev.Packets
	if restarted {
		prev = flow.DirStats{}
	}
	if tot.Packets == 0 || d.FirstNs < tot.FirstNs && d.FirstNs != 0 {
		tot.FirstNs = d.FirstNs
	}
	tot.Packets += d.Packets - prev.Packets
	tot.Bytes += d.Bytes - prev.Bytes
	tot.Fragments += d.Fragments - prev.Fragments
	tot.LastNs = max(tot.LastNs, d.LastNs)
	tot.TCPFlags |= d.TCPFlags
	tot.IfMask |= d.IfMask
	if tot.SrcMAC == ([6]byte{}) {
		tot.SrcMAC = d.SrcMAC
	}
	s.updates[k] = tot
	s.cur[k] = d
}

func (s *recSink) Snippet(sn flow.PacketSnippet) {
	sn.Data = slices.Clone(sn.Data)
	s.mu.Lock()
	s.snippets = append(s.snippets, sn)
	s.mu.Unlock()
}

func (s *recSink) EndFlow(k flow.Key, rst bool) {
	s.mu.Lock()
	s.ends = append(s.ends, endEvent{k, rst})
	s.mu.Unlock()
}

// drainForTest feeds what is in the ring buffer to a fresh recSink.
func (p *Probe) drainForTest(t testing.TB) *recSink {
	t.Helper()
	s := newRecSink()
	var rec ringbuf.Record
	for {
		p.rd.SetDeadline(time.Now().Add(20 * time.Millisecond))
		err := p.rd.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return s
		}
		if err != nil {
			t.Fatal(err)
		}
		p.handleEvent(rec.RawSample, s)
	}
}

func TestProgTestRunSnippets(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SnippetPackets = 2
	cfg.SnippetBytes = 64
	p := loadTestProbe(t, cfg)

	pl := payload(100)
	k := key(a4, b4, 40000, 443, 6)
	p.runPkt(t, false, 0, eth4(ipv4(a4, b4, tcpSeg(40000, 443, 1000, flow.TCPSyn, nil), v4opts{})))
	p.runPkt(t, false, 0, eth4(ipv4(a4, b4, tcpSeg(40000, 443, 1001, flow.TCPAck|flow.TCPPsh, pl), v4opts{})))
	p.runPkt(t, false, 0, eth4(ipv4(a4, b4, tcpSeg(40000, 443, 1101, flow.TCPAck|flow.TCPPsh, []byte("0123456789")), v4opts{})))
	p.runPkt(t, false, 0, eth4(ipv4(a4, b4, tcpSeg(40000, 443, 1111, flow.TCPAck|flow.TCPPsh, []byte("third")), v4opts{})))
	p.runPkt(t, false, 0, eth4(ipv4(a4, b4, tcpSeg(40000, 443, 1116, flow.TCPAck|flow.TCPFin, nil), v4opts{})))
	p.runPkt(t, false, 0, eth4(ipv4(b4, a4, tcpSeg(443, 40000, 7, flow.TCPRst, nil), v4opts{})))
	// UDP: a zero-length datagram carries no payload, the next one does.
	p.runPkt(t, false, 0, eth6(ipv6(a6, b6, udpSeg(5, 6, nil), v6opts{})))
	p.runPkt(t, false, 0, eth6(ipv6(a6, b6, udpSeg(5, 6, []byte("hello")), v6opts{})))
	// super-packet (IPv4 length 0): payload from the frame
	p.runPkt(t, false, 0, eth4(ipv4(a4, b4, udpSeg(7, 8, []byte("super")), v4opts{totLen: -1})))
	// padding of a minimum frame is not payload
	small := eth4(ipv4(a4, b4, udpSeg(9, 10, []byte("ab")), v4opts{}))
	p.runPkt(t, false, 0, append(small, make([]byte, 60-len(small))...))

	s := p.drainForTest(t)
	type snip struct {
		k     flow.Key
		idx   uint32
		off   uint32
		data  string
		trunc bool
	}
	want := []snip{
		{k, 0, 0, string(pl[:64]), true},
		{k, 1, 100, "0123456789", false},
		{key(a6, b6, 5, 6, 17), 0, 0, "hello", false},
		{key(a4, b4, 7, 8, 17), 0, 0, "super", false},
		{key(a4, b4, 9, 10, 17), 0, 0, "ab", false},
	}
	if len(s.snippets) != len(want) {
		t.Fatalf("got %d snippets, want %d: %+v", len(s.snippets), len(want), s.snippets)
	}
	for i, w := range want {
		g := s.snippets[i]
		if g.Key != w.k || g.Index != w.idx || g.Offset != w.off || string(g.Data) != w.data || g.Truncated != w.trunc {
			t.Errorf("snippet %d: key %s idx %d off %d trunc %v data %q; want %s %d %d %v %q", i,
				fmtKey(g.Key), g.Index, g.Offset, g.Truncated, g.Data, fmtKey(w.k), w.idx, w.off, w.trunc, w.data)
		}
		if g.TimeNs <= 0 || g.TimeNs > time.Now().UnixNano() {
			t.Errorf("snippet %d: time %d not a past wall-clock time", i, g.TimeNs)
		}
	}
	wantEnds := []endEvent{{k, false}, {k.Reverse(), true}}
	if !slices.Equal(s.ends, wantEnds) {
		t.Errorf("end events %+v, want %+v", s.ends, wantEnds)
	}
	c := p.Counters()
	if c["snippets_sent"] != 5 || c["end_events_sent"] != 2 || c["ringbuf_full_drops"] != 0 || c["events_read"] != 7 {
		t.Errorf("counters %v", c)
	}
}

// A FIN/RST event reports both directions' current counters before
// EndFlow, and leaves the kernel entries in place: deleting them while the
// program counts the last ACK would lose it (the FIN flush race). The last
// ACK then reaches the sink with the next poll.
func TestEndEventKeepsEntries(t *testing.T) {
	p := loadTestProbe(t, DefaultConfig())
	k := key(a4, b4, 40000, 443, 6)
	p.runPkt(t, false, 0, eth4(ipv4(a4, b4, tcpSeg(40000, 443, 1000, flow.TCPSyn, nil), v4opts{})))
	p.runPkt(t, false, 0, eth4(ipv4(b4, a4, tcpSeg(443, 40000, 5000, flow.TCPSyn|flow.TCPAck, nil), v4opts{})))
	p.runPkt(t, false, 0, eth4(ipv4(a4, b4, tcpSeg(40000, 443, 1001, flow.TCPAck|flow.TCPPsh, []byte("GET / HTTP/1.1\r\n\r\n")), v4opts{})))
	p.runPkt(t, false, 0, eth4(ipv4(a4, b4, tcpSeg(40000, 443, 1019, flow.TCPAck|flow.TCPFin, nil), v4opts{})))
	p.runPkt(t, false, 0, eth4(ipv4(b4, a4, tcpSeg(443, 40000, 5001, flow.TCPAck|flow.TCPFin, nil), v4opts{})))

	s := p.drainForTest(t)
	if len(s.ends) != 2 {
		t.Fatalf("end events %+v", s.ends)
	}
	if u, r := s.updates[k], s.updates[k.Reverse()]; u.Packets != 3 || r.Packets != 2 || u.TCPFlags&flow.TCPFin == 0 {
		t.Fatalf("counters reported with the FIN events: forward %+v reverse %+v", u, r)
	}
	left := p.dumpFlows(t)
	if left[k].Packets != 3 || left[k.Reverse()].Packets != 2 {
		t.Fatalf("kernel entries after the FIN events: %v", left)
	}
	// The last ACK lands in the kept entry and is reported by the poll.
	p.runPkt(t, false, 0, eth4(ipv4(a4, b4, tcpSeg(40000, 443, 1020, flow.TCPAck, nil), v4opts{})))
	newWalker(p).poll(s)
	if u := s.updates[k]; u.Packets != 4 || u.Bytes != 40+40+58+40 {
		t.Errorf("after the last ACK: %+v, want 4 packets 178 bytes", u)
	}
	if c := p.Counters(); c["flows_created"] != 2 {
		t.Errorf("flows created %d, want 2 (no re-created entry)", c["flows_created"])
	}
}
