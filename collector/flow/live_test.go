package flow

import (
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// The kernel's coarse clock often stamps request and reply with the same
// FirstNs; the opener must then not follow the order in which the table
// heard of the two sides (reply first here, as a map walk may report it).
func TestUpdateFlowOpenerTie(t *testing.T) {
	const ts = 5 * sec
	cases := []struct {
		name       string
		subnets    []string
		open       Key // the opener's direction
		flags      uint8
		snippet    bool // the reply's snippet creates the entry
		wantDir    flowpb.Direction
		wantSrcPrt uint32
	}{
		{"tcp lab client both SYN", []string{"10.0.0.0/8"}, Key{Src: addr16("10.0.0.7"), Dst: addr16("1.2.3.4"), SrcPort: 41000, DstPort: 443, Proto: 6, IPVersion: 4},
			TCPSyn | TCPAck, false, flowpb.Direction_DIRECTION_OUTBOUND, 41000},
		{"tcp lab client, reply snippet first", []string{"10.0.0.0/8"}, Key{Src: addr16("10.0.0.7"), Dst: addr16("1.2.3.4"), SrcPort: 41000, DstPort: 80, Proto: 6, IPVersion: 4},
			TCPSyn | TCPAck, true, flowpb.Direction_DIRECTION_OUTBOUND, 41000},
		{"udp dns transit", nil, Key{Src: addr16("192.168.1.9"), Dst: addr16("9.9.9.9"), SrcPort: 50000, DstPort: 53, Proto: 17, IPVersion: 4},
			0, false, flowpb.Direction_DIRECTION_TRANSIT, 50000},
		{"udp fcm port transit", nil, Key{Src: addr16("192.168.1.9"), Dst: addr16("1.1.1.1"), SrcPort: 40001, DstPort: 5228, Proto: 17, IPVersion: 4},
			0, false, flowpb.Direction_DIRECTION_TRANSIT, 40001},
		{"udp ephemeral ports, lab side opened", []string{"10.0.0.0/8"}, Key{Src: addr16("10.0.0.7"), Dst: addr16("1.2.3.4"), SrcPort: 40000, DstPort: 45000, Proto: 17, IPVersion: 4},
			0, false, flowpb.Direction_DIRECTION_OUTBOUND, 40000},
		// The canonical key puts 1.2.3.4 first: the opener is side 1 here.
		{"udp ephemeral ports, lab side is canonical side 1", []string{"10.0.0.0/8"}, Key{Src: addr16("10.0.0.7"), Dst: addr16("1.0.0.1"), SrcPort: 40000, DstPort: 45000, Proto: 17, IPVersion: 4},
			0, false, flowpb.Direction_DIRECTION_OUTBOUND, 40000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var subnets []string
			subnets = append(subnets, c.subnets...)
			now := 20 * sec
			tb, col := newTestTable(t, TableConfig{LabSubnets: lab(subnets...), Clock: func() int64 { return now }})
			if c.snippet {
				tb.Snippet(PacketSnippet{Key: c.open.Reverse(), TimeNs: ts, Data: []byte("HTTP/1.1 200 OK\r\n\r\n")})
			}
			tb.UpdateFlow(c.open.Reverse(), DirStats{Packets: 3, Bytes: 300, FirstNs: ts, LastNs: ts, TCPFlags: c.flags})
			tb.UpdateFlow(c.open, DirStats{Packets: 4, Bytes: 400, FirstNs: ts, LastNs: ts, TCPFlags: c.flags})
			if err := tb.Flush(flowpb.EndReason_END_REASON_SHUTDOWN); err != nil {
				t.Fatal(err)
			}
			if len(col.recs) != 1 {
				t.Fatalf("%d records", len(col.recs))
			}
			r := col.recs[0]
			if r.Direction != c.wantDir || r.SrcPort != c.wantSrcPrt || r.PacketsOut != 4 || r.PacketsIn != 3 {
				t.Errorf("direction %v src port %d packets out/in %d/%d; want %v %d 4/3", r.Direction, r.SrcPort, r.PacketsOut, r.PacketsIn, c.wantDir, c.wantSrcPrt)
			}
		})
	}
}

