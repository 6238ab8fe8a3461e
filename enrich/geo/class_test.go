package geo

import (
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"google.golang.org/protobuf/proto"
)

func TestAddrClass(t *testing.T) {
	const (
		pub   = flowpb.AddrClass_ADDR_CLASS_PUBLIC
		priv  = flowpb.AddrClass_ADDR_CLASS_PRIVATE
		loop  = flowpb.AddrClass_ADDR_CLASS_LOOPBACK
		link  = flowpb.AddrClass_ADDR_CLASS_LINK_LOCAL
		mcast = flowpb.AddrClass_ADDR_CLASS_MULTICAST
		res   = flowpb.AddrClass_ADDR_CLASS_RESERVED
		lab   = flowpb.AddrClass_ADDR_CLASS_LAB
		unsp  = flowpb.AddrClass_ADDR_CLASS_UNSPECIFIED
	)
	cfg := DefaultConfig()
	cfg.LabSubnets = []string{"192.168.50.0/24", "10.20.0.0/16", "fd00:1ab::/48", "198.51.100.128/25", "::ffff:172.16.9.0/120"}
	db, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]flowpb.AddrClass{
		// IPv4
		"0.0.0.0": res, "0.1.2.3": res, "1.0.0.0": pub, "8.8.8.8": pub, "9.255.255.255": pub,
		"10.0.0.0": priv, "10.255.255.255": priv, "11.0.0.0": pub,
		"100.63.255.255": pub, "100.64.0.0": priv, "100.127.255.255": priv, "100.128.0.0": pub,
		"127.0.0.1": loop, "127.255.255.255": loop, "128.0.0.0": pub,
		"169.253.255.255": pub, "169.254.0.1": link, "169.254.255.255": link, "169.255.0.0": pub,
		"172.15.255.255": pub, "172.16.0.0": priv, "172.31.255.255": priv, "172.32.0.0": pub,
		"192.0.0.1": res, "192.0.0.9": pub, "192.0.0.10": pub, "192.0.0.11": res, "192.0.1.0": pub,
		"192.0.2.1": res, "192.88.99.1": res, "192.167.255.255": pub, "192.168.0.1": priv, "192.168.255.255": priv,
		"198.17.255.255": pub, "198.18.0.0": res, "198.19.255.255": res, "198.20.0.0": pub,
		"198.51.100.1": res, "203.0.113.9": res, "203.0.114.0": pub,
		"223.255.255.255": pub, "224.0.0.1": mcast, "239.255.255.255": mcast,
		"240.0.0.1": res, "255.255.255.254": res, "255.255.255.255": res,
		// lab subnets override special space and public space alike
		"192.168.50.7": lab, "192.168.51.7": priv, "10.20.3.4": lab, "10.21.0.0": priv,
		"198.51.100.127": res, "198.51.100.128": lab, "172.16.9.200": lab,
		// IPv4-mapped IPv6 is classified as IPv4
		"::ffff:10.1.2.3": priv, "::ffff:8.8.8.8": pub, "::ffff:192.168.50.1": lab,
		// NAT64 well-known prefix: the embedded IPv4 address counts
		"64:ff9b::8.8.8.8": pub, "64:ff9b::10.0.0.1": priv, "64:ff9b:1::1": priv,
		// IPv6
		"::": res, "::1": loop, "::2": res, "::8.8.8.8": res,
		"100::1": res, "100::1:0:0:0:0": res,
		"2001::1": pub, "2001:1::1": pub, "2001:1::4": res, "2001:2::1": res, "2001:3::1": pub, "2001:4:112::1": pub,
		"2001:10::1": res, "2001:20::1": pub, "2001:db8::1": res, "2001:db9::1": pub, "2001:200::": pub,
		"2002:808:808::1": pub, "2400:cb00::1": pub, "2a00:1450:4001::1": pub, "3fff::1": res, "3fff:1000::": pub,
		"4000::1": res, "5f00::1": res,
		"fc00::1": priv, "fd00::1": priv, "fd00:1ab::1": lab, "fd00:1ac::1": priv,
		"fe80::1": link, "febf::1": link, "fec0::1": res, "ff02::1": mcast, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": mcast,
		"fe80::1%eth0": link,
	} {
		g := lookup(db, ip)
		if g.AddrClass != want {
			t.Errorf("%s: class %v, want %v", ip, g.AddrClass, want)
		}
	}
	var g flowpb.Geo
	g.Country = "stale"
	db.Lookup(netip.Addr{}, &g)
	if g.AddrClass != unsp || g.Country != "" {
		t.Errorf("invalid address: got %v", &g)
	}
}

