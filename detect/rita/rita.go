// Package rita implements the beacon, long-connection and bucketed scoring
// formulas of RITA v5 (activecm/rita analysis/beacons.go, analysis.go) as
// pure functions over caller-owned buffers, so the streaming detector can
// rescore a pair without allocating.
//
// Quartiles use linear interpolation between closest ranks (the "type 7"
// rule of R and numpy's default): q(p) = x[h] + (h-floor(h))·(x[h+1]-x[h])
// with h = (n-1)·p over the sorted values. The median is q(0.5).
package rita

import (
	"math"
	"slices"
)

// Round3 rounds to 3 decimals as RITA does for every sub-score.
func Round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// Quantile returns the type-7 quantile p of sorted (ascending) values.
func Quantile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	h := float64(n-1) * p
	lo := int(math.Floor(h))
	if lo >= n-1 {
		return sorted[n-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// BowleySkewScore returns 1-|skew| with skew = (Q1+Q3-2·Q2)/(Q3-Q1). As in
// RITA the skew is taken as 0 (score 1) unless Q3-Q1 >= 10 and Q2 differs from
// both Q1 and Q3: tiny spreads are regular enough to not be judged by shape.
func BowleySkewScore(sorted []float64) float64 {
	q1, q2, q3 := Quantile(sorted, 0.25), Quantile(sorted, 0.5), Quantile(sorted, 0.75)
	skew := 0.0
	if q3-q1 >= 10 && q2 != q1 && q2 != q3 {
		skew = (q1 + q3 - 2*q2) / (q3 - q1)
	}
	return clamp01(1 - math.Abs(skew))
}

// MADScore returns (median-MAD)/median, where MAD is the median absolute
// deviation from the median, or def when the median is below 1. sorted must be
// ascending; scratch must have room for len(sorted) values and is clobbered.
func MADScore(sorted, scratch []float64, def float64) float64 {
	med := Quantile(sorted, 0.5)
	if med < 1 {
		return def
	}
	dev := scratch[:len(sorted)]
	for i, v := range sorted {
		dev[i] = math.Abs(v - med)
	}
	slices.Sort(dev)
	mad := Quantile(dev, 0.5)
	return clamp01((med - mad) / med)
}

// TimestampScore scores the regularity of connection times (unix seconds, any
// order, duplicates allowed). ts is sorted in place; scratch needs 2·len(ts)
// room. It returns 0 when fewer than 4 unique timestamps (3 intervals) exist.
func TimestampScore(ts []float64, scratch []float64) float64 {
	slices.Sort(ts)
	deltas := scratch[:0]
	for i := 1; i < len(ts); i++ {
		if d := ts[i] - ts[i-1]; d > 0 {
			deltas = append(deltas, d)
		}
	}
	if len(deltas) < 3 {
		return 0
	}
	slices.Sort(deltas)
	skew := BowleySkewScore(deltas)
	mad := MADScore(deltas, scratch[len(deltas):cap(scratch)], 1)
	return Round3((skew + mad) / 2)
}

// DataSizeScore scores the regularity of per-connection sent bytes. sizes is
// sorted in place; scratch needs len(sizes) room. Fewer than 3 sizes score 0.
func DataSizeScore(sizes []float64, scratch []float64) float64 {
	if len(sizes) < 3 {
		return 0
	}
	slices.Sort(sizes)
	skew := BowleySkewScore(sizes)
	mad := MADScore(sizes, scratch, 0)
	return Round3((skew + mad) / 2)
}

// HistogramParams are the RITA histogram settings.
type HistogramParams struct {
	BimodalMinHoursSeen int     // bars needed before the bimodal fit is tried (RITA 11)
	ModeSensitivity     float64 // bucket width as a fraction of the tallest bar (RITA 0.05)
	BimodalOutliers     int     // bars ignored as outliers in the fit (RITA 1)
}

// DefaultHistogramParams are RITA v5's defaults.
var DefaultHistogramParams = HistogramParams{BimodalMinHoursSeen: 11, ModeSensitivity: 0.05, BimodalOutliers: 1}

// HistogramScore scores how evenly connections spread over the 24 hourly
// bins of the window: max(1-CV, bimodal fit). CV is the population standard
// deviation over the mean of all 24 bins (score 0 when CV > 1).
func HistogramScore(bins *[24]uint32, p HistogramParams) float64 {
	var sum float64
	bars := 0
	var maxBar uint32
	for _, c := range bins {
		sum += float64(c)
		if c > 0 {
			bars++
			maxBar = max(maxBar, c)
		}
	}
	if sum == 0 {
		return 0
	}
	mean := sum / 24
	var ss float64
	for _, c := range bins {
		d := float64(c) - mean
		ss += d * d
	}
	cv := math.Sqrt(ss/24) / mean
	cvScore := 0.0
	if cv <= 1 {
		cvScore = 1 - cv
	}
	fit := 0.0
	if bars >= p.BimodalMinHoursSeen {
		width := uint32(math.Ceil(float64(maxBar) * p.ModeSensitivity))
		if width == 0 {
			width = 1
		}
		// At most 24 bars, so at most 24 distinct buckets.
		var keys [24]uint32
		var counts [24]int
		nk := 0
		for _, c := range bins {
			if c == 0 {
				continue
			}
			k := c / width
			j := 0
			for j < nk && keys[j] != k {
				j++
			}
			if j == nk {
				keys[nk] = k
				nk++
			}
			counts[j]++
		}
		first, second := 0, 0
		for _, c := range counts[:nk] {
			if c > first {
				first, second = c, first
			} else if c > second {
				second = c
			}
		}
		fit = math.Min(float64(first+second)/float64(max(bars-p.BimodalOutliers, 1)), 1)
	}
	return Round3(math.Max(cvScore, fit))
}

// DurationParams are the RITA duration settings.
type DurationParams struct {
	MinHoursSeen          int // bars needed for any duration score (RITA 6)
	ConsistencyIdealHours int // run length that scores 1 (RITA 12)
}

// DefaultDurationParams are RITA v5's defaults.
var DefaultDurationParams = DurationParams{MinHoursSeen: 6, ConsistencyIdealHours: 12}

// DurationScore is max(coverage, consistency): coverage is the pair's active
// span (last-first) over the dataset span, consistency the longest run of
// consecutive non-empty hourly bins (wrapping) over the ideal run length.
func DurationScore(bins *[24]uint32, first, last, dataMin, dataMax float64, p DurationParams) float64 {
	bars := 0
	for _, c := range bins {
		if c > 0 {
			bars++
		}
	}
	if bars < p.MinHoursSeen || bars == 0 {
		return 0
	}
	coverage := 0.0
	if span := dataMax - dataMin; span > 0 {
		coverage = math.Min((last-first)/span, 1)
	}
	run, best := 0, 0
	if bars == 24 {
		best = 24
	} else {
		for i := 0; i < 48; i++ { // walk twice around to catch wrapping runs
			if bins[i%24] > 0 {
				run++
				best = max(best, run)
			} else {
				run = 0
			}
		}
	}
	consistency := math.Min(float64(best)/float64(max(p.ConsistencyIdealHours, 1)), 1)
	return Round3(math.Max(coverage, consistency))
}

// BucketedScore maps v piecewise-linearly onto RITA's category scores: below
// base 0; [base,low) 0.2..0.4; [low,med) 0.4..0.6; [med,high] 0.6..0.8 with v
// capped at high. Thresholds must be strictly increasing.
func BucketedScore(v, base, low, med, high float64) float64 {
	switch {
	case v < base:
		return 0
	case v < low:
		return 0.2 + 0.2*(v-base)/(low-base)
	case v < med:
		return 0.4 + 0.2*(v-low)/(med-low)
	default:
		v = math.Min(v, high)
		if high == med {
			return 0.8
		}
		return 0.6 + 0.2*(v-med)/(high-med)
	}
}

func clamp01(v float64) float64 {
	if v < 0 || math.IsNaN(v) {
		return 0
	}
	return math.Min(v, 1)
}
