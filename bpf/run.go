package bpf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/exfilwatch/exfilwatch/collector/flow"
)

// Event types and flags, see enum event_type in c/flow.c.
const (
	evSnippet     = 1
	evEnd         = 2
	evFTruncated  = 0x01
	evFRst        = 0x02
	eventHdrBytes = int(unsafe.Sizeof(flowEventHdr{}))
)

// maxReadWait bounds how long Run blocks in the ring buffer before it
// checks the context again.
const maxReadWait = 200 * time.Millisecond

// userStats are the user-space side counters (see Counters).
type userStats struct {
	eventsRead      atomic.Uint64
	eventsMalformed atomic.Uint64
	flowsReported   atomic.Uint64
	flowsExpired    atomic.Uint64
	pollErrors      atomic.Uint64
	entries         atomic.Uint64
	lruEvictions    atomic.Uint64
}

// Run consumes the ring buffer and polls the flow table every
// Config.PollInterval until ctx is done, then polls a last time. All sink
// methods are called from the goroutine running Run, never concurrently.
//
// Every poll reports each entry's cumulative counters with UpdateFlow.
// Entries idle longer than Config.IdleTimeout are atomically removed and
// reported with their final counters; if the flow resumes, the kernel starts
// a new entry from zero with a new FirstNs.
func (p *Probe) Run(ctx context.Context, sink flow.Sink) error {
	var rec ringbuf.Record
	next := time.Now().Add(p.cfg.PollInterval)
	w := newWalker(p)
	for {
		if err := ctx.Err(); err != nil {
			p.drainEvents(&rec, sink)
			w.poll(sink)
			return nil
		}
		wait := time.Until(next)
		if wait > maxReadWait {
			wait = maxReadWait
		}
		if wait > 0 {
			p.rd.SetDeadline(time.Now().Add(wait))
			err := p.rd.ReadInto(&rec)
			switch {
			case err == nil:
				p.handleEvent(rec.RawSample, sink)
				continue
			case errors.Is(err, os.ErrDeadlineExceeded):
			case errors.Is(err, ringbuf.ErrClosed):
				return fmt.Errorf("bpf: run: probe closed: %w", err)
			default:
				return fmt.Errorf("bpf: read ring buffer: %w", err)
			}
		}
		if !time.Now().Before(next) {
			// Events queued before the poll go first: snippets and FIN/RST
			// notices then reach the table before the counters of the
			// packets that followed them.
			p.drainEvents(&rec, sink)
			w.poll(sink)
			next = time.Now().Add(p.cfg.PollInterval)
		}
	}
}

// drainEvents reads what is already in the ring buffer without blocking.
func (p *Probe) drainEvents(rec *ringbuf.Record, sink flow.Sink) {
	for p.rd.AvailableBytes() > 0 {
		p.rd.SetDeadline(time.Now())
		if err := p.rd.ReadInto(rec); err != nil {
			return
		}
		p.handleEvent(rec.RawSample, sink)
	}
}

// handleEvent decodes one ring buffer record (struct event_hdr + data).
func (p *Probe) handleEvent(raw []byte, sink flow.Sink) {
	p.stats.eventsRead.Add(1)
	if len(raw) < eventHdrBytes {
		p.stats.eventsMalformed.Add(1)
		return
	}
	var h flowEventHdr
	decodeEventHdr(raw, &h)
	k := toKey(&h.Key)
	switch h.Type {
	case evSnippet:
		end := eventHdrBytes + int(h.Len)
		if end > len(raw) {
			p.stats.eventsMalformed.Add(1)
			return
		}
		sink.Snippet(flow.PacketSnippet{
			Key:       k,
			TimeNs:    int64(h.Ts) + p.monoToWall,
			Index:     h.Index,
			Offset:    h.Offset,
			Data:      raw[eventHdrBytes:end],
			Truncated: h.Flags&evFTruncated != 0,
		})
	case evEnd:
		// The FIN/RST event overtakes the counters, which are only polled
		// every PollInterval: hand the table the current counts of both
		// directions first, so a RST export (now) or a FIN export (after
		// fin_grace) has fresh counts. The kernel entries stay: deleting an
		// LRU entry while the program updates it would lose that update
		// (the last ACK). Later polls re-report them; the table's
		// tombstones tell those reports from new traffic.
		p.reportEntry(k, sink)
		p.reportEntry(k.Reverse(), sink)
		sink.EndFlow(k, h.Flags&evFRst != 0)
	default:
		p.stats.eventsMalformed.Add(1)
	}
}

