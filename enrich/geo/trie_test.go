package geo

import (
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"unsafe"
)

// refFind is the answer of a flat table by binary search over its starts
// (independent of the trie): the id of the last start <= key.
func refFind(starts []u128, ids []uint32, key u128) uint32 {
	i := sort.Search(len(starts), func(i int) bool { return key.less(starts[i]) })
	return ids[i-1]
}

// flatTable sorts and dedups starts, adds 0, and gives adjacent ranges
// different ids (as merge and overlay2 produce).
func flatTable(rng *rand.Rand, starts []u128) ([]u128, []uint32) {
	starts = append(starts, u128{})
	slices.SortFunc(starts, u128.cmp)
	starts = slices.Compact(starts)
	ids := make([]uint32, len(starts))
	for i := range ids {
		for ids[i] == 0 || (i > 0 && ids[i] == ids[i-1]) {
			ids[i] = 1 + rng.Uint32N(40)
		}
	}
	return starts, ids
}

func v4Key(ip string) u128 { return u128{addrU128(netip.MustParseAddr(ip)).lo << 32, 0} }
func v6Key(ip string) u128 { return addrU128(netip.MustParseAddr(ip)) }

// probes returns every start, its neighbours, the ends of the space and
// random keys; width is 32 (keys in the top bits) or 128.
func probes(rng *rand.Rand, starts []u128, width uint) []u128 {
	one := shl128(1, 128-width)
	last := u128{^uint64(0), ^uint64(0)}.prefix(width)
	add := func(a, b u128) u128 { // a+b, wrapping
		lo, c := addCarry(a.lo, b.lo)
		return u128{a.hi + b.hi + c, lo}
	}
	sub := func(a, b u128) u128 {
		lo := a.lo - b.lo
		var br uint64
		if a.lo < b.lo {
			br = 1
		}
		return u128{a.hi - b.hi - br, lo}
	}
	out := []u128{{}, last}
	for _, s := range starts {
		out = append(out, s, add(s, one).prefix(width), sub(s, one).prefix(width))
	}
	for range 2000 {
		out = append(out, u128{rng.Uint64(), rng.Uint64()}.prefix(width))
		// and near a random start, inside its /24 or /48 neighbourhood
		s := starts[rng.IntN(len(starts))]
		out = append(out, s.or(u128{rng.Uint64() >> 40, rng.Uint64()}.prefix(width)))
	}
	return out
}

func addCarry(a, b uint64) (uint64, uint64) {
	s := a + b
	if s < a {
		return s, 1
	}
	return s, 0
}

