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

// trieIndex maps a key to the short interval of range starts that can hold
// it. It is a multi-level bucket trie: the root splits the key space on its
// top rootBits bits, and any bucket still holding more than directMax ranges
// is split again on the next bits, with a fan-out sized to its range count.
// Allocated address space is very unevenly populated (IPv6 lives in a few
// /16s and is split down to /48s in places; some IPv4 /16s hold hundreds of
// ranges), so one fixed-width level leaves long binary searches where the
// data is dense. A lookup walks one or two levels (one cache line each) and
// ends with a binary search over at most directMax+1 entries.
type trieIndex struct {
	width    uint // key bits
	rootBits uint
	slots    []slot
}

// slot is one bucket of a trie node. The slots of a node are contiguous,
// followed by a sentinel whose lo is the node's last range. Eight bytes, so
// a root of 2^16 slots is 512 KiB.
type slot struct {
	lo    uint32 // range containing the bucket's first key
	child uint32 // bits<<27 | first slot of the child node; 0 = leaf bucket
}

const childShift = 27 // slots per index < 2^27; fan-out bits <= 16 above

// directMax is the longest bucket left unsplit.
const directMax = 8

// trieSlack: a child of n ranges gets ceil(log2 n)-trieSlack bits, about four
// ranges per bucket; finer fan-outs measured no faster and cost 2-7x the slots.
const trieSlack = 2

// buildTrie indexes n sorted ranges; le(i, k) reports whether range i starts
// at or before key k.
func buildTrie(width, rootBits uint, n int, le func(i int, k uint64) bool) trieIndex {
	ix := trieIndex{width: width, rootBits: rootBits}
	containing := func(k uint64, lo, hi uint32) uint32 {
		// last i in [lo, hi] with le(i, k); le(lo, k) holds.
		for lo < hi {
			mid := (lo + hi + 1) >> 1
			if le(int(mid), k) {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		return lo
	}
	var build func(start uint64, low, bits uint, lo, hi uint32) uint32
	build = func(start uint64, low, bits uint, lo, hi uint32) uint32 {
		base := uint32(len(ix.slots))
		step := uint(low - bits)
		for j := range uint64(1) << bits {
			ix.slots = append(ix.slots, slot{lo: containing(start+j<<step, lo, hi)})
		}
		ix.slots = append(ix.slots, slot{lo: hi})
		for j := range uint32(1) << bits {
			a, b := ix.slots[base+j].lo, ix.slots[base+j+1].lo
			if b-a <= directMax || step == 0 {
				continue
			}
			// Aim at about four ranges per child bucket: finer costs
			// memory (and cache) for little shorter searches.
			cb := uint(max(1, min(bits32(b-a)-trieSlack, int(step), 16)))
			child := build(start+uint64(j)<<step, step, cb, a, b)
			if child >= 1<<childShift {
				panic("geo: trie index too large")
			}
			ix.slots[base+j].child = uint32(cb)<<childShift | child
		}
		return base
	}
	build(0, width, rootBits, 0, uint32(n-1))
	return ix
}

// bits32 is ceil(log2(n)) for n >= 2.
func bits32(n uint32) int { return bits.Len32(n - 1) }

// window returns the index interval [lo, hi] that holds key's range.
func (ix *trieIndex) window(key uint64) (lo, hi uint32) {
	low, nb, base := ix.width-ix.rootBits, ix.rootBits, uint32(0)
	for {
		j := base + uint32(key>>low)&(1<<nb-1)
		s := &ix.slots[j]
		if s.child == 0 {
			return s.lo, ix.slots[j+1].lo
		}
		nb = uint(s.child >> childShift)
		low -= nb
		base = s.child & (1<<childShift - 1)
	}
}

// table4 is the flattened IPv4 table: range starts covering the whole space,
// each packed with its record id (start<<32 | id) so that the probe that
// finds the range also brings its answer into cache.
type table4 struct {
	entries []uint64
	index   trieIndex
}

func newTable4(starts []u128, recs []uint32) table4 {
	t := table4{entries: make([]uint64, len(starts))}
	for i, s := range starts {
		t.entries[i] = s.lo<<32 | uint64(recs[i])
	}
	t.index = buildTrie(32, 16, len(starts), func(i int, k uint64) bool { return t.entries[i]>>32 <= k })
	return t
}

// find returns the record id of ip.
func (t *table4) find(ip uint32) uint32 {
	lo, hi := t.index.window(uint64(ip))
	e := t.entries
	key := uint64(ip)<<32 | 0xffffffff
	// Last i in [lo, hi] with start(i) <= ip; start(lo) <= ip always.
	for lo < hi {
		mid := (lo + hi + 1) >> 1
		if e[mid] <= key {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return uint32(e[lo])
}

// entry6 is an IPv6 range start with its record id, 16 bytes so that four
// share a cache line. Starts whose low 64 bits are not zero (boundaries
// finer than /64: 166 of 211,286 in the real data) keep them in a side table.
type entry6 struct {
	hi    uint64
	rec   uint32
	loRef uint32 // 0: low 64 bits are zero; else index into table6.los
}

// table6 is the IPv6 counterpart of table4; the index works on the upper 64
// bits (range boundaries below /64 are rare and are handled by the search).
type table6 struct {
	entries []entry6
	los     []uint64 // los[0] is unused
	index   trieIndex
}

func newTable6(starts []u128, recs []uint32) table6 {
	t := table6{entries: make([]entry6, len(starts)), los: []uint64{0}}
	for i, s := range starts {
		t.entries[i] = entry6{hi: s.hi, rec: recs[i]}
		if s.lo != 0 {
			t.entries[i].loRef = uint32(len(t.los))
			t.los = append(t.los, s.lo)
		}
	}
	t.index = buildTrie(64, v6RootBits, len(starts), func(i int, k uint64) bool {
		e := &t.entries[i] // (hi, lo) <= (k, 0)
		return e.hi < k || (e.hi == k && e.loRef == 0)
	})
	return t
}

func (t *table6) find(hi, lo uint64) uint32 {
	l, h := t.index.window(hi)
	e := t.entries
	for l < h {
		mid := (l + h + 1) >> 1
		s := &e[mid]
		if s.hi < hi || (s.hi == hi && t.los[s.loRef] <= lo) {
			l = mid
		} else {
			h = mid - 1
		}
	}
	return e[l].rec
}

// v6RootBits: 20 or 24 root bits measured no faster on the real data.
const v6RootBits = 16
