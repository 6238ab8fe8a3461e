// Package geo attaches GeoIP attributes (country, city, coordinates, AS
// number and organisation) and an address class to flow endpoints.
//
// MMDB readers walk a 32- to 128-level bit tree and decode a data record per
// lookup (150-300 ns, see perf_anchors.md §1). The pipeline needs an answer
// per flow endpoint at line rate, so Open walks every network of every
// configured file once, merges them (a City or Country database plus an ASN
// database or CSV) and the address classes into one flat range table per
// family, indexes it with a popcount trie (16-bit root, byte strides below)
// and keeps one interned 64-byte answer per distinct (result, class). A
// lookup is then two to four branch-free trie levels and the answer: a few
// cache misses, no allocation.
//
// Special-purpose addresses (RFC 1918, CGNAT, ULA, loopback, link-local,
// multicast, documentation, ...) and configured lab subnets are classified
// instead of looked up: databases have no meaningful location for them.
package geo

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
	"unsafe"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// DB is an immutable, flattened view of the configured databases. It is safe
// for concurrent use; reloading builds a new DB (see Reloader).
type DB struct {
	t4, t6    ptrie // answer ids; IPv4 keys in the top 32 bits
	n4, n6    int   // ranges of the merged tables, before classes are folded in
	answers   []answer
	countries []string // answer.country indexes this; [0] = ""
	strs      string   // city and organisation texts; answers hold spans of it
	nat64     []u128   // /96 prefixes; lo's low 32 bits are zero
	files     []FileStats
	offHeap   int // bytes mapped outside the Go heap for t4, t6 and answers (0: on the heap)
}

// FileStats describes one loaded file, for logs and the geo subcommand.
type FileStats struct {
	Path    string
	Format  string // "mmdb" or "csv"
	Layout  string // "geoip2", "flat" or "csv"
	Ranges4 int    // disjoint IPv4 ranges with data in this file
	Ranges6 int
}

// Stats describes a loaded DB.
type Stats struct {
	Files   []FileStats
	Ranges4 int // ranges of the merged IPv4 table (including gaps; before address classes are folded in)
	Ranges6 int
	Records int // distinct answers ((record, address class) pairs)
	Bytes   int // memory of the two tries and the answers (strings not counted)
	OffHeap int // of which mapped outside the Go heap, rounded up to 2 MiB pages (0: all on the heap)
}

// Stats returns the sizes of db's tables.
func (db *DB) Stats() Stats {
	return Stats{Files: db.files, Ranges4: db.n4, Ranges6: db.n6, Records: len(db.answers),
		Bytes: db.t4.bytes() + db.t6.bytes() + len(db.answers)*int(unsafe.Sizeof(answer{})), OffHeap: db.offHeap}
}

