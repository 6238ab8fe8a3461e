package flow

import (
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"google.golang.org/protobuf/proto"
)

// A kernel entry deleted on FIN/RST or idleness and re-created reports
// cumulative counters from zero with a new FirstNs, even when they exceed
// the old entry's: the table must add them, not subtract the old ones.
func TestUpdateFlowKernelEntryRestart(t *testing.T) {
	var got []*flowpb.FlowRecord
	base := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC).UnixNano()
	now := base
	tb := NewTable(TableConfig{Gateway: "gw", Clock: func() int64 { return now }}, func(r *flowpb.FlowRecord) error {
		got = append(got, proto.Clone(r).(*flowpb.FlowRecord))
		return nil
	})
	k := Key{SrcPort: 1000, DstPort: 80, Proto: 17, IPVersion: 4}
	k.Src[15], k.Dst[15] = 1, 2
	k.Src[10], k.Src[11], k.Dst[10], k.Dst[11] = 0xff, 0xff, 0xff, 0xff
	tb.UpdateFlow(k, DirStats{Packets: 10, Bytes: 1000, FirstNs: base, LastNs: base + 10})
	tb.UpdateFlow(k, DirStats{Packets: 12, Bytes: 1200, FirstNs: base, LastNs: base + 20})      // same entry: +2
	tb.UpdateFlow(k, DirStats{Packets: 20, Bytes: 2000, FirstNs: base + 30, LastNs: base + 40}) // new entry: +20
	tb.UpdateFlow(k, DirStats{Packets: 21, Bytes: 2100, FirstNs: base + 30, LastNs: base + 50}) // same new entry: +1
	now = base + 100
	if err := tb.Flush(flowpb.EndReason_END_REASON_SHUTDOWN); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d records", len(got))
	}
	r := got[0]
	if r.PacketsOut+r.PacketsIn != 33 || r.BytesOut+r.BytesIn != 3300 {
		t.Fatalf("packets %d+%d bytes %d+%d, want 33 packets 3300 bytes", r.PacketsOut, r.PacketsIn, r.BytesOut, r.BytesIn)
	}
}
