package clickhouse

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/netip"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/sink/clickhouse/querytest"
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
// formatted as strings (querytest.FmtVal).
func runQuery(t *testing.T, conn driver.Conn, file string, params map[string]any) [][]string {
	t.Helper()
	sql, err := RenderQuery(loadSavedQuery(t, file), params)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return querytest.Query(t, conn, sql)
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
	for _, c := range savedQueryCases(recs, datasetWindow()) {
		t.Run(c.name, func(t *testing.T) {
			got := runQuery(t, conn, c.file, c.params)
			compareRows(t, c.name, got, c.want)
			if c.check != nil {
				c.check(t, got)
			}
		})
	}
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
