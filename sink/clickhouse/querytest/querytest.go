// Package querytest computes, in Go and from the flow records alone, the
// answers the saved analyst queries in deploy/clickhouse/queries should
// give, so that tests can run the queries on a server (18.16, or a current
// engine via chdb) over any dataset (hand-built records, real captures, the
// pipeline's own output) and compare. It is a testing helper: it never
// reads the queries' SQL to compute an answer.
package querytest

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// Case is one run of a saved query with the answer computed in Go.
type Case struct {
	Name, File string
	Params     map[string]any
	Want       [][]string
	Check      func(t *testing.T, got [][]string) // extra assertions, optional
}

// Window holds the parameters the cases pass: the time-range queries see
// the records in [From, To) (whole seconds); Now ends the first-seen week
// (which scans all history before Now); Country is the egress one; Top is
// the destinations per model; BeaconMinScores are the beacon_candidates
// thresholds to run (nil: 0 and 0.99).
type Window struct {
	From, To, Now   time.Time
	Country         string
	Top             int
	BeaconMinScores []float64
}

// Dir is deploy/clickhouse/queries in the source tree.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "deploy", "clickhouse", "queries")
}

// Files lists the saved queries (*.sql in Dir), sorted.
func Files(t testing.TB) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(Dir(), "*.sql"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no saved queries in %s: %v", Dir(), err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	sort.Strings(m)
	return m
}

