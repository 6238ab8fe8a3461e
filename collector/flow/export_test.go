package flow

import (
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/collector/communityid"
	"github.com/exfilwatch/exfilwatch/internal/strarena"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// udpFlow sets p to a one-packet UDP flow from lab device 10.0.x.y at time
// t, unique per i (below 2^16 * 50000).
func udpFlow(p *Packet, i int, t int64) *Packet {
	*p = Packet{
		Key:     Key{Src: v4(10, 0, byte(i>>8), byte(i)), Dst: v4(93, 184, 216, 34), SrcPort: uint16(1024 + (i>>16)%50000), DstPort: 53, Proto: 17, IPVersion: 4},
		TimeNs:  t,
		L3Bytes: 60,
	}
	return p
}

func v4(a, b, c, d byte) [16]byte {
	return [16]byte{10: 0xff, 11: 0xff, 12: a, 13: b, 14: c, 15: d}
}

// TestExportStringsOutliveRecords: the id and Community ID of records an
// emit callee kept without copying (as proto.Clone does: it shares strings)
// still hold their values after 100k more records were exported.
func TestExportStringsOutliveRecords(t *testing.T) {
	type kept struct{ id, cid, wantID, wantCID string }
	var keep []kept
	ids := map[string]bool{}
	n := 0
	tb := NewTable(TableConfig{Gateway: "gw1", LabSubnets: lab("10.0.0.0/8"), CommunityIDSeed: 3}, func(r *flowpb.FlowRecord) error {
		if ids[r.Id] {
			t.Fatalf("duplicate record id %s", r.Id)
		}
		ids[strings.Clone(r.Id)] = true
		if n == 0 || n%997 == 0 {
			keep = append(keep, kept{r.Id, r.CommunityId, strings.Clone(r.Id), strings.Clone(r.CommunityId)})
		}
		n++
		return nil
	})
	h := communityid.New(3)
	want := func(i int) string { // independent of the table's canonical ordering
		p := udpFlow(&Packet{}, i, 0)
		return h.String(p.Key.Src[12:], p.Key.Dst[12:], 17, p.Key.SrcPort, 53)
	}
	const flows = 100_001
	for i := 0; i < flows; i++ {
		observe(t, tb, udpFlow(&Packet{}, i, int64(i)*20*sec)) // exports the previous flow (idle)
	}
	if err := tb.Flush(flowpb.EndReason_END_REASON_END_OF_CAPTURE); err != nil {
		t.Fatal(err)
	}
	if n != flows {
		t.Fatalf("%d records, want %d", n, flows)
	}
	for j, k := range keep {
		if k.id != k.wantID || k.cid != k.wantCID {
			t.Fatalf("retained strings changed: %q %q, want %q %q", k.id, k.cid, k.wantID, k.wantCID)
		}
		i := 0
		if j > 0 {
			i = j * 997
		}
		if k.cid != want(i) {
			t.Fatalf("record %d: Community ID %q, want %q", i, k.cid, want(i))
		}
	}
}

// TestExportNoAllocs: exporting a record (new flow observed, then
// expired) allocates nothing but, every ~16 records, one string slab.
func TestExportNoAllocs(t *testing.T) {
	var recs int
	tb := NewTable(TableConfig{Gateway: "gw1", LabSubnets: lab("10.0.0.0/8"), MaxFlows: 1024}, func(*flowpb.FlowRecord) error {
		recs++
		return nil
	})
	i := 0
	p := &Packet{}
	step := func() {
		if err := tb.Observe(udpFlow(p, i, int64(i)*20*sec)); err != nil { // exports flow i-1
			t.Fatal(err)
		}
		i++
	}
	for range 2048 { // warm: entries, index, free list
		step()
	}
	if a := testing.AllocsPerRun(1000, step); a != 0 {
		t.Errorf("%v allocations per exported record", a)
	}
	const perRun = 1000
	slabs := tb.strs.Slabs
	before := recs
	a := testing.AllocsPerRun(20, func() {
		for range perRun {
			step()
		}
	})
	strBytes := perRun * (32 + communityid.Size)
	if limit := float64(strBytes/strarena.SlabSize + 1); a > limit {
		t.Errorf("%v allocations per %d records, want at most %v", a, perRun, limit)
	}
	if got, exported := tb.strs.Slabs-slabs, recs-before; got < exported*(32+communityid.Size)/strarena.SlabSize {
		t.Errorf("%d slabs for %d records: slabs reused?", got, exported)
	}
}
