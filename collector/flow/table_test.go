package flow

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

const sec = int64(time.Second)

func addr16(s string) [16]byte { return netip.MustParseAddr(s).As16() }

func pkt(src string, sp uint16, dst string, dp uint16, proto uint8, flags uint8, t int64, payload string) *Packet {
	p := &Packet{
		Key:      Key{Src: addr16(src), Dst: addr16(dst), SrcPort: sp, DstPort: dp, Proto: proto, IPVersion: 4},
		TimeNs:   t,
		L3Bytes:  uint64(40 + len(payload)),
		TCPFlags: flags,
	}
	if netip.MustParseAddr(src).Is6() && !netip.MustParseAddr(src).Is4In6() {
		p.Key.IPVersion = 6
	}
	if payload != "" {
		p.Payload = []byte(payload)
		p.PayloadLen = len(payload)
	}
	return p
}

type collected struct{ recs []*flowpb.FlowRecord }

func (c *collected) emit(r *flowpb.FlowRecord) error {
	c.recs = append(c.recs, proto.Clone(r).(*flowpb.FlowRecord))
	return nil
}

func newTestTable(t *testing.T, cfg TableConfig) (*Table, *collected) {
	t.Helper()
	c := &collected{}
	if cfg.SnippetPackets == 0 {
		cfg.SnippetPackets, cfg.SnippetBytes = 4, 1024
	}
	cfg.Gateway = "gw1"
	return NewTable(cfg, c.emit), c
}

func observe(t *testing.T, tb *Table, ps ...*Packet) {
	t.Helper()
	for _, p := range ps {
		if err := tb.Observe(p); err != nil {
			t.Fatal(err)
		}
	}
}

func lab(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func TestOrientation(t *testing.T) {
	const dev, remote = "10.1.2.3", "93.184.216.34"
	cases := []struct {
		name    string
		lab     []netip.Prefix
		pkts    []*Packet
		src     string
		sport   uint32
		dir     flowpb.Direction
		pktsOut uint64
	}{
		{"device opens", lab("10.0.0.0/8"), []*Packet{
			pkt(dev, 40000, remote, 443, 6, TCPSyn, 1, ""),
			pkt(remote, 443, dev, 40000, 6, TCPSyn|TCPAck, 2, ""),
			pkt(dev, 40000, remote, 443, 6, TCPAck, 3, ""),
		}, dev, 40000, flowpb.Direction_DIRECTION_OUTBOUND, 2},
		{"remote opens: src is still the device", lab("10.0.0.0/8"), []*Packet{
			pkt(remote, 5555, dev, 22, 6, TCPSyn, 1, ""),
			pkt(dev, 22, remote, 5555, 6, TCPSyn|TCPAck, 2, ""),
			pkt(remote, 5555, dev, 22, 6, TCPAck, 3, ""),
		}, dev, 22, flowpb.Direction_DIRECTION_INBOUND, 1},
		{"both in lab: opener", lab("10.0.0.0/8"), []*Packet{
			pkt("10.9.9.9", 1000, dev, 80, 6, TCPSyn, 1, ""),
			pkt(dev, 80, "10.9.9.9", 1000, 6, TCPSyn|TCPAck, 2, ""),
		}, "10.9.9.9", 1000, flowpb.Direction_DIRECTION_INTERNAL, 1},
		{"transit: first packet opens", nil, []*Packet{
			pkt(remote, 53, "8.8.8.8", 5353, 17, 0, 1, "q"),
			pkt("8.8.8.8", 5353, remote, 53, 17, 0, 2, "r"),
			pkt("8.8.8.8", 5353, remote, 53, 17, 0, 3, "r"),
		}, remote, 53, flowpb.Direction_DIRECTION_TRANSIT, 1},
		{"transit: SYN-ACK seen first, its receiver opened", nil, []*Packet{
			pkt(remote, 443, "1.1.1.1", 50000, 6, TCPSyn|TCPAck, 1, ""),
			pkt("1.1.1.1", 50000, remote, 443, 6, TCPAck, 2, ""),
		}, "1.1.1.1", 50000, flowpb.Direction_DIRECTION_TRANSIT, 1},
		{"transit: SYN after stray packet decides", nil, []*Packet{
			pkt(remote, 443, "1.1.1.1", 50000, 6, TCPAck, 1, ""),
			pkt("1.1.1.1", 50000, remote, 443, 6, TCPSyn, 2, ""),
		}, "1.1.1.1", 50000, flowpb.Direction_DIRECTION_TRANSIT, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb, out := newTestTable(t, TableConfig{LabSubnets: c.lab})
			observe(t, tb, c.pkts...)
			if err := tb.Flush(flowpb.EndReason_END_REASON_END_OF_CAPTURE); err != nil {
				t.Fatal(err)
			}
			if len(out.recs) != 1 {
				t.Fatalf("want 1 record, got %d", len(out.recs))
			}
			r := out.recs[0]
			if got := schema.Addr(r.SrcAddr).String(); got != c.src || r.SrcPort != c.sport {
				t.Errorf("src %s:%d, want %s:%d", got, r.SrcPort, c.src, c.sport)
			}
			if r.Direction != c.dir {
				t.Errorf("direction %v, want %v", r.Direction, c.dir)
			}
			if r.PacketsOut != c.pktsOut || r.PacketsOut+r.PacketsIn != uint64(len(c.pkts)) {
				t.Errorf("packets out/in %d/%d, want out %d of %d", r.PacketsOut, r.PacketsIn, c.pktsOut, len(c.pkts))
			}
		})
	}
}

