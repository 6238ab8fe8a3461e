package rita

import (
	"math"
	"testing"
)

func near(t *testing.T, name string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9 {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}

func TestQuantileType7(t *testing.T) {
	x := []float64{10, 20, 30, 60, 100}
	// h = (n-1)p: 1, 2, 3 exactly.
	near(t, "q1", Quantile(x, 0.25), 20)
	near(t, "q2", Quantile(x, 0.5), 30)
	near(t, "q3", Quantile(x, 0.75), 60)
	y := []float64{60, 60, 60, 70}
	// h = 2.25 -> 60 + 0.25*(70-60)
	near(t, "q3 interpolated", Quantile(y, 0.75), 62.5)
	near(t, "empty", Quantile(nil, 0.5), 0)
}

// Hand computation: timestamps 0,10,30,60,120,220 give deltas 10,20,30,60,100.
// Q1=20 Q2=30 Q3=60, Q3-Q1=40 >= 10, skew=(20+60-60)/40=0.5 -> skew score 0.5.
// Median 30, |d-30| = 20,10,0,30,70 -> MAD 20 -> MAD score (30-20)/30 = 1/3.
// TS = round3((0.5+0.3333)/2) = 0.417.
func TestTimestampScoreHand(t *testing.T) {
	ts := []float64{220, 0, 60, 10, 120, 30}
	near(t, "TS", TimestampScore(ts, make([]float64, 0, 12)), 0.417)

	// Perfect period: deltas 60,60,60,70 -> Q3-Q1 = 2.5 < 10 so skew 0;
	// MAD 0 -> 1; TS = 1.
	near(t, "TS periodic", TimestampScore([]float64{0, 60, 120, 180, 250}, make([]float64, 0, 10)), 1)

	// Duplicates are dropped as zero deltas: only 2 intervals remain -> 0.
	near(t, "TS too few", TimestampScore([]float64{0, 0, 60, 120}, make([]float64, 0, 8)), 0)

	// Median below 1 second is impossible for integer seconds; sub-second
	// deltas use the timestamp default of 1 for the MAD part.
	near(t, "TS subsecond", TimestampScore([]float64{0, 0.5, 1, 1.5}, make([]float64, 0, 8)), 1)
}

func TestDataSizeScoreHand(t *testing.T) {
	// Constant sizes: skew 0 and MAD 0 -> 1.
	near(t, "DS constant", DataSizeScore([]float64{100, 100, 100, 100}, make([]float64, 4)), 1)
	// Zero-byte connections: median < 1 -> MAD default 0; skew score 1 -> 0.5.
	near(t, "DS zero", DataSizeScore([]float64{0, 0, 0}, make([]float64, 3)), 0.5)
	// Same numbers as the timestamp hand example used as sizes -> 0.417.
	near(t, "DS skewed", DataSizeScore([]float64{100, 10, 60, 20, 30}, make([]float64, 5)), 0.417)
	near(t, "DS too few", DataSizeScore([]float64{1, 2}, make([]float64, 2)), 0)
}

func TestHistogramScoreHand(t *testing.T) {
	var even [24]uint32
	for i := range even {
		even[i] = 4
	}
	near(t, "even", HistogramScore(&even, DefaultHistogramParams), 1)

	// 20 bins of 2 and 4 empty: mean 5/3, population sd sqrt(5/9)=0.745356,
	// CV 0.447214 -> 0.553 with the bimodal fit disabled.
	var cv [24]uint32
	for i := 0; i < 20; i++ {
		cv[i] = 2
	}
	noBimodal := HistogramParams{BimodalMinHoursSeen: 25, ModeSensitivity: 0.05, BimodalOutliers: 1}
	near(t, "cv", HistogramScore(&cv, noBimodal), 0.553)

	// Bimodal: 11 bars of 10, 5 of 20, 4 of 30 (20 bars). Width ceil(30*0.05)=2,
	// buckets 5:11, 10:5, 15:4 -> fit (11+5)/(20-1) = 0.842. CV: mean 13.75,
	// variance 2162.5/24 -> CV 0.690 -> 0.310. Score = max = 0.842.
	var bi [24]uint32
	for i := 0; i < 11; i++ {
		bi[i] = 10
	}
	for i := 11; i < 16; i++ {
		bi[i] = 20
	}
	for i := 16; i < 20; i++ {
		bi[i] = 30
	}
	near(t, "bimodal", HistogramScore(&bi, DefaultHistogramParams), 0.842)
	near(t, "bimodal off (cv only)", HistogramScore(&bi, noBimodal), 0.31)

	// Few, concentrated bins: CV > 1 -> 0, bars < 11 -> no fit.
	var spiky [24]uint32
	for i := 0; i < 6; i++ {
		spiky[i] = 4
	}
	near(t, "spiky", HistogramScore(&spiky, DefaultHistogramParams), 0)
	var empty [24]uint32
	near(t, "empty", HistogramScore(&empty, DefaultHistogramParams), 0)
}

func TestDurationScoreHand(t *testing.T) {
	// 6 consecutive bins wrapping midnight: 22,23,0,1,2,3.
	var b [24]uint32
	for _, i := range []int{22, 23, 0, 1, 2, 3} {
		b[i] = 1
	}
	// coverage 18000/86400 = 0.208; consistency 6/12 = 0.5 -> 0.5.
	near(t, "wrap", DurationScore(&b, 0, 18000, 0, 86400, DefaultDurationParams), 0.5)
	// coverage wins when the pair spans the dataset.
	near(t, "coverage", DurationScore(&b, 0, 86400, 0, 86400, DefaultDurationParams), 1)
	near(t, "coverage partial", DurationScore(&b, 0, 64800, 0, 86400, DefaultDurationParams), 0.75)
	// 5 bars: below duration_min_hours_seen -> 0.
	b[3] = 0
	near(t, "too few bars", DurationScore(&b, 0, 86400, 0, 86400, DefaultDurationParams), 0)
}

func TestBucketedScoreHand(t *testing.T) {
	h := 3600.0
	near(t, "below", BucketedScore(0.5*h, h, 4*h, 8*h, 12*h), 0)
	near(t, "base", BucketedScore(h, h, 4*h, 8*h, 12*h), 0.2)
	near(t, "2h", BucketedScore(2*h, h, 4*h, 8*h, 12*h), 0.2+0.2/3)
	near(t, "low", BucketedScore(4*h, h, 4*h, 8*h, 12*h), 0.4)
	near(t, "10h", BucketedScore(10*h, h, 4*h, 8*h, 12*h), 0.7)
	near(t, "capped", BucketedScore(20*h, h, 4*h, 8*h, 12*h), 0.8)
}

func TestBowleyGuards(t *testing.T) {
	// Q2 == Q1 disables the skew even with a wide spread.
	near(t, "q2==q1", BowleySkewScore([]float64{10, 10, 10, 10, 100}), 1)
	// Spread below 10 disables the skew.
	near(t, "narrow", BowleySkewScore([]float64{1, 2, 3, 9}), 1)
}

func TestZeroAlloc(t *testing.T) {
	ts := []float64{220, 0, 60, 10, 120, 30}
	buf := make([]float64, 0, 12)
	var bins [24]uint32
	bins[3] = 5
	if n := testing.AllocsPerRun(100, func() {
		TimestampScore(ts, buf)
		DataSizeScore(ts, buf[:cap(buf)])
		HistogramScore(&bins, DefaultHistogramParams)
		DurationScore(&bins, 0, 1, 0, 2, DefaultDurationParams)
	}); n != 0 {
		t.Fatalf("allocs per scoring = %v, want 0", n)
	}
}
