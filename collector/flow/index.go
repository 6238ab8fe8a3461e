package flow

import (
	"encoding/binary"
	"math/rand/v2"
)

// index maps canonical keys to entry slots: open addressing with linear
// probing and backward-shift deletion. It replaces a Go map because flow
// tables delete as often as they insert, and Go's map keeps tombstones that
// made lookups and deletes probe long runs under churn (profiled: >40% of
// the export benchmark). Without tombstones probe lengths stay short at the
// <= 50% load the index keeps. The hash is seeded per table so a device
// cannot pre-compute colliding 5-tuples.
type index struct {
	slots []int32 // entry index + 1; 0 means empty
	mask  uint64
	n     int
	seed  uint64
}

func newIndex(capHint int) index {
	size := 1024
	for size < 2*capHint {
		size <<= 1
	}
	return index{slots: make([]int32, size), mask: uint64(size - 1), seed: rand.Uint64() | 1}
}

func (x *index) hash(k *Key) uint64 {
	const m = 0x9e3779b97f4a7c15
	h := x.seed ^ (uint64(k.Proto)<<40 | uint64(k.IPVersion)<<32 | uint64(k.SrcPort)<<16 | uint64(k.DstPort))
	for _, v := range [4]uint64{
		binary.LittleEndian.Uint64(k.Src[:8]), binary.LittleEndian.Uint64(k.Src[8:]),
		binary.LittleEndian.Uint64(k.Dst[:8]), binary.LittleEndian.Uint64(k.Dst[8:]),
	} {
		h = (h ^ v) * m
		h ^= h >> 31
	}
	h *= m
	return h ^ h>>29
}

// get returns the entry index of k and its hash.
func (x *index) get(ents []entry, k *Key) (int32, uint64, bool) {
	h := x.hash(k)
	for i := h & x.mask; ; i = (i + 1) & x.mask {
		s := x.slots[i]
		if s == 0 {
			return 0, h, false
		}
		if e := &ents[s-1]; e.hash == h && e.key == *k {
			return s - 1, h, true
		}
	}
}

// put inserts entry ei, whose key is not present, with hash h.
func (x *index) put(ents []entry, ei int32, h uint64) {
	if 2*(x.n+1) > len(x.slots) {
		x.grow(ents)
	}
	i := h & x.mask
	for x.slots[i] != 0 {
		i = (i + 1) & x.mask
	}
	x.slots[i] = ei + 1
	x.n++
}

func (x *index) grow(ents []entry) {
	old := x.slots
	x.slots = make([]int32, 2*len(old))
	x.mask = uint64(len(x.slots) - 1)
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := ents[s-1].hash & x.mask
		for x.slots[i] != 0 {
			i = (i + 1) & x.mask
		}
		x.slots[i] = s
	}
}

// del removes entry ei (present) and shifts later members of its probe run
// back so no tombstone is left.
func (x *index) del(ents []entry, ei int32) {
	i := ents[ei].hash & x.mask
	for x.slots[i] != ei+1 {
		i = (i + 1) & x.mask
	}
	for j := (i + 1) & x.mask; x.slots[j] != 0; j = (j + 1) & x.mask {
		home := ents[x.slots[j]-1].hash & x.mask
		// Move j into the hole at i unless its home lies cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			x.slots[i] = x.slots[j]
			i = j
		}
	}
	x.slots[i] = 0
	x.n--
}
