package geo

import (
	"compress/gzip"
	"encoding/csv"
	"io"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// csvRow is one line of an ASN range file as the test reads it.
type csvRow struct {
	first, last *big.Int
	f, l        [2]uint64 // the same as big-endian (hi, lo) words, for the scan
	asn         uint32
	org         string
}

func words(n *big.Int) [2]uint64 {
	b := n.FillBytes(make([]byte, 16))
	var w [2]uint64
	for i := range 16 {
		w[i/8] = w[i/8]<<8 | uint64(b[i])
	}
	return w
}

func cmpWords(a, b [2]uint64) int {
	switch {
	case a[0] < b[0]:
		return -1
	case a[0] > b[0]:
		return 1
	case a[1] < b[1]:
		return -1
	case a[1] > b[1]:
		return 1
	}
	return 0
}

func readCSVRows(t *testing.T, path string) []csvRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	cr := csv.NewReader(zr)
	var rows []csvRow
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseUint(rec[2], 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		first, last := ipInt(netip.MustParseAddr(rec[0])), ipInt(netip.MustParseAddr(rec[1]))
		rows = append(rows, csvRow{first: first, last: last, f: words(first), l: words(last), asn: uint32(n), org: rec[3]})
	}
	return rows
}

func ipInt(a netip.Addr) *big.Int { return new(big.Int).SetBytes(a.AsSlice()) }

func intIP(n *big.Int, v4 bool) netip.Addr {
	size := 16
	if v4 {
		size = 4
	}
	if n.Sign() < 0 || n.BitLen() > size*8 {
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(n.FillBytes(make([]byte, size)))
	return a
}

// scanCSV is the reference: a linear scan over all rows. Where ranges
// overlap, the row with the greatest first address wins (the more specific
// one for nested ranges), then the one with the smallest last address, then
// the later line.
func scanCSV(rows []csvRow, a netip.Addr) want {
	x := words(ipInt(a))
	best := -1
	for i := range rows {
		r := &rows[i]
		if cmpWords(r.f, x) > 0 || cmpWords(r.l, x) < 0 {
			continue
		}
		if best >= 0 {
			b := &rows[best]
			if c := cmpWords(r.f, b.f); c < 0 || (c == 0 && cmpWords(r.l, b.l) > 0) {
				continue
			}
		}
		best = i
	}
	if best < 0 {
		return want{}
	}
	return want{asn: rows[best].asn, org: rows[best].org}
}

// csvAddrs picks addresses around and inside random rows plus uniform ones.
func csvAddrs(rng *rand.Rand, rows []csvRow, v4 bool, n int) []netip.Addr {
	var out []netip.Addr
	one := big.NewInt(1)
	for len(out) < n {
		r := rows[rng.IntN(len(rows))]
		span := new(big.Int).Sub(r.last, r.first)
		span.Add(span, one)
		off := new(big.Int).Lsh(new(big.Int).SetUint64(rng.Uint64()), 64)
		off.Or(off, new(big.Int).SetUint64(rng.Uint64()))
		inside := new(big.Int).Add(r.first, off.Mod(off, span))
		for _, x := range []*big.Int{r.first, r.last, new(big.Int).Sub(r.first, one), new(big.Int).Add(r.last, one), inside} {
			if a := intIP(x, v4); a.IsValid() {
				out = append(out, a)
			}
		}
		if v4 {
			out = append(out, randomV4(rng))
		} else {
			out = append(out, randomIn(rng, netip.MustParsePrefix("2000::/3")))
		}
	}
	return out
}

// TestRealASNCSV checks the real RouteViews/DB-IP ASN CSV files against a
// linear scan, including the known overlapping pair around 215.0.0.0, and
// the merge of the country MMDB with both CSVs against the separate tables.
func TestRealASNCSV(t *testing.T) {
	dir := filepath.Join(geoipData(t), "real")
	v4file, v6file := filepath.Join(dir, "asn-ipv4.csv.gz"), filepath.Join(dir, "asn-ipv6.csv.gz")
	asnDB := openFiles(t, v4file, v6file)
	rng := rand.New(rand.NewPCG(42, 42))
	for _, c := range []struct {
		file string
		v4   bool
		n    int
	}{{v4file, true, 1200}, {v6file, false, 1200}} {
		rows := readCSVRows(t, c.file)
		addrs := csvAddrs(rng, rows, c.v4, c.n)
		if c.v4 {
			addrs = append(addrs, netip.MustParseAddr("214.255.255.255"), netip.MustParseAddr("215.0.0.0"),
				netip.MustParseAddr("215.0.255.255"), netip.MustParseAddr("215.1.0.0"), netip.MustParseAddr("215.1.3.255"))
		}
		hits := 0
		for _, a := range addrs {
			exp := scanCSV(rows, a)
			if got := gotOf(asnDB.lookupRaw(a)); got != exp {
				t.Errorf("%s: got %v, linear scan of %s says %v", a, got, filepath.Base(c.file), exp)
			}
			if exp.asn != 0 {
				hits++
			}
		}
		if hits < len(addrs)/4 {
			t.Errorf("%s: only %d of %d addresses hit a range", c.file, hits, len(addrs))
		}
	}

	// Merge: country from the MMDB, AS number and organisation from the CSVs.
	countryFile := filepath.Join(dir, "iptoasn-country.mmdb")
	countryDB := openFiles(t, countryFile)
	merged := openFiles(t, countryFile, v4file, v6file)
	for i := range 100_000 {
		var a netip.Addr
		if i%2 == 0 {
			a = randomV4(rng)
		} else {
			a = randomIn(rng, netip.MustParsePrefix("2000::/4"))
		}
		exp := gotOf(countryDB.lookupRaw(a))
		asn := gotOf(asnDB.lookupRaw(a))
		exp.asn, exp.org = asn.asn, asn.org
		if got := gotOf(merged.lookupRaw(a)); got != exp {
			t.Fatalf("%s: merged %v, separate tables %v", a, got, exp)
		}
	}
}
