package flow

import (
	"math/rand/v2"
	"testing"
)

// TestIndexAgainstMap drives the open-addressing index and a Go map with
// the same random inserts and deletes (small key space, so runs collide and
// wrap) and checks they always agree.
func TestIndexAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := newIndex(0)
	x.seed = 0 // worst case: deterministic hash
	ents := make([]entry, 0, 5000)
	var free []int32
	ref := map[Key]int32{}
	key := func() Key {
		var k Key
		k.Src[15] = byte(r.IntN(40))
		k.SrcPort = uint16(r.IntN(50))
		k.Proto = 17
		return k
	}
	for step := 0; step < 200000; step++ {
		k := key()
		i, h, ok := x.get(ents, &k)
		ri, rok := ref[k]
		if ok != rok || (ok && i != ri) {
			t.Fatalf("step %d: index %v/%d, map %v/%d", step, ok, i, rok, ri)
		}
		if ok {
			x.del(ents, i)
			delete(ref, k)
			free = append(free, i)
			continue
		}
		var ni int32
		if len(free) > 0 {
			ni, free = free[len(free)-1], free[:len(free)-1]
		} else {
			ents = append(ents, entry{})
			ni = int32(len(ents) - 1)
		}
		ents[ni] = entry{key: k, hash: h}
		x.put(ents, ni, h)
		ref[k] = ni
		if x.n != len(ref) {
			t.Fatalf("count %d vs %d", x.n, len(ref))
		}
	}
}
