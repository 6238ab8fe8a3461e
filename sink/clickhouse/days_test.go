package clickhouse

import (
	"context"
	"fmt"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

func recAt(id string, t time.Time) *flowpb.FlowRecord {
	return &flowpb.FlowRecord{Id: id, FirstSeenNs: t.UnixNano()}
}

func TestSplitByDay(t *testing.T) {
	kolkata, err := time.LoadLocation("Asia/Kolkata") // +05:30: local midnight is 18:30 UTC
	if err != nil {
		t.Fatal(err)
	}
	utc := func(h, m int) time.Time { return time.Date(2026, 11, 20, h, m, 0, 0, time.UTC) }
	recs := []*flowpb.FlowRecord{
		recAt("a", utc(18, 29)), // Kolkata 23:59 on the 20th
		recAt("b", utc(18, 30)), // Kolkata 00:00 on the 21st
		recAt("c", utc(10, 0)),  // the 20th in both
		recAt("d", utc(23, 0)),  // the 21st in Kolkata, the 20th in UTC
		recAt("e", utc(18, 29).Add(48*time.Hour)),
	}
	ids := func(groups [][]*flowpb.FlowRecord) string {
		var out []string
		for _, g := range groups {
			s := ""
			for _, r := range g {
				s += r.Id
			}
			out = append(out, s)
		}
		return fmt.Sprint(out)
	}
	if got := ids(splitByDay(kolkata, recs, nil)); got != "[ac bd e]" {
		t.Errorf("Kolkata days %s, want [ac bd e]", got)
	}
	if got := ids(splitByDay(time.UTC, recs, nil)); got != "[abcd e]" {
		t.Errorf("UTC days %s, want [abcd e]", got)
	}

	// One day: the slice itself, no allocation.
	one := recs[:1]
	var groups [][]*flowpb.FlowRecord
	groups = splitByDay(kolkata, one, groups)
	if len(groups) != 1 || &groups[0][0] != &one[0] {
		t.Fatal("single-day block not returned as is")
	}
	if n := testing.AllocsPerRun(100, func() { groups = splitByDay(kolkata, recs[2:3], groups) }); n != 0 {
		t.Errorf("single-day split allocates %.0f times", n)
	}
	// A multi-day split after a single-day one must not write into the
	// caller's slice the groups still alias.
	keep := append([]*flowpb.FlowRecord(nil), recs...)
	groups = splitByDay(kolkata, recs[:2], groups)
	groups = splitByDay(kolkata, []*flowpb.FlowRecord{recs[4], recs[3], recs[1]}, groups)
	for i := range recs {
		if recs[i] != keep[i] {
			t.Fatalf("split overwrote the caller's records at %d", i)
		}
	}
	if got := ids(groups); got != "[e db]" {
		t.Errorf("reused groups %s, want [e db]", got)
	}
	if got := splitByDay(kolkata, nil, groups); len(got) != 0 {
		t.Errorf("empty input gave %d groups", len(got))
	}
}

// On the real server: the writer learns its zone, and a block spanning
// three days goes as three INSERTs, all rows stored.
func TestWriteFlowsOneInsertPerDay(t *testing.T) {
	cfg := testConfig(t)
	w := openWriter(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var zone string
	if err := w.conn.QueryRow(ctx, "SELECT timezone()").Scan(&zone); err != nil {
		t.Fatal(err)
	}
	if w.loc.String() != zone {
		t.Fatalf("writer zone %q, server %q", w.loc, zone)
	}
	var recs []*flowpb.FlowRecord
	for i := range 90 {
		r := sampleFlow(i)
		r.Id += "/day"
		r.FirstSeenNs += int64(i%3) * int64(24*time.Hour) // days interleaved
		recs = append(recs, r)
	}
	before := flowBatches(t)
	if err := w.WriteFlows(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if got := flowBatches(t) - before; got != 3 {
		t.Errorf("%v flows INSERTs for a three-day block, want 3 (one per partition)", got)
	}
	var n, parts uint64
	if err := w.conn.QueryRow(ctx, "SELECT count(), uniqExact(toYYYYMMDD(time)) FROM "+cfg.Database+".flows").Scan(&n, &parts); err != nil {
		t.Fatal(err)
	}
	if n != 90 || parts != 3 {
		t.Errorf("stored %d rows in %d days, want 90 in 3", n, parts)
	}
}

func flowBatches(t *testing.T) float64 {
	var m dto.Metric
	if err := batchesSent.WithLabelValues("flows").Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
