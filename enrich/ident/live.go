package ident

import "sync/atomic"

// Live holds the current Index so the inventory's reload callback can swap
// in a rebuilt one while workers keep scanning. Workers keep their own
// Scanner and call Scanner(s) before each record: it returns s unchanged
// unless the index was replaced (then a fresh Scanner for the new index).
type Live struct{ p atomic.Pointer[Index] }

// Store publishes x.
func (l *Live) Store(x *Index) { l.p.Store(x) }

// Load returns the current index (nil before the first Store).
func (l *Live) Load() *Index { return l.p.Load() }

// Scanner returns s if it belongs to the current index, else a new Scanner
// for it (nil if no index was stored yet).
func (l *Live) Scanner(s *Scanner) *Scanner {
	x := l.p.Load()
	if x == nil {
		return nil
	}
	if s != nil && s.idx == x {
		return s
	}
	return x.NewScanner()
}
