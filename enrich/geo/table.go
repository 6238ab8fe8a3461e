package geo

import (
	"cmp"
	"math/bits"
	"net/netip"
	"slices"
	"unsafe"
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

// overlay2 combines two flat tables over the same space (starts[0] == 0 in
// both) into one: every elementary interval gets f(a id, b id), adjacent
// equal results coalesced. Linear in the two lengths.
func overlay2(aSt []u128, aID []uint32, bSt []u128, bID []uint32, f func(a, b uint32) uint32) (starts []u128, ids []uint32) {
	starts = make([]u128, 0, len(aSt)+len(bSt))
	ids = make([]uint32, 0, len(aSt)+len(bSt))
	i, j := 0, 0
	for i < len(aSt) || j < len(bSt) {
		var p u128
		switch {
		case j == len(bSt) || (i < len(aSt) && aSt[i].less(bSt[j])):
			p = aSt[i]
		default:
			p = bSt[j]
		}
		for i < len(aSt) && aSt[i] == p {
			i++
		}
		for j < len(bSt) && bSt[j] == p {
			j++
		}
		id := f(aID[i-1], bID[j-1])
		if n := len(ids); n > 0 && ids[n-1] == id {
			continue
		}
		starts = append(starts, p)
		ids = append(ids, id)
	}
	return starts, ids
}

// ptrie is a multi-level popcount trie (after Poptrie, Asai & Ohara 2015)
// over a flat range table: each node splits its block of the address space
// on the next stride bits; a bitmap marks the sub-blocks where the entry
// changes, and the popcount of the bitmap up to a sub-block is the index of
// its entry, which is either an answer id (the whole sub-block lies in one
// range) or a child node. Runs of sub-blocks with the same answer share one
// entry, so a node costs its bitmap plus one entry per change.
//
// Compared with a bucket index over sorted starts followed by a search, a
// lookup is a fixed sequence of loads with no data-dependent branch: the
// first levels are walked branch-free (a leaf reached early descends into a
// one-word dummy node and its answer is kept by masking), so the CPU can
// overlap the cache misses of consecutive lookups instead of stalling on
// mispredicted search branches.
type ptrie struct {
	// arena holds the nodes. A node is its bitmap words, three uint32 each
	// (bits low, bits high, base), followed by its entries, starting on a
	// 64-byte boundary: a byte-stride node's words and first entries share a
	// cache line, the rest follow in the next one. base is the arena index
	// of the word's first set bit's entry, so sub-block c's entry is
	// arena[base + popcount(bits & (2<<c - 1)) - 1]; a word without set bits
	// up to c resolves to the last entry of the words before it (bit 0 of
	// every node is set).
	arena []uint32
	root  uint32 // entry of the root node (16-bit stride)
	// top is the root node expanded: the entry of every /16, so that the
	// first level is one load (256 KiB, the most used part stays cached).
	top *[1 << 16]uint32
	// deep4: IPv4 /24s split finer are common (at least a quarter as many
	// /24 nodes as /16 nodes: City data rather than ASN data), so find4
	// walks the third level branch-free too. On MaxMind's City test data
	// (15 /16 nodes, 6 /24 nodes) that measured 2x faster; on the real data
	// (18,271 and 1,315) a rarely taken branch measured 20% faster.
	deep4 bool
}

const (
	childFlag = 1 << 31 // entry is childFlag [| wideFlag] | arena index of a child node
	wideFlag  = 1 << 30 // the child node has a 16-bit stride (else 8)
	refMask   = wideFlag - 1
	// nodeAlign: nodes start on 64-byte boundaries (the arena is
	// page-aligned). Node 0 is the dummy: bits 1, base 3, arena[3] = 0.
	nodeAlign = 16
)

// Strides are 16 or 8 bits. IPv4: a 16-bit root, then bytes. IPv6: 16-bit
// root and /32 levels (IPv6 lives in a few dozen /16s, split mostly at
// /32../48), then 16 bits for a /32 holding at least wideMin range starts
// and bytes everywhere else, so that a node is about one or two cache lines
// and a dense /32 resolves its /48s in one level. (A 16-bit node is 12 KiB
// of words; below wideMin starts the byte nodes it replaces are smaller.)
const wideMin = 128

func stride4(off uint, _ int) uint {
	if off == 0 {
		return 16
	}
	return 8
}

func stride6(off uint, n int) uint {
	if off < 32 || (off == 32 && n >= wideMin) {
		return 16
	}
	return 8
}

// buildPtrie indexes a flat table (starts[0] == 0, sorted, distinct; ids
// below 2^30) whose keys sit in the top bits of a u128. stride gives a
// node's stride from its offset and its number of inner range starts; wide
// strides must end at or before bit 64.
func buildPtrie(starts []u128, ids []uint32, stride func(off uint, n int) uint) ptrie {
	if stride(0, len(starts)) != 16 {
		panic("geo: trie root must have a 16-bit stride")
	}
	b := trieBuilder{arena: make([]uint32, nodeAlign), starts: starts, ids: ids, stride: stride}
	b.arena[0], b.arena[2] = 1, 3
	root := b.node(u128{}, 0, ids[0], 1, len(starts))
	// A fresh, exactly sized (and, being large, page-aligned) copy.
	t := ptrie{arena: make([]uint32, len(b.arena)), root: root, top: new([1 << 16]uint32)}
	copy(t.arena, b.arena)
	for c := range t.top {
		t.top[c] = t.step(root, uint32(c))
	}
	t.deep4 = b.nodesAt[24]*4 > b.nodesAt[16] // IPv4: /24 nodes vs /16 nodes
	return t
}

type trieBuilder struct {
	arena   []uint32
	starts  []u128
	ids     []uint32
	stride  func(off uint, n int) uint
	nodesAt [129]int // nodes per bit offset
}

// node builds the node for the block at base (the first off bits fixed)
// whose range starts strictly inside are starts[i:j]; cur is the id of the
// range containing base. Children are placed first, so the node's entries
// are known when it is laid out. It returns the node's entry.
func (b *trieBuilder) node(base u128, off uint, cur uint32, i, j int) uint32 {
	s := b.stride(off, j-i)
	b.nodesAt[off]++
	nw := max(1, (1<<s)/64)
	bitmap := make([]uint64, nw)
	var ents []uint32
	childShift := 128 - off - s
	k := i
	for c := range uint64(1) << s {
		cb := base.or(shl128(c, childShift))
		if k < j && b.starts[k] == cb {
			cur = b.ids[k]
			k++
		}
		k2 := k
		for k2 < j && b.starts[k2].prefix(off+s) == cb {
			k2++
		}
		e := cur
		if k2 > k {
			e = b.node(cb, off+s, cur, k, k2)
			cur = b.ids[k2-1]
		}
		k = k2
		if c == 0 || e != ents[len(ents)-1] || e&childFlag != 0 {
			bitmap[c/64] |= 1 << (c % 64)
			ents = append(ents, e)
		}
	}
	for len(b.arena)%nodeAlign != 0 {
		b.arena = append(b.arena, 0)
	}
	n := len(b.arena)
	if n+3*nw+len(ents) > refMask {
		panic("geo: trie too large")
	}
	next := uint32(n + 3*nw) // the entries follow the words
	for _, w := range bitmap {
		b.arena = append(b.arena, uint32(w), uint32(w>>32), next)
		next += uint32(bits.OnesCount64(w))
	}
	b.arena = append(b.arena, ents...)
	if s == 16 {
		return childFlag | wideFlag | uint32(n)
	}
	return childFlag | uint32(n)
}

func shl128(x uint64, n uint) u128 {
	switch {
	case n >= 128:
		return u128{}
	case n >= 64:
		return u128{x << (n - 64), 0}
	case n == 0:
		return u128{0, x}
	}
	return u128{x >> (64 - n), x << n}
}

func (a u128) or(b u128) u128 { return u128{a.hi | b.hi, a.lo | b.lo} }

// prefix keeps the top n bits of a.
func (a u128) prefix(n uint) u128 {
	switch {
	case n >= 128:
		return a
	case n >= 64:
		return u128{a.hi, a.lo &^ (^uint64(0) >> (n - 64))}
	}
	return u128{a.hi &^ (^uint64(0) >> n), 0}
}

// step resolves one level for a child entry e and sub-block idx.
func (t *ptrie) step(e, idx uint32) uint32 { return step(t.arena, e, idx) }

func step(a []uint32, e, idx uint32) uint32 {
	w := int(e&refMask + idx>>6*3)
	_ = a[w+2] // one bounds check for the word
	// The word's two bit halves as one (unaligned) load; in bounds by the
	// check above.
	bm := *(*uint64)(unsafe.Pointer(&a[w]))
	return a[a[w+2]+uint32(bits.OnesCount64(bm&(2<<(idx&63)-1)))-1]
}

// stepMasked is step for any entry: a leaf walks the dummy node (node 0,
// with idx 0) and is returned unchanged, without a branch.
func stepMasked(a []uint32, e, idx uint32) uint32 {
	m := -(e >> 31) // all ones for a child
	return step(a, e&m|childFlag, idx&m)&m | e&^m
}

// find4 returns the answer id of an IPv4 address.
func (t *ptrie) find4(ip uint32) uint32 {
	a := t.arena
	e := t.top[ip>>16]
	e = stepMasked(a, e, ip>>8&0xff)
	if t.deep4 { // the same every call: predicted
		return stepMasked(a, e, ip&0xff)
	}
	if e&childFlag != 0 { // a /24 split finer (2,581 of 487,888 real starts)
		e = step(a, e, ip&0xff)
	}
	return e
}

// find4x2 is find4 for two addresses with their levels interleaved (see
// find6x2).
func (t *ptrie) find4x2(ip1, ip2 uint32) (uint32, uint32) {
	a := t.arena
	e1, e2 := t.top[ip1>>16], t.top[ip2>>16]
	e1 = stepMasked(a, e1, ip1>>8&0xff)
	e2 = stepMasked(a, e2, ip2>>8&0xff)
	if t.deep4 {
		return stepMasked(a, e1, ip1&0xff), stepMasked(a, e2, ip2&0xff)
	}
	if e1&childFlag != 0 {
		e1 = step(a, e1, ip1&0xff)
	}
	if e2&childFlag != 0 {
		e2 = step(a, e2, ip2&0xff)
	}
	return e1, e2
}

// find6 returns the answer id of an IPv6 address: four branch-free levels
// (/16, /32, then /40 and /48, or /48 and /56 below a dense /32), where
// almost all real boundaries lie, then a loop for the rest.
func (t *ptrie) find6(hi, lo uint64) uint32 {
	a := t.arena
	e := t.top[hi>>48]
	e = stepMasked(a, e, uint32(hi>>32)&0xffff)
	s := uint(8) << (e >> 30 & 1) // a leaf has bit 30 clear; masked anyway
	e = stepMasked(a, e, uint32(hi<<32>>(64-s)))
	off := 32 + s
	e = stepMasked(a, e, uint32(hi<<off>>56))
	if e&childFlag != 0 {
		e = t.deep6(e, off+8, hi, lo)
	}
	return e
}

// find6x2 is find6 for two addresses with their levels interleaved, so
// that the two dependent chains of cache misses overlap from the first
// level on (out-of-order execution overlaps consecutive lookups only as
// far as its window reaches).
func (t *ptrie) find6x2(hi1, lo1, hi2, lo2 uint64) (uint32, uint32) {
	a := t.arena
	e1, e2 := t.top[hi1>>48], t.top[hi2>>48]
	e1 = stepMasked(a, e1, uint32(hi1>>32)&0xffff)
	e2 = stepMasked(a, e2, uint32(hi2>>32)&0xffff)
	s1, s2 := uint(8)<<(e1>>30&1), uint(8)<<(e2>>30&1)
	e1 = stepMasked(a, e1, uint32(hi1<<32>>(64-s1)))
	e2 = stepMasked(a, e2, uint32(hi2<<32>>(64-s2)))
	off1, off2 := 32+s1, 32+s2
	e1 = stepMasked(a, e1, uint32(hi1<<off1>>56))
	e2 = stepMasked(a, e2, uint32(hi2<<off2>>56))
	if e1&childFlag != 0 {
		e1 = t.deep6(e1, off1+8, hi1, lo1)
	}
	if e2&childFlag != 0 {
		e2 = t.deep6(e2, off2+8, hi2, lo2)
	}
	return e1, e2
}

// deep6 walks the levels below the branch-free ones (rare: a boundary
// below /48, or below /56 in a dense /32) from child entry e at bit off.
func (t *ptrie) deep6(e uint32, off uint, hi, lo uint64) uint32 {
	for e&childFlag != 0 {
		s := uint(8) << (e >> 30 & 1)
		var k uint64
		if off < 64 {
			k = hi << off >> (64 - s)
		} else {
			k = lo << (off - 64) >> (64 - s)
		}
		e = step(t.arena, e, uint32(k))
		off += s
	}
	return e
}

// walk calls fn for every range of the indexed table in order (adjacent
// equal answers coalesced, so it reproduces the built table), with starts
// in the top bits as given to buildPtrie. For tests and tools.
func (t *ptrie) walk(fn func(start u128, id uint32)) {
	last, seen := uint32(0), false
	var rec func(e uint32, base u128, off uint)
	rec = func(e uint32, base u128, off uint) {
		if e&childFlag == 0 {
			if !seen || e != last {
				fn(base, e)
			}
			last, seen = e, true
			return
		}
		s := uint(8) << (e >> 30 & 1)
		for c := range uint64(1) << s {
			rec(t.step(e, uint32(c)), base.or(shl128(c, 128-off-s)), off+s)
		}
	}
	rec(t.root, u128{}, 0)
}

// bytes is the memory the index keeps.
func (t *ptrie) bytes() int { return (len(t.arena) + len(t.top)) * 4 }

// lanes is how many addresses of one family the Go batch walks (find4n,
// and find6n without the assembly) keep in flight. A single IPv6 lookup
// is a chain of about five dependent cache misses; walking lanes of them
// level by level lets the CPU overlap the misses of all lanes. Without
// prefetches, more lanes gain little: the instructions waiting on the
// misses fill the out-of-order window (16 measured 0.95-0.97 of 8).
const lanes = 8

// walkAsm selects find6n's assembly levels (tests switch it off to check
// the Go ones).
var walkAsm = hasWalkAsm

// find6all is find6n's assembly levels for n (1..chunkLen) keys at once,
// each level a pass over all of them that prefetches what the next pass
// reads, and each answer line prefetched for the fill (answers points at
// the answer array). On the real data, walking a round of 64 keys this way
// measured 0.85 of walking them eight at a time, which again was 0.82 of
// the Go walk.
func (t *ptrie) find6all(hi, lo *[chunkLen]uint64, ids *[chunkLen]uint32, n int, answers unsafe.Pointer) {
	_ = hi[n-1] // 1 <= n <= chunkLen: the assembly's frame holds chunkLen keys
	find6nAsm(&t.arena[0], &t.top[0], &hi[0], &ids[0], n, answers)
	for k := range n {
		if ids[k]&childFlag != 0 { // below the fixed levels: rare
			ids[k] = t.find6(hi[k], lo[k])
		}
	}
}

// find6n is find6 for the first n (<= lanes) keys, walked level by level
// (through the assembly levels where they run; answers is what they
// prefetch from).
func (t *ptrie) find6n(hi, lo *[lanes]uint64, ids *[lanes]uint32, n int, answers unsafe.Pointer) {
	if walkAsm && n > 0 {
		find6nAsm(&t.arena[0], &t.top[0], &hi[0], &ids[0], n, answers)
		for k := range n {
			if ids[k]&childFlag != 0 { // below the fixed levels: rare
				ids[k] = t.find6(hi[k], lo[k])
			}
		}
		return
	}
	a := t.arena
	var e [lanes]uint32
	var off [lanes]uint
	for k := range n {
		e[k] = t.top[hi[k]>>48]
	}
	for k := range n {
		e[k] = stepMasked(a, e[k], uint32(hi[k]>>32)&0xffff)
	}
	for k := range n {
		s := uint(8) << (e[k] >> 30 & 1)
		e[k] = stepMasked(a, e[k], uint32(hi[k]<<32>>(64-s)))
		off[k] = 32 + s
	}
	for k := range n {
		e[k] = stepMasked(a, e[k], uint32(hi[k]<<off[k]>>56))
	}
	for k := range n {
		if e[k]&childFlag != 0 {
			e[k] = t.deep6(e[k], off[k]+8, hi[k], lo[k])
		}
		ids[k] = e[k]
	}
}

// find4n is find4 for the first n (<= lanes) keys, walked level by level.
func (t *ptrie) find4n(ips *[lanes]uint32, ids *[lanes]uint32, n int) {
	a := t.arena
	var e [lanes]uint32
	for k := range n {
		e[k] = t.top[ips[k]>>16]
	}
	for k := range n {
		e[k] = stepMasked(a, e[k], ips[k]>>8&0xff)
	}
	if t.deep4 {
		for k := range n {
			ids[k] = stepMasked(a, e[k], ips[k]&0xff)
		}
		return
	}
	for k := range n {
		if e[k]&childFlag != 0 {
			e[k] = step(a, e[k], ips[k]&0xff)
		}
		ids[k] = e[k]
	}
}