func TestDeviceMAC(t *testing.T) {
	tb, out := newTestTable(t, TableConfig{LabSubnets: lab("192.168.0.0/16")})
	a := pkt("8.8.8.8", 53, "192.168.1.5", 3333, 17, 0, 1, "x")
	a.SrcMAC, a.HasMAC = [6]byte{0xaa, 0, 0, 0, 0, 1}, true
	b := pkt("192.168.1.5", 3333, "8.8.8.8", 53, 17, 0, 2, "y")
	b.SrcMAC, b.HasMAC = [6]byte{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}, true
	observe(t, tb, a, b)
	tb.Flush(flowpb.EndReason_END_REASON_END_OF_CAPTURE)
	if got := out.recs[0].SrcMac; string(got) != string(b.SrcMAC[:]) {
		t.Errorf("src_mac %x, want device MAC %x", got, b.SrcMAC)
	}
}

func TestIdleTimeout(t *testing.T) {
	tb, out := newTestTable(t, TableConfig{IdleTimeout: 15 * time.Second})
	observe(t, tb,
		pkt("1.1.1.1", 1, "2.2.2.2", 2, 17, 0, 0, "a"),
		pkt("2.2.2.2", 2, "1.1.1.1", 1, 17, 0, 1*sec, "b"),
		pkt("3.3.3.3", 3, "4.4.4.4", 4, 17, 0, 15*sec, "c"), // 14 s idle: not yet
	)
	if len(out.recs) != 0 {
		t.Fatalf("exported too early: %d", len(out.recs))
	}
	observe(t, tb, pkt("3.3.3.3", 3, "4.4.4.4", 4, 17, 0, 16*sec, "d")) // 15 s idle
	if len(out.recs) != 1 {
		t.Fatalf("want the idle flow exported, got %d records", len(out.recs))
	}
	r := out.recs[0]
	if r.EndReason != flowpb.EndReason_END_REASON_IDLE_TIMEOUT || r.PacketsOut != 1 || r.PacketsIn != 1 ||
		r.FirstSeenNs != 0 || r.LastSeenNs != 1*sec || r.ObservedNs != 16*sec {
		t.Errorf("bad idle record: %v", r)
	}
}

