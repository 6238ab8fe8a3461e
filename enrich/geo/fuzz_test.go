package geo

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// spansFrom decodes fuzz bytes into spans over the addresses 0..255.
func spansFrom(data []byte) []span {
	var out []span
	for i := 0; i+2 < len(data); i += 3 {
		first := uint64(data[i])
		last := min(255, first+uint64(data[i+1]%64))
		out = append(out, span{u128{0, first}, u128{0, last}, uint32(data[i+2]%4) + 1})
	}
	return out
}

// refAt is the overlap rule stated directly: among spans containing x the
// greatest first wins, then the smallest last, then the later one.
func refAt(spans []span, x uint64) uint32 {
	best := -1
	for i, s := range spans {
		if s.first.lo > x || s.last.lo < x {
			continue
		}
		if best >= 0 {
			b := spans[best]
			if s.first.lo < b.first.lo || (s.first.lo == b.first.lo && s.last.lo > b.last.lo) {
				continue
			}
		}
		best = i
	}
	if best < 0 {
		return 0
	}
	return spans[best].rec
}

// FuzzNormalize checks normalize and a two-layer merge against the rule
// evaluated address by address.
func FuzzNormalize(f *testing.F) {
	f.Add([]byte{0, 10, 1, 5, 10, 2, 3, 3, 3})
	f.Add([]byte{10, 20, 1, 10, 5, 2, 10, 5, 3, 255, 63, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		half := len(data) / 2 / 3 * 3
		a, b := spansFrom(data[:half]), spansFrom(data[half:])
		refA := make([]uint32, 256)
		refB := make([]uint32, 256)
		for x := range 256 {
			refA[x], refB[x] = refAt(a, uint64(x)), refAt(b, uint64(x))
		}
		na, nb := normalize(append([]span(nil), a...)), normalize(append([]span(nil), b...))
		for i, s := range na {
			if s.last.less(s.first) || (i > 0 && !na[i-1].last.less(s.first)) || s.rec == 0 {
				t.Fatalf("normalize output not sorted/disjoint: %v", na)
			}
		}
		// Layer B overrides A wherever B has data.
		starts, recs := merge([][]span{na, nb}, u128{0, 255}, func(ids []uint32) uint32 {
			if ids[1] != 0 {
				return ids[1]*10 + ids[0]
			}
			return ids[0]
		})
		if starts[0] != (u128{}) {
			t.Fatalf("merged table does not start at 0: %v", starts)
		}
		j := 0
		for x := range 256 {
			for j+1 < len(starts) && starts[j+1].lo <= uint64(x) {
				j++
			}
			want := refA[x]
			if refB[x] != 0 {
				want = refB[x]*10 + refA[x]
			}
			if recs[j] != want {
				t.Fatalf("address %d: merged %d, want %d (a=%v b=%v)", x, recs[j], want, a, b)
			}
		}
		for i := 1; i < len(recs); i++ {
			if recs[i] == recs[i-1] {
				t.Fatalf("adjacent equal ranges not coalesced: %v %v", starts, recs)
			}
		}
	})
}

// FuzzCSV feeds arbitrary text to the CSV loader: it must return an error or
// a DB whose lookups do not panic.
func FuzzCSV(f *testing.F) {
	f.Add("1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n")
	f.Add("first_ip,last_ip,asn,org\n2001::,2001::ffff,6939,HE\n1.2.3.4,1.2.3.4,AS5,x\n")
	f.Add("1.0.0.0,0.255.255.255,1,x\n")
	f.Fuzz(func(t *testing.T, text string) {
		path := filepath.Join(t.TempDir(), "f.csv")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		cfg.Databases = []string{path}
		db, err := Open(cfg)
		if err != nil {
			return
		}
		for _, ip := range []string{"0.0.0.0", "1.0.0.1", "1.2.3.4", "255.255.255.255", "::", "2001::1", "ffff::"} {
			lookup(db, ip)
			db.lookupRaw(netip.MustParseAddr(ip))
		}
	})
}
