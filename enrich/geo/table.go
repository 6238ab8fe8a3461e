package geo

import (
	"cmp"
	"math/bits"
	"net/netip"
	"slices"
)

// u128 is an address as a 128-bit integer, used while building tables so that
// IPv4 and IPv6 share one code path (IPv4 lives in the low 32 bits).
type u128 struct{ hi, lo uint64 }

var (
	max32  = u128{0, 1<<32 - 1}
	max128 = u128{^uint64(0), ^uint64(0)}
)

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a u128) less(b u128) bool { return a.cmp(b) < 0 }

func (a u128) add1() u128 {
	lo, carry := bits.Add64(a.lo, 1, 0)
	return u128{a.hi + carry, lo}
}

func (a u128) sub1() u128 {
	lo, borrow := bits.Sub64(a.lo, 1, 0)
	return u128{a.hi - borrow, lo}
}

// addrU128 converts an unmapped address to its integer: IPv4 into the low 32
// bits, IPv6 across both words.
func addrU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	return u128{be64(b[:8]), be64(b[8:])}
}

func be64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

// prefixSpan returns the first and last address of p as integers.
func prefixSpan(p netip.Prefix) (first, last u128) {
	p = p.Masked()
	first = addrU128(p.Addr())
	width := 128
	if p.Addr().Is4() {
		width = 32
	}
	host := width - p.Bits() // number of host bits
	last = first
	switch {
	case host >= 128:
		last = max128
	case host >= 64:
		last.lo = ^uint64(0)
		last.hi |= (uint64(1) << (host - 64)) - 1
	case host > 0:
		last.lo |= (uint64(1) << host) - 1
	}
	return first, last
}

// span is an inclusive address range carrying a record id (0 = no data).
type span struct {
	first, last u128
	rec         uint32
}

// normalize turns possibly overlapping spans into sorted, disjoint ones. On
// overlap the span starting later wins (for nested ranges: the more specific
// one); for equal starts the shorter span wins, then the one given later.
// The caller's slice is reordered.
func normalize(in []span) []span {
	slices.SortStableFunc(in, func(a, b span) int {
		if c := a.first.cmp(b.first); c != 0 {
			return c
		}
		return b.last.cmp(a.last) // longer first, so the shorter is pushed on top
	})
	out := make([]span, 0, len(in))
	var stack []span
	emit := func(first, last u128, rec uint32) {
		if n := len(out); n > 0 && out[n-1].rec == rec && out[n-1].last.add1() == first && out[n-1].last != max128 {
			out[n-1].last = last
			return
		}
		out = append(out, span{first, last, rec})
	}
	// pos is the first address not yet emitted; valid once stack is non-empty.
	var pos u128
	drain := func(upto u128, inclusive bool) {
		// Emit stack tops until pos reaches upto (exclusive unless inclusive).
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			if top.last.less(pos) {
				stack = stack[:len(stack)-1]
				continue
			}
			if !inclusive && !top.last.less(upto) {
				// top covers up to upto-1 at least.
				if pos.less(upto) {
					emit(pos, upto.sub1(), top.rec)
				}
				pos = upto
				return
			}
			emit(pos, top.last, top.rec)
			stack = stack[:len(stack)-1]
			if top.last == max128 {
				stack = stack[:0]
				return
			}
			pos = top.last.add1()
		}
	}
	for _, s := range in {
		if len(stack) > 0 {
			drain(s.first, false)
		}
		stack = append(stack, s)
		pos = s.first
	}
	drain(max128, true)
	return out
}