// Timestamps that differ still decide over the port and lab rules.
func TestUpdateFlowOpenerByTime(t *testing.T) {
	tb, col := newTestTable(t, TableConfig{LabSubnets: lab("10.0.0.0/8")})
	k := Key{Src: addr16("1.2.3.4"), Dst: addr16("10.0.0.7"), SrcPort: 50000, DstPort: 443, Proto: 17, IPVersion: 4}
	tb.UpdateFlow(k.Reverse(), DirStats{Packets: 1, Bytes: 100, FirstNs: 6 * sec, LastNs: 6 * sec})
	tb.UpdateFlow(k, DirStats{Packets: 1, Bytes: 100, FirstNs: 5 * sec, LastNs: 5 * sec})
	if err := tb.Flush(flowpb.EndReason_END_REASON_SHUTDOWN); err != nil {
		t.Fatal(err)
	}
	if r := col.recs[0]; r.Direction != flowpb.Direction_DIRECTION_INBOUND || r.SrcPort != 443 || r.DstPort != 50000 {
		t.Errorf("direction %v ports %d->%d, want INBOUND, device 443 first", r.Direction, r.SrcPort, r.DstPort)
	}
}

// liveTable is a table on the Sink path with a settable clock.
func liveTable(t *testing.T, now *int64) (*Table, *collected) {
	return newTestTable(t, TableConfig{LabSubnets: lab("10.0.0.0/8"), IdleTimeout: 4 * time.Second, FinGrace: time.Second,
		Clock: func() int64 { return *now }})
}

func sumRecs(recs []*flowpb.FlowRecord) (pkts, bytes uint64) {
	for _, r := range recs {
		pkts += r.PacketsOut + r.PacketsIn
		bytes += r.BytesOut + r.BytesIn
	}
	return
}

// The kernel keeps a flow's entries after FIN (deleting them could lose
// the last ACK), so polls after the table's FIN export re-report the same
// cumulative counters: no new record. Packets counted after the export
// (the last ACK landing late) make a record of only those.
func TestUpdateFlowAfterFinExport(t *testing.T) {
	now := 10 * sec
	tb, col := liveTable(t, &now)
	c := Key{Src: addr16("10.0.0.7"), Dst: addr16("1.2.3.4"), SrcPort: 41000, DstPort: 443, Proto: 6, IPVersion: 4}
	f := uint8(TCPSyn | TCPAck | TCPFin)
	c1 := DirStats{Packets: 5, Bytes: 500, FirstNs: 10 * sec, LastNs: 10 * sec, TCPFlags: f}
	s1 := DirStats{Packets: 4, Bytes: 4000, FirstNs: 10 * sec, LastNs: 10 * sec, TCPFlags: f}
	tb.UpdateFlow(c, c1)
	tb.UpdateFlow(c.Reverse(), s1)
	tb.EndFlow(c, false)
	tb.EndFlow(c.Reverse(), false)
	now = 12 * sec
	if err := tb.Expire(now); err != nil {
		t.Fatal(err)
	}
	if len(col.recs) != 1 || col.recs[0].EndReason != flowpb.EndReason_END_REASON_TCP_FIN {
		t.Fatalf("FIN export: %v", col.recs)
	}
	first := col.recs[0]
	// Polls until the kernel's idle timeout: same counters, both sides.
	for range 3 {
		tb.UpdateFlow(c, c1)
		tb.UpdateFlow(c.Reverse(), s1)
	}
	if st := tb.Stats(); st.Active != 0 {
		t.Fatalf("re-reported counters created %d flows", st.Active)
	}
	// The last ACK, counted after the export.
	c2 := c1
	c2.Packets, c2.Bytes, c2.LastNs = 6, 540, 12*sec
	tb.UpdateFlow(c, c2)
	tb.UpdateFlow(c.Reverse(), s1)
	now = 30 * sec
	if err := tb.Flush(flowpb.EndReason_END_REASON_SHUTDOWN); err != nil {
		t.Fatal(err)
	}
	if len(col.recs) != 2 {
		t.Fatalf("%d records, want the FIN export and one of the late ACK", len(col.recs))
	}
	late := col.recs[1]
	if late.PacketsOut != 1 || late.BytesOut != 40 || late.PacketsIn != 0 || late.Direction != flowpb.Direction_DIRECTION_OUTBOUND ||
		late.SrcPort != 41000 || late.Id == first.Id || late.CommunityId != first.CommunityId {
		t.Errorf("late record %v (first id %s)", late, first.Id)
	}
	if p, b := sumRecs(col.recs); p != 10 || b != 4540 {
		t.Errorf("records hold %d packets %d bytes, the kernel counted 10 and 4540", p, b)
	}
}

