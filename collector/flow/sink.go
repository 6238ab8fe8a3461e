package flow

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

var _ Sink = (*Table)(nil)

// UpdateFlow implements Sink for the live eBPF path: s holds cumulative
// counters of one direction since the kernel created its map entry. The
// table turns them into deltas per record, so an active-timeout export
// continues the flow with fresh counters. Counters that go backwards, or a
// new FirstNs, mean the kernel entry was recreated; they are taken as new.
//
// The kernel keeps its entries until its own idle timeout, so it reports a
// flow again after the table exported it (FIN, RST, idle): a tombstone of
// the exported flow (see tombs) turns such a report into nothing (same
// counts), a continuation record with only the new packets (grown counts,
// same FirstNs), or a new flow (new FirstNs).
func (t *Table) UpdateFlow(k Key, s DirStats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := s.LastNs
	if now == 0 {
		now = t.cfg.Clock()
	}
	if now > t.now {
		t.now = now
	}
	ck, sideIdx := canonical(k)
	i, h, ok := t.idx.get(t.ents, &ck)
	if !ok || !t.ents[i].cumulative {
		var tb *tomb
		pos, found := t.tombs.get(&ck, h)
		if found {
			tb = &t.tombs.ring[pos]
			ts := &tb.sides[sideIdx]
			if ts.firstNs != 0 && s.FirstNs == ts.firstNs && s.Packets <= ts.packets {
				metricTombstoneHits.Inc()
				return // counts the table exported already
			}
		}
		if !ok {
			var err error
			i, err = t.lookup(ck, sideIdx, now)
			t.logErr(err)
		}
		e := &t.ents[i]
		e.cumulative = true
		if found {
			t.resume(e, tb, sideIdx, s.FirstNs)
			t.tombs.del(pos)
		}
	}
	e := &t.ents[i]
	// A resumed flow keeps the opener decided before its export.
	wasSeen := e.sides[0].seen || e.sides[1].seen || e.resumed
	if !wasSeen && !e.resumed && s.FirstNs > 0 && s.FirstNs < e.startNs {
		e.firstNs, e.startNs = s.FirstNs, s.FirstNs // new flow: start at its first packet
	}
	if now-e.startNs >= int64(t.cfg.ActiveTimeout) && e.hasPackets() {
		t.logErr(t.continueRecord(i, now))
	}
	sd := &e.sides[sideIdx]
	d := s
	// A kernel entry that was deleted (idle) and re-created starts from
	// zero with a new FirstNs: then s is itself the delta.
	restarted := sd.cum.FirstNs != 0 && s.FirstNs != 0 && s.FirstNs != sd.cum.FirstNs
	if !restarted && s.Packets >= sd.cum.Packets && s.Bytes >= sd.cum.Bytes {
		d.Packets -= sd.cum.Packets
		d.Bytes -= sd.cum.Bytes
		d.Fragments -= min(d.Fragments, sd.cum.Fragments)
	}
	sd.cum = s
	if d.Packets == 0 {
		t.touch(i)
		return
	}
	st := &sd.cur
	first := s.FirstNs
	if first == 0 || first < e.startNs {
		first = now
	}
	if st.Packets == 0 || first < st.FirstNs {
		st.FirstNs = first
	}
	st.LastNs = max(st.LastNs, now)
	e.lastNs = max(e.lastNs, now)
	st.Packets += d.Packets
	st.Bytes += d.Bytes
	st.Fragments += d.Fragments
	st.TCPFlags |= s.TCPFlags
	st.IfMask |= s.IfMask
	if !sd.hasMAC && s.SrcMAC != ([6]byte{}) {
		st.SrcMAC, sd.hasMAC = s.SrcMAC, true
	}
	if !sd.seen {
		sd.seen = true
		sd.icmpType, sd.icmpCode = k.SrcPort, k.DstPort
	}
	if !e.openerSure {
		t.updateOpener(e, sideIdx, wasSeen)
	}
	t.touch(i)
}

// updateOpener decides which side opened a flow fed by kernel counters,
// after side si reported. The kernel stamps packets with a coarse clock
// (1-4 ms), so request and reply often share FirstNs; the decision must
// then not depend on the order the table heard of the two sides in.
func (t *Table) updateOpener(e *entry, si uint8, wasSeen bool) {
	sd, other := &e.sides[si], &e.sides[1-si]
	if !other.seen {
		if !wasSeen {
			e.opener = si // the only side so far
		}
		return
	}
	tcp := e.key.Proto == protoTCP
	syn := tcp && sd.cum.TCPFlags&TCPSyn != 0
	otherSyn := tcp && other.cum.TCPFlags&TCPSyn != 0
	a, b := sd.cum.FirstNs, other.cum.FirstNs
	switch {
	case syn != otherSyn:
		// Only one side sent SYN (the other answered with RST, or the
		// handshake was missed on one side): it opened.
		if syn {
			e.opener = si
		} else {
			e.opener = 1 - si
		}
	case a != 0 && b != 0 && a != b:
		if a < b {
			e.opener = si
		} else {
			e.opener = 1 - si
		}
	default:
		if o, ok := t.tieOpener(e); ok {
			e.opener = o
		}
	}
	// Both SYNs seen: the handshake is complete, the decision final.
	e.openerSure = syn && otherSyn
}

