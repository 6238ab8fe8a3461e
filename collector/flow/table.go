package flow

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/exfilwatch/exfilwatch/collector/communityid"
	"github.com/exfilwatch/exfilwatch/internal/strarena"
	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// ParseFunc fills DNS/TLS/HTTP fields of rec from rec.Snippets just before
// the record is emitted. It is a hook so the flow table does not depend on
// the payload parsers (collector/parse).
type ParseFunc func(rec *flowpb.FlowRecord)

// EmitFunc receives each finished record. The record and everything it
// points to (snippet data included) is reused after EmitFunc returns:
// marshal or deep-copy it (proto.Clone) to keep it. EmitFunc is called with
// the table locked and must not call back into the table.
type EmitFunc func(rec *flowpb.FlowRecord) error

// TableConfig configures a Table. The collector package builds it from its
// YAML Config; zero values fall back to the defaults noted per field.
type TableConfig struct {
	Gateway        string         // written into every record
	Interfaces     []string       // names of interface slots (IfMask bits); missing ones are "if<N>"
	LabSubnets     []netip.Prefix // device side of a flow; empty: every flow is transit
	IdleTimeout    time.Duration  // default 15 s
	ActiveTimeout  time.Duration  // default 60 s
	FinGrace       time.Duration  // wait for the last ACK after both FINs; default 1 s
	MaxFlows       int            // default 65536
	SnippetPackets int            // payload packets kept per direction (0: none; collector.DefaultConfig uses 4)
	SnippetBytes   int            // bytes kept per snippet (0: none; collector.DefaultConfig uses 1024)
	// TombstoneTTL is how long the live path remembers an exported flow's
	// kernel counters (see UpdateFlow): longer than the kernel's idle
	// timeout plus a poll interval. Default 2*IdleTimeout + 1 min.
	TombstoneTTL time.Duration
	// MaxTombstones bounds the remembered flows (oldest dropped first).
	// Default MaxFlows.
	MaxTombstones   int
	CommunityIDSeed uint16
	Parse           ParseFunc // optional
	// Clock returns the wall-clock time in ns for the live (Sink) path and
	// for Expire calls without an explicit time. Default time.Now.
	Clock func() int64
}

func (c *TableConfig) setDefaults() {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 15 * time.Second
	}
	if c.ActiveTimeout <= 0 {
		c.ActiveTimeout = 60 * time.Second
	}
	if c.FinGrace <= 0 {
		c.FinGrace = time.Second
	}
	if c.MaxFlows <= 0 {
		c.MaxFlows = 65536
	}
	if c.TombstoneTTL <= 0 {
		c.TombstoneTTL = 2*c.IdleTimeout + time.Minute
	}
	if c.MaxTombstones <= 0 {
		c.MaxTombstones = c.MaxFlows
	}
	if c.SnippetPackets < 0 {
		c.SnippetPackets = 0
	}
	if c.SnippetBytes < 0 {
		c.SnippetBytes = 0
	}
	if c.Clock == nil {
		c.Clock = func() int64 { return time.Now().UnixNano() }
	}
}

// TableStats are counters of one table, cumulative since creation.
type TableStats struct {
	Flows      uint64    // flows created
	Exported   [8]uint64 // records emitted, by flowpb.EndReason
	Evicted    uint64    // flows closed early because the table was full
	EmitErrors uint64    // records the emit callback refused
	Active     int       // flows currently in the table
}

// ExportedTotal is the number of records emitted for any reason.
func (s TableStats) ExportedTotal() uint64 {
	var n uint64
	for _, v := range s.Exported {
		n += v
	}
	return n
}

const nilIdx = -1

type snip struct {
	timeNs    int64
	index     uint32
	offset    uint32
	start     int
	n         int
	truncated bool
}

