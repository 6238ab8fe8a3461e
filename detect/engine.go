// Package detect turns enriched flow records into alerts. One Engine holds
// the state of every detector for the devices it sees; the detect stage runs
// one engine per Kafka consumer goroutine, and because records are keyed by
// device the state shards with the partitions.
//
// Time is always record time (last_seen_ns), never the wall clock, so pcap
// replays with compressed time produce the same alerts as live traffic and
// alert ids are reproducible. See docs/detectors.md for each detector.
package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/zeebo/xxh3"
	"google.golang.org/protobuf/proto"
)

// sweepEvery is how much record time passes between housekeeping sweeps
// (closing expired alerts, evicting idle devices) inside Process.
const sweepEvery = int64(time.Minute)

// attrRefresh is how often (record time) a device's model and group are
// re-read from its records.
const attrRefresh = int64(time.Minute)

// publishEvery is how many records pass between metric publications.
const publishEvery = 1 << 14

// Engine runs every enabled detector. It is not safe for concurrent use:
// one goroutine per engine.
type Engine struct {
	cfg Config
	// Name labels this engine's gauges (set before the first Flush if several
	// engines run in one process).
	Name string

	typeSev  map[string]flowpb.Severity
	defSev   flowpb.Severity
	policies map[string]*compiledPolicy

	devices table[device]        // attributed devices by hashID(id)
	anon    map[[16]byte]*device // unattributed sources by address
	models  map[string]*modelState
	open    map[string]*openAlert // open alerts by dedup key

	// Beacon destination prevalence: devices holding a pair for each
	// destination (by pairKey.hash), and devices holding any pair.
	prevDst       map[uint64]int32
	prevDevs      int
	nextPairSweep int64
	pairVictims   []uint64

	watermark int64 // highest record time seen
	dataMin   int64 // first record time seen (RITA dataset start)
	nextSweep int64

	keyBuf      []byte
	victims     []*device         // scratch for sweep
	suffixCache map[string]string // see registrable
	scratch     []float64
	sizeBuf     []float64
	cnt         counters
	nrec        uint64
}

// New validates cfg and returns an engine with empty state.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("detect: %w", err)
	}
	e := &Engine{
		cfg:         cfg,
		Name:        "0",
		typeSev:     map[string]flowpb.Severity{},
		policies:    map[string]*compiledPolicy{},
		anon:        map[[16]byte]*device{},
		models:      map[string]*modelState{},
		open:        map[string]*openAlert{},
		prevDst:     map[uint64]int32{},
		keyBuf:      make([]byte, 0, 256),
		suffixCache: map[string]string{},
		scratch:     make([]float64, 0, 3*cfg.Beacon.MaxTimestamps),
		sizeBuf:     make([]float64, 0, cfg.Beacon.MaxTimestamps),
	}
	e.defSev, _ = parseSeverity(cfg.IdentifierLeak.DefaultSeverity)
	for t, s := range cfg.IdentifierLeak.TypeSeverity {
		e.typeSev[t], _ = parseSeverity(s)
	}
	for g, p := range cfg.Policy.Groups {
		e.policies[g] = compilePolicy(p)
	}
	return e, nil
}

// device is all per-device state. Maps are created lazily so devices that
// only ever trip one detector stay small.
type device struct {
	id, model, group string
	addr             [16]byte
	lastSeen         int64
	refreshAt        int64           // record time after which model and group are re-read
	volume           table[volState] // by volKey.hash
	pairs            table[pair]     // by pairKey.hash
	dns              table[dnsState] // by hash of the registrable domain
}

// hashID keys the device table. State maps are keyed by 64-bit hashes rather
// than strings so a lookup does not chase the stored key's bytes (a cache miss
// per map on a 10k-device working set); a collision, at odds of about n²/2⁶⁵,
// would merge two entries' statistics.
func hashID(id string) uint64 { return xxh3.HashString(id) }

// recordTime is the record's event time: last_seen, falling back to
// first_seen and the export time for records that lack it.
func recordTime(rec *flowpb.FlowRecord) int64 {
	switch {
	case rec.LastSeenNs != 0:
		return rec.LastSeenNs
	case rec.FirstSeenNs != 0:
		return rec.FirstSeenNs
	}
	return rec.ObservedNs
}

