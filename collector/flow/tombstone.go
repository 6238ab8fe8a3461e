package flow

// Tombstones of flows fed by cumulative counters (the live Sink path).
//
// The kernel keeps reporting an entry's cumulative counters until it drops
// the entry (its own idle timeout), and it must not drop entries on FIN or
// RST: deleting an LRU entry while the program updates it loses that update
// (typically the last ACK). So after the table exported and removed a
// flow, the next polls can report the same counters again. Without a
// memory of what was exported they would start a new flow holding the full
// cumulative counts: a duplicate record. A tombstone remembers, per
// canonical key, both sides' last cumulative counters and the record
// sequence, for a TTL longer than the kernel's idle timeout plus a poll.

// tombSide is what a tombstone keeps of one side's cumulative counters.
type tombSide struct {
	packets, bytes uint64
	firstNs        int64 // 0: side never reported
	fragments      uint32
	tcpFlags       uint8
}

type tomb struct {
	key        Key
	hash       uint64
	used       bool
	expires    int64
	firstNs    int64  // the flow's first packet: record ids continue from it
	seq        uint32 // records exported so far
	cid        cidBuf // Community ID: a resumed flow need not hash again
	opener     uint8
	openerSure bool
	sides      [2]tombSide
}

// tombs is a bounded FIFO of tombstones (export order, so also expiry
// order, the TTL being fixed) with an open-addressing index over it. The
// ring grows by doubling up to its bound, then slots are reused: steady
// state allocates nothing.
type tombs struct {
	ring  []tomb
	max   int
	head  int     // oldest slot
	count int     // slots in use from head (live or consumed)
	slots []int32 // ring position + 1; 0 means empty
	mask  uint64
	n     int // live tombstones
}

func newTombs(max int) tombs {
	return tombs{max: max}
}

// get returns the ring position of k's tombstone.
func (s *tombs) get(k *Key, h uint64) (int, bool) {
	if s.n == 0 {
		return 0, false
	}
	for i := h & s.mask; ; i = (i + 1) & s.mask {
		v := s.slots[i]
		if v == 0 {
			return 0, false
		}
		if tb := &s.ring[v-1]; tb.hash == h && tb.key == *k {
			return int(v - 1), true
		}
	}
}

// add stores a tombstone (its key must not be present), dropping the
// oldest one when the bound is reached.
func (s *tombs) add(tb *tomb) {
	if s.max <= 0 {
		return
	}
	if s.count == s.max {
		s.pop()
	}
	if s.count == len(s.ring) {
		s.grow()
	}
	pos := (s.head + s.count) % len(s.ring)
	s.count++
	s.ring[pos] = *tb
	s.ring[pos].used = true
	i := tb.hash & s.mask
	for s.slots[i] != 0 {
		i = (i + 1) & s.mask
	}
	s.slots[i] = int32(pos + 1)
	s.n++
}

// pop drops the oldest slot.
func (s *tombs) pop() {
	if s.ring[s.head].used {
		s.del(s.head)
	}
	s.head = (s.head + 1) % len(s.ring)
	s.count--
}

// grow doubles the ring (up to max), moving the slots to its start in
// age order, and rebuilds the index at <= 50% load.
func (s *tombs) grow() {
	n := min(max(2*len(s.ring), 64), s.max)
	ring := make([]tomb, n)
	for k := 0; k < s.count; k++ {
		ring[k] = s.ring[(s.head+k)%len(s.ring)]
	}
	s.ring, s.head = ring, 0
	size := 1024
	for size < 2*n {
		size <<= 1
	}
	s.slots = make([]int32, size)
	s.mask = uint64(size - 1)
	for p := 0; p < s.count; p++ {
		if !s.ring[p].used {
			continue
		}
		i := s.ring[p].hash & s.mask
		for s.slots[i] != 0 {
			i = (i + 1) & s.mask
		}
		s.slots[i] = int32(p + 1)
	}
}

// del removes the tombstone at ring position pos (live) from the index,
// shifting later members of its probe run back (no index tombstones).
func (s *tombs) del(pos int) {
	tb := &s.ring[pos]
	i := tb.hash & s.mask
	for s.slots[i] != int32(pos+1) {
		i = (i + 1) & s.mask
	}
	for j := (i + 1) & s.mask; s.slots[j] != 0; j = (j + 1) & s.mask {
		home := s.ring[s.slots[j]-1].hash & s.mask
		// Move j into the hole at i unless its home lies cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			s.slots[i] = s.slots[j]
			i = j
		}
	}
	s.slots[i] = 0
	s.n--
	tb.used = false
}

// expire drops the tombstones whose TTL ended at now. Only the oldest are
// checked, so the cost follows what expires.
func (s *tombs) expire(now int64) {
	for s.count > 0 && s.ring[s.head].expires <= now {
		s.pop()
	}
}
