// Package enrich attaches to each raw flow record what an analyst needs to
// judge it: GeoIP of both ends (enrich/geo), the lab device it belongs to
// (enrich/inventory) and the device identifiers found in its payload
// (enrich/ident). The stage is stateless apart from these reloadable
// lookup tables, so it scales by adding consumers to its Kafka group.
package enrich

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/exfilwatch/exfilwatch/enrich/geo"
	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/enrich/inventory"
	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

var (
	mRecords = promauto.NewCounter(prometheus.CounterOpts{Name: "exfilwatch_enrich_records_total", Help: "Flow records enriched."})
	mMatches = promauto.NewCounter(prometheus.CounterOpts{Name: "exfilwatch_enrich_identifier_matches_total", Help: "Identifier matches attached to records."})
	mNoDev   = promauto.NewCounter(prometheus.CounterOpts{Name: "exfilwatch_enrich_unattributed_total", Help: "Records whose device side matched no inventory device."})
	mIndex   = promauto.NewGauge(prometheus.GaugeOpts{Name: "exfilwatch_enrich_index_entries", Help: "Hashed identifier forms in the current index."})
	mBuilds  = promauto.NewCounterVec(prometheus.CounterOpts{Name: "exfilwatch_enrich_index_builds_total", Help: "Identifier index builds, by result."}, []string{"result"})
)

// Enricher holds the shared, reloadable lookup tables. Records are enriched
// by Workers (one per goroutine) obtained from NewWorker.
type Enricher struct {
	geo   *geo.Reloader // nil without databases
	inv   *inventory.Inventory
	index ident.Live // swapped when the inventory is reloaded
	icfg  ident.Config
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
}

// New loads the GeoIP databases, the inventory and builds the identifier
// index. Any of them may be unconfigured (empty path / no databases), in which
// case that part of the enrichment is skipped.
func New(geoCfg geo.Config, invCfg inventory.Config, idCfg ident.Config, log *slog.Logger) (*Enricher, error) {
	e := &Enricher{icfg: idCfg, cfg: DefaultConfig(), log: log, now: time.Now}
	if len(geoCfg.Databases) > 0 {
		r, err := geo.NewReloader(geoCfg, log)
		if err != nil {
			return nil, err
		}
		e.geo = r
	}
	var buildErr error
	var once sync.Once
	onLoad := func(ids []ident.Identifier) {
		ids = append(ids, idCfg.AccessPointIdentifiers()...)
		idx, problems, err := ident.BuildIndex(idCfg, ids)
		if err != nil {
			mBuilds.WithLabelValues("error").Inc()
			once.Do(func() { buildErr = err })
			log.Error("identifier index not rebuilt; previous index stays in service", "err", err)
			return
		}
		for _, p := range problems {
			log.Warn("inventory identifier skipped", "problem", p.Error())
		}
		mBuilds.WithLabelValues("ok").Inc()
		st := idx.Stats()
		mIndex.Set(float64(st.Entries))
		log.Info("identifier index built", "devices", st.Devices, "forms", st.Entries, "bytes", st.Bytes)
		e.index.Store(idx)
	}
	if invCfg.Path != "" {
		inv, err := inventory.New(invCfg, log, onLoad)
		if err != nil {
			return nil, err
		}
		if buildErr != nil {
			return nil, fmt.Errorf("identifiers: %w", buildErr)
		}
		e.inv = inv
	}
	return e, nil
}

// SetConfig applies the stage's own settings (DefaultConfig until then).
// Call it before NewWorker.
func (e *Enricher) SetConfig(c Config) { e.cfg = c }

// Run keeps the GeoIP databases and the inventory fresh until ctx ends.
func (e *Enricher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if e.geo != nil {
		wg.Add(1)
		go func() { defer wg.Done(); e.geo.Run(ctx) }()
	}
	if e.inv != nil {
		wg.Add(1)
		go func() { defer wg.Done(); e.inv.Run(ctx) }()
	}
	wg.Wait()
	return nil
}

// Geo returns the GeoIP reloader, or nil when no database is configured.
func (e *Enricher) Geo() *geo.Reloader { return e.geo }

// Index returns the current identifier index (nil without inventory).
func (e *Enricher) Index() *ident.Index { return e.index.Load() }