// side is one direction of a flow: side 0 sends from key.Src.
type side struct {
	cur      DirStats // counters of the current record (deltas)
	cum      DirStats // last cumulative counters from a Sink source
	hasMAC   bool
	fin      bool
	hasISN   bool
	isn      uint32
	icmpType uint16 // original ICMP type/code of this side's first packet
	icmpCode uint16
	seen     bool   // any packet ever seen on this side
	payIdx   uint32 // payload-carrying packets seen
	taken    int    // snippets captured over the flow's life
	nsnip    int    // snippets pending for the current record
	snips    []snip
	buf      []byte
}

type entry struct {
	key        Key // canonical key; side 0 sends from key.Src
	hash       uint64
	used       bool
	closing    bool
	opener     uint8
	openerSure bool
	cumulative bool // fed by UpdateFlow: leaves a tombstone when removed
	resumed    bool // continues an exported flow (see Table.resume)
	lab        [2]bool
	prev, next int32
	deadline   int64 // closing flows: export time
	firstNs    int64 // first packet of the flow (all records)
	startNs    int64 // first packet of the current record
	lastNs     int64
	seq        uint32 // records exported so far
	cid        cidBuf
	sides      [2]side
}

// cidBuf is a flow's rendered Community ID, kept by value in its entry (and
// tombstone): a long-lived flow then pins no string, hence no arena slab.
// Each record gets its own copy carved from the table's string arena.
type cidBuf [communityid.Size]byte

// ok reports whether the ID was computed (a rendered ID starts with "1:").
func (c *cidBuf) ok() bool { return c[0] != 0 }

// Table aggregates packets or kernel counters into bidirectional flows and
// exports finished flows as FlowRecords. It is safe for concurrent use.
type Table struct {
	mu   sync.Mutex
	cfg  TableConfig
	emit EmitFunc
	cid  communityid.Hasher

	idx   index
	ents  []entry
	tombs tombs
	free  []int32
	// idle: LRU list by last activity; closing: flows waiting for the last
	// ACK after both FINs, FIFO by deadline.
	idleHead, idleTail       int32
	closingHead, closingTail int32

	now       int64 // virtual clock (max packet time) or last Expire time
	ifNames   [64]string
	rec       flowpb.FlowRecord
	snipPool  []*flowpb.Snippet
	snipPtrs  []*flowpb.Snippet
	snipTimes []int64
	ifBuf     []string
	scratch   []byte
	// strs holds the records' id and Community ID strings: emit callees
	// may keep them (proto.Clone shares strings), so they are carved from
	// an append-only arena, never rewritten, rather than reused buffers;
	// a retained one pins at most one strarena.SlabSize slab. Guarded by mu.
	strs  strarena.Arena
	stats TableStats
}

// NewTable returns an empty table that hands finished records to emit.
func NewTable(cfg TableConfig, emit EmitFunc) *Table {
	cfg.setDefaults()
	t := &Table{
		cfg:         cfg,
		emit:        emit,
		cid:         communityid.New(cfg.CommunityIDSeed),
		idx:         newIndex(min(cfg.MaxFlows, 512)),
		tombs:       newTombs(cfg.MaxTombstones),
		idleHead:    nilIdx,
		idleTail:    nilIdx,
		closingHead: nilIdx,
		closingTail: nilIdx,
	}
	for i := range t.ifNames {
		if i < len(cfg.Interfaces) && cfg.Interfaces[i] != "" {
			t.ifNames[i] = cfg.Interfaces[i]
		} else {
			t.ifNames[i] = fmt.Sprintf("if%d", i)
		}
	}
	return t
}

// Stats returns a snapshot of the table's counters.
func (t *Table) Stats() TableStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Active = t.idx.n
	return s
}

// canonical orders a key so both directions of a flow map to one entry and
// returns the side the original key sends from. ICMP types with a reply
// counterpart use it as the destination "port", so echo request and reply
// share a flow; one-way ICMP messages are never reordered.
func canonical(k Key) (Key, uint8) {
	if k.Proto == communityidICMP || k.Proto == communityidICMPv6 {
		var oneWay bool
		k.SrcPort, k.DstPort, oneWay = communityid.ICMPPorts(k.Proto, k.SrcPort, k.DstPort)
		if oneWay {
			return k, 0
		}
	}
	c := bytes.Compare(k.Src[:], k.Dst[:])
	if c > 0 || (c == 0 && k.SrcPort > k.DstPort) {
		return k.Reverse(), 1
	}
	return k, 0
}

