package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/exfilwatch/exfilwatch/eval"
	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/sink/clickhouse"
	"github.com/exfilwatch/exfilwatch/sink/clickhouse/querytest"
)

// TestSavedQueriesOnPipelineData runs a simulated lab through collector ->
// the real Kafka broker -> enrich -> detect -> the real ClickHouse server
// (its own database), then runs every saved query in
// deploy/clickhouse/queries on that database and compares each result
// with the answer computed in Go (querytest) from the flows the sink wrote
// (its JSON-lines copy), and checks the leaks and the beacon of the
// simulator's ground truth show up in the answers.
func TestSavedQueriesOnPipelineData(t *testing.T) {
	kafka := testenv.Kafka(t)
	chAddr := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	cfg := DemoConfig()
	cfg.ClickHouse.Database = fmt.Sprintf("exfilwatch_queries_%d", time.Now().UnixNano())
	dir := t.TempDir()
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	res, err := Demo(ctx, &cfg, DemoOptions{Dir: dir, Devices: 10, Seed: 5, Kafka: kafka, ClickHouse: chAddr}, &out, io.Discard, log)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if res.ClickHouse == "" {
		t.Fatal("the demo did not use ClickHouse")
	}
	conn, err := clickhouse.Connect(ctx, cfg.ClickHouse)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.ClickHouse.Database)

	recs := readFlows(t, res.FlowsFile)
	if int64(len(recs)) != res.Flows {
		t.Fatalf("%d flows in %s, pipeline collected %d", len(recs), res.FlowsFile, res.Flows)
	}
	// The portable (18.16) tables do not deduplicate a retried block: the
	// answers below assume every flow is stored once.
	db := cfg.ClickHouse.Database
	stored := querytest.Query(t, conn, fmt.Sprintf("SELECT count(), uniqExact(id) FROM %s.flows", db))
	byDst := querytest.Query(t, conn, fmt.Sprintf("SELECT count() FROM %s.flows_by_dst", db))
	if n := strconv.Itoa(len(recs)); stored[0][0] != n || stored[0][1] != n || byDst[0][0] != n {
		t.Fatalf("ClickHouse flows (rows, ids) %v, flows_by_dst %v; the sink wrote %s flows", stored[0], byDst[0], n)
	}

	// Windows: the whole run, and an inner one that cuts flows off at both
	// ends. First-seen: the week ending after the run (everything is new),
	// the one starting mid-run (destinations first contacted earlier drop
	// out) and the one ending mid-run (later flows are not looked at).
	first := slices.MinFunc(recs, func(a, b *flowpb.FlowRecord) int { return int(a.FirstSeenNs/1e9 - b.FirstSeenNs/1e9) })
	last := slices.MaxFunc(recs, func(a, b *flowpb.FlowRecord) int { return int(a.FirstSeenNs/1e9 - b.FirstSeenNs/1e9) })
	begin := time.Unix(0, first.FirstSeenNs).UTC().Truncate(time.Second)
	end := time.Unix(0, last.FirstSeenNs).UTC().Truncate(time.Second).Add(time.Second)
	span := end.Sub(begin)
	mid := begin.Add(span / 2).Truncate(time.Second)
	full := querytest.Window{From: begin, To: end, Now: end, Country: topCountry(recs), Top: 3, BeaconMinScores: beaconThresholds(recs, begin, end)}
	// The inner window starts and ends on the second of a flow with
	// identifier matches (a leak is an outbound flow, so every query sees
	// one): an off-by-one at either bound changes an answer.
	inner := full
	inner.From, inner.To = matchedSecond(t, recs, begin.Add(span/4), true), matchedSecond(t, recs, end.Add(-span/4), false)
	inner.Top = 1000 // every destination: the bounds then show in top-upload too
	inner.Now = mid.Add(7 * 24 * time.Hour)
	early := full
	early.Now = mid

	// The saved queries name tables without a database: run them with it
	// selected, as deploy/clickhouse/queries/README.md says.
	qconn, err := ch.Open(&ch.Options{Addr: []string{chAddr}, Auth: ch.Auth{Database: db, Username: cfg.ClickHouse.Username, Password: cfg.ClickHouse.Password}})
	if err != nil {
		t.Fatal(err)
	}
	defer qconn.Close()

	covered := map[string]bool{}
	var answers []querytest.Case
	for _, w := range []struct {
		name string
		win  querytest.Window
	}{{"full", full}, {"inner", inner}, {"early", early}} {
		for _, c := range querytest.Cases(recs, w.win) {
			if w.name == "early" && c.File != "first_seen_destinations.sql" {
				continue // the same range as full
			}
			if w.name == "full" {
				answers = append(answers, c)
			}
			covered[c.File] = true
			t.Run(w.name+"/"+c.Name, func(t *testing.T) {
				sql, err := clickhouse.RenderQuery(querytest.Load(t, c.File), c.Params)
				if err != nil {
					t.Fatal(err)
				}
				got := querytest.Query(t, qconn, sql)
				querytest.CompareRows(t, c.Name, got, c.Want)
			})
		}
	}
	for _, f := range querytest.Files(t) {
		if !covered[f] {
			t.Errorf("saved query %s has no case", f)
		}
	}
	if t.Failed() {
		return
	}
	checkTruthInAnswers(t, filepath.Join(dir, "truth.jsonl"), answers)
}