// merge overlays several normalized span lists (later lists win field by
// field through combine) and returns the boundaries of the resulting flat
// table over [0, max]: starts[0] == 0, recs[i] applies from starts[i] up to
// starts[i+1]-1, adjacent equal ids coalesced. combine receives, for one
// elementary interval, the record id of each layer (0 = not covered) and
// returns the merged id.
func merge(layers [][]span, max u128, combine func(ids []uint32) uint32) (starts []u128, recs []uint32) {
	var pts []u128
	pts = append(pts, u128{})
	for _, l := range layers {
		for _, s := range l {
			pts = append(pts, s.first)
			if s.last.less(max) {
				pts = append(pts, s.last.add1())
			}
		}
	}
	slices.SortFunc(pts, u128.cmp)
	pts = slices.Compact(pts)
	pos := make([]int, len(layers))
	ids := make([]uint32, len(layers))
	for _, p := range pts {
		for li, l := range layers {
			j := pos[li]
			for j < len(l) && l[j].last.less(p) {
				j++
			}
			pos[li] = j
			ids[li] = 0
			if j < len(l) && !p.less(l[j].first) {
				ids[li] = l[j].rec
			}
		}
		id := combine(ids)
		if n := len(recs); n > 0 && recs[n-1] == id {
			continue
		}
		starts = append(starts, p)
		recs = append(recs, id)
	}
	return starts, recs
}

// table4 is the flattened IPv4 table: sorted range starts covering the whole
// space, one record id per range, and a /16 bucket index so that a lookup is
// a short binary search inside one bucket (one or two cache misses).
type table4 struct {
	starts []uint32
	recs   []uint32
	// index[b] is the range containing b<<16; index[65536] is the last range.
	index []uint32
}

func newTable4(starts []u128, recs []uint32) table4 {
	t := table4{starts: make([]uint32, len(starts)), recs: recs}
	for i, s := range starts {
		t.starts[i] = uint32(s.lo)
	}
	t.index = make([]uint32, 1<<16+1)
	i := 0
	for b := 0; b < 1<<16; b++ {
		a := uint32(b) << 16
		for i+1 < len(t.starts) && t.starts[i+1] <= a {
			i++
		}
		t.index[b] = uint32(i)
	}
	t.index[1<<16] = uint32(len(t.starts) - 1)
	return t
}

// find returns the record id of ip.
func (t *table4) find(ip uint32) uint32 {
	b := ip >> 16
	lo, hi := t.index[b], t.index[b+1]
	starts := t.starts
	// Last i in [lo, hi] with starts[i] <= ip; starts[lo] <= ip always.
	for lo < hi {
		mid := (lo + hi + 1) >> 1
		if starts[mid] <= ip {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return t.recs[lo]
}

// v6IndexBits is the number of leading address bits the IPv6 bucket index
// covers. Allocated IPv6 space is dense only in a few /12s (2001:, 2400:,
// 2600:, 2a00:, ...), so 16 bits would leave thousands of ranges per bucket;
// 20 bits keeps buckets short for 4 MiB.
const v6IndexBits = 20

// table6 is the IPv6 counterpart of table4, keyed on 128-bit starts.
type table6 struct {
	starts []u128
	recs   []uint32
	index  []uint32 // index[b] is the range containing b<<(128-v6IndexBits)
}

func newTable6(starts []u128, recs []uint32) table6 {
	t := table6{starts: starts, recs: recs}
	t.index = make([]uint32, 1<<v6IndexBits+1)
	i := 0
	for b := 0; b < 1<<v6IndexBits; b++ {
		a := u128{uint64(b) << (64 - v6IndexBits), 0}
		for i+1 < len(starts) && !a.less(starts[i+1]) {
			i++
		}
		t.index[b] = uint32(i)
	}
	t.index[1<<v6IndexBits] = uint32(len(starts) - 1)
	return t
}

func (t *table6) find(hi, lo uint64) uint32 {
	b := hi >> (64 - v6IndexBits)
	l, h := t.index[b], t.index[b+1]
	starts := t.starts
	for l < h {
		mid := (l + h + 1) >> 1
		s := &starts[mid]
		if s.hi < hi || (s.hi == hi && s.lo <= lo) {
			l = mid
		} else {
			h = mid - 1
		}
	}
	return t.recs[l]
}