var paramRE = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*):([A-Za-z0-9_()]+)\}`)

// Load reads a saved query and checks its header documents every parameter.
func Load(t testing.TB, file string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(Dir(), file))
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

// within keeps the records whose stored time (first_seen, whole seconds)
// lies in [from, to).
func within(recs []*flowpb.FlowRecord, from, to time.Time) []*flowpb.FlowRecord {
	var out []*flowpb.FlowRecord
	for _, r := range recs {
		if r.FirstSeenNs >= from.Truncate(time.Second).UnixNano() && r.FirstSeenNs < to.Truncate(time.Second).UnixNano() {
			out = append(out, r)
		}
	}
	return out
}

// Cases covers every file in deploy/clickhouse/queries for recs: the
// time-range queries over the records in [win.From, win.To), the first-seen
// one over all of them.
func Cases(all []*flowpb.FlowRecord, win Window) []Case {
	from, to := win.From, win.To
	recs := within(all, from, to)
	outbound := func(r *flowpb.FlowRecord) bool { return r.Direction == flowpb.Direction_DIRECTION_OUTBOUND }
	var cases []Case

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
				a.dests = append(a.dests, Dest(r))
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
			d := SortedUniq(a.dests)
			want = append(want, []string{a.owner, a.typ, fmt.Sprint(a.n), fmt.Sprint(len(SortedUniq(a.flows))), fmt.Sprint(len(d)),
				fmt.Sprint(a.clear), fmt.Sprint(SortedUniq(a.forms)), fmt.Sprint(SortedUniq(a.senders)), fmt.Sprint(d[:min(10, len(d))]),
				TS(a.first), TS(a.last)})
		}
		cases = append(cases, Case{Name: "leaks_by_device_and_type", File: "leaks_by_device_and_type.sql",
			Params: map[string]any{"from": from, "to": to}, Want: want})
	}

	// egress_to_country
	{
		type agg struct {
			dev, model, dst  string
			orgs             []string
			asns             []uint32
			n                int
			out, in, matches uint64
			first, last      int64
		}
		m := map[[2]string]*agg{}
		for _, r := range recs {
			if !outbound(r) || r.GetEnrichment().GetDstGeo().GetCountry() != win.Country {
				continue
			}
			k := [2]string{r.GetEnrichment().GetDevice().GetId(), Dest(r)}
			a := m[k]
			if a == nil {
				a = &agg{dev: k[0], model: r.GetEnrichment().GetDevice().GetModel(), dst: k[1], first: math.MaxInt64}
				m[k] = a
			}
			a.orgs = append(a.orgs, r.GetEnrichment().GetDstGeo().GetOrg())
			a.asns = append(a.asns, r.GetEnrichment().GetDstGeo().GetAsn())
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
			want = append(want, []string{a.dev, a.model, a.dst, fmt.Sprint(SortedUniq(a.orgs)), fmt.Sprint(slices.Compact(slices.Sorted(slices.Values(a.asns)))), fmt.Sprint(a.n), fmt.Sprint(a.out), fmt.Sprint(a.in),
				fmt.Sprint(a.matches), TS(a.first), TS(a.last)})
		}
		cases = append(cases, Case{Name: "egress_to_country", File: "egress_to_country.sql",
			Params: map[string]any{"country": win.Country, "from": from, "to": to}, Want: want})
	}

	// first_seen_destinations
	{
		now := win.Now
		type agg struct {
			dst          string
			first, last  int64
			n            int
			devs, models []string
			out          uint64
		}
		m := map[string]*agg{}
		for _, r := range all {
			if !outbound(r) || r.FirstSeenNs >= now.Truncate(time.Second).UnixNano() {
				continue
			}
			a := m[Dest(r)]
			if a == nil {
				a = &agg{dst: Dest(r), first: math.MaxInt64}
				m[Dest(r)] = a
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
			want = append(want, []string{a.dst, TS(a.first), TS(a.last), fmt.Sprint(a.n), fmt.Sprint(len(SortedUniq(a.devs))),
				fmt.Sprint(SortedUniq(a.models)), fmt.Sprint(a.out)})
		}
		cases = append(cases, Case{Name: "first_seen_destinations", File: "first_seen_destinations.sql",
			Params: map[string]any{"now": now}, Want: want})
	}

	// beacon_candidates, at each threshold (queryDataset: only its perfect beacon scores >= 0.99).
	minScores := win.BeaconMinScores
	if minScores == nil {
		minScores = []float64{0, 0.99}
	}
	for _, minScore := range minScores {
		want := BeaconWant(recs, 4, minScore)
		c := Case{Name: fmt.Sprintf("beacon_candidates/min_score=%g", minScore), File: "beacon_candidates.sql",
			Params: map[string]any{"from": from, "to": to, "min_conns": 4, "min_score": minScore}, Want: want}
		cases = append(cases, c)
	}

	// top_upload_destinations_per_model
	{
		type agg struct {
			model, dst      string
			countries, orgs []string
			out             uint64
			n               int
			devs            []string
		}
		m := map[[2]string]*agg{}
		for _, r := range recs {
			if !outbound(r) {
				continue
			}
			k := [2]string{r.GetEnrichment().GetDevice().GetModel(), Dest(r)}
			a := m[k]
			if a == nil {
				a = &agg{model: k[0], dst: k[1]}
				m[k] = a
			}
			a.countries = append(a.countries, r.GetEnrichment().GetDstGeo().GetCountry())
			a.orgs = append(a.orgs, r.GetEnrichment().GetDstGeo().GetOrg())
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
		top := win.Top
		var want [][]string
		per := map[string]int{}
		for _, a := range aggs {
			if per[a.model]++; per[a.model] > top {
				continue
			}
			want = append(want, []string{a.model, a.dst, fmt.Sprint(SortedUniq(a.countries)), fmt.Sprint(SortedUniq(a.orgs)), fmt.Sprint(a.out), fmt.Sprint(a.n), fmt.Sprint(len(SortedUniq(a.devs)))})
		}
		cases = append(cases, Case{Name: "top_upload_destinations_per_model", File: "top_upload_destinations_per_model.sql",
			Params: map[string]any{"from": from, "to": to, "top": top}, Want: want})
	}
	return cases
}

// BeaconWant scores every outbound (device, destination) pair the way
// beacon_candidates.sql documents it.
func BeaconWant(recs []*flowpb.FlowRecord, minConns int, minScore float64) [][]string {
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
		k := [2]string{r.GetEnrichment().GetDevice().GetId(), Dest(r)}
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
			med = QuantileExact(v)
			dev := make([]float64, len(v))
			for i, x := range v {
				dev[i] = math.Abs(x - med)
			}
			mad = QuantileExact(dev)
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
			row: []string{p.dev, p.model, p.dst, fmt.Sprint(len(p.times)), FmtVal(r3(mi)), FmtVal(r3(madi)), FmtVal(mb),
				FmtVal(r3(tsScore)), FmtVal(r3(dsScore)), FmtVal(r3(total))},
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

// Query runs sql on conn and returns its rows formatted with FmtVal.
func Query(t testing.TB, conn driver.Conn, sql string) [][]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
	defer rows.Close()
	var out [][]string
	cts := rows.ColumnTypes()
	for rows.Next() {
		vals := make([]any, len(cts))
		for i, ct := range cts {
			vals[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(vals...); err != nil {
			t.Fatalf("scan: %v", err)
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = FmtVal(reflect.ValueOf(v).Elem().Interface())
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// FmtVal formats a scanned value the way the tests compare them: DateTime
// as UTC text, floats with 3 decimals.
func FmtVal(v any) string {
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format(time.DateTime)
	case float64:
		return fmt.Sprintf("%.3f", x)
	case float32:
		return fmt.Sprintf("%.3f", x)
	}
	return fmt.Sprint(v)
}

// TS is a nanosecond time as the DateTime text the server prints.
func TS(ns int64) string { return time.Unix(0, ns).UTC().Truncate(time.Second).Format(time.DateTime) }

// Dest is what the saved queries group by: the host the sink stores (TLS
// SNI, else HTTP host, else DNS name), else the remote address the way
// IPv6NumToString prints it.
func Dest(r *flowpb.FlowRecord) string {
	for _, h := range []string{r.GetTls().GetSni(), r.GetHttp().GetHost(), r.GetDns().GetQueryName()} {
		if h != "" {
			return h
		}
	}
	return netip.AddrFrom16([16]byte(r.DstAddr)).String()
}

// SortedUniq returns the distinct values of s, sorted.
func SortedUniq(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// QuantileExact mirrors ClickHouse's documented medianExact: the element at
// floor(n * 0.5) of the sorted values (the upper median for even n).
func QuantileExact(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// CompareRows fails t when got differs from want, and when want is empty
// (a dataset that yields no rows tests nothing).
func CompareRows(t testing.TB, name string, got, want [][]string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: test data yields no expected rows", name)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %d rows:\n%s\nwant %d rows:\n%s", name, len(got), Dump(got), len(want), Dump(want))
	}
}

// Dump prints rows one a line, columns separated by " | ".
func Dump(rows [][]string) string {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString("  " + strings.Join(r, " | ") + "\n")
	}
	return b.String()
}
