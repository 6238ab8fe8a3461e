package detect

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/zeebo/xxh3"
)

// volKey is a destination for upload_volume: country plus organisation.
type volKey struct{ country, org string }

func (k volKey) hash() uint64 {
	return xxh3.HashString(k.country) ^ (xxh3.HashStringSeed(k.org, 2) * 0x9E3779B97F4A7C15)
}

// volState is one device's baseline for one destination: an exponentially
// weighted mean and variance of bytes sent per window, and the current
// window's running total.
type volState struct {
	key      volKey
	winStart int64
	bytes    uint64
	mean     float64
	variance float64
	windows  int // completed windows folded into the baseline
	lastSeen int64
	limit    float64 // bytes that would reach the z threshold this window
}

// maxGapWindows bounds how many empty windows are folded into a baseline
// after a silence (beyond this the baseline has decayed anyway).
const maxGapWindows = 64

// fold adds one completed window total to the EWMA baseline (West's
// incremental EWMA variance).
func (s *volState) fold(x float64, alpha float64) {
	if s.windows == 0 {
		s.mean, s.variance = x, 0
	} else {
		diff := x - s.mean
		incr := alpha * diff
		s.mean += incr
		s.variance = (1 - alpha) * (s.variance + diff*incr)
	}
	s.windows++
}

func (s *volState) stddev(minFrac float64) float64 {
	return math.Max(math.Sqrt(s.variance), math.Max(minFrac*s.mean, 1))
}

// roll moves the state to window ws, folding the finished window and any
// empty windows in between.
func (e *Engine) roll(s *volState, ws int64) {
	c := e.cfg.Volume
	if s.winStart == ws {
		return
	}
	if s.winStart != 0 && ws > s.winStart {
		s.fold(float64(s.bytes), c.Alpha)
		gap := (ws-s.winStart)/int64(c.Window) - 1
		for i := int64(0); i < min(gap, maxGapWindows); i++ {
			s.fold(0, c.Alpha)
		}
	}
	s.winStart, s.bytes = ws, 0
	s.limit = s.mean + c.ZThreshold*s.stddev(c.MinStddevFrac)
}

// uploadVolume checks bytes sent per window to each destination
// organisation/country against the device's own baseline, alerting as soon as
// the running window total crosses max(min_bytes, mean + z·stddev) once the
// baseline is warm; and flags single upload-heavy flows.
func (e *Engine) uploadVolume(d *device, rec *flowpb.FlowRecord, ts int64, emit func(*flowpb.Alert)) {
	c := e.cfg.Volume
	g := rec.Enrichment.GetDstGeo()
	k := volKey{g.GetCountry(), g.GetOrg()}
	h := k.hash()
	s := d.volume.get(h)
	if s == nil {
		if d.volume.len() >= c.MaxDestinations {
			if k, ok := d.volume.oldest(func(v *volState) int64 { return v.lastSeen }); ok {
				d.volume.del(k)
			}
		}
		s = &volState{key: volKey{strings.Clone(k.country), strings.Clone(k.org)}}
		d.volume.put(h, s)
	}
	s.lastSeen = max(s.lastSeen, ts)
	ws := windowStart(ts, c.Window)
	if ws < s.winStart {
		ws = s.winStart // late record: count into the current window
	}
	e.roll(s, ws)
	s.bytes += rec.BytesOut
	if s.windows >= c.WarmupWindows && s.bytes >= c.MinBytes && float64(s.bytes) >= s.limit {
		e.raiseVolume(d, rec, ts, k, s, emit)
	}
	if rec.BytesOut >= c.FlowMinBytes && float64(rec.BytesOut) >= c.FlowRatio*float64(rec.BytesIn) {
		e.raiseUploadFlow(d, rec, ts, emit)
	}
}

func (e *Engine) raiseVolume(d *device, rec *flowpb.FlowRecord, ts int64, k volKey, s *volState, emit func(*flowpb.Alert)) {
	c := e.cfg.Volume
	sd := s.stddev(c.MinStddevFrac)
	z := (float64(s.bytes) - s.mean) / sd
	sev := flowpb.Severity_SEVERITY_MEDIUM
	if z >= 2*c.ZThreshold {
		sev = flowpb.Severity_SEVERITY_HIGH
	}
	e.key(detVolume, d)
	e.keyPart("window")
	e.keyPart(k.country)
	e.keyPart(k.org)
	// The alert's bytes start at the window total at the crossing and grow
	// with later flows of the window; the evidence keeps the crossing figures.
	if e.bump(detVolume, ts, rec, rec.BytesOut, sev, z, emit) {
		return
	}
	dst := destination(rec)
	evidence := []*flowpb.Evidence{
		ev("window_bytes", strconv.FormatUint(s.bytes, 10)),
		ev("baseline_mean", strconv.FormatFloat(s.mean, 'f', 0, 64)),
		ev("baseline_stddev", strconv.FormatFloat(sd, 'f', 0, 64)),
		ev("z", strconv.FormatFloat(z, 'f', 2, 64)),
		ev("baseline_windows", strconv.Itoa(s.windows)),
		ev("window", c.Window.String()),
		ev("country", k.country),
		ev("org", k.org),
	}
	summary := fmt.Sprintf("device sent %d bytes to %s/%s this %s window, z=%.1f over its baseline mean %.0f", s.bytes, k.country, k.org, c.Window, z, s.mean)
	e.raise(detVolume, d, ts, s.winStart, s.winStart+int64(c.Window), dst, rec, s.bytes, sev, z, summary, evidence, emit)
}

func (e *Engine) raiseUploadFlow(d *device, rec *flowpb.FlowRecord, ts int64, emit func(*flowpb.Alert)) {
	e.key(detVolume, d)
	e.keyPart("flow")
	e.appendDest(rec)
	ratio := float64(rec.BytesOut) / math.Max(float64(rec.BytesIn), 1)
	if e.bump(detVolume, ts, rec, rec.BytesOut, flowpb.Severity_SEVERITY_MEDIUM, ratio, emit) {
		return
	}
	dst := destination(rec)
	evidence := []*flowpb.Evidence{
		ev("bytes_out", strconv.FormatUint(rec.BytesOut, 10)),
		ev("bytes_in", strconv.FormatUint(rec.BytesIn, 10)),
		ev("ratio", strconv.FormatFloat(ratio, 'f', 1, 64)),
	}
	summary := fmt.Sprintf("upload-heavy flow: %d bytes out, %d in, to %s", rec.BytesOut, rec.BytesIn, destLabel(dst))
	e.raise(detVolume, d, ts, ts, ts+int64(e.cfg.Suppression), dst, rec, rec.BytesOut, flowpb.Severity_SEVERITY_MEDIUM, ratio, summary, evidence, emit)
}
