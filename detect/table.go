package detect

// table is a small open-addressing hash table from non-zero 64-bit keys to
// pointers, used for per-device state instead of Go maps. A Go map lookup
// on cold memory chases its header, directory, table and group before
// reaching the value; here a lookup reads one slot array (key and value side
// by side) and then the value, which halves the cache misses per record on a
// 10k-device working set. Linear probing, load factor at most 3/4, deletion
// by backward shift (no tombstones).
type table[V any] struct {
	slots []slot[V]
	n     int
}

type slot[V any] struct {
	key uint64 // 0 = empty
	val *V
}

// tkey maps the reserved empty key 0 to 1.
func tkey(k uint64) uint64 {
	if k == 0 {
		return 1
	}
	return k
}

func (t *table[V]) len() int { return t.n }

// get returns the value of k or nil.
func (t *table[V]) get(k uint64) *V {
	if t.n == 0 {
		return nil
	}
	k = tkey(k)
	mask := uint64(len(t.slots) - 1)
	for i := k & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.key == k {
			return s.val
		}
		if s.key == 0 {
			return nil
		}
	}
}

// put sets k to v (v must not be nil).
func (t *table[V]) put(k uint64, v *V) {
	if 4*(t.n+1) > 3*len(t.slots) {
		t.grow()
	}
	k = tkey(k)
	mask := uint64(len(t.slots) - 1)
	for i := k & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.key == k {
			s.val = v
			return
		}
		if s.key == 0 {
			*s = slot[V]{k, v}
			t.n++
			return
		}
	}
}

// del removes k if present.
func (t *table[V]) del(k uint64) {
	if t.n == 0 {
		return
	}
	k = tkey(k)
	mask := uint64(len(t.slots) - 1)
	i := k & mask
	for {
		if t.slots[i].key == 0 {
			return
		}
		if t.slots[i].key == k {
			break
		}
		i = (i + 1) & mask
	}
	// Backward-shift: move later entries of the probe run into the hole
	// when their home slot does not lie (cyclically) after the hole.
	for j := (i + 1) & mask; t.slots[j].key != 0; j = (j + 1) & mask {
		home := t.slots[j].key & mask
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = slot[V]{}
	t.n--
}

func (t *table[V]) grow() {
	old := t.slots
	t.slots = make([]slot[V], max(8, 2*len(old)))
	t.n = 0
	for _, s := range old {
		if s.key != 0 {
			t.put(s.key, s.val)
		}
	}
}

// each calls f for every entry. f must not modify the table.
func (t *table[V]) each(f func(k uint64, v *V)) {
	for _, s := range t.slots {
		if s.key != 0 {
			f(s.key, s.val)
		}
	}
}

// oldest returns the key of the entry with the smallest last(v), for
// evicting the longest-idle entry when a table is at its cap.
func (t *table[V]) oldest(last func(*V) int64) (uint64, bool) {
	var best uint64
	var bt int64
	found := false
	for _, s := range t.slots {
		if s.key != 0 {
			if l := last(s.val); !found || l < bt {
				best, bt, found = s.key, l, true
			}
		}
	}
	return best, found
}

// bytes is the table's own memory (not the values').
func (t *table[V]) bytes() int { return 16 * len(t.slots) }
