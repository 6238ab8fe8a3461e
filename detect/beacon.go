package detect

import (
	"fmt"
	"strconv"
	"time"

	"github.com/exfilwatch/exfilwatch/detect/rita"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/zeebo/xxh3"
)

// pairKey is a beacon destination of one device: either the remote address
// (host empty) or the name used (TLS SNI or HTTP Host, addr zero), the two
// RITA v5 scoops.
type pairKey struct {
	addr [16]byte
	host string
}

// pair is the sliding-window state of one device→destination pair.
//
// Memory is bounded: the timestamp and size rings keep at most
// beaconing.max_timestamps recent connections (8 bytes each), and the 24
// window bins (connections and seconds of connection time) cover the whole
// window regardless of the cap, so histogram, duration, long-connection and
// strobe figures are exact while the timestamp and size scores use the most
// recent connections.
//
// The layout keeps what one record touches close together: a connection's
// time and size share a ring element, and a bin's number, count and seconds
// share a slot, so an update costs few cache lines.
type pair struct {
	// Hot fields, read or written by every record: first cache lines.
	ring      []conn // most recent connections (ring once full)
	head      int    // next write position once the ring is full
	lastSeen  int64
	nextScore int64  // record time of the next allowed rescore
	flowFirst int64  // first_seen of the last flow, to spot partial exports
	flowEnd   int64  // connection time already counted for that flow
	lastTs    uint32 // last connection start added
	sumConns  uint32 // sum of slot connections over all slots (>= the window's)
	sumSecs   uint32 // sum of slot seconds over all slots (>= the window's)
	dirty     bool   // connections added since the last score

	// Last destination details, for alerts raised on Flush.
	port    uint32
	asn     uint32
	addr    [16]byte
	host    string
	country string
	org     string

	slots [24]binSlot
}

// conn is one connection in a pair's ring.
type conn struct {
	ts   uint32 // start, unix seconds
	size uint32 // bytes_out, saturated
}

// binSlot is one of the 24 window bins.
type binSlot struct {
	idx   int32  // absolute bin number held (bins since the epoch)
	conns uint32 // connections starting in the bin
	secs  uint32 // seconds of connection time ending in the bin
}

// hash keys the device's pair table; names and addresses hash with
// different seeds so they never share a slot by construction.
func (k pairKey) hash() uint64 {
	if k.host != "" {
		return xxh3.HashStringSeed(k.host, 1)
	}
	return xxh3.Hash(k.addr[:])
}

func (e *Engine) binLen() int64 { return int64(e.cfg.Beacon.Window) / 24 }

// slot returns the slot of absolute bin b, clearing it if it held an older bin.
func (p *pair) slot(b int64) int {
	i := int((b%24 + 24) % 24) // records before 1970 give negative bins
	if s := &p.slots[i]; int64(s.idx) != b {
		p.sumConns -= s.conns
		p.sumSecs -= s.secs
		*s = binSlot{idx: int32(b)}
	}
	return i
}

// window copies the bins that are inside the window ending at bin cur into
// out (others as zero) and returns total connections and seconds.
func (p *pair) window(cur int64, out *[24]uint32) (conns, secs uint64) {
	for i := range p.slots {
		s := &p.slots[i]
		if b := int64(s.idx); b > cur-24 && b <= cur {
			out[i] = s.conns
			conns += uint64(s.conns)
			secs += uint64(s.secs)
		} else {
			out[i] = 0
		}
	}
	return conns, secs
}

// beacon updates the pairs of the record (by address, and by name when
// known) and checks strobes, long connections and, at most every
// score_interval, the beacon score.
func (e *Engine) beacon(d *device, rec *flowpb.FlowRecord, ts int64, emit func(*flowpb.Alert)) {
	var k pairKey
	copy(k.addr[:], rec.DstAddr)
	e.beaconPair(d, k, rec, ts, emit)
	if h := rec.GetTls().GetSni(); h != "" {
		e.beaconPair(d, pairKey{host: h}, rec, ts, emit)
	} else if h := rec.GetHttp().GetHost(); h != "" {
		e.beaconPair(d, pairKey{host: h}, rec, ts, emit)
	}
}