// Worker enriches records on one goroutine, reusing its scratch state.
type Worker struct {
	e       *Enricher
	scanner *ident.Scanner
	red     redactor
	geoN    geo.Tally
	// Prefetch state: the records whose GeoIP answers are filled in, in
	// the order Enrich is expected to see them, and the next one.
	pre     []*flowpb.FlowRecord
	preNext int
	addrs   []netip.Addr
	outs    []*flowpb.Geo
}

// Prefetch looks up the GeoIP answers of recs, the next records Enrich will
// be given, in one batch (geo.DB.LookupBatch: the lookups walk the tries
// together so that their cache misses overlap, where one record at a time
// waits for each miss chain in turn); Enrich then keeps them instead of
// looking up again. It fits transport.Stage.Prefetch. A record enriched out
// of that order is simply looked up.
func (w *Worker) Prefetch(recs []*flowpb.FlowRecord) {
	w.pre, w.preNext = w.pre[:0], 0
	g := w.e.geo
	if g == nil {
		return
	}
	w.addrs, w.outs = w.addrs[:0], w.outs[:0]
	for _, rec := range recs {
		src, dst := schema.Addr(rec.SrcAddr), schema.Addr(rec.DstAddr)
		if !src.IsValid() || !dst.IsValid() {
			continue
		}
		en := enrichment(rec)
		w.addrs = append(w.addrs, src, dst)
		w.outs = append(w.outs, en.SrcGeo, en.DstGeo)
		w.pre = append(w.pre, rec)
	}
	g.LookupBatch(w.addrs, w.outs, &w.geoN)
	clear(w.outs) // holds no records' messages beyond the batch
}

// enrichment returns rec's Enrichment with both Geo messages, adding what
// is missing.
func enrichment(rec *flowpb.FlowRecord) *flowpb.Enrichment {
	en := rec.Enrichment
	if en == nil {
		en = &flowpb.Enrichment{}
		rec.Enrichment = en
	}
	if en.SrcGeo == nil {
		en.SrcGeo = &flowpb.Geo{}
	}
	if en.DstGeo == nil {
		en.DstGeo = &flowpb.Geo{}
	}
	return en
}

// NewWorker returns a Worker; create one per goroutine.
func (e *Enricher) NewWorker() *Worker { return &Worker{e: e} }

// Enrich fills rec.Enrichment in place. The identifier matches it appends are
// owned by the Worker and reused by the next call: encode or clone rec before
// enriching the next record. With Config.Redact, the bytes of every match are
// masked in the record (see redactor.redact): the changed field values are
// replaced by new strings and byte slices, nothing rec pointed to is written,
// and a record without matches is left as it was.
func (w *Worker) Enrich(rec *flowpb.FlowRecord) {
	en := rec.Enrichment
	if en == nil {
		en = &flowpb.Enrichment{}
		rec.Enrichment = en
	}
	en.Matches = en.Matches[:0]
	en.EnrichedNs = w.e.now().UnixNano()
	src, dst := schema.Addr(rec.SrcAddr), schema.Addr(rec.DstAddr)
	if w.preNext < len(w.pre) && w.pre[w.preNext] == rec {
		w.pre[w.preNext] = nil
		w.preNext++ // looked up by Prefetch
	} else if g := w.e.geo; g != nil && src.IsValid() && dst.IsValid() {
		en = enrichment(rec)
		g.LookupPairTallied(src, dst, en.SrcGeo, en.DstGeo, &w.geoN)
	}
	if inv := w.e.inv; inv != nil {
		if en.Device == nil {
			en.Device = &flowpb.Device{}
		}
		if !inv.Attribute(rec.SrcMac, src, en.Device) {
			en.Device = nil
			mNoDev.Inc()
		}
	}
	en.Cleartext = len(rec.Snippets) > 0 && rec.Tls == nil
	if w.scanner = w.e.index.Scanner(w.scanner); w.scanner != nil {
		if n := w.scanner.ScanRecord(rec); n > 0 {
			mMatches.Add(float64(n))
			if w.e.cfg.Redact {
				w.red.redact(rec, en.Matches[len(en.Matches)-n:])
			}
		}
	}
	mRecords.Inc()
}