const (
	communityidICMP   = 1
	communityidICMPv6 = 58
	protoTCP          = 6
)

func (t *Table) inLab(a [16]byte) bool {
	if len(t.cfg.LabSubnets) == 0 {
		return false
	}
	ad := netip.AddrFrom16(a).Unmap()
	for _, p := range t.cfg.LabSubnets {
		if p.Contains(ad) {
			return true
		}
	}
	return false
}

// lookup finds or creates the entry for canonical key k at time now.
func (t *Table) lookup(k Key, s uint8, now int64) (int32, error) {
	i, h, ok := t.idx.get(t.ents, &k)
	if ok {
		return i, nil
	}
	var err error
	if t.idx.n >= t.cfg.MaxFlows && t.idleHead != nilIdx {
		victim := t.idleHead
		t.stats.Evicted++
		metricEvicted.Inc()
		err = t.exportAndRemove(victim, flowpb.EndReason_END_REASON_EVICTED, now)
	} else if t.idx.n >= t.cfg.MaxFlows && t.closingHead != nilIdx {
		err = t.exportAndRemove(t.closingHead, flowpb.EndReason_END_REASON_TCP_FIN, now)
	}
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		t.ents = append(t.ents, entry{})
		i = int32(len(t.ents) - 1)
	}
	e := &t.ents[i]
	// Keep the snippet buffers of a reused slot; reset everything else.
	b0, b1 := e.sides[0].buf, e.sides[1].buf
	s0, s1 := e.sides[0].snips, e.sides[1].snips
	*e = entry{key: k, hash: h, used: true, opener: s, firstNs: now, startNs: now, lastNs: now}
	e.sides[0].buf, e.sides[1].buf = b0[:0], b1[:0]
	e.sides[0].snips, e.sides[1].snips = s0[:0], s1[:0]
	e.lab[0], e.lab[1] = t.inLab(k.Src), t.inLab(k.Dst)
	t.idx.put(t.ents, i, h)
	t.pushBack(&t.idleHead, &t.idleTail, i)
	t.stats.Flows++
	return i, err
}

func (t *Table) pushBack(head, tail *int32, i int32) {
	e := &t.ents[i]
	e.prev, e.next = *tail, nilIdx
	if *tail != nilIdx {
		t.ents[*tail].next = i
	} else {
		*head = i
	}
	*tail = i
}

func (t *Table) unlink(head, tail *int32, i int32) {
	e := &t.ents[i]
	if e.prev != nilIdx {
		t.ents[e.prev].next = e.next
	} else {
		*head = e.next
	}
	if e.next != nilIdx {
		t.ents[e.next].prev = e.prev
	} else {
		*tail = e.prev
	}
	e.prev, e.next = nilIdx, nilIdx
}

func (t *Table) touch(i int32) {
	if t.ents[i].closing || t.idleTail == i {
		return
	}
	t.unlink(&t.idleHead, &t.idleTail, i)
	t.pushBack(&t.idleHead, &t.idleTail, i)
}

func (t *Table) remove(i int32) {
	e := &t.ents[i]
	if e.closing {
		t.unlink(&t.closingHead, &t.closingTail, i)
	} else {
		t.unlink(&t.idleHead, &t.idleTail, i)
	}
	t.idx.del(t.ents, i)
	e.used = false
	t.free = append(t.free, i)
}

func (t *Table) exportAndRemove(i int32, r flowpb.EndReason, now int64) error {
	err := t.export(i, r, now)
	if t.ents[i].cumulative {
		t.bury(&t.ents[i], now)
	}
	t.remove(i)
	return err
}

