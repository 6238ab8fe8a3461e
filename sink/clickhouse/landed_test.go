package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

func TestBlockRepsOnePerBucket(t *testing.T) {
	keys := []string{"a", "b", "c", "", "e", "f"}
	times := []int64{0, 10, repBucket, 2 * repBucket, 2*repBucket + 1, 86400}
	got := blockReps(keys, times)
	want := []rep{{"a", 0}, {"c", repBucket}, {"e", 2*repBucket + 1}, {"f", 86400}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reps %v, want %v", got, want)
	}
}

func TestAmbiguousErrors(t *testing.T) {
	if ambiguous(nil) {
		t.Error("nil is not a failure")
	}
	if !ambiguous(errors.New("read: EOF")) {
		t.Error("a connection error leaves the block's fate open")
	}
	if ambiguous(fmt.Errorf("send block: %w", &ch.Exception{Code: 60})) {
		t.Error("a server exception means the block was refused")
	}
}

// blockStored on the real server: a stored two-day block is found whole, an
// unsent one not at all, and one missing its second day as partly stored.
func TestBlockStoredOnServer(t *testing.T) {
	cfg := testConfig(t)
	w := openWriter(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var day1, day2 []*flowpb.FlowRecord
	for i := range 50 {
		day1 = append(day1, sampleFlow(i))
		r := sampleFlow(1000 + i)
		r.Id += "/d2"
		r.FirstSeenNs += int64(30 * time.Hour)
		day2 = append(day2, r)
	}
	if err := w.WriteFlows(ctx, day1); err != nil {
		t.Fatal(err)
	}
	reps := func(recs ...[]*flowpb.FlowRecord) []rep {
		var ids []string
		var ts []int64
		for _, rs := range recs {
			for _, r := range rs {
				ids = append(ids, r.Id)
				ts = append(ts, sec(r.FirstSeenNs))
			}
		}
		return blockReps(ids, ts)
	}
	all, found, err := blockStored(ctx, w.Conn(), cfg.Database, "flows", "id", reps(day1))
	if err != nil || !all || found == 0 {
		t.Fatalf("stored block: all %v found %d err %v", all, found, err)
	}
	all, found, err = blockStored(ctx, w.Conn(), cfg.Database, "flows", "id", reps(day2))
	if err != nil || all || found != 0 {
		t.Fatalf("unsent block: all %v found %d err %v", all, found, err)
	}
	all, found, err = blockStored(ctx, w.Conn(), cfg.Database, "flows", "id", reps(day1, day2))
	if err != nil || all || found == 0 {
		t.Fatalf("half-stored block: all %v found %d err %v", all, found, err)
	}
	// The matches of day1's flows are found by flow id the same way.
	var fids []string
	var fts []int64
	for _, r := range day1 {
		for range r.GetEnrichment().GetMatches() {
			fids = append(fids, r.Id)
			fts = append(fts, sec(r.FirstSeenNs))
		}
	}
	if len(fids) > 0 {
		all, _, err = blockStored(ctx, w.Conn(), cfg.Database, "matches", "flow_id", blockReps(fids, fts))
		if err != nil || !all {
			t.Fatalf("stored matches: all %v err %v", all, err)
		}
	}
}
