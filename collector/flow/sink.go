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
// continues the flow with fresh counters. Counters that go backwards mean
// the kernel entry was recreated; they are taken as new.
//
// The kernel should delete its entry once it reported EndFlow for it;
// otherwise a later UpdateFlow re-creates the flow with the full cumulative
// counts (the table keeps no tombstones).
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
	i, err := t.lookup(ck, sideIdx, now)
	t.logErr(err)
	e := &t.ents[i]
	if !e.sides[0].seen && !e.sides[1].seen && s.FirstNs > 0 && s.FirstNs < e.startNs {
		e.firstNs, e.startNs = s.FirstNs, s.FirstNs // new flow: start at its first packet
	}
	if now-e.startNs >= int64(t.cfg.ActiveTimeout) && e.hasPackets() {
		t.logErr(t.continueRecord(i, now))
	}
	sd := &e.sides[sideIdx]
	d := s
	// A kernel entry that was deleted (idle, FIN/RST) and re-created starts
	// from zero with a new FirstNs: then s is itself the delta.
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
	// Opener: the side whose first packet is earliest, unless the flags
	// say otherwise (SYN without ACK on this side and none on the other).
	other := &e.sides[1-sideIdx]
	if !e.openerSure && ck.Proto == protoTCP && s.TCPFlags&TCPSyn != 0 {
		if other.cum.TCPFlags&TCPSyn != 0 {
			// Both sides sent SYN: the earlier one opened.
			if s.FirstNs != 0 && other.cum.FirstNs != 0 && s.FirstNs < other.cum.FirstNs {
				e.opener = sideIdx
			} else {
				e.opener = 1 - sideIdx
			}
			e.openerSure = true
		} else {
			e.opener = sideIdx
		}
	} else if !e.openerSure && other.seen && s.FirstNs != 0 && other.cum.FirstNs != 0 && s.FirstNs < other.cum.FirstNs {
		e.opener = sideIdx
	}
	t.touch(i)
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