// startClosing moves a flow whose both sides sent FIN to the closing list.
func (t *Table) startClosing(i int32, now int64) {
	e := &t.ents[i]
	if e.closing {
		return
	}
	t.unlink(&t.idleHead, &t.idleTail, i)
	e.closing = true
	e.deadline = now + int64(t.cfg.FinGrace)
	t.pushBack(&t.closingHead, &t.closingTail, i)
}

// expire exports flows that are idle, or closing past their grace, at now.
func (t *Table) expire(now int64) error {
	var errs error
	t.tombs.expire(now)
	for t.closingHead != nilIdx && t.ents[t.closingHead].deadline <= now {
		errs = errors.Join(errs, t.exportAndRemove(t.closingHead, flowpb.EndReason_END_REASON_TCP_FIN, now))
	}
	idle := int64(t.cfg.IdleTimeout)
	for t.idleHead != nilIdx && now-t.ents[t.idleHead].lastNs >= idle {
		errs = errors.Join(errs, t.exportAndRemove(t.idleHead, flowpb.EndReason_END_REASON_IDLE_TIMEOUT, now))
	}
	// A flow that keeps sending is cut by the lazy active-timeout check on
	// its packets; one that stops is caught by the idle list above, as long
	// as the idle timeout is not longer than the active one. When it is,
	// sweep the whole table for active timeouts (rare configuration).
	if t.cfg.IdleTimeout > t.cfg.ActiveTimeout {
		active := int64(t.cfg.ActiveTimeout)
		for i := range t.ents {
			e := &t.ents[i]
			if e.used && !e.closing && now-e.startNs >= active && e.hasPackets() {
				errs = errors.Join(errs, t.continueRecord(int32(i), now))
			}
		}
	}
	return errs
}

func (e *entry) hasPackets() bool {
	return e.sides[0].cur.Packets+e.sides[1].cur.Packets > 0
}

// continueRecord exports the current record of a long-lived flow
// (END_REASON_ACTIVE_TIMEOUT) and starts a new record with zero deltas.
func (t *Table) continueRecord(i int32, now int64) error {
	err := t.export(i, flowpb.EndReason_END_REASON_ACTIVE_TIMEOUT, now)
	e := &t.ents[i]
	for s := range e.sides {
		sd := &e.sides[s]
		mac := sd.cur.SrcMAC
		sd.cur = DirStats{SrcMAC: mac}
	}
	e.startNs = now
	return err
}

// Observe accounts one decoded packet (the pcap path). The table's clock
// follows packet timestamps: flows idle longer than the idle timeout at the
// packet's time are exported first.
func (t *Table) Observe(p *Packet) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs error
	now := p.TimeNs
	if now > t.now {
		t.now = now
		errs = t.expire(now)
	}
	k, s := canonical(p.Key)
	i, err := t.lookup(k, s, now)
	if err != nil {
		errs = errors.Join(errs, err)
	}
	e := &t.ents[i]
	syn := p.TCPFlags&(TCPSyn|TCPAck) == TCPSyn
	if e.closing && (syn || p.PayloadLen > 0) && k.Proto == protoTCP {
		// A new connection reusing the 5-tuple, or data after the close.
		errs = errors.Join(errs, t.exportAndRemove(i, flowpb.EndReason_END_REASON_TCP_FIN, now))
		if i, err = t.lookup(k, s, now); err != nil {
			errs = errors.Join(errs, err)
		}
		e = &t.ents[i]
	} else if now-e.startNs >= int64(t.cfg.ActiveTimeout) && e.hasPackets() {
		errs = errors.Join(errs, t.continueRecord(i, now))
	}
	sd := &e.sides[s]
	st := &sd.cur
	if st.Packets == 0 || now < st.FirstNs {
		st.FirstNs = now
	}
	if now > st.LastNs {
		st.LastNs = now
	}
	if now > e.lastNs {
		e.lastNs = now
	}
	st.Packets++
	st.Bytes += p.L3Bytes
	st.TCPFlags |= p.TCPFlags
	if p.Fragment {
		st.Fragments++
	}
	if p.Interface < 64 {
		st.IfMask |= 1 << p.Interface
	}
	if p.HasMAC && !sd.hasMAC {
		st.SrcMAC = p.MACOrZero()
		sd.hasMAC = true
	}
	if !sd.seen {
		sd.seen = true
		sd.icmpType, sd.icmpCode = p.Key.SrcPort, p.Key.DstPort
	}
	if k.Proto == protoTCP {
		t.tcpState(i, s, p)
	}
	if p.PayloadLen > 0 {
		t.capture(e, sd, p)
	}
	if k.Proto == protoTCP && p.TCPFlags&TCPRst != 0 {
		return errors.Join(errs, t.exportAndRemove(i, flowpb.EndReason_END_REASON_TCP_RST, now))
	}
	if e.closing && p.TCPFlags&TCPFin == 0 {
		// The last ACK after both FINs: the connection is done.
		return errors.Join(errs, t.exportAndRemove(i, flowpb.EndReason_END_REASON_TCP_FIN, now))
	}
	if e.sides[0].fin && e.sides[1].fin {
		t.startClosing(i, now)
	}
	t.touch(i)
	return errs
}