// TestSpecialSpaceNotLookedUp: a database answer for special-purpose space
// (some files carry one) is not attached; public space still is.
func TestSpecialSpaceNotLookedUp(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/x.csv"
	writeFile(t, path, "10.0.0.0,10.255.255.255,64512,private\n8.8.8.0,8.8.8.255,15169,Google LLC\n")
	db := openFiles(t, path)
	if g := lookup(db, "10.1.1.1"); g.Asn != 0 || g.Org != "" || g.AddrClass != flowpb.AddrClass_ADDR_CLASS_PRIVATE {
		t.Errorf("10.1.1.1: got %v", g)
	}
	if g := lookup(db, "8.8.8.8"); g.Asn != 15169 {
		t.Errorf("8.8.8.8: got %v", g)
	}
}

// TestAnswerSize: an answer must stay one cache line.
func TestAnswerSize(t *testing.T) {
	if n := unsafe.Sizeof(answer{}); n != 64 {
		t.Fatalf("answer is %d bytes, want 64", n)
	}
}

// TestLookupPairAndCounter: LookupPair answers like two Lookups and both
// count every endpoint.
func TestLookupPairAndCounter(t *testing.T) {
	db, err := Open(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	pairs := [][2]string{{"10.0.0.1", "8.8.8.8"}, {"fe80::1", "2001:4860::1"}, {"::ffff:1.2.3.4", "127.0.0.1"}}
	before := totalLookups()
	for _, p := range pairs {
		var s1, d1, s2, d2 flowpb.Geo
		a, b := netip.MustParseAddr(p[0]), netip.MustParseAddr(p[1])
		db.LookupPair(a, b, &s1, &d1)
		db.Lookup(a, &s2)
		db.Lookup(b, &d2)
		if s1.String() != s2.String() || d1.String() != d2.String() {
			t.Errorf("%v: pair %v/%v, single %v/%v", p, &s1, &d1, &s2, &d2)
		}
	}
	if got := totalLookups() - before; got != uint64(4*len(pairs)) {
		t.Errorf("counted %d lookups, want %d", got, 4*len(pairs))
	}
}

// TestTallyCounts: LookupPairTallied answers like LookupPair, its counts
// reach the metric at the flush threshold or on Flush, and none is lost.
func TestTallyCounts(t *testing.T) {
	db, err := Open(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:4860::1")
	var s1, d1, s2, d2 flowpb.Geo
	db.LookupPair(a, b, &s1, &d1)
	var tl Tally
	before := totalLookups()
	db.LookupPairTallied(a, b, &s2, &d2, &tl)
	if s1.String() != s2.String() || d1.String() != d2.String() {
		t.Fatalf("tallied %v/%v, pair %v/%v", &s2, &d2, &s1, &d1)
	}
	if got := totalLookups() - before; got != 0 {
		t.Fatalf("counted %d before the flush threshold", got)
	}
	for i := 1; i < tallyFlush/2; i++ {
		db.LookupPairTallied(a, b, &s2, &d2, &tl)
	}
	if got := totalLookups() - before; got != tallyFlush {
		t.Fatalf("at the threshold the metric has %d, want %d", got, tallyFlush)
	}
	db.LookupPairTallied(a, b, &s2, &d2, &tl)
	tl.Flush()
	tl.Flush()
	if got := totalLookups() - before; got != tallyFlush+2 {
		t.Fatalf("after Flush the metric has %d, want %d", got, tallyFlush+2)
	}
}

// TestLookupPairRealMixed: on the real merged DB, LookupPair and
// LookupPairTallied (interleaved walks for same-family pairs) answer like
// two Lookups for every kind of pair: IPv4, IPv6 inside the DB's networks,
// uniform IPv6, IPv4-mapped, NAT64-embedded, the ends of both families, the
// zero Addr, and mixed families.
func TestLookupPairRealMixed(t *testing.T) {
	dir := filepath.Join(geoipData(t), "real")
	db := openFiles(t, filepath.Join(dir, "iptoasn-country.mmdb"),
		filepath.Join(dir, "asn-ipv4.csv.gz"), filepath.Join(dir, "asn-ipv6.csv.gz"))
	rng := rand.New(rand.NewPCG(21, 22))
	pool := realMixedPool(rng, 20000)
	var tl Tally
	bad := 0
	for i := range 4 * len(pool) {
		a, b := pool[rng.IntN(len(pool))], pool[rng.IntN(len(pool))]
		if i < len(pool) { // every address at least once, next to a random one
			a = pool[i]
		}
		var s1, d1, s2, d2, s3, d3 flowpb.Geo
		db.Lookup(a, &s1)
		db.Lookup(b, &d1)
		db.LookupPair(a, b, &s2, &d2)
		db.LookupPairTallied(a, b, &s3, &d3, &tl)
		if !proto.Equal(&s1, &s2) || !proto.Equal(&d1, &d2) || !proto.Equal(&s1, &s3) || !proto.Equal(&d1, &d3) {
			if bad++; bad <= 5 {
				t.Errorf("%v, %v: single %v / %v, pair %v / %v, tallied %v / %v", a, b, &s1, &d1, &s2, &d2, &s3, &d3)
			}
		}
	}
	tl.Flush()
}

// TestLookupBatchReal: on the real merged DB, LookupBatch answers like
// Lookup for every address of batches of every length (0 to a few hundred)
// drawn from the same kinds of addresses as TestLookupPairRealMixed, so
// that the family lanes fill, flush mid-batch and end part-full in every
// mix; a stale field in an output (written by a lane of another address)
// would show, as outputs are reused between batches. The tally counts every
// address. Both IPv6 walks are used (assembly and Go).
func TestLookupBatchReal(t *testing.T) {
	dir := filepath.Join(geoipData(t), "real")
	db := openFiles(t, filepath.Join(dir, "iptoasn-country.mmdb"),
		filepath.Join(dir, "asn-ipv4.csv.gz"), filepath.Join(dir, "asn-ipv6.csv.gz"))
	rng := rand.New(rand.NewPCG(23, 24))
	pool := realMixedPool(rng, 20000)
	outs := make([]*flowpb.Geo, 400)
	for i := range outs {
		outs[i] = &flowpb.Geo{}
	}
	var tl Tally
	before := totalLookups()
	total, bad := 0, 0
	for round := 0; total < 6*len(pool); round++ {
		n := rng.IntN(len(outs) + 1)
		if round%7 == 0 {
			n = rng.IntN(2 * lanes) // short batches: part-full lanes only
		}
		addrs := make([]netip.Addr, n)
		for i := range addrs {
			addrs[i] = pool[(total+i)%len(pool)]
			if round%2 == 1 {
				addrs[i] = pool[rng.IntN(len(pool))]
			}
		}
		// Every third round through the Go walk, which runs where the
		// assembly one cannot.
		walkAsm = hasWalkAsm && round%3 != 2
		db.LookupBatch(addrs, outs, &tl)
		walkAsm = hasWalkAsm
		for i, a := range addrs {
			var want flowpb.Geo
			db.Lookup(a, &want)
			if !proto.Equal(outs[i], &want) {
				if bad++; bad <= 5 {
					t.Errorf("round %d, %v (index %d of %d): batch %v, Lookup %v", round, a, i, n, outs[i], &want)
				}
			}
		}
		total += n
	}
	tl.Flush()
	// Lookup counted total too.
	if got := totalLookups() - before; got != uint64(2*total) {
		t.Errorf("metric grew by %d, want %d (batch + single)", got, 2*total)
	}
}

// realMixedPool returns the fixed edge addresses, the zero Addr, and n each
// of uniform IPv4, IPv6 inside a few real prefixes, uniform IPv6,
// IPv4-mapped and NAT64-embedded addresses.
func realMixedPool(rng *rand.Rand, n int) []netip.Addr {
	nets := []netip.Prefix{netip.MustParsePrefix("2001:4860::/32"), netip.MustParsePrefix("2a00:1450::/29"),
		netip.MustParsePrefix("2600::/12"), netip.MustParsePrefix("2c0f:f000::/20")}
	fixed := []string{"::", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "0.0.0.0", "255.255.255.255",
		"::ffff:8.8.8.8", "64:ff9b::808:808", "64:ff9b::1.1.1.1", "2002:808:808::1", "2001::1", "fe80::1"}
	var pool []netip.Addr
	for _, s := range fixed {
		pool = append(pool, netip.MustParseAddr(s))
	}
	pool = append(pool, netip.Addr{})
	for range n {
		v4 := randomV4(rng)
		b := v4.As4()
		pool = append(pool, v4, randomIn(rng, nets[rng.IntN(len(nets))]), randomV6(rng),
			netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: b[0], 13: b[1], 14: b[2], 15: b[3]}),
			netip.AddrFrom16([16]byte{1: 0x64, 2: 0xff, 3: 0x9b, 12: b[0], 13: b[1], 14: b[2], 15: b[3]}))
	}
	return pool
}