// Process runs every enabled detector over one record and calls emit for each
// new alert or alert update. emit receives a fresh message it may keep.
func (e *Engine) Process(rec *flowpb.FlowRecord, emit func(*flowpb.Alert)) {
	ts := recordTime(rec)
	if e.dataMin == 0 || ts < e.dataMin {
		e.dataMin = ts
	}
	if ts > e.watermark {
		e.watermark = ts
	}
	if e.watermark >= e.nextSweep {
		e.sweep(e.watermark, emit)
		e.nextSweep = e.watermark + sweepEvery
	}
	e.nrec++
	if e.nrec%publishEvery == 0 {
		e.cnt.publish()
	}

	enr := rec.GetEnrichment()
	dev := e.device(rec, ts)
	dst := enr.GetDstGeo()
	dir := rec.Direction
	external := dir != flowpb.Direction_DIRECTION_TRANSIT && dir != flowpb.Direction_DIRECTION_INTERNAL &&
		isRemote(dst.GetAddrClass())

	if e.cfg.IdentifierLeak.Enabled {
		e.cnt.records[detIdentifierLeak]++
		if len(enr.GetMatches()) > 0 {
			e.identifierLeak(dev, rec, ts, emit)
		}
	}
	if e.cfg.Cleartext.Enabled {
		e.cnt.records[detCleartext]++
		if len(enr.GetMatches()) > 0 {
			e.cleartextLeak(dev, rec, ts, emit)
		}
	}
	if rec.Dns != nil && rec.Dns.QueryName != "" {
		// DNS is judged wherever the resolver is (often inside the lab);
		// resolver traffic is never scored as beacons.
		if e.cfg.DNS.Enabled {
			e.cnt.records[detDNS]++
			e.dnsTunnel(dev, rec, ts, emit)
		}
		if !external {
			return
		}
	} else if !external {
		return
	}
	if e.cfg.Policy.Enabled {
		e.cnt.records[detPolicy]++
		e.destinationPolicy(dev, rec, ts, emit)
	}
	if e.cfg.FirstSeen.Enabled {
		e.cnt.records[detFirstSeen]++
		e.firstSeen(dev, rec, ts, emit)
	}
	if e.cfg.Volume.Enabled {
		e.cnt.records[detVolume]++
		e.uploadVolume(dev, rec, ts, emit)
	}
	if rec.Dns != nil {
		return
	}
	if b := e.cfg.Beacon; b.Enabled || b.LongConnEnabled || b.StrobeEnabled {
		if b.Enabled {
			e.cnt.records[detBeacon]++
		}
		if b.LongConnEnabled {
			e.cnt.records[detLongConn]++
		}
		if b.StrobeEnabled {
			e.cnt.records[detStrobe]++
		}
		e.beacon(dev, rec, ts, emit)
	}
}

// isRemote reports whether a destination class is outside the lab: public,
// or unknown (enrichment missing) which is treated as public.
func isRemote(c flowpb.AddrClass) bool {
	return c == flowpb.AddrClass_ADDR_CLASS_PUBLIC || c == flowpb.AddrClass_ADDR_CLASS_UNSPECIFIED
}

// device returns (creating if needed) the state of the record's device:
// by attributed id, else by source address.
func (e *Engine) device(rec *flowpb.FlowRecord, ts int64) *device {
	d := rec.GetEnrichment().GetDevice()
	id := d.GetId()
	var dev *device
	if id != "" {
		h := hashID(id)
		dev = e.devices.get(h)
		if dev == nil {
			e.makeRoom()
			dev = &device{id: strings.Clone(id)} // outlives the record: see FlowIds
			e.devices.put(h, dev)
		}
		// Model and group may be corrected by enrich over time: take the
		// record's values at most once a minute of record time, which saves
		// two string compares (and their cache misses) on every record.
		if ts >= dev.refreshAt || dev.refreshAt-ts > attrRefresh {
			dev.model, dev.group = d.GetModel(), d.GetGroup()
			dev.refreshAt = ts + attrRefresh
		}
	} else {
		var a [16]byte
		copy(a[:], rec.SrcAddr)
		dev = e.anon[a]
		if dev == nil {
			e.makeRoom()
			dev = &device{addr: a}
			e.anon[a] = dev
		}
	}
	if ts > dev.lastSeen {
		dev.lastSeen = ts
	}
	return dev
}

// makeRoom evicts the longest-idle device when the device cap is reached.
func (e *Engine) makeRoom() {
	if e.devices.len()+len(e.anon) < e.cfg.MaxDevices {
		return
	}
	var victim *device
	e.devices.each(func(_ uint64, d *device) {
		if victim == nil || d.lastSeen < victim.lastSeen {
			victim = d
		}
	})
	for _, d := range e.anon {
		if victim == nil || d.lastSeen < victim.lastSeen {
			victim = d
		}
	}
	if victim != nil {
		e.dropDevice(victim)
	}
}

