package detect

import (
	"bytes"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema"
)

// prevalenceLab runs `devices` phones for 6 hours: phones 0..common-1 make
// the hourly 1,000-byte beacon of TestBeaconScoreHand (RITA score exactly
// 0.75) to 203.0.113.7, every phone also makes one connection to a
// destination of its own, so all of them hold beacon state. It returns the
// beacon alerts on the common destination's address pair.
func prevalenceLab(t *testing.T, c Config, devices, common int) (*Engine, []string) {
	t.Helper()
	e := newEngine(t, c)
	var s sink
	for d := 0; d < devices; d++ {
		e.Process(flow("dev"+strconv.Itoa(d), at(time.Second), "198.51.100."+strconv.Itoa(d+1)), s.emit)
	}
	for i := 0; i < 6; i++ {
		for d := 0; d < common; d++ {
			e.Process(flow("dev"+strconv.Itoa(d), at(time.Duration(i)*time.Hour+time.Second), "203.0.113.7"), s.emit)
		}
	}
	var scores []string
	for _, a := range s.by("beaconing") {
		if a.Destination.GetHost() == "" && evidence(a, "beacon_score") == "0.750" {
			scores = append(scores, evidence(a, "score")+"@"+evidence(a, "prevalence"))
		}
	}
	return e, scores
}

func TestBeaconPrevalenceModifier(t *testing.T) {
	c := beaconConfig()
	for _, tc := range []struct {
		name            string
		devices, common int
		want            int    // alerts on the common pair
		score           string // their score@prevalence
	}{
		// 5 of 10 phones: prevalence 0.5 reaches the threshold, 0.75-0.15 = 0.6.
		{"at decrease threshold", 10, 5, 0, ""},
		// 4 of 10: 0.4, no modifier, the 0.75 beacon fires on each phone.
		{"below decrease threshold", 10, 4, 4, "0.750@0.400"},
		// 9 phones only: below prevalence_min_devices, no modifier even at 100 %.
		{"too few devices", 9, 9, 9, "0.750@"},
		// 10 of 10: decreased.
		{"everyone", 10, 10, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got := prevalenceLab(t, c, tc.devices, tc.common)
			if len(got) != tc.want {
				t.Fatalf("%d alerts on the common destination, want %d: %v", len(got), tc.want, got)
			}
			for _, g := range got {
				if g != tc.score {
					t.Fatalf("alert %s, want %s", g, tc.score)
				}
			}
		})
	}
}

// A rare destination's score is raised when prevalence_score_increase is set,
// and the cheap-score gate lets a base score below the threshold through.
func TestBeaconPrevalenceIncrease(t *testing.T) {
	c := beaconConfig()
	c.Beacon.Threshold = 0.85
	if _, got := prevalenceLab(t, c, 60, 1); len(got) != 0 {
		t.Fatalf("0.75 beacon fired at threshold 0.85 with no increase: %v", got)
	}
	c.Beacon.PrevalenceIncrease = 0.15
	_, got := prevalenceLab(t, c, 60, 1) // 1 of 60 = 0.017 <= 0.02
	if len(got) != 1 || got[0] != "0.900@0.017" {
		t.Fatalf("rare beacon: %v, want one alert 0.900@0.017", got)
	}
	if _, got := prevalenceLab(t, c, 40, 1); len(got) != 0 { // 1 of 40 = 0.025 > 0.02
		t.Fatalf("beacon at prevalence 0.025 raised: %v", got)
	}
}

// The counts follow pairs: they are created with them, expire with them a
// window after the last connection, go with dropped devices and are rebuilt
// from a snapshot.
func TestBeaconPrevalenceCounts(t *testing.T) {
	c := beaconConfig()
	e, _ := prevalenceLab(t, c, 12, 6)
	h := tkey(pairKey{addr: addr16("203.0.113.7")}.hash())
	if e.prevDevs != 12 || e.prevDst[h] != 6 {
		t.Fatalf("after the lab: %d devices, %d on the common pair; want 12, 6", e.prevDevs, e.prevDst[h])
	}

	var buf bytes.Buffer
	if err := e.Snapshot(&buf); err != nil {
		t.Fatal(err)
	}
	r := newEngine(t, c)
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if r.prevDevs != 12 || r.prevDst[h] != 6 || len(r.prevDst) != len(e.prevDst) {
		t.Fatalf("restored: %d devices, %d on the pair, %d destinations; want 12, 6, %d", r.prevDevs, r.prevDst[h], len(r.prevDst), len(e.prevDst))
	}

	// dev0 keeps talking to the common destination; everyone else goes
	// quiet. A window (plus a sweep bin) later only dev0's pairs remain.
	var s sink
	for i := 6; i <= 31; i++ {
		e.Process(flow("dev0", at(time.Duration(i)*time.Hour+time.Second), "203.0.113.7"), s.emit)
	}
	if e.prevDevs != 1 || e.prevDst[h] != 1 || len(e.prevDst) != 1 {
		t.Fatalf("after the others' pairs expired: %d devices, %d on the pair, %d destinations; want 1, 1, 1", e.prevDevs, e.prevDst[h], len(e.prevDst))
	}
	e.Flush(at(31*time.Hour+c.DeviceIdleTTL+2*time.Minute), s.emit)
	if e.prevDevs != 0 || len(e.prevDst) != 0 {
		t.Fatalf("after every device was dropped: %d devices, %d destinations", e.prevDevs, len(e.prevDst))
	}
}

func TestBeaconPrevalenceEvictedPair(t *testing.T) {
	c := beaconConfig()
	c.Beacon.MaxPairs = 2
	e := newEngine(t, c)
	var s sink
	for i, dst := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
		e.Process(flow("dev1", at(time.Duration(i)*time.Minute), dst), s.emit)
	}
	if e.prevDevs != 1 || len(e.prevDst) != 2 || e.prevDst[tkey(pairKey{addr: addr16("198.51.100.1")}.hash())] != 0 {
		t.Fatalf("after evicting the oldest of 3 pairs at max_pairs 2: %d devices, counts %v", e.prevDevs, e.prevDst)
	}
}

func addr16(s string) (a [16]byte) {
	copy(a[:], schema.AddrBytes(netip.MustParseAddr(s)))
	return a
}
