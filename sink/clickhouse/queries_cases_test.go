package clickhouse

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// savedQuery is one run of a saved query with the answer computed in Go
// from the inserted records (never from the query), so the same cases run
// on 18.16 (TestSavedQueries) and on a current engine (TestProfilesOnChDB).
type savedQuery struct {
	name, file string
	params     map[string]any
	want       [][]string
	check      func(t *testing.T, got [][]string) // extra assertions, optional
}

// loadSavedQuery reads deploy/clickhouse/queries/file and checks its header
// documents every parameter.
func loadSavedQuery(t *testing.T, file string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "deploy", "clickhouse", "queries", file))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(src), "-- ") || !strings.Contains(string(src), "Parameters:") {
		t.Errorf("%s: no header comment with parameters", file)
	}
	for _, p := range paramRE.FindAllStringSubmatch(string(src), -1) {
		if !strings.Contains(string(src), "--   {"+p[1]+":"+p[2]+"}") {
			t.Errorf("%s: parameter {%s:%s} not documented in the header", file, p[1], p[2])
		}
	}
	return string(src)
}

// queryWindow holds the parameters the cases pass: every record must lie
// in [from, to); now ends the first-seen week; country is the egress one;
// top is the destinations per model.
type queryWindow struct {
	from, to, now time.Time
	country       string
	top           int
}

func datasetWindow() queryWindow {
	return queryWindow{from: qT0.Add(-30 * 24 * time.Hour), to: qT0.Add(8 * 24 * time.Hour), now: qT0.Add(7 * 24 * time.Hour), country: "CN", top: 2}
}