func (e *Engine) beaconPair(d *device, k pairKey, rec *flowpb.FlowRecord, ts int64, emit func(*flowpb.Alert)) {
	c := e.cfg.Beacon
	h := k.hash()
	p := d.pairs.get(h)
	if p == nil {
		if d.pairs.len() >= c.MaxPairs {
			if k, ok := d.pairs.oldest(func(p *pair) int64 { return p.lastSeen }); ok {
				d.pairs.del(k)
				e.pairRemoved(d, k)
			}
		}
		p = &pair{}
		d.pairs.put(h, p)
		e.pairAdded(d, h)
	}
	if ts > p.lastSeen {
		p.lastSeen = ts
	}
	g := rec.GetEnrichment().GetDstGeo()
	copy(p.addr[:], rec.DstAddr)
	p.port, p.host = rec.DstPort, k.host
	p.country, p.org, p.asn = g.GetCountry(), g.GetOrg(), g.GetAsn()

	first := rec.FirstSeenNs
	if first == 0 {
		first = ts
	}
	bl := e.binLen()
	cur := ts / bl
	// A record continuing the previous flow (same first_seen: an active
	// timeout export) adds connection time but is not a new connection.
	newConn := first != p.flowFirst
	from := first
	if !newConn && p.flowEnd > from {
		from = p.flowEnd
	}
	if ts > from {
		i := p.slot(cur)
		s := &p.slots[i]
		old := s.secs
		s.secs = satAdd32(old, uint64((ts-from)/int64(time.Second)))
		p.sumSecs += s.secs - old
	}
	if ts > p.flowEnd || newConn {
		p.flowEnd = ts
	}
	if newConn {
		p.flowFirst = first
		if b := first / bl; b > cur-24 {
			i := p.slot(b)
			if p.slots[i].conns < 1<<32-1 {
				p.slots[i].conns++
				p.sumConns++
			}
		}
		sec := uint32(first / int64(time.Second))
		if sec != p.lastTs {
			p.lastTs = sec
			size := uint32(min(rec.BytesOut, 1<<32-1))
			if len(p.ring) < c.MaxTimestamps {
				p.ring = append(p.ring, conn{sec, size})
			} else {
				p.ring[p.head] = conn{sec, size}
				p.head = (p.head + 1) % len(p.ring)
			}
			p.dirty = true
		}
	}

	// The running sums bound the window's totals from above, so the exact
	// (24-slot) window sums are only computed when a threshold may be met.
	strobeMin, longMin := uint64(c.StrobeConnections), uint64(c.LongConnThresholds[0]/time.Second)
	if (c.StrobeEnabled && uint64(p.sumConns) >= strobeMin) || (c.LongConnEnabled && uint64(p.sumSecs) >= longMin) {
		var bins [24]uint32
		conns, secs := p.window(cur, &bins)
		if c.StrobeEnabled && conns >= strobeMin {
			e.raiseStrobe(d, k, p, rec, ts, conns, emit)
			return // RITA drops strobes from the other analyses
		}
		if c.LongConnEnabled && secs >= longMin {
			e.raiseLongConn(d, k, p, rec, ts, secs, emit)
		}
	}
	if c.Enabled && p.dirty && ts >= p.nextScore {
		e.scorePair(d, k, p, rec, ts, emit)
	}
}

// key rebuilds the pair's key: SNI/host pairs keep the last address seen
// for display, so the key's address is zero for them.
func (p *pair) key() pairKey {
	if p.host != "" {
		return pairKey{host: p.host}
	}
	return pairKey{addr: p.addr}
}

func satAdd32(a uint32, b uint64) uint32 { return uint32(min(uint64(a)+b, 1<<32-1)) }

// rescoreDevice scores every pair with unscored connections (on Flush).
func (e *Engine) rescoreDevice(d *device, emit func(*flowpb.Alert)) {
	d.pairs.each(func(_ uint64, p *pair) {
		if p.dirty {
			e.scorePair(d, p.key(), p, nil, e.watermark, emit)
		}
	})
}

// BeaconScore holds a pair's RITA v5 sub-scores and total.
type BeaconScore struct {
	Timestamp, DataSize, Histogram, Duration, Total float64
	Connections                                     int // unique timestamps scored
}

