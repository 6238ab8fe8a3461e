package geo

import (
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/oschwald/maxminddb-golang/v2"
)

// Benchmarks compare DB.Lookup with maxminddb-golang's Lookup().Decode into
// a small struct, on the same random addresses in the same run:
//
//	go test -run '^$' -bench . -benchmem ./enrich/geo/
//
// "v4" addresses are uniformly random (the real databases cover most of the
// IPv4 space); "v6" addresses are random inside the database's own IPv6
// networks (uniform IPv6 would nearly always miss, which flatters the tree).

const benchAddrs = 1 << 20

type benchSet struct {
	db     *DB
	reader *maxminddb.Reader
	v4, v6 []netip.Addr
}

var (
	benchOnce  sync.Map // name -> *benchSet
	benchMutex sync.Mutex
)

func loadBench(b testing.TB, name string, files []string, uniformV4 bool) *benchSet {
	b.Helper()
	benchMutex.Lock()
	defer benchMutex.Unlock()
	if s, ok := benchOnce.Load(name); ok {
		return s.(*benchSet)
	}
	s := &benchSet{db: openFiles(b, files...)}
	r, err := maxminddb.Open(files[0])
	if err != nil {
		b.Fatal(err)
	}
	s.reader = r
	var nets4, nets6 []netip.Prefix
	for res := range r.Networks() {
		if p := res.Prefix(); p.Addr().Is4() {
			nets4 = append(nets4, p)
		} else {
			nets6 = append(nets6, p)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range benchAddrs {
		if uniformV4 {
			s.v4 = append(s.v4, randomV4(rng))
		} else {
			s.v4 = append(s.v4, randomIn(rng, nets4[rng.IntN(len(nets4))]))
		}
		s.v6 = append(s.v6, randomIn(rng, nets6[rng.IntN(len(nets6))]))
	}
	benchOnce.Store(name, s)
	return s
}

type countryRecord struct {
	CountryCode string `maxminddb:"country_code"`
}

type cityRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	City struct {
		Names struct {
			EN string `maxminddb:"en"`
		} `maxminddb:"names"`
	} `maxminddb:"city"`
	Location struct {
		Latitude  float64 `maxminddb:"latitude"`
		Longitude float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
}

func benchLookups(b *testing.B, s *benchSet, decode func(r maxminddb.Result) error) {
	for _, fam := range []string{"v4", "v6"} {
		addrs := s.v4
		if fam == "v6" {
			addrs = s.v6
		}
		b.Run(fam+"/flat", func(b *testing.B) {
			var g flowpb.Geo
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.db.Lookup(addrs[i&(benchAddrs-1)], &g)
			}
		})
		b.Run(fam+"/flat-pair-per-endpoint", func(b *testing.B) {
			var g1, g2 flowpb.Geo
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += 2 {
				s.db.LookupPair(addrs[i&(benchAddrs-1)], addrs[(i+1)&(benchAddrs-1)], &g1, &g2)
			}
		})
		b.Run(fam+"/flat-uncounted", func(b *testing.B) {
			var g flowpb.Geo
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.db.lookup(addrs[i&(benchAddrs-1)], &g)
			}
		})
		b.Run(fam+"/maxminddb", func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := decode(s.reader.Lookup(addrs[i&(benchAddrs-1)])); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLookupReal: iptoasn-country.mmdb merged with both ASN CSVs (our
// lookup answers country, AS number and organisation; the baseline decodes
// only the country from the MMDB).
func BenchmarkLookupReal(b *testing.B) {
	dir := filepath.Join(geoipData(b), "real")
	s := loadBench(b, "real", []string{filepath.Join(dir, "iptoasn-country.mmdb"),
		filepath.Join(dir, "asn-ipv4.csv.gz"), filepath.Join(dir, "asn-ipv6.csv.gz")}, true)
	var rec countryRecord
	benchLookups(b, s, func(r maxminddb.Result) error { return r.Decode(&rec) })
}

// BenchmarkLookupCity: MaxMind's GeoIP2-City-Test.mmdb (small, so both sides
// stay in cache: this isolates the per-lookup work).
func BenchmarkLookupCity(b *testing.B) {
	s := loadBench(b, "city", []string{filepath.Join(geoipData(b), "maxmind-test", "GeoIP2-City-Test.mmdb")}, false)
	var rec cityRecord
	benchLookups(b, s, func(r maxminddb.Result) error { return r.Decode(&rec) })
}

// BenchmarkLoad measures Open on the real databases and reports the heap
// the loaded DB keeps (after GC).
func BenchmarkLoad(b *testing.B) {
	dir := filepath.Join(geoipData(b), "real")
	for _, c := range []struct {
		name  string
		files []string
	}{
		{"country-mmdb", []string{filepath.Join(dir, "iptoasn-country.mmdb")}},
		{"asn-csv", []string{filepath.Join(dir, "asn-ipv4.csv.gz"), filepath.Join(dir, "asn-ipv6.csv.gz")}},
		{"merged", []string{filepath.Join(dir, "iptoasn-country.mmdb"), filepath.Join(dir, "asn-ipv4.csv.gz"), filepath.Join(dir, "asn-ipv6.csv.gz")}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var heap uint64
			for i := 0; i < b.N; i++ {
				var before, after runtime.MemStats
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&before)
				b.StartTimer()
				db := openFiles(b, c.files...)
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&after)
				runtime.KeepAlive(db)
				heap = after.HeapAlloc - before.HeapAlloc
				b.StartTimer()
			}
			b.ReportMetric(float64(heap), "heap-bytes")
		})
	}
}
