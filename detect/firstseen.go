package detect

import (
	"fmt"
	"strconv"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// modelState is what first_seen_destination remembers per device model:
// when the model was first seen (start of its learning period) and every
// destination country and ASN seen since, up to max_per_model entries.
type modelState struct {
	start     int64
	countries map[uint16]struct{}
	asns      map[uint32]struct{}
}

// firstSeenWindow buckets first-seen alerts (window start and id) by day.
const firstSeenWindow = 24 * time.Hour

func countryKey(cc string) (uint16, bool) {
	if !isCountryCode(cc) {
		return 0, false
	}
	return uint16(cc[0])<<8 | uint16(cc[1]), true
}

// firstSeen learns each model's destination countries and ASNs for the
// learning period (record time from the model's first record), then alerts
// once per new country or ASN and adds it to the known set.
func (e *Engine) firstSeen(d *device, rec *flowpb.FlowRecord, ts int64, emit func(*flowpb.Alert)) {
	if d.model == "" {
		return
	}
	m := e.models[d.model]
	if m == nil {
		m = &modelState{start: ts, countries: map[uint16]struct{}{}, asns: map[uint32]struct{}{}}
		e.models[d.model] = m
	}
	if ts < m.start {
		m.start = ts
	}
	learning := ts < m.start+int64(e.cfg.FirstSeen.Learning)
	g := rec.Enrichment.GetDstGeo()
	full := len(m.countries)+len(m.asns) >= e.cfg.FirstSeen.MaxPerModel
	if k, ok := countryKey(g.GetCountry()); ok {
		if _, seen := m.countries[k]; !seen && !full {
			m.countries[k] = struct{}{}
			if !learning {
				e.raiseFirstSeen(d, rec, ts, "country", g.Country, m, emit)
			}
		}
	}
	if asn := g.GetAsn(); asn != 0 {
		if _, seen := m.asns[asn]; !seen && !full {
			m.asns[asn] = struct{}{}
			if !learning {
				e.raiseFirstSeen(d, rec, ts, "asn", "AS"+strconv.FormatUint(uint64(asn), 10), m, emit)
			}
		}
	}
}

func (e *Engine) raiseFirstSeen(d *device, rec *flowpb.FlowRecord, ts int64, kind, what string, m *modelState, emit func(*flowpb.Alert)) {
	// Keyed by model, not device: the finding is about the model, and the
	// known set makes it fire once anyway.
	e.keyBuf = append(e.keyBuf[:0], detFirstSeen.String()...)
	e.keyPart(d.model)
	e.keyPart(kind)
	e.keyPart(what)
	if e.bump(detFirstSeen, ts, rec, rec.BytesOut, flowpb.Severity_SEVERITY_MEDIUM, 0, emit) {
		return
	}
	dst := destination(rec)
	evidence := []*flowpb.Evidence{
		ev("kind", kind),
		ev("value", what),
		ev("model", d.model),
		ev("learned_since", time.Unix(0, m.start).UTC().Format(time.RFC3339)),
		ev("known_countries", strconv.Itoa(len(m.countries)-btoi(kind == "country"))),
		ev("known_asns", strconv.Itoa(len(m.asns)-btoi(kind == "asn"))),
	}
	summary := fmt.Sprintf("first %s %s ever seen for model %q (device %s) to %s", kind, what, d.model, d.id, destLabel(dst))
	// Each detect instance learns a model on its own and raises its own
	// first-seen alert; the window (and so the id, and the ClickHouse
	// partition) is the UTC day of the record, not its exact time, so the
	// instances' alerts raised on the same day are one row after merging.
	e.raise(detFirstSeen, d, ts, windowStart(ts, firstSeenWindow), ts+int64(e.cfg.Suppression), dst, rec, rec.BytesOut, flowpb.Severity_SEVERITY_MEDIUM, 0, summary, evidence, emit)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