// tieOpener breaks a tie of first-packet times: the side sending from a
// service port while the other sends from an ephemeral one answered, so
// the other opened; else the lab-subnet side opened. ok is false when
// neither rule decides.
func (t *Table) tieOpener(e *entry) (uint8, bool) {
	k := &e.key
	if k.Proto != communityidICMP && k.Proto != communityidICMPv6 {
		s0, s1 := servicePort(k.SrcPort), servicePort(k.DstPort)
		switch {
		case s0 && !s1 && k.DstPort >= 1024:
			return 1, true
		case s1 && !s0 && k.SrcPort >= 1024:
			return 0, true
		}
	}
	switch {
	case e.lab[0] && !e.lab[1]:
		return 0, true
	case e.lab[1] && !e.lab[0]:
		return 1, true
	}
	return 0, false
}

// servicePort reports whether p is a well-known port (1-1023) or a
// registered port that phones commonly talk to as clients.
func servicePort(p uint16) bool {
	if p > 0 && p < 1024 {
		return true
	}
	switch p {
	case 1883, // MQTT
		3478,       // STUN/TURN
		5222, 5223, // XMPP, Apple push
		5228,       // Google push (FCM)
		5349,       // STUN/TURN over TLS
		8080, 8443, // HTTP(S) alternates
		8883,  // MQTT over TLS
		19302: // Google STUN
		return true
	}
	return false
}

// resume starts entry e, just created for a flow the table exported
// before, from that flow's tombstone: the cumulative counters the kernel
// reported then are the base of the new deltas. If side si's kernel entry
// is the one the table saw (same FirstNs), the flow continues: same first
// packet time and opener, next record sequence (ids stay unique).
func (t *Table) resume(e *entry, tb *tomb, si uint8, firstNs int64) {
	metricResumed.Inc()
	e.seq = tb.seq // a new flow may share the old one's first-packet tick
	e.cid = tb.cid // same canonical key
	for j := range e.sides {
		ts := &tb.sides[j]
		e.sides[j].cum = DirStats{Packets: ts.packets, Bytes: ts.bytes, FirstNs: ts.firstNs, Fragments: ts.fragments, TCPFlags: ts.tcpFlags}
	}
	if ts := &tb.sides[si]; ts.firstNs != 0 && ts.firstNs == firstNs {
		e.resumed = true
		e.firstNs = tb.firstNs
		e.opener, e.openerSure = tb.opener, tb.openerSure
	}
}

// bury remembers the cumulative counters of entry e, fed by UpdateFlow,
// which is being exported and removed at now.
func (t *Table) bury(e *entry, now int64) {
	tb := tomb{key: e.key, hash: e.hash, expires: now + int64(t.cfg.TombstoneTTL), firstNs: e.firstNs, seq: e.seq, cid: e.cid, opener: e.opener, openerSure: e.openerSure}
	for j := range e.sides {
		c := &e.sides[j].cum
		tb.sides[j] = tombSide{packets: c.Packets, bytes: c.Bytes, firstNs: c.FirstNs, fragments: c.Fragments, tcpFlags: c.TCPFlags}
	}
	t.tombs.add(&tb)
}

// Snippet implements Sink: it keeps a copy of the payload bytes.
func (t *Table) Snippet(s PacketSnippet) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ck, sideIdx := canonical(s.Key)
	now := s.TimeNs
	if now == 0 {
		now = t.cfg.Clock()
	}
	i, err := t.lookup(ck, sideIdx, now)
	t.logErr(err)
	sd := &t.ents[i].sides[sideIdx]
	t.addSnippet(sd, now, s.Index, s.Offset, s.Data, s.Truncated)
}

// EndFlow implements Sink: RST exports the flow now; FIN marks the side,
// and once both sides sent FIN the flow is exported after a short grace
// (FinGrace) so the last ACK's counters still land in it.
func (t *Table) EndFlow(k Key, rst bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ck, sideIdx := canonical(k)
	i, _, ok := t.idx.get(t.ents, &ck)
	if !ok {
		return
	}
	now := t.cfg.Clock()
	if rst {
		t.logErr(t.exportAndRemove(i, flowpb.EndReason_END_REASON_TCP_RST, now))
		return
	}
	e := &t.ents[i]
	e.sides[sideIdx].fin = true
	if e.sides[0].fin && e.sides[1].fin {
		t.startClosing(i, now)
	}
}

func (t *Table) logErr(err error) {
	if err != nil {
		slog.Warn("flow table export failed", "err", err)
	}
}

// Run expires flows against the wall clock every interval until ctx ends,
// then exports all remaining flows with END_REASON_SHUTDOWN.
func (t *Table) Run(ctx context.Context, interval time.Duration) error {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			err := t.Flush(flowpb.EndReason_END_REASON_SHUTDOWN)
			if err != nil {
				return err
			}
			if errors.Is(ctx.Err(), context.Canceled) {
				return nil
			}
			return ctx.Err()
		case <-tk.C:
			t.logErr(t.Expire(t.cfg.Clock()))
		}
	}
}
