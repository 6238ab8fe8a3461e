package enrich

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/enrich/geo"
	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/enrich/inventory"
	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/sim"
)

type fixture struct {
	e   *Enricher
	lab *sim.Lab
}

func newFixture(tb testing.TB, devices int) fixture {
	tb.Helper()
	dir := tb.TempDir()
	lab := sim.NewLab(devices, 5)
	write := func(name string, fn func(io.Writer) error) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			tb.Fatal(err)
		}
		if err := fn(f); err != nil {
			tb.Fatal(err)
		}
		f.Close()
		return p
	}
	inv := write("inventory.yaml", lab.WriteInventory)
	city := write("city.mmdb", func(w io.Writer) error { return sim.WriteGeoDB(w, false) })
	asn := write("asn.mmdb", func(w io.Writer) error { return sim.WriteGeoDB(w, true) })
	gc := geo.DefaultConfig()
	gc.Databases = []string{city, asn}
	gc.LabSubnets = []string{"10.20.0.0/16"}
	ic := inventory.DefaultConfig()
	ic.Path = inv
	idc := ident.DefaultConfig()
	idc.Secret = "test-secret-0123456789"
	e, err := New(gc, ic, idc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	return fixture{e, lab}
}

func record(d *sim.Device, dst string, payload string) *flowpb.FlowRecord {
	rec := &flowpb.FlowRecord{
		SchemaVersion: schema.Version, Protocol: 6, SrcPort: 40000, DstPort: 80, IpVersion: 4,
		SrcAddr: schema.AddrBytes(d.IP), DstAddr: schema.AddrBytes(netip.MustParseAddr(dst)),
		SrcMac: append([]byte(nil), d.MAC[:]...), BytesOut: 600, PacketsOut: 5, BytesIn: 1200, PacketsIn: 4,
	}
	if payload != "" {
		rec.Snippets = []*flowpb.Snippet{{Direction: flowpb.Direction_DIRECTION_OUTBOUND, Data: []byte(payload)}}
	}
	return rec
}

// The enricher attaches geo of both ends, the device (by MAC) and the
// identifier matches, whose owner may be another device (a contact canary).
func TestEnrichRecord(t *testing.T) {
	fx := newFixture(t, 10)
	w := fx.e.NewWorker()
	d, other := fx.lab.Devices[3], fx.lab.Devices[7]
	sum := sha1.Sum([]byte(d.IMEI))
	req := "GET /c?u=" + strings.ToUpper(hex.EncodeToString(sum[:])) + "&n=" + strings.TrimPrefix(other.CanaryNumber, "+") + " HTTP/1.1\r\nHost: x\r\n\r\n"
	rec := record(d, "36.110.10.10", req)
	w.Enrich(rec)
	en := rec.Enrichment
	if en.GetDstGeo().GetCountry() != "CN" || en.GetDstGeo().GetAsn() != 4134 || en.GetSrcGeo().GetAddrClass() != flowpb.AddrClass_ADDR_CLASS_LAB {
		t.Fatalf("geo: src %v dst %v", en.GetSrcGeo(), en.GetDstGeo())
	}
	if en.GetDevice().GetId() != d.ID || en.GetDevice().GetModel() != d.Model {
		t.Fatalf("device: %v", en.GetDevice())
	}
	if !en.Cleartext {
		t.Fatal("plain HTTP snippet not marked cleartext")
	}
	got := map[string]bool{}
	for _, m := range en.Matches {
		got[m.DeviceId+"/"+m.IdentifierType] = true
	}
	if !got[d.ID+"/imei"] || !got[other.ID+"/canary"] {
		t.Fatalf("matches %v", en.Matches)
	}
	// Unknown MAC and IP: no device, no crash.
	stranger := &sim.Device{IP: netip.MustParseAddr("10.20.9.9")}
	rec2 := record(stranger, "8.8.8.8", "")
	w.Enrich(rec2)
	if rec2.Enrichment.Device != nil || rec2.Enrichment.GetDstGeo().GetCountry() != "US" {
		t.Fatalf("stranger: %v", rec2.Enrichment)
	}
}

func benchEnrich(b *testing.B, payload func(d *sim.Device) string) {
	fx := newFixture(b, 1000)
	recs := make([]*flowpb.FlowRecord, 256)
	dsts := []string{"142.250.74.36", "157.240.1.35", "36.110.10.10", "128.199.10.10"}
	for i := range recs {
		d := fx.lab.Devices[i%len(fx.lab.Devices)]
		recs[i] = record(d, dsts[i%len(dsts)], payload(d))
	}
	runEnrichBench(b, fx.e.NewWorker(), recs)
}

// runEnrichBench enriches recs round-robin, after one warming pass that
// allocates the reusable sub-messages: one record at a time
// (prefetch=0), and as the enrich stage does, each group of 16 records
// prefetched first (prefetch=16: their GeoIP lookups in one batch).
func runEnrichBench(b *testing.B, w *Worker, recs []*flowpb.FlowRecord) {
	bytes := 0
	for _, r := range recs {
		for _, sn := range r.Snippets {
			bytes += len(sn.Data)
		}
		w.Enrich(r)
	}
	for _, group := range []int{0, 16} {
		b.Run(fmt.Sprintf("prefetch=%d", group), func(b *testing.B) {
			if group > 0 && len(recs)%group != 0 {
				b.Fatalf("%d records are not a multiple of the group", len(recs))
			}
			b.SetBytes(int64(bytes / len(recs)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % len(recs)
				if group > 0 && j%group == 0 {
					w.Prefetch(recs[j : j+group])
				}
				w.Enrich(recs[j])
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkEnrichMetadata: records without payload (geo + attribution).
func BenchmarkEnrichMetadata(b *testing.B) {
	benchEnrich(b, func(*sim.Device) string { return "" })
}

// BenchmarkEnrichSnippet1KB: records with a 1 KB HTTP request snippet that
// carries no identifier (the common case the scanner must be fast on).
func BenchmarkEnrichSnippet1KB(b *testing.B) {
	benchEnrich(b, snippet1KB)
}

// snippet1KB is a 1 KB HTTP request (headers, a cookie, a JSON body) with
// no identifier in it.
func snippet1KB(*sim.Device) string {
	var s strings.Builder
	s.WriteString("POST /v2/events?app=com.example.game&session=8f14e45fceea167a5a36dedd4bea2543 HTTP/1.1\r\nHost: api.example.com\r\n")
	s.WriteString("User-Agent: Dalvik/2.1.0 (Linux; U; Android 13; Pixel 7 Build/TQ3A.230805.001)\r\nAccept: application/json\r\n")
	s.WriteString("Cookie: sid=a9993e364706816aba3e25717850c26c9cd0d89d; pref=dark; consent=1\r\nContent-Type: application/json\r\n\r\n")
	for s.Len() < 1024 {
		fmt.Fprintf(&s, `{"event":"screen_view","ts":%d,"screen":"home","items":[1,2,3]}`, 1700000000+s.Len())
	}
	return s.String()[:1024]
}
