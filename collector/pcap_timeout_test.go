package collector_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/exfilwatch/exfilwatch/collector"
	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// TestReplayVirtualClock writes a capture whose timestamps span minutes and
// checks that ReadPcap's timeouts follow packet time, not the wall clock:
// a UDP flow with a 20 s gap splits on the idle timeout (both parts idle out,
// as the other flow keeps the clock moving), a steady flow over
// 150 s is cut by the active timeout, and the lab device is the source.
func TestReplayVirtualClock(t *testing.T) {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	write := func(at time.Duration, i int, reply bool) {
		f := synthFrame(i, reply)
		if err := w.WritePacket(gopacket.CaptureInfo{Timestamp: t0.Add(at), CaptureLength: len(f), Length: len(f)}, f); err != nil {
			t.Fatal(err)
		}
	}
	// Flow 1: request at 0 s, reply at 1 s, silence, request at 21 s.
	// Flow 2: one packet per second from 0 to 150 s, interleaved.
	for s := 0; s <= 150; s++ {
		at := time.Duration(s) * time.Second
		switch s {
		case 0:
			write(at, 1, false)
		case 1:
			write(at, 1, true)
		case 21:
			write(at, 1, false)
		}
		write(at+time.Millisecond, 2, s%2 == 1)
	}
	cfg := collector.DefaultConfig()
	cfg.LabSubnets = []string{"10.0.0.0/8"}
	var recs []*flowpb.FlowRecord
	st, err := collector.ReadPcap(context.Background(), &buf, cfg, func(r *flowpb.FlowRecord) error {
		recs = append(recs, cloneRec(r))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	byFlow := map[uint32][]*flowpb.FlowRecord{}
	for _, r := range recs {
		if r.Direction != flowpb.Direction_DIRECTION_OUTBOUND || schema.Addr(r.SrcAddr).String()[:3] != "10." {
			t.Errorf("record not oriented device -> remote: %v", r)
		}
		byFlow[r.SrcPort] = append(byFlow[r.SrcPort], r)
	}
	f1, f2 := byFlow[40001], byFlow[40002]
	if len(f1) != 2 || f1[0].EndReason != flowpb.EndReason_END_REASON_IDLE_TIMEOUT || f1[0].PacketsOut != 1 || f1[0].PacketsIn != 1 ||
		f1[1].EndReason != flowpb.EndReason_END_REASON_IDLE_TIMEOUT || f1[1].PacketsOut != 1 || f1[1].ObservedNs-f1[1].LastSeenNs != int64(15*time.Second+time.Millisecond) {
		t.Errorf("flow 1 (idle split): %v", f1)
	}
	if len(f2) != 3 || f2[0].EndReason != flowpb.EndReason_END_REASON_ACTIVE_TIMEOUT || f2[1].EndReason != flowpb.EndReason_END_REASON_ACTIVE_TIMEOUT {
		t.Fatalf("flow 2 (active timeout): %d records %v", len(f2), f2)
	}
	var pk uint64
	for _, r := range f2 {
		pk += r.PacketsOut + r.PacketsIn
	}
	if pk != 151 || st.Packets != 154 {
		t.Errorf("flow 2 carries %d packets of 151; %d frames read", pk, st.Packets)
	}
}