func (e *Engine) dropDevice(d *device) {
	e.forgetPairs(d)
	if d.id != "" {
		e.devices.del(hashID(d.id))
	} else {
		delete(e.anon, d.addr)
	}
}

// deviceLabel is the device part of dedup keys: the id, or "addr:<ip>".
func (e *Engine) appendDevice(b []byte, d *device) []byte {
	if d.id != "" {
		return append(b, d.id...)
	}
	b = append(b, "addr:"...)
	return schema.Addr(d.addr[:]).AppendTo(b)
}

// Flush closes everything whose window ended at or before nowNs (record
// time): open alerts past their suppression or window emit their final update,
// beacon pairs with new connections are rescored, idle devices are evicted,
// and metrics and the state gauge are published.
func (e *Engine) Flush(nowNs int64, emit func(*flowpb.Alert)) {
	if nowNs > e.watermark {
		e.watermark = nowNs
	}
	if e.cfg.Beacon.Enabled {
		e.devices.each(func(_ uint64, d *device) { e.rescoreDevice(d, emit) })
		for _, d := range e.anon {
			e.rescoreDevice(d, emit)
		}
	}
	e.sweep(e.watermark, emit)
	e.cnt.publish()
	metricStateBytes.WithLabelValues(e.Name).Set(float64(e.StateBytes()))
	metricDevices.WithLabelValues(e.Name).Set(float64(e.DeviceCount()))
}

// sweep closes expired alerts and drops devices idle longer than the TTL.
func (e *Engine) sweep(now int64, emit func(*flowpb.Alert)) {
	for k, oa := range e.open {
		if oa.closeAt <= now {
			e.closeAlert(k, oa, emit)
		}
	}
	ttl := int64(e.cfg.DeviceIdleTTL)
	// Collect first: deleting from a table while walking it may move
	// entries past the cursor.
	victims := e.victims[:0]
	e.devices.each(func(_ uint64, d *device) {
		if now-d.lastSeen > ttl {
			victims = append(victims, d)
		}
	})
	for _, d := range victims {
		e.dropDevice(d)
	}
	clear(victims)
	e.victims = victims[:0]
	for _, d := range e.anon {
		if now-d.lastSeen > ttl {
			e.dropDevice(d)
		}
	}
	if now >= e.nextPairSweep {
		e.expirePairs(now)
		e.nextPairSweep = now + e.binLen()
	}
}

// openAlert is an alert whose dedup key is being suppressed: repeats update it
// until closeAt (end of the suppression or detector window).
type openAlert struct {
	alert   *flowpb.Alert
	det     detector
	closeAt int64
	dirty   bool // changed since last emitted
}

