package detect

import (
	"math/rand/v2"
	"testing"
)

// The table must agree with a Go map under random puts, gets and deletes,
// including keys that collide on their home slot and the reserved key 0.
func TestTableMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var tb table[int]
	ref := map[uint64]*int{}
	keyspace := []uint64{0, 1, 8, 16, 24, 9, 17}
	for i := 0; i < 200; i++ {
		keyspace = append(keyspace, r.Uint64())
	}
	for op := 0; op < 200000; op++ {
		k := keyspace[r.IntN(len(keyspace))]
		switch r.IntN(3) {
		case 0:
			v := op
			tb.put(k, &v)
			ref[tkey(k)] = &v
		case 1:
			tb.del(k)
			delete(ref, tkey(k))
		}
		if got, want := tb.get(k), ref[tkey(k)]; got != want {
			t.Fatalf("op %d key %d: got %v want %v", op, k, got, want)
		}
		if tb.len() != len(ref) {
			t.Fatalf("op %d: len %d want %d", op, tb.len(), len(ref))
		}
	}
	for k, v := range ref {
		if tb.get(k) != v {
			t.Fatalf("final key %d mismatch", k)
		}
	}
	seen := 0
	tb.each(func(k uint64, v *int) {
		seen++
		if ref[k] != v {
			t.Fatalf("each: key %d", k)
		}
	})
	if seen != len(ref) {
		t.Fatalf("each visited %d of %d", seen, len(ref))
	}
}
