package enrich

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/exfilwatch/exfilwatch/enrich/geo"
	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/enrich/inventory"
	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/sim"
)

// The sizing for the whole stage: 10,000 devices with every
// identifier form indexed, the real GeoIP data (country mmdb + both ASN CSVs)
// and destinations spread over the whole address space, so GeoIP and index
// probes miss the caches as they would on a gateway. The 1,000-device
// benchmarks in enrich_test.go use the simulator's small GeoIP databases
// and four destinations: they isolate the stage's own overhead.

func newRealFixture(b *testing.B, devices int) fixture {
	b.Helper()
	real := filepath.Join(testenv.SharedTestdata(b), "geoip", "real")
	dir := b.TempDir()
	lab := sim.NewLab(devices, 5)
	inv := filepath.Join(dir, "inventory.yaml")
	f, err := os.Create(inv)
	if err != nil {
		b.Fatal(err)
	}
	if err := lab.WriteInventory(f); err != nil {
		b.Fatal(err)
	}
	f.Close()
	gc := geo.DefaultConfig()
	gc.Databases = []string{filepath.Join(real, "iptoasn-country.mmdb"),
		filepath.Join(real, "asn-ipv4.csv.gz"), filepath.Join(real, "asn-ipv6.csv.gz")}
	gc.LabSubnets = []string{"10.20.0.0/16"}
	ic := inventory.DefaultConfig()
	ic.Path = inv
	idc := ident.DefaultConfig()
	idc.Secret = "bench-secret-0123456789"
	e, err := New(gc, ic, idc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	return fixture{e, lab}
}

func benchEnrichReal(b *testing.B, payload func(d *sim.Device) string) {
	fx := newRealFixture(b, 10000)
	w := fx.e.NewWorker()
	// 4096 records cycling over random public IPv4 (3 of 4) and IPv6
	// destinations, each device's MAC: ~1 MB of distinct records, more
	// than L2.
	r := rand.New(rand.NewPCG(7, 11))
	recs := make([]*flowpb.FlowRecord, 4096)
	for i := range recs {
		d := fx.lab.Devices[r.IntN(len(fx.lab.Devices))]
		var dst netip.Addr
		if i%4 == 3 {
			var a [16]byte
			a[0], a[1] = 0x20|byte(r.IntN(2)), byte(r.IntN(256))
			for j := 2; j < 16; j++ {
				a[j] = byte(r.IntN(256))
			}
			dst = netip.AddrFrom16(a)
		} else {
			dst = netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
		}
		recs[i] = record(d, dst.String(), payload(d))
	}
	runEnrichBench(b, w, recs)
}

// BenchmarkEnrichRealMetadata: records without payload, 10,000 devices, real
// GeoIP, random destinations.
func BenchmarkEnrichRealMetadata(b *testing.B) {
	benchEnrichReal(b, func(*sim.Device) string { return "" })
}

// BenchmarkEnrichRealSnippet1KB: the same with the 1 KB HTTP request
// snippet of BenchmarkEnrichSnippet1KB (headers, a cookie, JSON body).
func BenchmarkEnrichRealSnippet1KB(b *testing.B) {
	benchEnrichReal(b, snippet1KB)
}
