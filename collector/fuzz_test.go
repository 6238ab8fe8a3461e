package collector_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/exfilwatch/exfilwatch/collector"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// FuzzReadPcap feeds damaged capture files through the whole replay path:
// it must return an error or records, never panic or hang. Seeds:
// testdata/fuzz/FuzzReadPcap (small real pcap/pcapng files).
func FuzzReadPcap(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := collector.DefaultConfig()
		cfg.MaxFlows = 64
		var pkts uint64
		st, _ := collector.ReadPcap(context.Background(), bytes.NewReader(data), cfg, func(r *flowpb.FlowRecord) error {
			pkts += r.PacketsIn + r.PacketsOut
			return nil
		})
		if pkts != st.Counted {
			t.Fatalf("records carry %d packets, %d counted", pkts, st.Counted)
		}
	})
}