func checkTrie(t *testing.T, name string, rng *rand.Rand, starts []u128, ids []uint32, v6 bool) {
	t.Helper()
	st := stride4
	width := uint(32)
	if v6 {
		st, width = stride6, 128
	}
	tr := buildPtrie(starts, ids, st)
	bad := 0
	ps := probes(rng, starts, width)
	for i, k := range ps {
		var got, got2 uint32
		if v6 {
			// The paired walk, with a neighbouring probe as the partner
			// (either side), must agree with the single one.
			got = tr.find6(k.hi, k.lo)
			o := ps[(i+1)%len(ps)]
			var x, y uint32
			if i%2 == 0 {
				got2, x = tr.find6x2(k.hi, k.lo, o.hi, o.lo)
			} else {
				y, got2 = tr.find6x2(o.hi, o.lo, k.hi, k.lo)
				x = y
			}
			if x != tr.find6(o.hi, o.lo) {
				got2 = ^uint32(0) // the partner's answer is wrong
			}
		} else {
			// Both IPv4 third-level walks, whichever the table chose,
			// the second one paired (with a neighbouring probe, which
			// must get its own answer).
			got = tr.find4(uint32(k.hi >> 32))
			tr.deep4 = !tr.deep4
			o := ps[(i+1)%len(ps)]
			var x uint32
			got2, x = tr.find4x2(uint32(k.hi>>32), uint32(o.hi>>32))
			if want := tr.find4(uint32(o.hi >> 32)); x != want {
				got2 = ^uint32(0)
			}
			tr.deep4 = !tr.deep4
		}
		if want := refFind(starts, ids, k); got != want || got2 != want {
			if bad++; bad <= 5 {
				t.Errorf("%s: key %016x%016x: trie %d (other/paired walk %d), table %d", name, k.hi, k.lo, got, got2, want)
			}
		}
	}
	// The batch walks: groups of 1..lanes consecutive probes (so every
	// lane count and every lane position is used), each lane checked.
	for i, n := 0, 1; i < len(ps); i, n = i+n, n%lanes+1 {
		var hi, lo [lanes]uint64
		var ip, got [lanes]uint32
		var ans [1]answer // what the walk prefetches from (any address would do)
		m := min(n, len(ps)-i)
		for k := range m {
			hi[k], lo[k], ip[k] = ps[i+k].hi, ps[i+k].lo, uint32(ps[i+k].hi>>32)
		}
		for pass := range 2 { // IPv4: both third-level walks; IPv6: the Go and the assembly levels
			if v6 {
				if pass == 1 && !hasWalkAsm {
					break
				}
				walkAsm = pass == 1
				tr.find6n(&hi, &lo, &got, m, unsafe.Pointer(&ans))
				walkAsm = hasWalkAsm
			} else {
				tr.find4n(&ip, &got, m)
				tr.deep4 = !tr.deep4
			}
			for k := range m {
				if want := refFind(starts, ids, ps[i+k]); got[k] != want {
					if bad++; bad <= 5 {
						t.Errorf("%s: key %016x%016x in lane %d of %d (pass %d): batch walk %d, table %d", name, ps[i+k].hi, ps[i+k].lo, k, m, pass, got[k], want)
					}
				}
			}
		}
	}
	// The whole-round assembly walk: groups of 1..chunkLen probes, cycling
	// through the counts so that each is used (and the prime step shifts
	// the groups against the probe list).
	for i, n := 0, 1; v6 && hasWalkAsm && i < len(ps); i, n = i+n, (n+12)%chunkLen+1 {
		var hi, lo [chunkLen]uint64
		var got [chunkLen]uint32
		var ans [1]answer
		m := min(n, len(ps)-i)
		for k := range m {
			hi[k], lo[k] = ps[i+k].hi, ps[i+k].lo
		}
		tr.find6all(&hi, &lo, &got, m, unsafe.Pointer(&ans))
		for k := range m {
			if want := refFind(starts, ids, ps[i+k]); got[k] != want {
				if bad++; bad <= 5 {
					t.Errorf("%s: key %016x%016x in lane %d of %d: round walk %d, table %d", name, ps[i+k].hi, ps[i+k].lo, k, m, got[k], want)
				}
			}
		}
	}
	var ws []u128
	var wi []uint32
	tr.walk(func(s u128, id uint32) { ws, wi = append(ws, s), append(wi, id) })
	if !slices.Equal(ws, starts) || !slices.Equal(wi, ids) {
		t.Errorf("%s: walk gives %d ranges, built from %d (or different ones)", name, len(ws), len(starts))
	}
}