// MACOrZero returns the source MAC, or zeros when the link had none.
func (p *Packet) MACOrZero() [6]byte {
	if p.HasMAC {
		return p.SrcMAC
	}
	return [6]byte{}
}

// tcpState tracks who opened the connection, ISNs and FINs.
func (t *Table) tcpState(i int32, s uint8, p *Packet) {
	e := &t.ents[i]
	sd := &e.sides[s]
	f := p.TCPFlags
	if f&TCPSyn != 0 {
		sd.isn, sd.hasISN = p.TCPSeq+1, true
		if !e.openerSure {
			if f&TCPAck == 0 {
				e.opener = s
			} else {
				e.opener = 1 - s
			}
			e.openerSure = true
		}
	}
	if f&TCPFin != 0 {
		sd.fin = true
	}
}

// capture keeps the first payload bytes of the first payload packets.
func (t *Table) capture(e *entry, sd *side, p *Packet) {
	idx := sd.payIdx
	sd.payIdx++
	var off uint32
	if e.key.Proto == protoTCP {
		if !sd.hasISN {
			sd.isn, sd.hasISN = p.TCPSeq, true
		}
		off = p.TCPSeq - sd.isn
	}
	t.addSnippet(sd, p.TimeNs, idx, off, p.Payload, p.PayloadLen > len(p.Payload))
}

func (t *Table) addSnippet(sd *side, ts int64, idx, off uint32, data []byte, truncated bool) {
	np, nb := t.cfg.SnippetPackets, t.cfg.SnippetBytes
	if sd.taken >= np || nb == 0 {
		return
	}
	// Snippets are appended back to back into the side's buffer, which
	// keeps its capacity when the slot is reused: memory follows the
	// payload actually kept (a DNS flow holds ~100 bytes, not
	// SnippetPackets*SnippetBytes), and steady state allocates nothing.
	n := min(len(data), nb)
	start := len(sd.buf)
	sd.buf = append(sd.buf, data[:n]...)
	sd.snips = append(sd.snips[:sd.nsnip], snip{timeNs: ts, index: idx, offset: off, start: start, n: n, truncated: truncated || n < len(data)})
	sd.nsnip++
	sd.taken++
}

// Flush exports every flow with the given reason (END_OF_CAPTURE at the end
// of a pcap, SHUTDOWN when the live collector stops) at the table's clock.
func (t *Table) Flush(r flowpb.EndReason) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now
	if now == 0 {
		now = t.cfg.Clock()
	}
	var errs error
	for t.closingHead != nilIdx {
		errs = errors.Join(errs, t.exportAndRemove(t.closingHead, flowpb.EndReason_END_REASON_TCP_FIN, now))
	}
	for t.idleHead != nilIdx {
		errs = errors.Join(errs, t.exportAndRemove(t.idleHead, r, now))
	}
	return errs
}

