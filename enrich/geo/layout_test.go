package geo

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

type entry struct {
	net string
	val mmdbtype.DataType
}

// writeMMDB builds a small database with mmdbwriter (MaxMind's writer, an
// implementation independent of the reader under test).
func writeMMDB(t *testing.T, name string, opts mmdbwriter.Options, entries ...entry) string {
	t.Helper()
	tree, err := mmdbwriter.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		_, n, err := net.ParseCIDR(e.net)
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(n, e.val); err != nil {
			t.Fatalf("insert %s: %v", e.net, err)
		}
	}
	path := filepath.Join(t.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func lookup(db *DB, s string) *flowpb.Geo {
	var g flowpb.Geo
	db.Lookup(netip.MustParseAddr(s), &g)
	return &g
}

func geoEq(g *flowpb.Geo, country, city string, lat, lon float64, asn uint32, org string) bool {
	return g.Country == country && g.City == city && g.Latitude == lat && g.Longitude == lon && g.Asn == asn && g.Org == org
}

func TestFlatLayouts(t *testing.T) {
	cases := []struct {
		name, dbType  string
		rec           mmdbtype.Map
		mapping       *Mapping
		wantLayout    string
		country, city string
		lat, lon      float64
		asn           uint32
		org           string
	}{{
		name: "ip-location-db city", dbType: "dbip-city",
		rec: mmdbtype.Map{"city": mmdbtype.String("Mountain View"), "country_code": mmdbtype.String("US"),
			"latitude": mmdbtype.Float32(37.5), "longitude": mmdbtype.Float32(-122.25), "state1": mmdbtype.String("California")},
		wantLayout: layoutFlat, country: "US", city: "Mountain View", lat: 37.5, lon: -122.25,
	}, {
		name: "ip-location-db asn numeric", dbType: "asn",
		rec:        mmdbtype.Map{"asn": mmdbtype.Uint32(15169), "as_name": mmdbtype.String("Google LLC")},
		wantLayout: layoutFlat, asn: 15169, org: "Google LLC",
	}, {
		name: "ipinfo asn string", dbType: "ipinfo asn.mmdb",
		rec:        mmdbtype.Map{"asn": mmdbtype.String("AS15169"), "name": mmdbtype.String("Google LLC"), "domain": mmdbtype.String("google.com")},
		wantLayout: layoutFlat, asn: 15169, org: "Google LLC",
	}, {
		// IPinfo Lite: "country" is the name, country_code the code.
		name: "ipinfo lite", dbType: "ipinfo lite.mmdb",
		rec: mmdbtype.Map{"asn": mmdbtype.String("AS15169"), "as_name": mmdbtype.String("Google LLC"),
			"country": mmdbtype.String("United States"), "country_code": mmdbtype.String("US")},
		wantLayout: layoutFlat, country: "US", asn: 15169, org: "Google LLC",
	}, {
		// Older IPinfo country files: "country" is the code.
		name: "ipinfo country", dbType: "ipinfo country.mmdb",
		rec:        mmdbtype.Map{"country": mmdbtype.String("DE"), "country_name": mmdbtype.String("Germany")},
		wantLayout: layoutFlat, country: "DE",
	}, {
		name: "geoip2 shape without MaxMind type", dbType: "my-city",
		rec: mmdbtype.Map{
			"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String("FR")},
			"city":               mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String("Paris"), "fr": mmdbtype.String("Paris")}},
			"location":           mmdbtype.Map{"latitude": mmdbtype.Float64(48.8566), "longitude": mmdbtype.Float64(2.3522)},
		},
		wantLayout: layoutGeoIP2, country: "FR", city: "Paris", lat: 48.8566, lon: 2.3522,
	}, {
		name: "configured field paths", dbType: "custom",
		rec: mmdbtype.Map{
			"geo": mmdbtype.Map{"cc": mmdbtype.String("DE"), "town": mmdbtype.String("Berlin"),
				"pos": mmdbtype.Slice{mmdbtype.Float64(52.5), mmdbtype.Float64(13.375)}},
			"net": mmdbtype.Map{"number": mmdbtype.Uint64(3320), "owner": mmdbtype.String("Deutsche Telekom AG")},
		},
		mapping: &Mapping{Layout: "flat", Country: []string{"geo.cc"}, City: []string{"geo.town"},
			Latitude: []string{"geo.pos.0"}, Longitude: []string{"geo.pos.1"}, ASN: []string{"net.number"}, Org: []string{"net.owner"}},
		wantLayout: layoutFlat, country: "DE", city: "Berlin", lat: 52.5, lon: 13.375, asn: 3320, org: "Deutsche Telekom AG",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeMMDB(t, "x.mmdb", mmdbwriter.Options{DatabaseType: c.dbType},
				entry{"8.8.8.0/24", c.rec}, entry{"2001:4860::/32", c.rec})
			cfg := DefaultConfig()
			cfg.Databases = []string{path}
			if c.mapping != nil {
				cfg.Mappings = map[string]Mapping{"x.mmdb": *c.mapping}
			}
			db, err := Open(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if l := db.files[0].Layout; l != c.wantLayout {
				t.Errorf("layout %q, want %q", l, c.wantLayout)
			}
			for _, ip := range []string{"8.8.8.8", "8.8.8.0", "8.8.8.255", "::ffff:8.8.8.8", "2001:4860::1"} {
				g := lookup(db, ip)
				if !geoEq(g, c.country, c.city, c.lat, c.lon, c.asn, c.org) || g.AddrClass != flowpb.AddrClass_ADDR_CLASS_PUBLIC {
					t.Errorf("%s: got %v", ip, g)
				}
			}
			for _, ip := range []string{"8.8.9.0", "8.8.7.255", "2001:4861::"} {
				if g := lookup(db, ip); !geoEq(g, "", "", 0, 0, 0, "") {
					t.Errorf("%s outside the data: got %v", ip, g)
				}
			}
		})
	}
}

