package clickhouse

import (
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/sink/clickhouse/querytest"
)

// savedQuery is one run of a saved query with the answer computed in Go
// from the inserted records (never from the query), so the same cases run
// on 18.16 (TestSavedQueries) and on a current engine (TestProfilesOnChDB).
// The expected answers come from querytest, which the pipeline's tests
// also use on the pipeline's own output.
type savedQuery struct {
	name, file string
	params     map[string]any
	want       [][]string
	check      func(t *testing.T, got [][]string) // extra assertions, optional
}

func loadSavedQuery(t *testing.T, file string) string { t.Helper(); return querytest.Load(t, file) }

// queryWindow holds the parameters the cases pass (querytest.Window).
type queryWindow struct {
	from, to, now time.Time
	country       string
	top           int
}

func datasetWindow() queryWindow {
	return queryWindow{from: qT0.Add(-30 * 24 * time.Hour), to: qT0.Add(8 * 24 * time.Hour), now: qT0.Add(7 * 24 * time.Hour), country: "CN", top: 2}
}

// savedQueryCases covers every file in deploy/clickhouse/queries for recs
// (queryDataset, or any records), with extra checks queryDataset is built
// for.
func savedQueryCases(recs []*flowpb.FlowRecord, win queryWindow) []savedQuery {
	var cases []savedQuery
	for _, c := range querytest.Cases(recs, querytest.Window{From: win.from, To: win.to, Now: win.now, Country: win.country, Top: win.top}) {
		sq := savedQuery{name: c.Name, file: c.File, params: c.Params, want: c.Want, check: c.Check}
		switch c.Name {
		case "first_seen_destinations":
			sq.check = func(t *testing.T, got [][]string) {
				for _, r := range got {
					if r[0] == "old.example" {
						t.Errorf("old.example was first seen 10 days earlier but is reported")
					}
				}
			}
		case "beacon_candidates/min_score=0":
			sq.check = func(t *testing.T, got [][]string) {
				if len(got) < 2 || got[0][2] != "beacon.example" || got[0][9] != "1.000" {
					t.Errorf("the 60 s beacon must rank first with score 1: %v", got)
				}
			}
		case "beacon_candidates/min_score=0.99":
			sq.check = func(t *testing.T, got [][]string) {
				if len(got) != 1 {
					t.Errorf("min_score 0.99: %d rows, want 1", len(got))
				}
			}
		}
		cases = append(cases, sq)
	}
	return cases
}

// Shorthands for the querytest helpers the other tests here use.
func fmtVal(v any) string { return querytest.FmtVal(v) }
func ts(ns int64) string  { return querytest.TS(ns) }
func compareRows(t *testing.T, name string, got, want [][]string) {
	t.Helper()
	querytest.CompareRows(t, name, got, want)
}