// Expire exports flows idle at time now (ns). Live collectors call it
// periodically with the wall clock; the pcap path calls it implicitly.
func (t *Table) Expire(now int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now > t.now {
		t.now = now
	}
	return t.expire(now)
}

// orient decides which side is the record's source and the direction.
func (e *entry) orient() (uint8, flowpb.Direction) {
	switch {
	case e.lab[0] && e.lab[1]:
		return e.opener, flowpb.Direction_DIRECTION_INTERNAL
	case e.lab[0] || e.lab[1]:
		dev := uint8(0)
		if e.lab[1] {
			dev = 1
		}
		if e.opener == dev {
			return dev, flowpb.Direction_DIRECTION_OUTBOUND
		}
		return dev, flowpb.Direction_DIRECTION_INBOUND
	}
	return e.opener, flowpb.Direction_DIRECTION_TRANSIT
}

// export builds the record of entry i and hands it to the parse hook and
// the emit callback. Empty records (a continued flow with no new packets)
// are skipped.
func (t *Table) export(i int32, r flowpb.EndReason, now int64) error {
	e := &t.ents[i]
	if !e.hasPackets() {
		return nil
	}
	src, dir := e.orient()
	dst := 1 - src
	so, si := &e.sides[src].cur, &e.sides[dst].cur
	k := e.key
	saddr, daddr, sport, dport := k.Src, k.Dst, k.SrcPort, k.DstPort
	if src == 1 {
		saddr, daddr, sport, dport = k.Dst, k.Src, k.DstPort, k.SrcPort
	}
	if k.Proto == communityidICMP || k.Proto == communityidICMPv6 {
		if e.sides[src].seen {
			sport, dport = e.sides[src].icmpType, e.sides[src].icmpCode
		} else {
			// Only the reply direction was seen: name the request type.
			pt, pc := e.sides[dst].icmpType, e.sides[dst].icmpCode
			if _, c, oneWay := communityid.ICMPPorts(k.Proto, pt, pc); !oneWay {
				sport, dport = c, 0
			} else {
				sport, dport = pt, pc
			}
		}
	}
	if !e.cid.ok() {
		a, b := k.Src[:], k.Dst[:]
		if k.IPVersion == 4 {
			a, b = k.Src[12:], k.Dst[12:]
		}
		ps, pd := k.SrcPort, k.DstPort
		if k.Proto == communityidICMP || k.Proto == communityidICMPv6 {
			// The canonical key holds port equivalents; hash the original
			// type/code of a seen side so one-way types stay exact.
			for s := 0; s < 2; s++ {
				if e.sides[s].seen {
					ps, pd = e.sides[s].icmpType, e.sides[s].icmpCode
					if s == 1 {
						a, b = b, a
					}
					break
				}
			}
		}
		t.cid.Append(e.cid[:0], a, b, k.Proto, ps, pd) // fills exactly Size bytes
	}

	rec := &t.rec
	rec.SchemaVersion = schema.Version
	rec.ObservedNs = now
	rec.FirstSeenNs = minNonZero(so.FirstNs, si.FirstNs, so.Packets > 0, si.Packets > 0)
	rec.LastSeenNs = max(so.LastNs, si.LastNs)
	rec.Gateway = t.cfg.Gateway
	t.ifBuf = t.ifBuf[:0]
	mask := so.IfMask | si.IfMask
	for b := 0; b < 64 && mask != 0; b++ {
		if mask&(1<<b) != 0 {
			t.ifBuf = append(t.ifBuf, t.ifNames[b])
			mask &^= 1 << b
		}
	}
	rec.Interfaces = t.ifBuf
	rec.Direction = dir
	rec.SrcAddr = append(rec.SrcAddr[:0], saddr[:]...)
	rec.DstAddr = append(rec.DstAddr[:0], daddr[:]...)
	rec.SrcPort, rec.DstPort = uint32(sport), uint32(dport)
	rec.Protocol = uint32(k.Proto)
	rec.IpVersion = uint32(k.IPVersion)
	rec.BytesOut, rec.PacketsOut = so.Bytes, so.Packets
	rec.BytesIn, rec.PacketsIn = si.Bytes, si.Packets
	rec.TcpFlagsOut, rec.TcpFlagsIn = uint32(so.TCPFlags), uint32(si.TCPFlags)
	if e.sides[src].hasMAC {
		rec.SrcMac = append(rec.SrcMac[:0], so.SrcMAC[:]...)
	} else {
		rec.SrcMac = rec.SrcMac[:0]
	}
	rec.CommunityId = t.strs.String(e.cid[:])
	rec.EndReason = r
	rec.Fragments = so.Fragments + si.Fragments
	rec.Dns, rec.Tls, rec.Http, rec.Enrichment = nil, nil, nil, nil
	rec.Snippets = t.snippets(e, src)

	// Deterministic, unique id: gateway, flow key, flow start, record seq.
	t.scratch = append(t.scratch[:0], t.cfg.Gateway...)
	t.scratch = append(t.scratch, 0)
	t.scratch = append(t.scratch, k.Src[:]...)
	t.scratch = append(t.scratch, k.Dst[:]...)
	t.scratch = append(t.scratch, byte(k.SrcPort>>8), byte(k.SrcPort), byte(k.DstPort>>8), byte(k.DstPort), k.Proto)
	t.scratch = appendU64(t.scratch, uint64(e.firstNs))
	t.scratch = appendU64(t.scratch, uint64(e.seq))
	h := xxh3.Hash128(t.scratch).Bytes()
	var hx [32]byte
	hex.Encode(hx[:], h[:])
	rec.Id = t.strs.String(hx[:])
	e.seq++

	if t.cfg.Parse != nil {
		t.cfg.Parse(rec)
	}
	t.stats.Exported[r]++
	metricExported[r].Inc()
	if err := t.emit(rec); err != nil {
		t.stats.EmitErrors++
		metricEmitErrors.Inc()
		return fmt.Errorf("emit flow %s: %w", rec.Id, err)
	}
	return nil
}