// decodeEventHdr decodes struct event_hdr (little endian) without
// allocating.
func decodeEventHdr(b []byte, h *flowEventHdr) {
	le := binary.LittleEndian
	h.Ts = le.Uint64(b[0:])
	copy(h.Key.Src[:], b[8:24])
	copy(h.Key.Dst[:], b[24:40])
	h.Key.Sport = le.Uint16(b[40:])
	h.Key.Dport = le.Uint16(b[42:])
	h.Key.Proto = b[44]
	h.Key.Ipver = b[45]
	h.Index = le.Uint32(b[48:])
	h.Offset = le.Uint32(b[52:])
	h.Len = le.Uint32(b[56:])
	h.PayloadLen = le.Uint32(b[60:])
	h.Type = b[64]
	h.Flags = b[65]
}

// reportEntry reports the current counters of k's kernel entry, if any.
func (p *Probe) reportEntry(k flow.Key, sink flow.Sink) {
	fk := flowFlowKey{Src: k.Src, Dst: k.Dst, Sport: k.SrcPort, Dport: k.DstPort, Proto: k.Proto, Ipver: k.IPVersion}
	var v flowFlowStats
	if err := p.objs.Flows.Lookup(&fk, &v); err != nil {
		if !errors.Is(err, ebpf.ErrKeyNotExist) {
			p.stats.pollErrors.Add(1)
		}
		return
	}
	p.stats.flowsReported.Add(1)
	sink.UpdateFlow(k, p.toStats(&v))
}

func toKey(k *flowFlowKey) flow.Key {
	return flow.Key{Src: k.Src, Dst: k.Dst, SrcPort: k.Sport, DstPort: k.Dport, Proto: k.Proto, IPVersion: k.Ipver}
}

func (p *Probe) toStats(v *flowFlowStats) flow.DirStats {
	return flow.DirStats{
		Packets:   v.Packets,
		Bytes:     v.Bytes,
		FirstNs:   int64(v.FirstNs) + p.monoToWall,
		LastNs:    int64(v.LastNs) + p.monoToWall,
		TCPFlags:  uint8(v.TcpFlags),
		Fragments: v.Fragments,
		SrcMAC:    v.SrcMac,
		IfMask:    v.IfMask,
	}
}

// pollBatch is the number of entries read per BPF_MAP_LOOKUP_BATCH call.
const pollBatch = 256

// walker polls the flow table; its buffers are reused across polls.
type walker struct {
	p       *Probe
	keys    []flowFlowKey
	vals    []flowFlowStats
	idle    []flowFlowKey
	deleted uint64 // entries removed by user space, for the eviction estimate
	noBatch bool   // kernel without batch lookups for this map type
}

func newWalker(p *Probe) *walker {
	return &walker{p: p, keys: make([]flowFlowKey, pollBatch), vals: make([]flowFlowStats, pollBatch)}
}

// poll reports every entry and removes the idle ones.
func (w *walker) poll(sink flow.Sink) {
	p := w.p
	created := p.kernelCounter(flowCounterCNT_FLOWS_CREATED)
	now := monoNow()
	idleNs := p.cfg.IdleTimeout.Nanoseconds()
	w.idle = w.idle[:0]
	var n uint64
	visit := func(k *flowFlowKey, v *flowFlowStats) {
		n++
		if now-int64(v.LastNs) > idleNs {
			w.idle = append(w.idle, *k)
			return // reported below with its final value
		}
		sink.UpdateFlow(toKey(k), p.toStats(v))
		p.stats.flowsReported.Add(1)
	}
	if !w.noBatch {
		// Batches cost two syscalls per 256 entries instead of two per
		// entry (BenchmarkPoll).
		var cursor ebpf.MapBatchCursor
		for {
			c, err := p.objs.Flows.BatchLookup(&cursor, w.keys, w.vals, nil)
			for i := 0; i < c; i++ {
				visit(&w.keys[i], &w.vals[i])
			}
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				break
			}
			if errors.Is(err, ebpf.ErrNotSupported) && n == 0 {
				slog.Info("bpf: batch map lookups not supported, iterating", "err", err)
				w.noBatch = true
				break
			}
			if err != nil {
				// An LRU table under churn can make the kernel restart
				// the walk; the next poll catches up.
				p.stats.pollErrors.Add(1)
				slog.Debug("bpf: flow table batch lookup interrupted", "err", err)
				break
			}
		}
	}
	if w.noBatch {
		var (
			k flowFlowKey
			v flowFlowStats
		)
		it := p.objs.Flows.Iterate()
		for it.Next(&k, &v) {
			visit(&k, &v)
		}
		if err := it.Err(); err != nil {
			p.stats.pollErrors.Add(1)
			slog.Debug("bpf: flow table walk interrupted", "err", err)
		}
	}
	var v flowFlowStats
	for i := range w.idle {
		if err := p.objs.Flows.LookupAndDelete(&w.idle[i], &v); err != nil {
			if !errors.Is(err, ebpf.ErrKeyNotExist) {
				p.stats.pollErrors.Add(1)
			}
			continue
		}
		w.deleted++
		n--
		sink.UpdateFlow(toKey(&w.idle[i]), p.toStats(&v))
		p.stats.flowsReported.Add(1)
		p.stats.flowsExpired.Add(1)
	}
	p.stats.entries.Store(n)
	// Every entry the kernel created is either still in the table, deleted
	// by us, or was evicted by the LRU (its counts since the last poll are
	// lost). created was read before the walk, so this underestimates
	// transiently and never overestimates.
	if created > w.deleted+n {
		ev := created - w.deleted - n
		if ev > p.stats.lruEvictions.Load() {
			p.stats.lruEvictions.Store(ev)
		}
	}
}

