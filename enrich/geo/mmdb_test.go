package geo

import (
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/oschwald/maxminddb-golang/v2"
)

// mmdblookup prints doubles with %f; allow for that rounding.
const mmdblookupCoordTol = 5e-7 + 1e-12

// networksOf lists a database's networks with data, as maxminddb-golang
// iterates them (aliases included when aliases is set).
func networksOf(t *testing.T, r *maxminddb.Reader, aliases bool) []netip.Prefix {
	t.Helper()
	var opts []maxminddb.NetworksOption
	if aliases {
		opts = append(opts, maxminddb.IncludeAliasedNetworks())
	}
	var out []netip.Prefix
	for res := range r.Networks(opts...) {
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		out = append(out, res.Prefix())
	}
	return out
}

// testAddrs builds the address set for one database: first and last address
// of every network, the 6to4 (2002::/16) and IPv4-mapped forms of IPv4
// networks, and nRandom seeded random addresses (half inside random
// networks, a quarter uniform IPv4, a quarter uniform IPv6).
func testAddrs(t *testing.T, r *maxminddb.Reader, nRandom int, seed uint64) (boundaries, random []netip.Addr) {
	nets := networksOf(t, r, true)
	for _, p := range nets {
		boundaries = append(boundaries, p.Addr(), lastAddr(p))
		if a := p.Addr(); a.Is4() && r.Metadata.IPVersion == 6 {
			v4 := a.As4()
			boundaries = append(boundaries,
				netip.AddrFrom16([16]byte{0x20, 0x02, v4[0], v4[1], v4[2], v4[3], 15: 1}),
				netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]}))
		}
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range nRandom {
		switch i % 4 {
		case 0, 1:
			random = append(random, randomIn(rng, nets[rng.IntN(len(nets))]))
		case 2:
			random = append(random, randomV4(rng))
		case 3:
			random = append(random, randomV6(rng))
		}
	}
	return boundaries, random
}

// TestMatchesMMDBLookup compares the flattened tables with libmaxminddb's
// mmdblookup (every network's first and last address, alias forms, and 1,000
// seeded random addresses per file) and with maxminddb-golang's own
// Lookup().Decode for 100,000 further seeded random addresses per file:
// mmdblookup costs a process per address, so it covers the boundaries and a
// sample, and the in-process reader covers the bulk.
func TestMatchesMMDBLookup(t *testing.T) {
	dir := filepath.Join(geoipData(t), "maxmind-test")
	for i, name := range []string{
		"GeoIP2-City-Test.mmdb", "GeoIP2-Country-Test.mmdb", "GeoLite2-City-Test.mmdb",
		"GeoLite2-Country-Test.mmdb", "GeoLite2-ASN-Test.mmdb", "GeoIP2-ISP-Test.mmdb",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			db := openFiles(t, path)
			if l := db.files[0].Layout; l != layoutGeoIP2 {
				t.Fatalf("layout detected as %q, want geoip2", l)
			}
			r, err := maxminddb.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			boundaries, sample := testAddrs(t, r, 1000, uint64(i))
			// Every boundary goes through maxminddb-golang; mmdblookup sees
			// all of them for the small databases, a seeded sample of 2,000
			// for the ISP one (20,000 boundaries, 1 ms per process).
			compareAddrsWithReader(t, db, r, expectGeoIP2, boundaries)
			checked := boundaries
			if len(checked) > 4000 {
				rng := rand.New(rand.NewPCG(uint64(i), 2))
				checked = make([]netip.Addr, 2000)
				for k := range checked {
					checked[k] = boundaries[rng.IntN(len(boundaries))]
				}
			}
			addrs := append(checked, sample...)
			ref := mmdblookupAll(t, path, addrs)
			nonEmpty := 0
			for j, a := range addrs {
				exp := expectGeoIP2(ref[j])
				got := gotOf(db.lookupRaw(a))
				if !sameAnswer(got, exp, mmdblookupCoordTol) {
					t.Errorf("%s: got %v, mmdblookup says %v", a, got, exp)
				}
				if exp != (want{}) {
					nonEmpty++
				}
			}
			if nonEmpty < len(addrs)/10 {
				t.Fatalf("only %d of %d reference answers carry data; the test would prove little", nonEmpty, len(addrs))
			}
			compareWithReader(t, db, r, expectGeoIP2, 100_000, uint64(100+i))
		})
	}
}

// compareWithReader checks n seeded random addresses against
// maxminddb-golang's Lookup().Decode into a generic map.
func compareWithReader(t *testing.T, db *DB, r *maxminddb.Reader, expect func(map[string]any) want, n int, seed uint64) {
	t.Helper()
	_, random := testAddrs(t, r, n, seed)
	compareAddrsWithReader(t, db, r, expect, random)
}

func compareAddrsWithReader(t *testing.T, db *DB, r *maxminddb.Reader, expect func(map[string]any) want, random []netip.Addr) {
	t.Helper()
	bad := 0
	for _, a := range random {
		var m map[string]any
		if err := r.Lookup(a).Decode(&m); err != nil {
			t.Fatalf("maxminddb %s: %v", a, err)
		}
		exp := expect(m)
		if got := gotOf(db.lookupRaw(a)); !sameAnswer(got, exp, 0) {
			if bad++; bad <= 10 {
				t.Errorf("%s: got %v, maxminddb-golang says %v", a, got, exp)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d addresses differ", bad, len(random))
	}
}

// TestRealCountryDB checks the full-size flat-layout iptoasn-country.mmdb:
// every network's first and last address against maxminddb-golang, 100,000
// random addresses likewise, and 1,000 random addresses against mmdblookup.
func TestRealCountryDB(t *testing.T) {
	path := filepath.Join(geoipData(t), "real", "iptoasn-country.mmdb")
	db := openFiles(t, path)
	if l := db.files[0].Layout; l != layoutFlat {
		t.Fatalf("layout detected as %q, want flat", l)
	}
	r, err := maxminddb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	nets := networksOf(t, r, false)
	if len(nets) < 100_000 {
		t.Fatalf("only %d networks; not the real database?", len(nets))
	}
	bad := 0
	for _, p := range nets {
		for _, a := range []netip.Addr{p.Addr(), lastAddr(p)} {
			var m map[string]any
			if err := r.Lookup(a).Decode(&m); err != nil {
				t.Fatal(err)
			}
			exp := expectFlat(m)
			if exp.country == "" {
				t.Fatalf("%s: network %s without country_code", a, p)
			}
			if got := gotOf(db.lookupRaw(a)); got != exp {
				if bad++; bad <= 10 {
					t.Errorf("%s: got %v, maxminddb-golang says %v", a, got, exp)
				}
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d boundary addresses differ", bad)
	}
	compareWithReader(t, db, r, expectFlat, 100_000, 7)

	_, sample := testAddrs(t, r, 1000, 8)
	ref := mmdblookupAll(t, path, sample)
	for j, a := range sample {
		if got, exp := gotOf(db.lookupRaw(a)), expectFlat(ref[j]); got != exp {
			t.Errorf("%s: got %v, mmdblookup says %v", a, got, exp)
		}
	}
}

// TestCorruptMMDB: the deliberately broken search tree must fail to load
// with an error naming the file, not load garbage.
func TestCorruptMMDB(t *testing.T) {
	path := filepath.Join(geoipData(t), "maxmind-test", "bad-libmaxminddb-corrupt-search-tree.mmdb")
	cfg := DefaultConfig()
	cfg.Databases = []string{path}
	_, err := Open(cfg)
	if err == nil {
		t.Fatal("corrupt database loaded without error")
	}
	assertOneLineNaming(t, err, path)
}
