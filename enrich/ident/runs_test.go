package ident

import (
	"slices"
	"strings"
	"testing"
)

// edgeIndex builds a small lab index for the edge tests and returns it with
// the plaintext forms of its identifiers.
func edgeIndex(t *testing.T) (*Index, []string) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Secret = "edge-secret-0123456789"
	cfg.MaxWindowProbes = 1 << 30 // the reference path hashes every window
	ids := benchLab(20)
	idx, errs, err := BuildIndex(cfg, ids)
	if err != nil || len(errs) > 0 {
		t.Fatal(err, errs)
	}
	e := newExpander()
	var forms []string
	for _, id := range ids[:12] { // every identifier type of one device
		vs, err := baseVariants(id.Type, id.Value)
		if err != nil {
			t.Fatal(err)
		}
		e.expand(vs, func(s string, _ form) {
			if len(s) >= minForm && len(s) <= 200 {
				forms = append(forms, s)
			}
		})
	}
	return idx, forms
}

// TestRunEdgesEqualReference places forms at the ends of the buffer, glued
// to one or more bytes of every class, and cut to the lengths around the
// shortest run, window and layer bounds, and requires the fast scanner to
// report exactly what the reference (every maximal run found byte by byte,
// no filters, all window lengths) reports.
func TestRunEdgesEqualReference(t *testing.T) {
	idx, forms := edgeIndex(t)
	fast, ref := idx.NewScanner(), idx.NewScanner()
	ref.reference = true
	// one byte of each class mix: digit, hex letter, other letter, the
	// separators of each class, a space, strong delimiters, binary
	glue := []string{"", "7", "c", "C", "x", "Z", ":", ".", "-", "+", "/", "_", "%", "@", " ", "=", "==", "\"", "&", "\x00", "\xff",
		"0123", "abcd", "deadbeef99", "Zm9v", "A1B2C3D4E5F6"}
	var cuts []int
	for c := 0; c < numRunClasses; c++ {
		if L := idx.minRun[c]; L > 0 {
			cuts = append(cuts, L-1, L, L+1)
		}
		for _, w := range idx.refWins[c] {
			cuts = append(cuts, w-1, w, w+1)
		}
	}
	cuts = append(cuts, minB64Decode-1, minB64Decode, minB64Decode+1)
	check := func(d string) {
		want := scanStrings(ref, []byte(d))
		slices.Sort(want)
		for _, f := range runFinders() {
			fast.runFinder = f
			got := scanStrings(fast, []byte(d))
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("finder %d %q:\nfast      %v\nreference %v", f, d, got, want)
			}
		}
	}
	found := 0
	step := 1
	if testing.Short() {
		step = 5
	}
	for i := 0; i < len(forms); i += step {
		f := forms[i]
		if got := scanStrings(fast, []byte(f)); len(got) > 0 {
			found++
		}
		for _, g := range glue {
			check(g + f)
			check(f + g)
			check(g + f + g)
			check(strings.ToUpper(g + f + g))
		}
		// cut to the bounds, alone and glued into a same-class run
		if i%(4*step) == 0 {
			for _, n := range cuts {
				if n > 0 && n <= len(f) {
					check(f[:n])
					check(f[len(f)-n:])
					check("q=" + f[:n] + "&")
					check("deadbeef" + f[:n])
				}
			}
		}
	}
	// Most forms are found as a whole buffer (some only in context, e.g.
	// the national number of a MSISDN is dropped inside the longer one).
	if found < len(forms)/step*9/10 {
		t.Fatalf("only %d of %d forms found as a whole buffer", found, len(forms))
	}
}

// TestProbeFilterHoldsEveryForm: the filter in front of whole-run lookups
// has the bit of every indexed form (normalised, as the scanner folds it).
func TestProbeFilterHoldsEveryForm(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Secret = "filter-secret-0123456789"
	ids := benchLab(40)
	b, err := NewBuilder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if err := b.Add(id); err != nil {
			t.Fatal(err)
		}
	}
	idx := b.Build()
	e := newExpander()
	n := 0
	for _, id := range ids {
		vs, err := baseVariants(id.Type, id.Value)
		if err != nil {
			t.Fatal(err)
		}
		e.expand(vs, func(s string, _ form) {
			if len(s) < 8 || len(s) > maxCandidate {
				return
			}
			norm := normalize(nil, []byte(s))
			if !idx.mayHold(le64(norm)|fold8, le64(norm[len(norm)-8:])|fold8, len(norm)) {
				t.Fatalf("%s %s: form %q not in the probe filter", id.Device, id.Type, s)
			}
			n++
		})
	}
	if n < 1000 {
		t.Fatalf("only %d forms checked", n)
	}
}

// TestDigitFormsNotWindowed: all-digit plain forms are left out of the
// window lengths and filters (a window that is all digits is never
// probed) but stay in the reference's window lengths.
func TestDigitFormsNotWindowed(t *testing.T) {
	idx, _ := edgeIndex(t)
	for _, w := range idx.wins[clsHexSep] {
		if !slices.Contains(idx.refWins[clsHexSep], w) {
			t.Fatalf("window length %d missing from the reference lengths %v", w, idx.refWins[clsHexSep])
		}
	}
	// 15-digit IMEIs, 19-digit ICCIDs: only digit forms have these lengths
	for _, w := range []int{15, 19} {
		if slices.Contains(idx.wins[clsHexSep], w) || !slices.Contains(idx.refWins[clsHexSep], w) {
			t.Fatalf("length %d: wins %v, reference %v", w, idx.wins[clsHexSep], idx.refWins[clsHexSep])
		}
	}
}