// TestPtrieEdges: hand-made tables at the index's edges: the whole space in
// one range, ranges at 0 and at the last address, boundaries on and next to
// every stride (/16, /24, /32, /40, /48 and below /64), ranges spanning
// many root buckets, runs of empty buckets.
func TestPtrieEdges(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	v4 := map[string][]string{
		"whole space":         nil,
		"last address alone":  {"255.255.255.255"},
		"first address alone": {"0.0.0.1"},
		"root bucket edges":   {"1.2.0.0", "1.3.0.0", "1.4.0.0", "255.255.0.0"},
		"spanning buckets":    {"1.2.3.4", "9.0.0.0", "9.0.0.1", "200.1.0.0"},
		"inside one /24":      {"8.8.8.0", "8.8.8.1", "8.8.8.127", "8.8.8.128", "8.8.8.255", "8.8.9.0"},
		"/24 edges":           {"10.0.0.0", "10.0.1.0", "10.0.255.0", "10.1.0.0"},
		"last /24 split":      {"255.255.255.0", "255.255.255.1", "255.255.255.254", "255.255.255.255"},
		"word edges":          {"3.3.63.0", "3.3.64.0", "3.3.127.0", "3.3.128.0", "3.3.191.255", "3.3.192.0"},
		"root word edges":     {"0.63.0.0", "0.64.0.0", "63.255.0.0", "64.0.0.0", "64.0.0.1"},
	}
	for name, ips := range v4 {
		var st []u128
		for _, ip := range ips {
			st = append(st, v4Key(ip))
		}
		s, ids := flatTable(rng, st)
		checkTrie(t, "v4 "+name, rng, s, ids, false)
	}
	v6 := map[string][]string{
		"::/0":                nil,
		"last address alone":  {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		"first address alone": {"::1"},
		"2000::/3":            {"2000::", "4000::"},
		"stride edges": {"2001:db8::", "2001:db9::", "2001:db8:100::", "2001:db8:101::", "2001:db8:1:1::",
			"2001:db8:1:2::", "2001:db8:1:2:8000::", "2001:db8:1:2::1", "2001:db8:1:2::ff", "2001:db8:1:2::100"},
		"spanning buckets": {"2a00:1::", "2c0f:ffff::", "3000::1"},
		"sub-/64 deep":     {"2600::", "2600::1:0:0:0", "2600::8000:0:0:1", "2600::ffff:ffff:ffff:ffff", "2600:0:0:1::"},
		"last /48 split":   {"ffff:ffff:ffff::", "ffff:ffff:ffff:ffff::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"},
	}
	for name, ips := range v6 {
		var st []u128
		for _, ip := range ips {
			st = append(st, v6Key(ip))
		}
		s, ids := flatTable(rng, st)
		checkTrie(t, "v6 "+name, rng, s, ids, true)
	}
}

// TestPtrieDenseV6: a /32 with wideMin or more range starts gets a 16-bit
// node (straight to /48); boundaries inside it at and below /48, and next
// to it, still resolve.
func TestPtrieDenseV6(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	base := v6Key("2a02:1234::")
	var st []u128
	for i := range wideMin + 50 {
		bits := []uint{40, 44, 48, 52, 56, 64, 80, 128}[i%8]
		st = append(st, base.or(u128{rng.Uint64() >> 32, rng.Uint64()}).prefix(bits))
	}
	st = append(st, v6Key("2a02:1233:ffff::"), v6Key("2a02:1235::"), v6Key("2a02:1234:ffff:ffff::1"))
	s, ids := flatTable(rng, st)
	checkTrie(t, "dense /32", rng, s, ids, true)
	tr := buildPtrie(s, ids, stride6)
	e := tr.step(tr.root, 0x2a02)
	if e = tr.step(e, 0x1234); e&(childFlag|wideFlag) != childFlag|wideFlag {
		t.Fatalf("2a02:1234::/32 entry %#x: not a 16-bit node", e)
	}
	if e := tr.step(tr.step(tr.root, 0x2a02), 0x1235); e&wideFlag != 0 {
		t.Fatalf("2a02:1235::/32 (one start) entry %#x is a 16-bit node", e)
	}
}

// TestPtrieRandom: random tables with boundaries of every granularity,
// clustered so that nodes at every level fill up.
func TestPtrieRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for round := range 20 {
		var st []u128
		hubs := []uint64{rng.Uint64(), rng.Uint64(), rng.Uint64()}
		n := 1 + rng.IntN(3000)
		for range n {
			bits := []uint{1, 8, 12, 16, 17, 20, 23, 24, 25, 28, 31, 32}[rng.IntN(12)]
			a := u128{(hubs[rng.IntN(3)]&^(^uint64(0)>>12) | rng.Uint64()>>12) & 0xffffffff00000000, 0}
			st = append(st, a.prefix(bits))
		}
		s, ids := flatTable(rng, st)
		checkTrie(t, "v4 random", rng, s, ids, false)

		st = st[:0]
		for range n {
			bits := []uint{3, 16, 20, 29, 32, 33, 40, 44, 47, 48, 56, 64, 65, 96, 127, 128}[rng.IntN(16)]
			a := u128{hubs[rng.IntN(3)]&^(^uint64(0)>>16) | rng.Uint64()>>(16+uint(rng.IntN(32))), rng.Uint64()}
			st = append(st, a.prefix(bits))
		}
		s, ids = flatTable(rng, st)
		checkTrie(t, "v6 random", rng, s, ids, true)
		if t.Failed() {
			t.Fatalf("round %d", round)
		}
	}
}