// TestIPv4InIPv6 covers the places IPv4 data appears in an IPv6 database:
// ::a.b.c.d (the IPv4 subtree), the ::ffff:0:0/96 and 2002::/16 aliases,
// and IPv4-mapped lookups when the file has no aliases.
func TestIPv4InIPv6(t *testing.T) {
	rec := mmdbtype.Map{"country_code": mmdbtype.String("NL")}
	for _, aliased := range []bool{true, false} {
		path := writeMMDB(t, "v6.mmdb", mmdbwriter.Options{DatabaseType: "country", DisableIPv4Aliasing: !aliased},
			entry{"5.6.7.0/24", rec})
		db := openFiles(t, path)
		for _, ip := range []string{"5.6.7.8", "::ffff:5.6.7.8"} {
			if g := lookup(db, ip); g.Country != "NL" {
				t.Errorf("aliased=%v %s: got %v", aliased, ip, g)
			}
		}
		if r := db.lookupRaw(netip.MustParseAddr("::5.6.7.8")); r.country != "NL" {
			t.Errorf("aliased=%v ::5.6.7.8 (IPv4 subtree): got %+v", aliased, r)
		}
		sixToFour := db.lookupRaw(netip.MustParseAddr("2002:506:708::1")).country
		if want := map[bool]string{true: "NL", false: ""}[aliased]; sixToFour != want {
			t.Errorf("aliased=%v 2002:506:708::1: got %q, want %q", aliased, sixToFour, want)
		}
		if g := lookup(db, "5.6.8.0"); g.Country != "" {
			t.Errorf("5.6.8.0: got %v", g)
		}
	}
	// An IPv4-only database answers IPv4 and mapped addresses, no IPv6.
	path := writeMMDB(t, "v4.mmdb", mmdbwriter.Options{DatabaseType: "country", IPVersion: 4}, entry{"5.6.7.0/24", rec})
	db := openFiles(t, path)
	if g := lookup(db, "::ffff:5.6.7.1"); g.Country != "NL" {
		t.Errorf("IPv4-only db, mapped address: got %v", g)
	}
	if st := db.Stats(); st.Ranges6 != 1 {
		t.Errorf("IPv4-only db has %d IPv6 ranges, want 1 (the empty one)", st.Ranges6)
	}
}