// scoreBeacon computes the RITA v5 score of p for the window ending at now.
//
// With need > 0 it returns false early when the cheap histogram and
// duration scores already rule out a total of need.
func (e *Engine) scoreBeacon(p *pair, now int64, need float64) (BeaconScore, bool) {
	c := e.cfg.Beacon
	win := int64(c.Window)
	lo := uint32(max(now-win, 0) / int64(time.Second))
	ts := e.scratch[:0]
	sizes := e.sizeBuf[:0]
	firstSec := uint32(1<<32 - 1)
	for _, cn := range p.ring {
		if cn.ts >= lo {
			ts = append(ts, float64(cn.ts))
			sizes = append(sizes, float64(cn.size))
			firstSec = min(firstSec, cn.ts)
		}
	}
	if len(ts) < c.UniqueConnections {
		return BeaconScore{}, false
	}
	var bins [24]uint32
	bl := e.binLen()
	cur := now / bl
	conns, _ := p.window(cur, &bins)
	if conns >= 86_400 {
		return BeaconScore{}, false // RITA gate: at 1/s the pair is a strobe
	}
	// With a full ring the earliest connection in the window may have been
	// overwritten: use the start of the oldest non-empty bin instead.
	first := float64(firstSec)
	if len(p.ring) == c.MaxTimestamps {
		for i := range bins {
			if bins[i] > 0 {
				first = min(first, float64(int64(p.slots[i].idx)*bl/int64(time.Second)))
			}
		}
	}
	last := float64(p.lastTs)
	dataMax := float64(now / int64(time.Second))
	dataMin := float64(max(e.dataMin, now-win) / int64(time.Second))
	var s BeaconScore
	s.Connections = len(ts)
	s.Histogram = rita.HistogramScore(&bins, rita.DefaultHistogramParams)
	s.Duration = rita.DurationScore(&bins, first, last, dataMin, dataMax, rita.DefaultDurationParams)
	// The timestamp and size scores are at most 1 each and cost two sorts;
	// skip them when even perfect values could not reach the threshold.
	if need > 0 && 0.25*(2+s.Histogram+s.Duration) < need {
		return s, false
	}
	scratch := e.scratch[len(ts):cap(e.scratch)]
	s.Timestamp = rita.TimestampScore(ts, scratch)
	s.DataSize = rita.DataSizeScore(sizes, scratch)
	s.Total = rita.Round3(0.25*s.Timestamp + 0.25*s.DataSize + 0.25*s.Histogram + 0.25*s.Duration)
	return s, true
}