// TestOverlay2 checks the class fold against a per-key evaluation.
func TestOverlay2(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for range 200 {
		var a, b []u128
		for range rng.IntN(20) {
			a = append(a, u128{0, rng.Uint64N(64)})
		}
		for range rng.IntN(20) {
			b = append(b, u128{0, rng.Uint64N(64)})
		}
		as, aid := flatTable(rng, a)
		bs, bid := flatTable(rng, b)
		f := func(x, y uint32) uint32 { return (x + y) % 7 } // not injective: results coalesce
		st, ids := overlay2(as, aid, bs, bid, f)
		if st[0] != (u128{}) {
			t.Fatalf("overlay does not start at 0")
		}
		for i := 1; i < len(ids); i++ {
			if ids[i] == ids[i-1] || !st[i-1].less(st[i]) {
				t.Fatalf("overlay not coalesced/sorted at %d: %v %v", i, st, ids)
			}
		}
		for k := range uint64(64) {
			key := u128{0, k}
			if got, want := refFind(st, ids, key), f(refFind(as, aid, key), refFind(bs, bid, key)); got != want {
				t.Fatalf("key %d: %d, want %d", k, got, want)
			}
		}
	}
}

// TestLookupEnds: the ends of both families through the whole DB (class
// folded in): 0.0.0.0 and 255.255.255.255 reserved, :: reserved, the last
// IPv6 address multicast, and data at the edges of a network still found.
func TestLookupEnds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ends.csv")
	writeFile(t, path,
		"0.0.0.0,0.255.255.255,1,zero\n"+
			"1.0.0.0,1.0.0.0,2,first\n"+
			"223.255.255.255,223.255.255.255,3,last-unicast\n"+
			"255.255.255.255,255.255.255.255,4,broadcast\n"+
			"2000::,2000::,5,v6-first\n"+
			"3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,6,v6-last-public\n"+
			"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff,7,v6-last\n")
	db := openFiles(t, path)
	for ip, want := range map[string]struct {
		class string
		asn   uint32
	}{
		"0.0.0.0": {"ADDR_CLASS_RESERVED", 0}, "1.0.0.0": {"ADDR_CLASS_PUBLIC", 2}, "1.0.0.1": {"ADDR_CLASS_PUBLIC", 0},
		"223.255.255.255": {"ADDR_CLASS_PUBLIC", 3}, "255.255.255.255": {"ADDR_CLASS_RESERVED", 0},
		"::": {"ADDR_CLASS_RESERVED", 0}, "2000::": {"ADDR_CLASS_PUBLIC", 5}, "2000::1": {"ADDR_CLASS_PUBLIC", 0},
		"3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": {"ADDR_CLASS_PUBLIC", 6},
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": {"ADDR_CLASS_MULTICAST", 0},
	} {
		g := lookup(db, ip)
		if g.AddrClass.String() != want.class || g.Asn != want.asn {
			t.Errorf("%s: %v AS%d, want %s AS%d", ip, g.AddrClass, g.Asn, want.class, want.asn)
		}
	}
	// The raw answer (ignoring the class) still has the data.
	for ip, asn := range map[string]uint32{"0.0.0.0": 1, "255.255.255.255": 4, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": 7} {
		if r := db.lookupRaw(netip.MustParseAddr(ip)); r.asn != asn {
			t.Errorf("raw %s: AS%d, want AS%d", ip, r.asn, asn)
		}
	}
}
