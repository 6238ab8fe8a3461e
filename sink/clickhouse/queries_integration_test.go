package clickhouse

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// The saved queries run against a small lab history whose expected answers
// are computed here in Go from the same records.

var qT0 = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

type qDev struct{ id, model string }

var (
	devA = qDev{"dev-a", "Pixel 7a"}
	devB = qDev{"dev-b", "Galaxy S21"}
	devC = qDev{"dev-c", "Pixel 7a"}
)

var hostCountry = map[string]string{
	"beacon.example": "CN", "tracker.example": "CN", "chatty.example": "US", "ads.example": "US", "old.example": "DE",
}

func hostAddr(host string) []byte {
	h := fnv.New32a()
	h.Write([]byte(host))
	s := h.Sum32()
	return schema.AddrBytes(netip.AddrFrom4([4]byte{198, 51, byte(s >> 8), byte(s)}))
}

var qSeq int

func qFlow(d qDev, host string, t time.Time, out, in uint64, dir flowpb.Direction, ms ...*flowpb.IdentifierMatch) *flowpb.FlowRecord {
	qSeq++
	return &flowpb.FlowRecord{
		SchemaVersion: schema.Version, Id: fmt.Sprintf("q%04d", qSeq),
		FirstSeenNs: t.UnixNano(), LastSeenNs: t.UnixNano() + 1e9, ObservedNs: t.UnixNano() + 2e9,
		Gateway: "gw", Direction: dir, SrcAddr: addr("10.0.0.2"), DstAddr: hostAddr(host),
		SrcPort: 40000, DstPort: 443, Protocol: 6, IpVersion: 4, BytesOut: out, BytesIn: in,
		Tls: &flowpb.TLSInfo{Sni: host},
		Enrichment: &flowpb.Enrichment{
			Device:  &flowpb.Device{Id: d.id, Model: d.model},
			DstGeo:  &flowpb.Geo{Country: hostCountry[host], Org: "org-" + host, Asn: 64500},
			Matches: ms,
		},
	}
}

func match(owner qDev, typ, form string, clear bool) *flowpb.IdentifierMatch {
	return &flowpb.IdentifierMatch{DeviceId: owner.id, IdentifierType: typ, Form: form, Field: "http.path", Cleartext: clear}
}

func queryDataset() []*flowpb.FlowRecord {
	out := flowpb.Direction_DIRECTION_OUTBOUND
	var recs []*flowpb.FlowRecord
	// A perfect beacon: every 60 s, 500 bytes.
	for i := range 12 {
		recs = append(recs, qFlow(devA, "beacon.example", qT0.Add(time.Hour+time.Duration(i)*time.Minute), 500, 100, out))
	}
	// Irregular chatter.
	at := qT0.Add(2 * time.Hour)
	for i, gap := range []int{0, 5, 300, 17, 900, 42, 3, 600, 77, 1500, 8, 250} {
		at = at.Add(time.Duration(gap) * time.Second)
		recs = append(recs, qFlow(devB, "chatty.example", at, uint64(100+i*i*997), 50, out))
	}
	// Leaks.
	for i := range 3 {
		ms := []*flowpb.IdentifierMatch{match(devA, "imei", "sha1-hex-upper", true), match(devA, "wifi_mac", "raw", false)}
		if i == 1 {
			ms = append(ms, match(devC, "imei", "base64", false))
		}
		recs = append(recs, qFlow(devA, "tracker.example", qT0.Add(3*time.Hour+time.Duration(i)*time.Hour), 2000+uint64(i), 300, out, ms...))
	}
	for i := range 2 {
		recs = append(recs, qFlow(devB, "ads.example", qT0.Add(26*time.Hour+time.Duration(i)*time.Minute), 700, 70, out,
			match(devB, "imei", "md5", true)))
	}
	// A destination first contacted long before the week.
	recs = append(recs, qFlow(devC, "old.example", qT0.Add(-10*24*time.Hour), 50, 5, out))
	recs = append(recs, qFlow(devC, "old.example", qT0.Add(30*time.Hour), 60000, 5, out))
	recs = append(recs, qFlow(devC, "tracker.example", qT0.Add(31*time.Hour), 9000, 5, out))
	// Inbound traffic is not egress.
	recs = append(recs, qFlow(devC, "beacon.example", qT0.Add(32*time.Hour), 99999, 5, flowpb.Direction_DIRECTION_INBOUND))
	return recs
}