// savedQueryCases covers every file in deploy/clickhouse/queries for recs
// (queryDataset, or any records inside the window).
func savedQueryCases(recs []*flowpb.FlowRecord, win queryWindow) []savedQuery {
	from, to := win.from, win.to
	outbound := func(r *flowpb.FlowRecord) bool { return r.Direction == flowpb.Direction_DIRECTION_OUTBOUND }
	var cases []savedQuery

	// leaks_by_device_and_type
	{
		type agg struct {
			n, clear            int
			flows, dests, forms []string
			senders             []string
			first, last         int64
			owner, typ          string
		}
		m := map[[2]string]*agg{}
		for _, r := range recs {
			for _, x := range r.GetEnrichment().GetMatches() {
				k := [2]string{x.DeviceId, x.IdentifierType}
				a := m[k]
				if a == nil {
					a = &agg{owner: k[0], typ: k[1], first: math.MaxInt64}
					m[k] = a
				}
				a.n++
				if x.Cleartext {
					a.clear++
				}
				a.flows = append(a.flows, r.Id)
				a.dests = append(a.dests, dest(r))
				a.forms = append(a.forms, x.Form)
				a.senders = append(a.senders, r.GetEnrichment().GetDevice().GetId())
				a.first, a.last = min(a.first, r.FirstSeenNs), max(a.last, r.FirstSeenNs)
			}
		}
		var aggs []*agg
		for _, a := range m {
			aggs = append(aggs, a)
		}
		sort.Slice(aggs, func(i, j int) bool {
			if aggs[i].n != aggs[j].n {
				return aggs[i].n > aggs[j].n
			}
			if aggs[i].owner != aggs[j].owner {
				return aggs[i].owner < aggs[j].owner
			}
			return aggs[i].typ < aggs[j].typ
		})
		var want [][]string
		for _, a := range aggs {
			d := sortedUniq(a.dests)
			want = append(want, []string{a.owner, a.typ, fmt.Sprint(a.n), fmt.Sprint(len(sortedUniq(a.flows))), fmt.Sprint(len(d)),
				fmt.Sprint(a.clear), fmt.Sprint(sortedUniq(a.forms)), fmt.Sprint(sortedUniq(a.senders)), fmt.Sprint(d[:min(10, len(d))]),
				ts(a.first), ts(a.last)})
		}
		cases = append(cases, savedQuery{name: "leaks_by_device_and_type", file: "leaks_by_device_and_type.sql",
			params: map[string]any{"from": from, "to": to}, want: want})
	}

	// egress_to_country
	{
		type agg struct {
			dev, model, dst, org string
			asn                  uint32
			n                    int
			out, in, matches     uint64
			first, last          int64
		}
		m := map[[2]string]*agg{}
		for _, r := range recs {
			if !outbound(r) || r.GetEnrichment().GetDstGeo().GetCountry() != win.country {
				continue
			}
			k := [2]string{r.GetEnrichment().GetDevice().GetId(), dest(r)}
			a := m[k]
			if a == nil {
				a = &agg{dev: k[0], model: r.GetEnrichment().GetDevice().GetModel(), dst: k[1], org: r.GetEnrichment().GetDstGeo().GetOrg(),
					asn: r.GetEnrichment().GetDstGeo().GetAsn(), first: math.MaxInt64}
				m[k] = a
			}
			a.n++
			a.out += r.BytesOut
			a.in += r.BytesIn
			a.matches += uint64(len(r.GetEnrichment().GetMatches()))
			a.first, a.last = min(a.first, r.FirstSeenNs), max(a.last, r.FirstSeenNs)
		}
		var aggs []*agg
		for _, a := range m {
			aggs = append(aggs, a)
		}
		sort.Slice(aggs, func(i, j int) bool {
			if aggs[i].out != aggs[j].out {
				return aggs[i].out > aggs[j].out
			}
			return aggs[i].dev+aggs[i].dst < aggs[j].dev+aggs[j].dst
		})
		var want [][]string
		for _, a := range aggs {
			want = append(want, []string{a.dev, a.model, a.dst, a.org, fmt.Sprint(a.asn), fmt.Sprint(a.n), fmt.Sprint(a.out), fmt.Sprint(a.in),
				fmt.Sprint(a.matches), ts(a.first), ts(a.last)})
		}
		cases = append(cases, savedQuery{name: "egress_to_country", file: "egress_to_country.sql",
			params: map[string]any{"country": win.country, "from": from, "to": to}, want: want})
	}

	// first_seen_destinations
	{
		now := win.now
		type agg struct {
			dst          string
			first, last  int64
			n            int
			devs, models []string
			out          uint64
		}
		m := map[string]*agg{}
		for _, r := range recs {
			if !outbound(r) || r.FirstSeenNs >= now.UnixNano() {
				continue
			}
			a := m[dest(r)]
			if a == nil {
				a = &agg{dst: dest(r), first: math.MaxInt64}
				m[dest(r)] = a
			}
			a.first, a.last = min(a.first, r.FirstSeenNs), max(a.last, r.FirstSeenNs)
			a.n++
			a.devs = append(a.devs, r.GetEnrichment().GetDevice().GetId())
			a.models = append(a.models, r.GetEnrichment().GetDevice().GetModel())
			a.out += r.BytesOut
		}
		var aggs []*agg
		for _, a := range m {
			if time.Unix(0, a.first).Truncate(time.Second).Before(now.Add(-7 * 24 * time.Hour)) {
				continue
			}
			aggs = append(aggs, a)
		}
		sort.Slice(aggs, func(i, j int) bool {
			if aggs[i].first/1e9 != aggs[j].first/1e9 {
				return aggs[i].first < aggs[j].first
			}
			return aggs[i].dst < aggs[j].dst
		})
		var want [][]string
		for _, a := range aggs {
			want = append(want, []string{a.dst, ts(a.first), ts(a.last), fmt.Sprint(a.n), fmt.Sprint(len(sortedUniq(a.devs))),
				fmt.Sprint(sortedUniq(a.models)), fmt.Sprint(a.out)})
		}
		cases = append(cases, savedQuery{name: "first_seen_destinations", file: "first_seen_destinations.sql",
			params: map[string]any{"now": now}, want: want,
			check: func(t *testing.T, got [][]string) {
				for _, r := range got {
					if r[0] == "old.example" {
						t.Errorf("old.example was first seen 10 days earlier but is reported")
					}
				}
			}})
	}

	// beacon_candidates, at two thresholds: only the perfect beacon scores >= 0.99.
	for _, minScore := range []float64{0, 0.99} {
		want := beaconWant(recs, 4, minScore)
		c := savedQuery{name: fmt.Sprintf("beacon_candidates/min_score=%g", minScore), file: "beacon_candidates.sql",
			params: map[string]any{"from": from, "to": to, "min_conns": 4, "min_score": minScore}, want: want}
		if minScore == 0 {
			c.check = func(t *testing.T, got [][]string) {
				if len(got) < 2 || got[0][2] != "beacon.example" || got[0][9] != "1.000" {
					t.Errorf("the 60 s beacon must rank first with score 1: %v", got)
				}
			}
		} else {
			c.check = func(t *testing.T, got [][]string) {
				if len(got) != 1 {
					t.Errorf("min_score %g: %d rows, want 1", minScore, len(got))
				}
			}
		}
		cases = append(cases, c)
	}

	// top_upload_destinations_per_model
	{
		type agg struct {
			model, dst, country, org string
			out                      uint64
			n                        int
			devs                     []string
		}
		m := map[[2]string]*agg{}
		for _, r := range recs {
			if !outbound(r) {
				continue
			}
			k := [2]string{r.GetEnrichment().GetDevice().GetModel(), dest(r)}
			a := m[k]
			if a == nil {
				a = &agg{model: k[0], dst: k[1], country: r.GetEnrichment().GetDstGeo().GetCountry(), org: r.GetEnrichment().GetDstGeo().GetOrg()}
				m[k] = a
			}
			a.out += r.BytesOut
			a.n++
			a.devs = append(a.devs, r.GetEnrichment().GetDevice().GetId())
		}
		var aggs []*agg
		for _, a := range m {
			aggs = append(aggs, a)
		}
		sort.Slice(aggs, func(i, j int) bool {
			if aggs[i].model != aggs[j].model {
				return aggs[i].model < aggs[j].model
			}
			if aggs[i].out != aggs[j].out {
				return aggs[i].out > aggs[j].out
			}
			return aggs[i].dst < aggs[j].dst
		})
		top := win.top
		var want [][]string
		per := map[string]int{}
		for _, a := range aggs {
			if per[a.model]++; per[a.model] > top {
				continue
			}
			want = append(want, []string{a.model, a.dst, a.country, a.org, fmt.Sprint(a.out), fmt.Sprint(a.n), fmt.Sprint(len(sortedUniq(a.devs)))})
		}
		cases = append(cases, savedQuery{name: "top_upload_destinations_per_model", file: "top_upload_destinations_per_model.sql",
			params: map[string]any{"from": from, "to": to, "top": top}, want: want})
	}
	return cases
}

