// Package strarena carves immutable strings out of append-only byte slabs,
// so hot paths that must hand out fresh strings (record ids, Community IDs)
// pay one allocation per slab instead of one per string.
//
// Safety: a slab's bytes are written once, when a string is carved, and
// never again: the arena only appends, and when a slab is full it starts a
// fresh one instead of reusing it. A string therefore stays valid and
// unchanged for as long as anyone holds it, and keeps only its own slab
// alive (the garbage collector follows the interior pointer).
//
// Retention: a retained string pins at most one slab, so memory held by
// downstream holders is bounded by (retained strings) x SlabSize, against
// (retained strings) x len(string) for individually allocated strings.
// Holders that keep strings for a long time (alert state) should
// strings.Clone them. The arena itself holds one slab.
//
// An Arena is not safe for concurrent use: give each goroutine its own (or
// guard it with the lock that already guards its owner).
package strarena

import "unsafe"

const (
	// SlabSize bounds the memory a single retained string can pin. With
	// ~30-byte ids and Community IDs a slab serves 16-20 records (0.05-0.06
	// allocations per record). BenchmarkSlabSize: 256 B to 16 KiB slabs
	// cost the same per string within noise (about half a string
	// allocation), so the size is set by retention, not speed.
	SlabSize = 1024
	// MaxLen is the longest string carved from a slab; longer ones are
	// allocated on their own (they gain little from amortising, and this
	// caps the space wasted at the end of a slab).
	MaxLen = SlabSize / 4
)

// Arena hands out strings carved from append-only slabs. The zero value is
// ready to use with SlabSize slabs.
type Arena struct {
	slab []byte // bytes below len are carved out and must never be written
	size int    // slab size; 0 means SlabSize (tests use others)
	// Slabs counts slabs allocated, for tests and benchmarks.
	Slabs int
}

// New returns an arena with slabs of size bytes (strings longer than a
// quarter of that are allocated individually).
func New(size int) *Arena { return &Arena{size: size} }

// String returns a string with the contents of b. b is not retained.
func (a *Arena) String(b []byte) string {
	n := len(b)
	size := a.size
	if size <= 0 {
		size = SlabSize
	}
	if n == 0 {
		return ""
	}
	if n > size/4 {
		return string(b)
	}
	if cap(a.slab)-len(a.slab) < n {
		// Never reuse the old slab: strings carved from it may be held.
		a.slab = make([]byte, 0, size)
		a.Slabs++
	}
	start := len(a.slab)
	a.slab = append(a.slab, b...)
	return unsafe.String(&a.slab[start], n)
}
