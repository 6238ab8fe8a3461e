package geo

import (
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The lookup structures of a DB (both tries and the answers, 17 MB for the
// real data) are read at random: with 4 KiB pages nearly every cache miss of
// a lookup is also a TLB miss, and a batch walk keeping dozens of misses in
// flight queues them on the few page walkers. They hold no pointers, so
// Open moves them into one anonymous mapping advised for transparent huge
// pages (2 MiB aligned: 9 TLB entries instead of 4,300). The Go heap gets
// huge pages only where the runtime decides.
//
// The mapping is unmapped by a cleanup once the DB is unreachable. Every
// method that reads it through db therefore ends with runtime.KeepAlive(db):
// the GC does not see the mapping, so without it a DB swapped out by a
// reload could be collected while a lookup is still walking its arrays.

const hugePage = 2 << 20

// offHeapLive is the bytes currently mapped by DBs (for tests).
var offHeapLive atomic.Int64

// offHeap is a bump allocator over one mapping.
type offHeap struct {
	mem []byte
	off int
}

// newOffHeap maps size bytes (rounded up to huge pages). It returns nil if
// the mapping fails; callers then keep their heap copies.
func newOffHeap(size int) *offHeap {
	size = (size + hugePage - 1) &^ (hugePage - 1)
	m, err := unix.Mmap(-1, 0, size+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil
	}
	// Trim to a 2 MiB-aligned window so the kernel can back it with huge
	// pages from the first byte.
	lead := (hugePage - int(uintptr(unsafe.Pointer(&m[0])))%hugePage) % hugePage
	if lead > 0 {
		_ = unix.Munmap(m[:lead])
	}
	if tail := len(m) - lead - size; tail > 0 {
		_ = unix.Munmap(m[lead+size:])
	}
	m = m[lead : lead+size : lead+size]
	_ = unix.Madvise(m, unix.MADV_HUGEPAGE) // advice only: 4 KiB pages also work
	return &offHeap{mem: m}
}

// alloc returns n zeroed Ts from h, 4 KiB aligned. T must hold no pointers.
func alloc[T any](h *offHeap, n int) []T {
	var z T
	size := n * int(unsafe.Sizeof(z))
	h.off = (h.off + 4095) &^ 4095
	if size == 0 {
		return []T{}
	}
	p := unsafe.Pointer(&h.mem[h.off])
	h.off += size
	_ = h.mem[h.off-1] // in bounds
	return unsafe.Slice((*T)(p), n)
}

// offHeapSize is what moveOffHeap needs for tries t4, t6 and n answers.
func offHeapSize(t4, t6 *ptrie, n int) int {
	pad := func(b int) int { return (b + 4095) &^ 4095 }
	return pad(len(t4.arena)*4) + pad(len(t4.top)*4) + pad(len(t6.arena)*4) + pad(len(t6.top)*4) +
		pad(n*int(unsafe.Sizeof(answer{})))
}

// moveOffHeap copies db's tries and answers into one huge-page mapping and
// arranges for it to be unmapped when db is collected. On failure db keeps
// its heap arrays.
func (db *DB) moveOffHeap() {
	h := newOffHeap(offHeapSize(&db.t4, &db.t6, len(db.answers)))
	if h == nil {
		return
	}
	for _, t := range []*ptrie{&db.t4, &db.t6} {
		a := alloc[uint32](h, len(t.arena))
		copy(a, t.arena)
		top := alloc[uint32](h, len(t.top))
		copy(top, t.top[:])
		t.arena, t.top = a, (*[1 << 16]uint32)(top)
	}
	ans := alloc[answer](h, len(db.answers))
	copy(ans, db.answers)
	db.answers = ans
	db.offHeap = len(h.mem)
	offHeapLive.Add(int64(len(h.mem)))
	runtime.AddCleanup(db, func(m []byte) {
		offHeapLive.Add(-int64(len(m)))
		_ = unix.Munmap(m)
	}, h.mem)
}