// AlertID is the deterministic alert id: hex of the first 16 bytes of
// sha256(dedup_key "|" window_start_ns).
func AlertID(dedupKey string, windowStartNs int64) string {
	h := sha256.New()
	h.Write([]byte(dedupKey))
	h.Write([]byte{'|'})
	h.Write(strconv.AppendInt(nil, windowStartNs, 10))
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// key starts a dedup key "detector|device" in the engine's buffer; callers
// append "|part"s with keyPart. Lookups with the buffer do not allocate.
func (e *Engine) key(det detector, d *device) {
	e.keyBuf = append(e.keyBuf[:0], det.String()...)
	e.keyBuf = append(e.keyBuf, '|')
	e.keyBuf = e.appendDevice(e.keyBuf, d)
}

func (e *Engine) keyPart(s string) {
	e.keyBuf = append(e.keyBuf, '|')
	e.keyBuf = append(e.keyBuf, s...)
}

func (e *Engine) keyUint(prefix string, v uint64) {
	e.keyBuf = append(e.keyBuf, '|')
	e.keyBuf = append(e.keyBuf, prefix...)
	e.keyBuf = strconv.AppendUint(e.keyBuf, v, 10)
}

// bump folds a repeat match into the open alert of the current key, if one
// is open at ts. It returns false when a new alert must be raised (closing an
// expired one first). Severity or score escalations are emitted at once.
func (e *Engine) bump(det detector, ts int64, rec *flowpb.FlowRecord, bytes uint64, sev flowpb.Severity, score float64, emit func(*flowpb.Alert)) bool {
	oa := e.open[string(e.keyBuf)]
	if oa == nil {
		return false
	}
	if ts >= oa.closeAt {
		e.closeAlert(string(e.keyBuf), oa, emit)
		return false
	}
	a := oa.alert
	a.Count++
	a.Bytes += bytes
	if ts > a.LastSeenNs {
		a.LastSeenNs = ts
	}
	if ts < a.FirstSeenNs {
		a.FirstSeenNs = ts
	}
	if rec != nil && len(a.FlowIds) < e.cfg.MaxFlowIDs && rec.Id != "" {
		// Cloned: decoded strings share arena blocks, and an open alert
		// outlives its record, so it must not pin the block.
		a.FlowIds = append(a.FlowIds, strings.Clone(rec.Id))
	}
	e.cnt.suppressed[det]++
	oa.dirty = true
	if sev > a.Severity || score > a.Score {
		escalated := sev > a.Severity
		a.Severity = max(a.Severity, sev)
		a.Score = max(a.Score, score)
		if escalated {
			e.emitUpdate(oa, emit)
		}
	}
	return true
}

func (e *Engine) emitUpdate(oa *openAlert, emit func(*flowpb.Alert)) {
	oa.dirty = false
	e.cnt.updates[oa.det]++
	emit(proto.Clone(oa.alert).(*flowpb.Alert))
}

func (e *Engine) closeAlert(key string, oa *openAlert, emit func(*flowpb.Alert)) {
	if oa.dirty {
		e.emitUpdate(oa, emit)
	}
	delete(e.open, key)
}

// raise creates, records as open and emits a new alert for the key in the
// buffer. Callers fill summary and evidence through the returned alert before
// raise emits it, via fill.
func (e *Engine) raise(det detector, d *device, ts, windowStart, closeAt int64, dst *flowpb.Destination,
	rec *flowpb.FlowRecord, bytes uint64, sev flowpb.Severity, score float64,
	summary string, evidence []*flowpb.Evidence, emit func(*flowpb.Alert)) {
	key := string(e.keyBuf)
	a := &flowpb.Alert{
		SchemaVersion: schema.Version,
		Id:            AlertID(key, windowStart),
		DedupKey:      key,
		Detector:      det.String(),
		Severity:      sev,
		DeviceId:      d.id,
		DeviceModel:   d.model,
		DeviceGroup:   d.group,
		Summary:       summary,
		Evidence:      evidence,
		FirstSeenNs:   ts,
		LastSeenNs:    ts,
		Count:         1,
		WindowStartNs: windowStart,
		Destination:   dst,
		Bytes:         bytes,
		Score:         score,
		CreatedNs:     ts,
	}
	if rec != nil && rec.Id != "" {
		a.FlowIds = append(make([]string, 0, e.cfg.MaxFlowIDs), strings.Clone(rec.Id))
	}
	if len(e.open) >= e.cfg.MaxOpenAlerts {
		e.closeOldest(emit)
	}
	oa := &openAlert{alert: a, det: det, closeAt: closeAt}
	e.open[key] = oa
	e.cnt.alerts[det]++
	emit(proto.Clone(a).(*flowpb.Alert))
}

func (e *Engine) closeOldest(emit func(*flowpb.Alert)) {
	var vk string
	var victim *openAlert
	for k, oa := range e.open {
		if victim == nil || oa.closeAt < victim.closeAt {
			vk, victim = k, oa
		}
	}
	if victim != nil {
		e.closeAlert(vk, victim, emit)
	}
}

// destination builds the alert destination of a record.
func destination(rec *flowpb.FlowRecord) *flowpb.Destination {
	g := rec.GetEnrichment().GetDstGeo()
	return &flowpb.Destination{
		Addr:    append([]byte(nil), rec.DstAddr...),
		Port:    rec.DstPort,
		Host:    strings.Clone(host(rec)), // kept by the alert: see FlowIds
		Country: g.GetCountry(),
		Asn:     g.GetAsn(),
		Org:     g.GetOrg(),
	}
}

// host is the name the device used for the destination: TLS SNI, else HTTP
// Host, else the DNS query name.
func host(rec *flowpb.FlowRecord) string {
	if s := rec.GetTls().GetSni(); s != "" {
		return s
	}
	if h := rec.GetHttp().GetHost(); h != "" {
		return h
	}
	return rec.GetDns().GetQueryName()
}

func windowStart(ts int64, w time.Duration) int64 {
	ws := ts - ts%int64(w)
	if ts < 0 && ts%int64(w) != 0 {
		ws -= int64(w)
	}
	return ws
}

func ev(k, v string) *flowpb.Evidence { return &flowpb.Evidence{Key: k, Value: v} }

func addrString(b []byte) string {
	a := schema.Addr(b)
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func schemaAddr(b []byte) netip.Addr { return schema.Addr(b) }