// The duplicate idle exports seen live: the kernel's final report of an
// idle entry (LookupAndDelete, same counters) reaches the table after the
// table exported the flow on its own idle timeout. It must not make a
// second record with the same counts.
func TestUpdateFlowFinalIdleReportAfterExport(t *testing.T) {
	now := 10 * sec
	tb, col := liveTable(t, &now)
	q := Key{Src: addr16("10.0.0.7"), Dst: addr16("10.0.0.1"), SrcPort: 50000, DstPort: 53, Proto: 17, IPVersion: 4}
	qs := DirStats{Packets: 1, Bytes: 70, FirstNs: 10 * sec, LastNs: 10 * sec}
	rs := DirStats{Packets: 1, Bytes: 120, FirstNs: 10 * sec, LastNs: 10 * sec}
	tb.UpdateFlow(q, qs)
	tb.UpdateFlow(q.Reverse(), rs)
	now = 15 * sec
	if err := tb.Expire(now); err != nil {
		t.Fatal(err)
	}
	tb.UpdateFlow(q, qs) // the delayed final report
	tb.UpdateFlow(q.Reverse(), rs)
	now = 25 * sec
	if err := tb.Expire(now); err != nil {
		t.Fatal(err)
	}
	if err := tb.Flush(flowpb.EndReason_END_REASON_SHUTDOWN); err != nil {
		t.Fatal(err)
	}
	if len(col.recs) != 1 {
		t.Fatalf("%d records, want 1: %v", len(col.recs), col.recs)
	}
	// More replies in the same kernel entry: a record of only those, still
	// oriented from the client although only the server side reported.
	rs2 := rs
	rs2.Packets, rs2.Bytes, rs2.LastNs = 2, 240, 20*sec
	tb.UpdateFlow(q.Reverse(), rs2)
	if err := tb.Flush(flowpb.EndReason_END_REASON_SHUTDOWN); err != nil {
		t.Fatal(err)
	}
	if len(col.recs) != 2 {
		t.Fatalf("%d records after the resumed replies, want 2", len(col.recs))
	}
	if r := col.recs[1]; r.SrcPort != 50000 || r.PacketsOut != 0 || r.PacketsIn != 1 || r.BytesIn != 120 || r.Id == col.recs[0].Id {
		t.Fatalf("resumed record: %v", r)
	}
	col.recs = col.recs[:1]
	// A re-created kernel entry (new FirstNs) is new traffic: counted in
	// full, under a record id of its own.
	q2 := DirStats{Packets: 2, Bytes: 140, FirstNs: 26 * sec, LastNs: 26 * sec}
	tb.UpdateFlow(q, q2)
	if err := tb.Flush(flowpb.EndReason_END_REASON_SHUTDOWN); err != nil {
		t.Fatal(err)
	}
	if len(col.recs) != 2 || col.recs[1].PacketsOut != 2 || col.recs[1].BytesOut != 140 || col.recs[1].Id == col.recs[0].Id {
		t.Fatalf("re-created entry: %v", col.recs)
	}
}

// Tombstones expire after TombstoneTTL and are bounded by MaxTombstones
// (oldest dropped first).
func TestTombstoneBounds(t *testing.T) {
	now := 10 * sec
	tb, col := newTestTable(t, TableConfig{IdleTimeout: time.Second, TombstoneTTL: 5 * time.Second, MaxTombstones: 3,
		Clock: func() int64 { return now }})
	key := func(i int) Key {
		return Key{Src: addr16("10.0.0.7"), Dst: addr16("1.2.3.4"), SrcPort: uint16(40000 + i), DstPort: 443, Proto: 17, IPVersion: 4}
	}
	st := DirStats{Packets: 1, Bytes: 100, FirstNs: 10 * sec, LastNs: 10 * sec}
	for i := range 4 {
		tb.UpdateFlow(key(i), st)
	}
	now = 12 * sec
	if err := tb.Expire(now); err != nil {
		t.Fatal(err)
	}
	if len(col.recs) != 4 || tb.tombs.n != 3 {
		t.Fatalf("%d records %d tombstones", len(col.recs), tb.tombs.n)
	}
	for i := range 4 { // flow 0's tombstone was dropped: it comes back
		tb.UpdateFlow(key(i), st)
	}
	if a := tb.Stats().Active; a != 1 {
		t.Fatalf("%d flows re-created, want 1", a)
	}
	now = 30 * sec
	if err := tb.Expire(now); err != nil { // all tombstones expired
		t.Fatal(err)
	}
	if tb.tombs.n != 1 { // flow 0 exported at 30 s
		t.Fatalf("%d tombstones after the TTL", tb.tombs.n)
	}
}