// TestAdjacentAndNested checks range coalescing and precedence: adjacent
// networks with equal data collapse into one range, different data does not,
// a nested network splits its parent, and a later file overrides earlier
// ones attribute by attribute.
func TestAdjacentAndNested(t *testing.T) {
	us := mmdbtype.Map{"country_code": mmdbtype.String("US")}
	ca := mmdbtype.Map{"country_code": mmdbtype.String("CA")}
	city := writeMMDB(t, "c.mmdb", mmdbwriter.Options{DatabaseType: "country"},
		entry{"9.9.0.0/24", us}, entry{"9.9.1.0/24", us}, // equal, adjacent
		entry{"9.9.2.0/24", us}, entry{"9.9.3.0/24", ca}, // different, adjacent
		entry{"20.0.0.0/8", us}, entry{"20.1.2.0/24", ca}, // nested
	)
	db := openFiles(t, city)
	rangesIn := func(db *DB, lo, hi string) int {
		a, b := addrU128(netip.MustParseAddr(lo)), addrU128(netip.MustParseAddr(hi))
		n := 0
		db.t4.walk(func(st u128, _ uint32) {
			if s := st.hi >> 32; s >= a.lo && s <= b.lo {
				n++
			}
		})
		runtime.KeepAlive(db) // the trie is off the Go heap
		return n
	}
	// 9.9.0.0-9.9.2.255 US, 9.9.3.0/24 CA, then the gap from 9.9.4.0.
	if n := rangesIn(db, "9.9.0.0", "9.9.255.255"); n != 3 {
		t.Errorf("9.9.0.0/16 holds %d ranges, want 3 (US 9.9.0-2, CA 9.9.3, empty)", n)
	}
	for ip, want := range map[string]string{"9.9.0.255": "US", "9.9.1.0": "US", "9.9.2.255": "US", "9.9.3.0": "CA",
		"9.9.4.0": "", "20.1.1.255": "US", "20.1.2.0": "CA", "20.1.2.255": "CA", "20.1.3.0": "US", "20.255.255.255": "US"} {
		if g := lookup(db, ip); g.Country != want {
			t.Errorf("%s: country %q, want %q", ip, g.Country, want)
		}
	}

	// Overlay: the ASN file adds AS data; a second country file overrides
	// the country only where it has data.
	asn := writeMMDB(t, "a.mmdb", mmdbwriter.Options{DatabaseType: "GeoLite2-ASN"},
		entry{"9.9.1.128/25", mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(64500), "autonomous_system_organization": mmdbtype.String("Example")}})
	override := writeMMDB(t, "o.mmdb", mmdbwriter.Options{DatabaseType: "country"}, entry{"9.9.1.192/26", ca})
	db = openFiles(t, city, asn, override)
	for ip, w := range map[string]struct {
		country string
		asn     uint32
	}{"9.9.1.127": {"US", 0}, "9.9.1.128": {"US", 64500}, "9.9.1.191": {"US", 64500}, "9.9.1.192": {"CA", 64500}, "9.9.2.0": {"US", 0}} {
		if g := lookup(db, ip); g.Country != w.country || g.Asn != w.asn {
			t.Errorf("%s: got %v, want %v", ip, g, w)
		}
	}
}

func TestStartupErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.mmdb")
	cfg := DefaultConfig()
	cfg.Databases = []string{missing}
	_, err := Open(cfg)
	if err == nil {
		t.Fatal("missing file: no error")
	}
	assertOneLineNaming(t, err, missing)

	garbage := filepath.Join(dir, "garbage.mmdb")
	if err := os.WriteFile(garbage, []byte("this is not\na database\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Databases = []string{garbage}
	if _, err = Open(cfg); err == nil {
		t.Fatal("garbage file: no error")
	}
	assertOneLineNaming(t, err, garbage)

	good := writeMMDB(t, "good.mmdb", mmdbwriter.Options{DatabaseType: "country"}, entry{"5.6.7.0/24", mmdbtype.Map{"country_code": mmdbtype.String("NL")}})
	data, _ := os.ReadFile(good)
	trunc := filepath.Join(dir, "trunc.mmdb")
	if err := os.WriteFile(trunc, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Databases = []string{trunc}
	if _, err = Open(cfg); err == nil {
		t.Fatal("truncated file: no error")
	}
	assertOneLineNaming(t, err, trunc)

	badCSV := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(badCSV, []byte("1.0.0.0,1.0.0.255,13335,x\n1.0.1.0,nope,1,y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.Databases = []string{badCSV}
	if _, err = Open(cfg); err == nil {
		t.Fatal("bad CSV: no error")
	}
	assertOneLineNaming(t, err, badCSV)
}