// beaconWant scores every outbound (device, destination) pair the way
// beacon_candidates.sql documents it.
func beaconWant(recs []*flowpb.FlowRecord, minConns int, minScore float64) [][]string {
	type pair struct {
		dev, model, dst string
		times           []int64
		sizes           []float64
	}
	m := map[[2]string]*pair{}
	for _, r := range recs {
		if r.Direction != flowpb.Direction_DIRECTION_OUTBOUND {
			continue
		}
		k := [2]string{r.GetEnrichment().GetDevice().GetId(), dest(r)}
		p := m[k]
		if p == nil {
			p = &pair{dev: k[0], model: r.GetEnrichment().GetDevice().GetModel(), dst: k[1]}
			m[k] = p
		}
		p.times = append(p.times, r.FirstSeenNs)
		p.sizes = append(p.sizes, float64(r.BytesOut))
	}
	type scored struct {
		row   []string
		score float64
		conns int
		key   string
	}
	var res []scored
	for _, p := range m {
		if len(p.times) < minConns {
			continue
		}
		times := slices.Sorted(slices.Values(p.times))
		var deltas []float64
		for i := 1; i < len(times); i++ {
			if d := times[i] - times[i-1]; d > 0 {
				deltas = append(deltas, float64(d)/1e9)
			}
		}
		if len(deltas) < 3 {
			continue
		}
		score := func(v []float64) (med, mad, s float64) {
			med = quantileExact(v)
			dev := make([]float64, len(v))
			for i, x := range v {
				dev[i] = math.Abs(x - med)
			}
			mad = quantileExact(dev)
			if med > 0 {
				s = math.Max(0, (med-mad)/med)
			}
			return
		}
		mi, madi, tsScore := score(deltas)
		mb, _, dsScore := score(p.sizes)
		total := (tsScore + dsScore) / 2
		if total < minScore {
			continue
		}
		r3 := func(x float64) float64 { return math.Round(x*1000) / 1000 }
		res = append(res, scored{
			row: []string{p.dev, p.model, p.dst, fmt.Sprint(len(p.times)), fmtVal(r3(mi)), fmtVal(r3(madi)), fmtVal(mb),
				fmtVal(r3(tsScore)), fmtVal(r3(dsScore)), fmtVal(r3(total))},
			score: r3(total), conns: len(p.times), key: p.dev + "\x00" + p.dst,
		})
	}
	sort.Slice(res, func(i, j int) bool {
		if res[i].score != res[j].score {
			return res[i].score > res[j].score
		}
		if res[i].conns != res[j].conns {
			return res[i].conns > res[j].conns
		}
		return res[i].key < res[j].key
	})
	var want [][]string
	for _, s := range res {
		want = append(want, s.row)
	}
	return want
}