// sinkChurn drives the live path's full cycle for keys[i]: report, idle
// export (tombstone), the kernel's re-report of the same counters
// (ignored), then new packets (a resumed record).
type sinkChurn struct {
	tb   *Table
	now  int64
	keys []Key
	i    int
}

func newSinkChurn(n int) *sinkChurn {
	c := &sinkChurn{now: sec, keys: make([]Key, n)}
	c.tb = NewTable(TableConfig{Gateway: "gw", MaxFlows: 1 << 16, IdleTimeout: time.Second, SnippetPackets: 4, SnippetBytes: 64,
		Clock: func() int64 { return c.now }}, func(*flowpb.FlowRecord) error { return nil })
	for i := range c.keys {
		c.keys[i] = Key{Src: addr16("10.0.0.7"), Dst: addr16("1.2.3.4"), SrcPort: uint16(1024 + i), DstPort: 443, Proto: 17, IPVersion: 4}
	}
	return c
}

func (c *sinkChurn) step() {
	k := c.keys[c.i%len(c.keys)]
	round := uint64(c.i/len(c.keys) + 1)
	c.i++
	c.now += int64(time.Millisecond)
	s := DirStats{Packets: round, Bytes: 100 * round, FirstNs: sec, LastNs: c.now}
	c.tb.UpdateFlow(k, s)
	c.tb.UpdateFlow(k, s) // unchanged: nothing to do
	if c.i%len(c.keys) == 0 {
		// Every flow idle: exported, buried; the next round's reports
		// hit the tombstones and resume the flows.
		c.now += int64(2 * time.Second)
		_ = c.tb.Expire(c.now)
		for _, k := range c.keys[:8] {
			c.tb.UpdateFlow(k, DirStats{Packets: round, Bytes: 100 * round, FirstNs: sec, LastNs: c.now - int64(2*time.Second)})
		}
	}
}

// Ignoring a re-report and resuming a flow from its tombstone allocate
// nothing once the table and the ring have grown (exports allocate their
// record id, as always).
func TestTombstoneNoAllocs(t *testing.T) {
	c := newSinkChurn(2048)
	for range 3 * 2048 { // grow table, index and ring; leave every flow buried
		c.step()
	}
	if c.tb.tombs.n < 2048-8 || c.tb.Stats().Active > 8 {
		t.Fatalf("%d tombstones, %d active flows", c.tb.tombs.n, c.tb.Stats().Active)
	}
	round := uint64(3)
	j := 8 // keys[:8] were resumed by the last step
	same := func() {
		k := c.keys[8+j%(2048-8)]
		j++
		c.tb.UpdateFlow(k, DirStats{Packets: round, Bytes: 100 * round, FirstNs: sec, LastNs: c.now})
	}
	if a := testing.AllocsPerRun(1000, same); a != 0 {
		t.Errorf("a re-report of exported counters allocates %v", a)
	}
	if c.tb.Stats().Active > 8 {
		t.Fatalf("re-reports created flows")
	}
	j = 8
	grown := func() {
		k := c.keys[8+j%(2048-8)]
		j++
		c.tb.UpdateFlow(k, DirStats{Packets: round + 1, Bytes: 100 * (round + 1), FirstNs: sec, LastNs: c.now})
	}
	if a := testing.AllocsPerRun(1000, grown); a != 0 {
		t.Errorf("resuming a flow from its tombstone allocates %v", a)
	}
	if n := c.tb.Stats().Active; n < 1000 {
		t.Fatalf("%d flows resumed, want 1001", n)
	}
}

func BenchmarkSinkTombstoneChurn(b *testing.B) {
	c := newSinkChurn(4096)
	for range 2 * 4096 {
		c.step()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c.step()
	}
}