func (e *Engine) scorePair(d *device, k pairKey, p *pair, rec *flowpb.FlowRecord, now int64, emit func(*flowpb.Alert)) {
	c := e.cfg.Beacon
	p.dirty = false
	p.nextScore = now + int64(c.ScoreInterval)
	s, ok := e.scoreBeacon(p, now, c.Threshold-c.PrevalenceIncrease)
	if !ok {
		return
	}
	prev, mod := e.prevalenceModifier(k.hash())
	score := rita.Round3(s.Total + mod)
	if score < c.Threshold {
		return
	}
	sev := flowpb.Severity_SEVERITY_LOW
	switch {
	case score >= 1:
		sev = flowpb.Severity_SEVERITY_HIGH
	case score >= 0.9:
		sev = flowpb.Severity_SEVERITY_MEDIUM
	}
	e.pairKey(detBeacon, d, k)
	if e.bump(detBeacon, now, rec, 0, sev, score, emit) {
		return
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	evidence := []*flowpb.Evidence{
		ev("score", f(score)),
		ev("beacon_score", f(s.Total)),
		ev("timestamp_score", f(s.Timestamp)),
		ev("data_size_score", f(s.DataSize)),
		ev("histogram_score", f(s.Histogram)),
		ev("duration_score", f(s.Duration)),
		ev("connections", strconv.Itoa(s.Connections)),
		ev("window", c.Window.String()),
	}
	if prev >= 0 {
		evidence = append(evidence, ev("prevalence", f(prev)), ev("prevalence_modifier", f(mod)))
	}
	dst := pairDest(k, p)
	summary := fmt.Sprintf("beacon to %s: score %.3f over %d connections", destLabel(dst), score, s.Connections)
	e.raise(detBeacon, d, now, now, now+int64(e.cfg.Suppression), dst, rec, 0, sev, score, summary, evidence, emit)
}

// prevalenceModifier is RITA v5's prevalence modifier for destination h: the
// fraction of this engine's devices holding a pair for it, and what it adds
// to the beacon score. With fewer than prevalence_min_devices devices the
// fraction is -1 and nothing is added.
//
// An engine sees the devices of its Kafka partitions only; records are keyed
// by device, so that is a random sample of the lab and the fraction an
// estimate of the lab-wide one.
func (e *Engine) prevalenceModifier(h uint64) (prev, mod float64) {
	c := e.cfg.Beacon
	if e.prevDevs < c.PrevalenceMinDevices {
		return -1, 0
	}
	prev = float64(e.prevDst[tkey(h)]) / float64(e.prevDevs)
	switch {
	case prev >= c.PrevalenceHigh:
		mod = -c.PrevalenceDecrease
	case prev <= c.PrevalenceLow:
		mod = c.PrevalenceIncrease
	}
	return prev, mod
}

// pairAdded and pairRemoved keep the prevalence counts; call them after
// putting or deleting pair h of device d.
func (e *Engine) pairAdded(d *device, h uint64) {
	e.prevDst[tkey(h)]++
	if d.pairs.len() == 1 {
		e.prevDevs++
	}
}

func (e *Engine) pairRemoved(d *device, h uint64) {
	h = tkey(h) // the key tables store and each/oldest return
	if n := e.prevDst[h] - 1; n > 0 {
		e.prevDst[h] = n
	} else {
		delete(e.prevDst, h)
	}
	if d.pairs.len() == 0 {
		e.prevDevs--
	}
}

// forgetPairs takes a device's pairs out of the prevalence counts (the
// device is being dropped).
func (e *Engine) forgetPairs(d *device) {
	if d.pairs.len() == 0 {
		return
	}
	d.pairs.each(func(h uint64, _ *pair) {
		if n := e.prevDst[h] - 1; n > 0 {
			e.prevDst[h] = n
		} else {
			delete(e.prevDst, h)
		}
	})
	e.prevDevs--
}

// expirePairs deletes pairs idle for longer than the window: nothing of
// theirs is inside it any more, and a device that stopped talking to a
// destination must stop counting towards its prevalence.
func (e *Engine) expirePairs(now int64) {
	win := int64(e.cfg.Beacon.Window)
	expire := func(d *device) {
		victims := e.pairVictims[:0]
		d.pairs.each(func(h uint64, p *pair) {
			if now-p.lastSeen > win {
				victims = append(victims, h)
			}
		})
		for _, h := range victims {
			d.pairs.del(h)
			e.pairRemoved(d, h)
		}
		e.pairVictims = victims[:0]
	}
	e.devices.each(func(_ uint64, d *device) { expire(d) })
	for _, d := range e.anon {
		expire(d)
	}
}

// recountPrevalence rebuilds the prevalence counts from the pairs (after a
// restore).
func (e *Engine) recountPrevalence() {
	clear(e.prevDst)
	e.prevDevs = 0
	count := func(d *device) {
		if d.pairs.len() == 0 {
			return
		}
		e.prevDevs++
		d.pairs.each(func(h uint64, _ *pair) { e.prevDst[h]++ })
	}
	e.devices.each(func(_ uint64, d *device) { count(d) })
	for _, d := range e.anon {
		count(d)
	}
}

func (e *Engine) pairKey(det detector, d *device, k pairKey) {
	e.key(det, d)
	if k.host != "" {
		e.keyPart(k.host)
	} else {
		e.keyBuf = append(e.keyBuf, '|')
		e.keyBuf = schemaAddr(k.addr[:]).AppendTo(e.keyBuf)
	}
}

func pairDest(k pairKey, p *pair) *flowpb.Destination {
	return &flowpb.Destination{
		Addr: append([]byte(nil), p.addr[:]...), Port: p.port, Host: k.host,
		Country: p.country, Asn: p.asn, Org: p.org,
	}
}

func (e *Engine) raiseStrobe(d *device, k pairKey, p *pair, rec *flowpb.FlowRecord, ts int64, conns uint64, emit func(*flowpb.Alert)) {
	e.pairKey(detStrobe, d, k)
	if e.bump(detStrobe, ts, rec, rec.BytesOut, flowpb.Severity_SEVERITY_HIGH, 0.8, emit) {
		return
	}
	dst := pairDest(k, p)
	evidence := []*flowpb.Evidence{
		ev("connections", strconv.FormatUint(conns, 10)),
		ev("threshold", strconv.Itoa(e.cfg.Beacon.StrobeConnections)),
		ev("window", e.cfg.Beacon.Window.String()),
	}
	summary := fmt.Sprintf("strobe: %d connections to %s within %s", conns, destLabel(dst), e.cfg.Beacon.Window)
	e.raise(detStrobe, d, ts, ts, ts+int64(e.cfg.Suppression), dst, rec, rec.BytesOut, flowpb.Severity_SEVERITY_HIGH, 0.8, summary, evidence, emit)
}

func (e *Engine) raiseLongConn(d *device, k pairKey, p *pair, rec *flowpb.FlowRecord, ts int64, secs uint64, emit func(*flowpb.Alert)) {
	t := e.cfg.Beacon.LongConnThresholds
	score := rita.BucketedScore(float64(secs), t[0].Seconds(), t[1].Seconds(), t[2].Seconds(), t[3].Seconds())
	sev := flowpb.Severity_SEVERITY_INFO
	switch {
	case score >= 0.8:
		sev = flowpb.Severity_SEVERITY_HIGH
	case score >= 0.6:
		sev = flowpb.Severity_SEVERITY_MEDIUM
	case score >= 0.4:
		sev = flowpb.Severity_SEVERITY_LOW
	}
	e.pairKey(detLongConn, d, k)
	if e.bump(detLongConn, ts, rec, 0, sev, score, emit) {
		return
	}
	dst := pairDest(k, p)
	evidence := []*flowpb.Evidence{
		ev("connection_seconds", strconv.FormatUint(secs, 10)),
		ev("window", e.cfg.Beacon.Window.String()),
		ev("score", strconv.FormatFloat(score, 'f', 3, 64)),
	}
	summary := fmt.Sprintf("long connection: %s to %s within %s", time.Duration(secs)*time.Second, destLabel(dst), e.cfg.Beacon.Window)
	e.raise(detLongConn, d, ts, ts, ts+int64(e.cfg.Suppression), dst, rec, 0, sev, score, summary, evidence, emit)
}