// matchedSecond is the stored time (whole second) of the first flow with
// identifier matches at or after at (after), or of the last one before it.
func matchedSecond(t *testing.T, recs []*flowpb.FlowRecord, at time.Time, after bool) time.Time {
	t.Helper()
	var best int64
	for _, r := range recs {
		if len(r.GetEnrichment().GetMatches()) == 0 || r.Direction != flowpb.Direction_DIRECTION_OUTBOUND {
			continue
		}
		ns := r.FirstSeenNs
		if after && ns >= at.UnixNano() && (best == 0 || ns < best) || !after && ns < at.UnixNano() && ns > best {
			best = ns
		}
	}
	if best == 0 {
		t.Fatalf("no outbound flow with identifier matches %s %v", map[bool]string{true: "after", false: "before"}[after], at)
	}
	return time.Unix(0, best).UTC().Truncate(time.Second)
}

func readFlows(t *testing.T, path string) []*flowpb.FlowRecord {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []*flowpb.FlowRecord
	for n, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		r := &flowpb.FlowRecord{}
		if err := protojson.Unmarshal(line, r); err != nil {
			t.Fatalf("%s line %d: %v", path, n+1, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// topCountry is the destination country most outbound flows go to.
func topCountry(recs []*flowpb.FlowRecord) string {
	n := map[string]int{}
	for _, r := range recs {
		if c := r.GetEnrichment().GetDstGeo().GetCountry(); c != "" && r.Direction == flowpb.Direction_DIRECTION_OUTBOUND {
			n[c]++
		}
	}
	best := ""
	for c, k := range n {
		if best == "" || k > n[best] || k == n[best] && c < best {
			best = c
		}
	}
	return best
}

// beaconThresholds: 0 (every scored pair) and the median score, so the
// min_score filter drops some pairs and keeps others.
func beaconThresholds(recs []*flowpb.FlowRecord, from, to time.Time) []float64 {
	all := querytest.Cases(recs, querytest.Window{From: from, To: to, Now: to, BeaconMinScores: []float64{0}})
	var scores []float64
	for _, c := range all {
		if c.File == "beacon_candidates.sql" {
			for _, r := range c.Want {
				s, _ := strconv.ParseFloat(r[9], 64)
				scores = append(scores, s)
			}
		}
	}
	sort.Float64s(scores)
	if len(scores) == 0 {
		return []float64{0}
	}
	return []float64{0, scores[len(scores)/2]}
}

// checkTruthInAnswers ties the answers to the simulator's ground truth,
// which the pipeline never reads: every observable identifier leak's
// (device, identifier type) is among leaks_by_device_and_type's rows, and
// the beaconing device's pair is a beacon candidate.
func checkTruthInAnswers(t *testing.T, truthFile string, answers []querytest.Case) {
	t.Helper()
	truth, err := eval.ReadTruthFile(truthFile)
	if err != nil {
		t.Fatal(err)
	}
	leaks := map[[2]string]bool{}
	beacons := map[string]bool{}
	for _, c := range answers {
		for _, r := range c.Want {
			switch c.File {
			case "leaks_by_device_and_type.sql":
				leaks[[2]string{r[0], r[1]}] = true
			case "beacon_candidates.sql":
				beacons[r[0]] = true
			}
		}
	}
	nLeaks, nBeacons := 0, 0
	for _, tr := range truth {
		switch {
		case tr.IdentifierType != "" && tr.Observable:
			nLeaks++
			if !leaks[[2]string{tr.Device, tr.IdentifierType}] {
				t.Errorf("ground-truth leak %s/%s (%s) not in leaks_by_device_and_type", tr.Device, tr.IdentifierType, tr.Form)
			}
		case slices.Contains(tr.Detectors, "beaconing"):
			nBeacons++
			if !beacons[tr.Device] {
				t.Errorf("ground-truth beaconing device %s not among the beacon candidates", tr.Device)
			}
		}
	}
	if nLeaks == 0 || nBeacons == 0 {
		t.Errorf("ground truth has %d observable leaks and %d beacon events; want both", nLeaks, nBeacons)
	}
}
