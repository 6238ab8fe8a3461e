package geo

import (
	"net/netip"
	"runtime"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// LookupBatch is Lookup for many addresses: outs[i] gets the answer for
// addrs[i] (outs must be at least as long). Addresses are walked in groups
// of up to eight of one family, level by level (find6n, find4n), so the
// cache misses of the group overlap: on the real IPv6 data that is several
// times the throughput of one-by-one lookups, which wait for each miss
// chain in turn. It counts in t like LookupPairTallied; t must not be nil.
func (db *DB) LookupBatch(addrs []netip.Addr, outs []*flowpb.Geo, t *Tally) {
	outs = outs[:len(addrs)]
	var b batch
	for i, a := range addrs {
		if a.Is4In6() {
			a = a.Unmap()
		}
		switch {
		case a.Is4():
			b.add4(db, be32(a.As4()), outs[i])
		case a.Is6():
			hi, lo := words6(a)
			if db.inNAT64(hi, lo) {
				b.add4(db, uint32(lo), outs[i]) // the embedded IPv4 address
				continue
			}
			b.add6(db, hi, lo, outs[i])
		default:
			db.fill(0, outs[i]) // the zero Addr: UNSPECIFIED, no data
		}
	}
	b.flush4(db)
	b.flush6(db)
	runtime.KeepAlive(db) // see offheap.go
	if t.n += uint64(len(addrs)); t.n >= tallyFlush {
		t.Flush()
	}
}

// batch collects up to lanes addresses per family until a walk.
type batch struct {
	hi, lo [lanes]uint64
	ip     [lanes]uint32
	ids    [lanes]uint32
	out4   [lanes]*flowpb.Geo
	out6   [lanes]*flowpb.Geo
	n4, n6 int
}

func (b *batch) add4(db *DB, ip uint32, out *flowpb.Geo) {
	b.ip[b.n4], b.out4[b.n4] = ip, out
	if b.n4++; b.n4 == lanes {
		b.flush4(db)
	}
}

func (b *batch) add6(db *DB, hi, lo uint64, out *flowpb.Geo) {
	b.hi[b.n6], b.lo[b.n6], b.out6[b.n6] = hi, lo, out
	if b.n6++; b.n6 == lanes {
		b.flush6(db)
	}
}

func (b *batch) flush4(db *DB) {
	db.t4.find4n(&b.ip, &b.ids, b.n4)
	for k := range b.n4 {
		db.fill(b.ids[k], b.out4[k])
	}
	b.n4 = 0
}

func (b *batch) flush6(db *DB) {
	db.t6.find6n(&b.hi, &b.lo, &b.ids, b.n6)
	for k := range b.n6 {
		db.fill(b.ids[k], b.out6[k])
	}
	b.n6 = 0
}

// inNAT64 reports whether hi:lo lies in a configured NAT64 /96.
func (db *DB) inNAT64(hi, lo uint64) bool {
	for _, p := range db.nat64 {
		if hi == p.hi && lo>>32 == p.lo>>32 {
			return true
		}
	}
	return false
}