func TestActiveTimeoutContinues(t *testing.T) {
	tb, out := newTestTable(t, TableConfig{ActiveTimeout: 60 * time.Second, IdleTimeout: 15 * time.Second})
	const n = 130
	for i := 0; i < n; i++ {
		observe(t, tb, pkt("10.0.0.1", 1000, "1.2.3.4", 443, 6, TCPAck, int64(i)*sec, "payload"))
	}
	tb.Flush(flowpb.EndReason_END_REASON_END_OF_CAPTURE)
	if len(out.recs) != 3 {
		t.Fatalf("want 3 records (active, active, end), got %d", len(out.recs))
	}
	var total uint64
	want := []flowpb.EndReason{flowpb.EndReason_END_REASON_ACTIVE_TIMEOUT, flowpb.EndReason_END_REASON_ACTIVE_TIMEOUT, flowpb.EndReason_END_REASON_END_OF_CAPTURE}
	ids := map[string]bool{}
	for i, r := range out.recs {
		if r.EndReason != want[i] {
			t.Errorf("record %d: reason %v, want %v", i, r.EndReason, want[i])
		}
		if i > 0 && r.FirstSeenNs <= out.recs[i-1].LastSeenNs {
			t.Errorf("record %d overlaps the previous one", i)
		}
		if r.LastSeenNs-r.FirstSeenNs >= 60*sec {
			t.Errorf("record %d spans %d s", i, (r.LastSeenNs-r.FirstSeenNs)/sec)
		}
		if r.CommunityId != out.recs[0].CommunityId {
			t.Errorf("community id changed across continuation")
		}
		ids[r.Id] = true
		total += r.PacketsOut
	}
	if total != n {
		t.Errorf("delta counters sum to %d packets, want %d", total, n)
	}
	if len(ids) != 3 {
		t.Errorf("record ids not unique: %v", ids)
	}
	if len(out.recs[0].Snippets) == 0 || len(out.recs[1].Snippets) != 0 {
		t.Errorf("snippets: first record %d, second %d; want the first payload packets in the first only",
			len(out.recs[0].Snippets), len(out.recs[1].Snippets))
	}
}

func tcpSession(c, s string, t0 int64) []*Packet {
	return []*Packet{
		pkt(c, 40000, s, 80, 6, TCPSyn, t0, ""),
		pkt(s, 80, c, 40000, 6, TCPSyn|TCPAck, t0+1, ""),
		pkt(c, 40000, s, 80, 6, TCPAck, t0+2, ""),
		pkt(c, 40000, s, 80, 6, TCPAck|TCPPsh, t0+3, "GET / HTTP/1.1\r\n\r\n"),
		pkt(s, 80, c, 40000, 6, TCPAck|TCPPsh, t0+4, "HTTP/1.1 200 OK\r\n\r\n"),
		pkt(c, 40000, s, 80, 6, TCPFin|TCPAck, t0+5, ""),
		pkt(s, 80, c, 40000, 6, TCPFin|TCPAck, t0+6, ""),
	}
}

func TestFinCloses(t *testing.T) {
	tb, out := newTestTable(t, TableConfig{})
	observe(t, tb, tcpSession("10.0.0.1", "5.6.7.8", 0)...)
	if len(out.recs) != 0 {
		t.Fatalf("exported before the last ACK")
	}
	observe(t, tb, pkt("10.0.0.1", 40000, "5.6.7.8", 80, 6, TCPAck, 7, "")) // last ACK
	if len(out.recs) != 1 {
		t.Fatalf("want 1 record after the last ACK, got %d", len(out.recs))
	}
	r := out.recs[0]
	if r.EndReason != flowpb.EndReason_END_REASON_TCP_FIN || r.PacketsOut != 5 || r.PacketsIn != 3 {
		t.Errorf("bad FIN record: reason %v out %d in %d", r.EndReason, r.PacketsOut, r.PacketsIn)
	}
	if r.TcpFlagsOut != TCPSyn|TCPAck|TCPPsh|TCPFin || r.TcpFlagsIn != TCPSyn|TCPAck|TCPPsh|TCPFin {
		t.Errorf("flags out %#x in %#x", r.TcpFlagsOut, r.TcpFlagsIn)
	}
	// Snippets: request then response, offsets relative to the ISN.
	if len(r.Snippets) != 2 || string(r.Snippets[0].Data) != "GET / HTTP/1.1\r\n\r\n" ||
		r.Snippets[0].Direction != flowpb.Direction_DIRECTION_OUTBOUND || r.Snippets[1].Direction != flowpb.Direction_DIRECTION_INBOUND {
		t.Errorf("snippets: %v", r.Snippets)
	}

	// Without the last ACK the flow goes out after FinGrace.
	tb2, out2 := newTestTable(t, TableConfig{FinGrace: time.Second})
	observe(t, tb2, tcpSession("10.0.0.1", "5.6.7.8", 0)...)
	observe(t, tb2, pkt("9.9.9.9", 1, "8.8.8.8", 2, 17, 0, 2*sec, "x"))
	if len(out2.recs) != 1 || out2.recs[0].EndReason != flowpb.EndReason_END_REASON_TCP_FIN || out2.recs[0].PacketsOut+out2.recs[0].PacketsIn != 7 {
		t.Fatalf("want the FIN flow exported after grace, got %v", out2.recs)
	}

	// A new SYN on a closing 5-tuple starts a new flow.
	tb3, out3 := newTestTable(t, TableConfig{})
	observe(t, tb3, tcpSession("10.0.0.1", "5.6.7.8", 0)...)
	observe(t, tb3, tcpSession("10.0.0.1", "5.6.7.8", 100)...)
	tb3.Flush(flowpb.EndReason_END_REASON_END_OF_CAPTURE)
	if len(out3.recs) != 2 || out3.recs[0].PacketsOut+out3.recs[0].PacketsIn != 7 {
		t.Fatalf("port reuse: %v", out3.recs)
	}
}

