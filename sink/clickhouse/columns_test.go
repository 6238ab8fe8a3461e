package clickhouse

import (
	"slices"
	"testing"
)

// strArrCol must yield the same rows on both profiles: pointers into the
// records on portable, string rows on modern; addSet keeps the first of
// each value in order; reset empties both.
func TestStrArrCol(t *testing.T) {
	rows := [][]string{{"wlan0", "eth1"}, nil, {"a"}, {"x", "y", "x"}}
	sets := [][]string{{"imei", "imei", "email"}, {}, {"gaid"}}
	want := [][]string{{"wlan0", "eth1"}, nil, {"a"}, {"x", "y", "x"}, {"imei", "email"}, nil, {"gaid"}}
	for _, modern := range []bool{false, true} {
		c := strArrCol{modern: modern}
		for round := range 2 { // the second round runs on reset, reused storage
			c.reset()
			for _, r := range rows {
				c.add(r)
			}
			for _, s := range sets {
				c.addSet(len(s), func(i int) *string { return &s[i] })
			}
			var got [][]string
			switch v := c.slice().(type) {
			case [][]string:
				if !modern {
					t.Fatal("portable profile built []string rows")
				}
				got = v
			case [][]*string:
				if modern {
					t.Fatal("modern profile built []*string rows")
				}
				for _, r := range v {
					var row []string
					for _, p := range r {
						row = append(row, *p)
					}
					got = append(got, row)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("modern=%v round %d: %d rows, want %d", modern, round, len(got), len(want))
			}
			for i := range want {
				if !slices.Equal(got[i], want[i]) {
					t.Fatalf("modern=%v round %d row %d: %q, want %q", modern, round, i, got[i], want[i])
				}
			}
		}
	}
}