// Open loads and merges cfg.Databases. Errors are one line and name the file.
func Open(cfg Config) (*DB, error) {
	start := time.Now()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("geo: %w", err)
	}
	lab, _ := parsePrefixes(cfg.LabSubnets)
	nat, _ := parsePrefixes(cfg.NAT64Prefixes)
	db := &DB{}
	for _, p := range nat {
		db.nat64 = append(db.nat64, addrU128(p.Addr()))
	}
	in := newInterner()
	var layers4, layers6 [][]span
	var srcs []*source
	for _, path := range cfg.Databases {
		src, format, err := loadFile(path, cfg.mappingFor(path), cfg.Verify, in)
		if err != nil {
			return nil, fmt.Errorf("geo: %s: %s", path, oneLine(err))
		}
		if len(src.v4) == 0 && len(src.v6) == 0 {
			// A geo file that maps to nothing is a wrong file, a wrong
			// mapping or a broken tree; failing beats silently answering
			// nothing for every address.
			return nil, fmt.Errorf("geo: %s: no network carries a mapped attribute (%s layout; check mappings)", path, src.layout)
		}
		srcs = append(srcs, src)
		layers4 = append(layers4, src.v4)
		layers6 = append(layers6, src.v6)
		db.files = append(db.files, FileStats{Path: path, Format: format, Layout: src.layout, Ranges4: len(src.v4), Ranges6: len(src.v6)})
	}
	// Merge: for each elementary interval overlay the layers' records in
	// configuration order, then intern the combined answer.
	combine := func(ids []uint32) uint32 {
		var r record
		for i, id := range ids {
			if id != 0 {
				r = r.overlay(srcs[i].recs[id])
			}
		}
		return in.rec(r)
	}
	st4, r4 := merge(layers4, max32, combine)
	st6, r6 := merge(layers6, max128, combine)
	// Fold the address classes in: each range's answer is a (record,
	// class) pair, so one trie walk yields both.
	db.n4, db.n6 = len(st4), len(st6)
	keys := newAnswerSet()
	pair := func(rec, class uint32) uint32 { return keys.id(answerKey{rec, class}) }
	c4s, c4, c6s, c6 := classTables(lab)
	st4, r4 = overlay2(st4, r4, c4s, c4, pair)
	st6, r6 = overlay2(st6, r6, c6s, c6, pair)
	var err error
	if db.answers, db.countries, db.strs, err = compact(in.list, keys); err != nil {
		return nil, fmt.Errorf("geo: %w", err)
	}
	for i := range st4 {
		st4[i] = u128{st4[i].lo << 32, 0} // the trie keys on the top bits
	}
	db.t4 = buildPtrie(st4, r4, stride4)
	db.t6 = buildPtrie(st6, r6, stride6)
	db.moveOffHeap()
	loadSeconds.Set(time.Since(start).Seconds())
	entries.WithLabelValues("ipv4").Set(float64(db.n4))
	entries.WithLabelValues("ipv6").Set(float64(db.n6))
	entries.WithLabelValues("records").Set(float64(len(db.answers)))
	return db, nil
}

// mmdbMarker starts the metadata section at the end of every MMDB file.
var mmdbMarker = []byte("\xab\xcd\xefMaxMind.com")