// kernelCounter sums one per-CPU counter.
func (p *Probe) kernelCounter(c flowCounter) uint64 {
	var vals []uint64
	if err := p.objs.Counters.Lookup(uint32(c), &vals); err != nil {
		return 0
	}
	var s uint64
	for _, v := range vals {
		s += v
	}
	return s
}

// counterNames are the Counters keys of the kernel counters (enum counter).
var counterNames = [flowCounterCNT_MAX]string{
	flowCounterCNT_SEEN:              "packets_seen",
	flowCounterCNT_COUNTED:           "packets_counted",
	flowCounterCNT_EGRESS_FORWARDED:  "packets_egress_forwarded",
	flowCounterCNT_NON_IP:            "packets_non_ip",
	flowCounterCNT_ERR_L2TRUNC:       "parse_err_l2_truncated",
	flowCounterCNT_ERR_VLAN_DEPTH:    "parse_err_vlan_depth",
	flowCounterCNT_ERR_L3TRUNC:       "parse_err_l3_truncated",
	flowCounterCNT_ERR_BAD_VERSION:   "parse_err_bad_ip_version",
	flowCounterCNT_ERR_BAD_IHL:       "parse_err_bad_ihl",
	flowCounterCNT_ERR_BAD_LEN:       "parse_err_bad_ip_length",
	flowCounterCNT_ERR_L4TRUNC:       "parse_err_l4_truncated",
	flowCounterCNT_ERR_BAD_L4:        "parse_err_bad_transport",
	flowCounterCNT_EXT_HDR_LIMIT:     "parse_err_ipv6_ext_header_limit",
	flowCounterCNT_FRAGMENTS:         "fragments",
	flowCounterCNT_FLOWS_CREATED:     "flows_created",
	flowCounterCNT_INSERT_FAIL:       "flow_insert_failures",
	flowCounterCNT_RINGBUF_FULL:      "ringbuf_full_drops",
	flowCounterCNT_SNIPPETS:          "snippets_sent",
	flowCounterCNT_END_EVENTS:        "end_events_sent",
	flowCounterCNT_SNIPPET_LOAD_FAIL: "snippet_load_failures",
}

// Counters returns the kernel counters (summed over CPUs) and the user-space
// ones, keyed by name. "flow_entries" is a gauge (entries at the last poll);
// "lru_evictions" is derived at each poll, see walker.poll.
func (p *Probe) Counters() map[string]uint64 {
	out := make(map[string]uint64, len(counterNames)+7)
	var vals []uint64
	for i, name := range counterNames {
		var s uint64
		if err := p.objs.Counters.Lookup(uint32(i), &vals); err == nil {
			for _, v := range vals {
				s += v
			}
		}
		out[name] = s
	}
	out["events_read"] = p.stats.eventsRead.Load()
	out["events_malformed"] = p.stats.eventsMalformed.Load()
	out["flows_reported"] = p.stats.flowsReported.Load()
	out["flows_expired"] = p.stats.flowsExpired.Load()
	out["poll_errors"] = p.stats.pollErrors.Load()
	out["lru_evictions"] = p.stats.lruEvictions.Load()
	out["flow_entries"] = p.stats.entries.Load()
	return out
}