func minNonZero(a, b int64, ha, hb bool) int64 {
	switch {
	case ha && hb:
		return min(a, b)
	case ha:
		return a
	}
	return b
}

func appendU64(b []byte, v uint64) []byte {
	return append(b, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// snippets fills the record's snippet list from both sides' pending
// snippets, in time order, reusing pooled Snippet messages.
func (t *Table) snippets(e *entry, src uint8) []*flowpb.Snippet {
	t.snipPtrs = t.snipPtrs[:0]
	t.snipTimes = t.snipTimes[:0]
	for s := uint8(0); s < 2; s++ {
		sd := &e.sides[s]
		d := flowpb.Direction_DIRECTION_OUTBOUND
		if s != src {
			d = flowpb.Direction_DIRECTION_INBOUND
		}
		for j := 0; j < sd.nsnip; j++ {
			n := len(t.snipPtrs)
			if n == len(t.snipPool) {
				t.snipPool = append(t.snipPool, &flowpb.Snippet{})
			}
			sn := t.snipPool[n]
			m := sd.snips[j]
			sn.Direction = d
			sn.PacketIndex = m.index
			sn.StreamOffset = m.offset
			sn.Data = sd.buf[m.start : m.start+m.n : m.start+m.n]
			sn.Truncated = m.truncated
			t.snipPtrs = append(t.snipPtrs, sn)
			t.snipTimes = append(t.snipTimes, m.timeNs)
		}
		sd.nsnip = 0
		sd.snips = sd.snips[:0]
		sd.buf = sd.buf[:0] // the record's Data views stay valid until the next append
	}
	// Order by capture time (insertion sort: at most 2*SnippetPackets).
	ps, ts := t.snipPtrs, t.snipTimes
	for a := 1; a < len(ps); a++ {
		for b := a; b > 0 && ts[b] < ts[b-1]; b-- {
			ps[b], ps[b-1] = ps[b-1], ps[b]
			ts[b], ts[b-1] = ts[b-1], ts[b]
		}
	}
	return ps
}