// runQuery renders a saved query for the server and returns its rows
// formatted as strings (DateTime as UTC text, floats with 3 decimals).
func runQuery(t *testing.T, conn driver.Conn, file string, params map[string]any) [][]string {
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
	sql, err := RenderQuery(string(src), params)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	rows, err := conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
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
			t.Fatalf("%s: scan: %v", file, err)
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = fmtVal(reflect.ValueOf(v).Elem().Interface())
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return out
}

func fmtVal(v any) string {
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

func ts(ns int64) string { return time.Unix(0, ns).UTC().Truncate(time.Second).Format(time.DateTime) }

func dest(r *flowpb.FlowRecord) string { return r.Tls.Sni }

func sortedUniq(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// quantileExact mirrors ClickHouse's documented medianExact: the element at
// floor(n * 0.5) of the sorted values (the upper median for even n).
func quantileExact(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func compareRows(t *testing.T, name string, got, want [][]string) {
	t.Helper()
	if len(want) == 0 {
		t.Fatalf("%s: test data yields no expected rows", name)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %d rows:\n%s\nwant %d rows:\n%s", name, len(got), dump(got), len(want), dump(want))
	}
}

func dump(rows [][]string) string {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString("  " + strings.Join(r, " | ") + "\n")
	}
	return b.String()
}

func TestSavedQueries(t *testing.T) {
	cfg := testConfig(t)
	w := openWriter(t, cfg)
	recs := queryDataset()
	ctx := context.Background()
	if err := w.WriteFlows(ctx, recs); err != nil {
		t.Fatal(err)
	}
	conn, err := ch.Open(&ch.Options{Addr: []string{cfg.Addr}, Auth: ch.Auth{Database: cfg.Database, Username: cfg.Username}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	from, to := qT0.Add(-30*24*time.Hour), qT0.Add(8*24*time.Hour)
	outbound := func(r *flowpb.FlowRecord) bool { return r.Direction == flowpb.Direction_DIRECTION_OUTBOUND }

	t.Run("leaks_by_device_and_type", func(t *testing.T) {
		type agg struct {
			n, clear            int
			flows, dests, forms []string
			senders             []string
			first, last         int64
			owner, typ          string
		}
		m := map[[2]string]*agg{}
		for _, r := range recs {
			for _, x := range r.Enrichment.Matches {
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
				a.senders = append(a.senders, r.Enrichment.Device.Id)
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
		compareRows(t, "leaks", runQuery(t, conn, "leaks_by_device_and_type.sql", map[string]any{"from": from, "to": to}), want)
	})

	t.Run("egress_to_country", func(t *testing.T) {
		type agg struct {
			dev, model, dst, org string
			n                    int
			out, in, matches     uint64
			first, last          int64
		}
		m := map[[2]string]*agg{}
		for _, r := range recs {
			if !outbound(r) || r.Enrichment.DstGeo.Country != "CN" {
				continue
			}
			k := [2]string{r.Enrichment.Device.Id, dest(r)}
			a := m[k]
			if a == nil {
				a = &agg{dev: k[0], model: r.Enrichment.Device.Model, dst: k[1], org: r.Enrichment.DstGeo.Org, first: math.MaxInt64}
				m[k] = a
			}
			a.n++
			a.out += r.BytesOut
			a.in += r.BytesIn
			a.matches += uint64(len(r.Enrichment.Matches))
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
			want = append(want, []string{a.dev, a.model, a.dst, a.org, "64500", fmt.Sprint(a.n), fmt.Sprint(a.out), fmt.Sprint(a.in),
				fmt.Sprint(a.matches), ts(a.first), ts(a.last)})
		}
		compareRows(t, "egress", runQuery(t, conn, "egress_to_country.sql", map[string]any{"country": "CN", "from": from, "to": to}), want)
	})

	t.Run("first_seen_destinations", func(t *testing.T) {
		now := qT0.Add(7 * 24 * time.Hour)
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
			a.devs = append(a.devs, r.Enrichment.Device.Id)
			a.models = append(a.models, r.Enrichment.Device.Model)
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
		got := runQuery(t, conn, "first_seen_destinations.sql", map[string]any{"now": now})
		compareRows(t, "first_seen", got, want)
		for _, r := range got {
			if r[0] == "old.example" {
				t.Errorf("old.example was first seen 10 days earlier but is reported")
			}
		}
	})

	t.Run("beacon_candidates", func(t *testing.T) {
		type pair struct {
			dev, model, dst string
			times           []int64
			sizes           []float64
		}
		m := map[[2]string]*pair{}
		for _, r := range recs {
			if !outbound(r) {
				continue
			}
			k := [2]string{r.Enrichment.Device.Id, dest(r)}
			p := m[k]
			if p == nil {
				p = &pair{dev: k[0], model: r.Enrichment.Device.Model, dst: k[1]}
				m[k] = p
			}
			p.times = append(p.times, r.FirstSeenNs)
			p.sizes = append(p.sizes, float64(r.BytesOut))
		}
		const minConns, minScore = 4, 0.0
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
			slices.Sort(p.times)
			var deltas []float64
			for i := 1; i < len(p.times); i++ {
				if d := p.times[i] - p.times[i-1]; d > 0 {
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
		got := runQuery(t, conn, "beacon_candidates.sql", map[string]any{"from": from, "to": to, "min_conns": minConns, "min_score": minScore})
		compareRows(t, "beacon", got, want)
		if len(got) < 2 || got[0][2] != "beacon.example" || got[0][9] != "1.000" {
			t.Errorf("the 60 s beacon must rank first with score 1: %v", got)
		}
		// The threshold filters: only the perfect beacon scores >= 0.99.
		if hi := runQuery(t, conn, "beacon_candidates.sql", map[string]any{"from": from, "to": to, "min_conns": minConns, "min_score": 0.99}); len(hi) != 1 {
			t.Errorf("min_score 0.99: %d rows, want 1", len(hi))
		}
	})

	t.Run("top_upload_destinations_per_model", func(t *testing.T) {
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
			k := [2]string{r.Enrichment.Device.Model, dest(r)}
			a := m[k]
			if a == nil {
				a = &agg{model: k[0], dst: k[1], country: r.Enrichment.DstGeo.Country, org: r.Enrichment.DstGeo.Org}
				m[k] = a
			}
			a.out += r.BytesOut
			a.n++
			a.devs = append(a.devs, r.Enrichment.Device.Id)
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
		const top = 2
		var want [][]string
		per := map[string]int{}
		for _, a := range aggs {
			if per[a.model]++; per[a.model] > top {
				continue
			}
			want = append(want, []string{a.model, a.dst, a.country, a.org, fmt.Sprint(a.out), fmt.Sprint(a.n), fmt.Sprint(len(sortedUniq(a.devs)))})
		}
		compareRows(t, "top_upload", runQuery(t, conn, "top_upload_destinations_per_model.sql", map[string]any{"from": from, "to": to, "top": top}), want)
	})
}

func TestRenderQuery(t *testing.T) {
	got, err := RenderQuery("SELECT {a:String}, {t:DateTime}, {n:UInt32}, {f:Float64}", map[string]any{
		"a": "it's", "t": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "n": 7, "f": 0.5})
	want := `SELECT 'it\'s', toDateTime('2026-01-02 03:04:05'), 7, 0.5`
	if err != nil || got != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	if _, err := RenderQuery("SELECT {a:String}", nil); err == nil {
		t.Error("missing parameter accepted")
	}
	if _, err := RenderQuery("SELECT {n:UInt32}", map[string]any{"n": "-1"}); err == nil {
		t.Error("negative UInt accepted")
	}
	if _, err := RenderQuery("SELECT {n:UInt32}", map[string]any{"n": "1; DROP TABLE x"}); err == nil {
		t.Error("non-numeric accepted")
	}
}