// loadFile reads one file fully into memory (never mmap: a file replaced or
// truncated while mapped could fault the process) and parses it.
func loadFile(path string, m Mapping, verify bool, in *interner) (*source, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	isMMDB := strings.EqualFold(filepath.Ext(path), ".mmdb") ||
		bytes.Contains(data[max(0, len(data)-128*1024):], mmdbMarker)
	if isMMDB && len(m.CSVColumns) == 0 {
		src, err := loadMMDB(data, m, verify, in)
		return src, "mmdb", err
	}
	src, err := loadCSV(data, m, in)
	return src, "csv", err
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Lookup fills out with what the pipeline attaches to addr: the address
// class, and for public addresses the merged database answer. Every field of
// out is overwritten. IPv4-mapped IPv6 addresses are looked up as IPv4, and
// addresses inside a configured NAT64 prefix as their embedded IPv4 address.
// It does not allocate; it counts itself in exfilwatch_geo_lookups_total
// (one atomic add on a sharded counter).
func (db *DB) Lookup(addr netip.Addr, out *flowpb.Geo) {
	countLookup(addr)
	db.lookup(addr, out)
}

// LookupPair is Lookup for both endpoints of a flow. It reads the counter
// shard once for the two lookups, which saves one atomic add per endpoint
// (5-10 ns on the benchmark machine).
func (db *DB) LookupPair(src, dst netip.Addr, srcOut, dstOut *flowpb.Geo) {
	countLookups(src, 2)
	db.lookup2(src, dst, srcOut, dstOut)
}

// Tally counts one goroutine's lookups in a plain field and adds them to
// exfilwatch_geo_lookups_total every tallyFlush lookups: an atomic add is a
// full fence on x86, and one per lookup keeps the cache misses of
// consecutive lookups from overlapping (the counted Lookup measured 1.3-2.5x
// the uncounted one on random addresses). The metric lags by less than
// tallyFlush per goroutine. A Tally must not be shared between goroutines.
type Tally struct{ n uint64 }

const tallyFlush = 1024

// Flush adds what t has counted to the metric now.
func (t *Tally) Flush() {
	if t.n > 0 {
		lookupShards[0].n.Add(t.n)
		t.n = 0
	}
}

// LookupPairTallied is LookupPair counting in t instead of the shared counter.
func (db *DB) LookupPairTallied(src, dst netip.Addr, srcOut, dstOut *flowpb.Geo, t *Tally) {
	db.lookup2(src, dst, srcOut, dstOut)
	if t.n += 2; t.n >= tallyFlush {
		t.Flush()
	}
}

// lookup is Lookup without the metric (benchmarks report both). The
// address class is part of the answer, so this is one trie walk.
func (db *DB) lookup(addr netip.Addr, out *flowpb.Geo) {
	var id uint32 // answers[0]: UNSPECIFIED, no data
	if addr.Is4In6() {
		addr = addr.Unmap()
	}
	switch {
	case addr.Is4():
		id = db.t4.find4(be32(addr.As4()))
	case addr.Is6():
		hi, lo := words6(addr)
		id = db.t6.find6(hi, lo)
		for _, p := range db.nat64 { // as nat64ID, kept inline
			if hi == p.hi && lo>>32 == p.lo>>32 {
				id = db.t4.find4(uint32(lo))
			}
		}
	}
	db.fill(id, out)
	runtime.KeepAlive(db) // see offheap.go
}

// lookup2 is lookup for two addresses. Two addresses of the same family
// walk their trie together (find4x2, find6x2), so that the two chains of
// cache misses overlap; a mixed pair is looked up one by one.
func (db *DB) lookup2(a1, a2 netip.Addr, out1, out2 *flowpb.Geo) {
	if a1.Is4In6() {
		a1 = a1.Unmap()
	}
	if a2.Is4In6() {
		a2 = a2.Unmap()
	}
	var id1, id2 uint32
	switch {
	case a1.Is4() && a2.Is4():
		id1, id2 = db.t4.find4x2(be32(a1.As4()), be32(a2.As4()))
	case a1.Is6() && a2.Is6():
		hi1, lo1 := words6(a1)
		hi2, lo2 := words6(a2)
		id1, id2 = db.t6.find6x2(hi1, lo1, hi2, lo2)
		id1, id2 = db.nat64ID(hi1, lo1, id1), db.nat64ID(hi2, lo2, id2)
	default:
		db.lookup(a1, out1)
		db.lookup(a2, out2)
		return
	}
	db.fill(id1, out1)
	db.fill(id2, out2)
	runtime.KeepAlive(db)
}

// nat64ID returns id, or the IPv4 answer if hi:lo lies in a NAT64 prefix.
func (db *DB) nat64ID(hi, lo uint64, id uint32) uint32 {
	for _, p := range db.nat64 {
		if hi == p.hi && lo>>32 == p.lo>>32 {
			id = db.t4.find4(uint32(lo))
		}
	}
	return id
}

// fill copies answer id into out, overwriting every field.
func (db *DB) fill(id uint32, out *flowpb.Geo) {
	a := &db.answers[id]
	out.AddrClass = flowpb.AddrClass(a.class)
	out.Country = db.countries[a.country]
	out.City = db.str(a.city)
	out.Latitude = a.lat
	out.Longitude = a.lon
	out.Asn = a.asn
	out.Org = db.str(a.org)
}

// words6 returns IPv6 address a as two big-endian words. It goes through
// AsSlice, not As16: the compiler copies As16's array with one 16-byte move
// from two 8-byte stores, which store forwarding cannot serve (8 ns per
// address measured, against 1.5 ns this way).
func words6(a netip.Addr) (hi, lo uint64) {
	s := a.AsSlice()
	return be64(s[:8]), be64(s[8:16])
}

func be32(b [4]byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// lookupRaw returns the merged database answer for addr regardless of its
// class, without NAT64 handling (used by tests against other readers).
func (db *DB) lookupRaw(addr netip.Addr) record {
	addr = addr.Unmap()
	if b := addr.As16(); addr.Is6() && be64(b[:8]) == 0 && be64(b[8:])>>32 == 0 {
		addr = netip.AddrFrom4([4]byte(b[12:])) // ::a.b.c.d, as libmaxminddb resolves it
	}
	var id uint32
	if addr.Is4() {
		id = db.t4.find4(be32(addr.As4()))
	} else {
		id = db.t6.find6(words6(addr))
	}
	raw := db.answers[id].raw
	runtime.KeepAlive(db)
	return db.record(raw)
}