func TestRstCloses(t *testing.T) {
	tb, out := newTestTable(t, TableConfig{})
	observe(t, tb,
		pkt("10.0.0.1", 40000, "5.6.7.8", 80, 6, TCPSyn, 0, ""),
		pkt("5.6.7.8", 80, "10.0.0.1", 40000, 6, TCPRst|TCPAck, 1, ""),
	)
	if len(out.recs) != 1 || out.recs[0].EndReason != flowpb.EndReason_END_REASON_TCP_RST ||
		out.recs[0].PacketsOut != 1 || out.recs[0].PacketsIn != 1 || out.recs[0].DstPort != 80 {
		t.Fatalf("RST: %v", out.recs)
	}
}

func TestEviction(t *testing.T) {
	tb, out := newTestTable(t, TableConfig{MaxFlows: 2})
	observe(t, tb,
		pkt("1.1.1.1", 1, "2.2.2.2", 2, 17, 0, 1, ""),
		pkt("1.1.1.1", 3, "2.2.2.2", 4, 17, 0, 2, ""),
		pkt("1.1.1.1", 1, "2.2.2.2", 2, 17, 0, 3, ""), // refreshes the first flow
		pkt("1.1.1.1", 5, "2.2.2.2", 6, 17, 0, 4, ""), // evicts the least recent: port 3
	)
	if len(out.recs) != 1 || out.recs[0].EndReason != flowpb.EndReason_END_REASON_EVICTED || out.recs[0].SrcPort != 3 {
		t.Fatalf("eviction: %v", out.recs)
	}
	if st := tb.Stats(); st.Evicted != 1 || st.Active != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestICMPEchoOneFlow(t *testing.T) {
	tb, out := newTestTable(t, TableConfig{})
	observe(t, tb,
		pkt("192.168.0.89", 8, "192.168.0.1", 0, 1, 0, 1, "ping"),
		pkt("192.168.0.1", 0, "192.168.0.89", 0, 1, 0, 2, "ping"),
		pkt("192.168.0.89", 8, "192.168.0.1", 0, 1, 0, 3, "ping"),
		pkt("192.168.0.1", 3, "192.168.0.89", 1, 1, 0, 4, "unreach"), // one-way: own flow
	)
	tb.Flush(flowpb.EndReason_END_REASON_END_OF_CAPTURE)
	if len(out.recs) != 2 {
		t.Fatalf("want echo flow + unreachable flow, got %d", len(out.recs))
	}
	r := out.recs[0]
	if r.SrcPort != 8 || r.DstPort != 0 || r.PacketsOut != 2 || r.PacketsIn != 1 {
		t.Errorf("echo flow: type %d code %d out %d in %d", r.SrcPort, r.DstPort, r.PacketsOut, r.PacketsIn)
	}
	if u := out.recs[1]; u.SrcPort != 3 || u.DstPort != 1 || u.PacketsOut != 1 {
		t.Errorf("unreachable flow: %v", u)
	}
}

func TestSnippetLimits(t *testing.T) {
	tb, out := newTestTable(t, TableConfig{SnippetPackets: 2, SnippetBytes: 4})
	p := pkt("10.0.0.1", 1000, "1.2.3.4", 443, 6, TCPSyn, 0, "")
	p.TCPSeq = 999
	observe(t, tb, p)
	for i, s := range []string{"abcdef", "gh", "ijkl"} {
		q := pkt("10.0.0.1", 1000, "1.2.3.4", 443, 6, TCPAck, int64(i+1), s)
		q.TCPSeq = 1000 + uint32(6*i)
		observe(t, tb, q)
	}
	cut := pkt("1.2.3.4", 443, "10.0.0.1", 1000, 17, 0, 5, "xy")
	cut.Key.Proto = 6
	cut.PayloadLen = 500 // snaplen cut the capture
	observe(t, tb, cut)
	tb.Flush(flowpb.EndReason_END_REASON_END_OF_CAPTURE)
	s := out.recs[0].Snippets
	if len(s) != 3 {
		t.Fatalf("want 2 outbound + 1 inbound snippets, got %d", len(s))
	}
	if string(s[0].Data) != "abcd" || !s[0].Truncated || s[0].StreamOffset != 0 || s[0].PacketIndex != 0 {
		t.Errorf("snippet 0: %v", s[0])
	}
	if string(s[1].Data) != "gh" || s[1].Truncated || s[1].StreamOffset != 6 || s[1].PacketIndex != 1 {
		t.Errorf("snippet 1: %v", s[1])
	}
	if string(s[2].Data) != "xy" || !s[2].Truncated || s[2].Direction != flowpb.Direction_DIRECTION_INBOUND {
		t.Errorf("snippet 2: %v", s[2])
	}
}

func TestParseHookAndDeterministicIDs(t *testing.T) {
	run := func() []*flowpb.FlowRecord {
		c := &collected{}
		tb := NewTable(TableConfig{Gateway: "gw", SnippetPackets: 4, SnippetBytes: 64, Parse: func(r *flowpb.FlowRecord) {
			if len(r.Snippets) > 0 {
				r.Dns = &flowpb.DNSInfo{QueryName: string(r.Snippets[0].Data)}
			}
		}}, c.emit)
		observe(t, tb, pkt("10.0.0.2", 5000, "8.8.8.8", 53, 17, 0, 1, "example.com"))
		observe(t, tb, pkt("10.0.0.3", 5000, "8.8.8.8", 53, 17, 0, 1, "example.org"))
		tb.Flush(flowpb.EndReason_END_REASON_END_OF_CAPTURE)
		return c.recs
	}
	a, b := run(), run()
	if len(a) != 2 || a[0].Id == a[1].Id || len(a[0].Id) != 32 {
		t.Fatalf("ids %q %q", a[0].Id, a[1].Id)
	}
	for i := range a {
		if a[i].Id != b[i].Id {
			t.Errorf("record %d: id not deterministic: %s vs %s", i, a[i].Id, b[i].Id)
		}
		if a[i].Dns.GetQueryName() == "" || a[i].Gateway != "gw" || a[i].SchemaVersion != schema.Version {
			t.Errorf("record %d: %v", i, a[i])
		}
	}
}

func TestSinkDeltas(t *testing.T) {
	now := int64(0)
	c := &collected{}
	tb := NewTable(TableConfig{Gateway: "gw", Interfaces: []string{"lab0", "wan0"}, LabSubnets: lab("10.0.0.0/8"),
		ActiveTimeout: 60 * time.Second, SnippetPackets: 4, SnippetBytes: 64, Clock: func() int64 { return now }}, c.emit)
	k := Key{Src: addr16("10.0.0.7"), Dst: addr16("1.2.3.4"), SrcPort: 4000, DstPort: 443, Proto: 6, IPVersion: 4}
	tb.UpdateFlow(k, DirStats{Packets: 10, Bytes: 1000, FirstNs: 1 * sec, LastNs: 5 * sec, TCPFlags: TCPSyn | TCPAck, IfMask: 1})
	tb.UpdateFlow(k.Reverse(), DirStats{Packets: 8, Bytes: 8000, FirstNs: 2 * sec, LastNs: 5 * sec, TCPFlags: TCPSyn | TCPAck, IfMask: 1})
	tb.UpdateFlow(k, DirStats{Packets: 30, Bytes: 3000, FirstNs: 1 * sec, LastNs: 62 * sec, TCPFlags: TCPAck, IfMask: 3})
	tb.Snippet(PacketSnippet{Key: k, TimeNs: 63 * sec, Data: []byte("hello")})
	tb.UpdateFlow(k, DirStats{Packets: 31, Bytes: 3100, FirstNs: 1 * sec, LastNs: 63 * sec, IfMask: 1})
	tb.EndFlow(k, true)
	if len(c.recs) != 2 {
		t.Fatalf("want active-timeout record + RST record, got %d", len(c.recs))
	}
	a, b := c.recs[0], c.recs[1]
	if a.EndReason != flowpb.EndReason_END_REASON_ACTIVE_TIMEOUT || a.PacketsOut != 10 || a.BytesIn != 8000 ||
		a.Direction != flowpb.Direction_DIRECTION_OUTBOUND || len(a.Interfaces) != 1 {
		t.Errorf("first record: %v", a)
	}
	if b.EndReason != flowpb.EndReason_END_REASON_TCP_RST || b.PacketsOut != 21 || b.BytesOut != 2100 || b.PacketsIn != 0 ||
		len(b.Interfaces) != 2 || b.Interfaces[1] != "wan0" || len(b.Snippets) != 1 {
		t.Errorf("second record: %v", b)
	}
}

func TestRunShutdownFlush(t *testing.T) {
	c := &collected{}
	var now int64 = 100 * sec
	tb := NewTable(TableConfig{Gateway: "gw", Clock: func() int64 { return now }}, c.emit)
	k := Key{Src: addr16("10.0.0.7"), Dst: addr16("1.2.3.4"), SrcPort: 4000, DstPort: 53, Proto: 17, IPVersion: 4}
	tb.UpdateFlow(k, DirStats{Packets: 1, Bytes: 60, FirstNs: now, LastNs: now})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- tb.Run(ctx, time.Millisecond) }()
	time.Sleep(5 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(c.recs) != 1 || c.recs[0].EndReason != flowpb.EndReason_END_REASON_SHUTDOWN {
		t.Fatalf("shutdown flush: %v", c.recs)
	}
}

func TestSteadyStateNoAllocs(t *testing.T) {
	tb := NewTable(TableConfig{Gateway: "gw", SnippetPackets: 4, SnippetBytes: 64}, func(*flowpb.FlowRecord) error { return nil })
	k := Key{Src: addr16("10.0.0.7"), Dst: addr16("1.2.3.4"), SrcPort: 4000, DstPort: 443, Proto: 6, IPVersion: 4}
	var n uint64
	update := func() {
		n++
		tb.UpdateFlow(k, DirStats{Packets: n, Bytes: 100 * n, FirstNs: 1, LastNs: int64(n), TCPFlags: TCPAck, IfMask: 1})
		tb.UpdateFlow(k.Reverse(), DirStats{Packets: n, Bytes: 100 * n, FirstNs: 1, LastNs: int64(n), TCPFlags: TCPAck, IfMask: 1})
	}
	update()
	if a := testing.AllocsPerRun(100, update); a != 0 {
		t.Errorf("UpdateFlow on an existing flow allocates %v", a)
	}
	p := pkt("10.0.0.7", 5000, "1.2.3.4", 443, 6, TCPAck|TCPPsh, 1, "data")
	for i := 0; i < 8; i++ { // use up the snippet budget
		observe(t, tb, p)
	}
	if a := testing.AllocsPerRun(100, func() { tb.Observe(p) }); a != 0 {
		t.Errorf("Observe on an existing flow allocates %v", a)
	}
}

func BenchmarkSinkUpdateFlow(b *testing.B) {
	tb := NewTable(TableConfig{Gateway: "gw", MaxFlows: 1 << 16}, func(*flowpb.FlowRecord) error { return nil })
	keys := make([]Key, 1<<15)
	for i := range keys {
		keys[i] = Key{Src: addr16("10.0.0.7"), Dst: addr16("1.2.3.4"), SrcPort: uint16(i), DstPort: 443, Proto: 6, IPVersion: 4}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := keys[i%len(keys)]
		n := uint64(i/len(keys) + 1)
		tb.UpdateFlow(k, DirStats{Packets: n, Bytes: 100 * n, FirstNs: 1, LastNs: int64(i + 1)})
	}
}
