package geo

import (
	"net/netip"
	"runtime"
	"unsafe"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// LookupBatch is Lookup for many addresses: outs[i] gets the answer for
// addrs[i] (outs must be at least as long). Addresses are taken in rounds
// of up to chunkLen (see lookupChunk); within a round the IPv6 keys walk
// the trie together, level by level, with the next level's lines
// prefetched (find6all), and the IPv4 keys eight at a time (find4n), so
// the cache misses of the round overlap: on the real IPv6 data that is
// several times the throughput of one-by-one lookups, which wait for each
// miss chain in turn. It counts in t like LookupPairTallied; t must not be
// nil.
func (db *DB) LookupBatch(addrs []netip.Addr, outs []*flowpb.Geo, t *Tally) {
	outs = outs[:len(addrs)]
	n := uint64(len(addrs))
	var c chunk
	for len(addrs) > 0 {
		k := min(len(addrs), chunkLen)
		db.lookupChunk(addrs[:k], outs[:k], &c)
		addrs, outs = addrs[k:], outs[k:]
	}
	runtime.KeepAlive(db) // see offheap.go
	if t.n += n; t.n >= tallyFlush {
		t.Flush()
	}
}

// chunkLen is how many addresses LookupBatch takes per round: a multiple of
// lanes, large enough that the walks of one round follow each other without
// decoding or filling in between (32 measured 1.07-1.08 of 64).
const chunkLen = 8 * lanes

// chunk holds one round of LookupBatch: the keys sorted into families, the
// position of each in the round, and the answer ids.
type chunk struct {
	hi, lo   [chunkLen]uint64
	ip       [chunkLen]uint32
	id4, id6 [chunkLen]uint32
	ids      [chunkLen]uint32
	at4, at6 [chunkLen]uint8
	touch    uint8 // keeps the answer loads (their value is not needed)
}

// lookupChunk looks up at most chunkLen addresses in four passes: decode
// them into per-family keys; walk each family lanes at a time, walks back
// to back, so that out-of-order execution overlaps the end of one walk with
// the start of the next (decoding and filling in between would fill its
// window); load every answer's line, a run of independent loads whose
// misses overlap (the assembly IPv6 walk prefetches its answers instead,
// as soon as it has them); then fill the outputs from cache.
func (db *DB) lookupChunk(addrs []netip.Addr, outs []*flowpb.Geo, c *chunk) {
	outs = outs[:len(addrs)]
	n4, n6 := 0, 0
	for i, a := range addrs {
		c.ids[i] = 0 // the zero Addr: UNSPECIFIED, no data
		if a.Is4In6() {
			a = a.Unmap()
		}
		switch {
		case a.Is4():
			c.ip[n4], c.at4[n4] = be32(a.As4()), uint8(i)
			n4++
		case a.Is6():
			hi, lo := words6(a)
			if db.inNAT64(hi, lo) {
				c.ip[n4], c.at4[n4] = uint32(lo), uint8(i) // the embedded IPv4 address
				n4++
				continue
			}
			c.hi[n6], c.lo[n6], c.at6[n6] = hi, lo, uint8(i)
			n6++
		}
	}
	if walkAsm && n6 > 0 {
		db.t6.find6all(&c.hi, &c.lo, &c.id6, n6, unsafe.Pointer(&db.answers[0]))
	}
	for g := 0; g < n6 && !walkAsm; g += lanes {
		db.t6.find6n((*[lanes]uint64)(c.hi[g:]), (*[lanes]uint64)(c.lo[g:]), (*[lanes]uint32)(c.id6[g:]), min(lanes, n6-g), unsafe.Pointer(&db.answers[0]))
	}
	for g := 0; g < n4; g += lanes {
		db.t4.find4n((*[lanes]uint32)(c.ip[g:]), (*[lanes]uint32)(c.id4[g:]), min(lanes, n4-g))
	}
	for k := range n6 {
		c.ids[c.at6[k]] = c.id6[k]
	}
	for k := range n4 {
		c.ids[c.at4[k]] = c.id4[k]
	}
	var x uint8
	for _, id := range c.id4[:n4] {
		x |= db.answers[id].class
	}
	if !walkAsm {
		for _, id := range c.id6[:n6] {
			x |= db.answers[id].class
		}
	}
	c.touch = x
	ids := c.ids[:len(addrs)]
	for i, id := range ids {
		db.fill(id, outs[i])
	}
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
