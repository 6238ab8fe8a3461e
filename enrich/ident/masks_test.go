package ident

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// naiveMasks is the definition the mask builders must meet.
func naiveMasks(data []byte) []uint64 {
	out := make([]uint64, len(data)/64*maskStride)
	for i, b := range data[:len(data)&^63] {
		for c := 0; c < numRunClasses; c++ {
			if lut[b]&(1<<c) != 0 {
				out[i/64*maskStride+c] |= 1 << (i % 64)
			}
		}
		if b >= 'A' && b <= 'F' {
			out[i/64*maskStride+maskUpper] |= 1 << (i % 64)
		}
	}
	return out
}

// TestClassMasks: the Go and (where the CPU has it) assembly mask builders
// agree with a per-byte loop on every byte value at every block position
// and on random data, and the kernel reports which special bytes occur.
func TestClassMasks(t *testing.T) {
	var inputs [][]byte
	all := make([]byte, 256*64)
	for i := range all {
		all[i] = byte(i*7 + i/256) // every byte value at every position
	}
	inputs = append(inputs, all)
	rng := rand.New(rand.NewPCG(1, 2))
	for k := 0; k < 200; k++ {
		d := make([]byte, 64*(1+rng.IntN(9)))
		for i := range d {
			switch k % 4 {
			case 3:
				d[i] = "ab\\%+\x1f\x80\xff"[rng.IntN(8)]
			case 0:
				d[i] = byte(rng.Uint32())
			case 1:
				d[i] = "0123456789abcdefXYZ+/-_.:%@ \"=&{}"[rng.IntN(33)]
			default:
				d[i] = byte(0x78 + rng.IntN(16))
			}
		}
		inputs = append(inputs, d)
	}
	finders := []runFinder{runsMaskGo}
	if hasMaskAsm {
		finders = append(finders, runsMaskAsm)
	} else {
		t.Log("no AVX-512 VBMI+GFNI here: only the Go builder is checked")
	}
	for _, in := range inputs {
		want := naiveMasks(in)
		var wantSp uint8
		for _, b := range in {
			wantSp |= specialBits[b]
		}
		for _, f := range finders {
			got := make([]uint64, len(want))
			var acc [8]uint64
			classMasks(in, got, f == runsMaskAsm, &acc)
			if f == runsMaskAsm {
				var sp uint64
				for _, v := range acc {
					sp |= v
				}
				sp |= sp >> 32
				sp |= sp >> 16
				sp |= sp >> 8
				if uint8(sp) != wantSp {
					t.Fatalf("special bytes: got %08b want %08b", uint8(sp), wantSp)
				}
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("finder %d block %d class %d: got %064b want %064b", f, i/maskStride, i%maskStride, got[i], want[i])
				}
			}
		}
	}
}

func TestLongStarts(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for k := 0; k < 50000; k++ {
		lo, hi := rng.Uint64()|rng.Uint64(), rng.Uint64()|rng.Uint64()
		if k%2 == 0 {
			lo |= rng.Uint64()
			hi |= rng.Uint64()
		}
		if k%7 == 0 {
			hi = ^uint64(0)
		}
		L := 1 + rng.IntN(maxMaskRun)
		bit := func(i int) bool {
			if i < 64 {
				return lo>>i&1 != 0
			}
			return hi>>(i-64)&1 != 0
		}
		var want uint64
		for i := 0; i < 64; i++ {
			ok := true
			for j := i; ok && j < i+L; j++ {
				ok = bit(j)
			}
			if ok {
				want |= 1 << i
			}
		}
		ms := make([]uint64, 2*maskStride)
		ms[clsWord], ms[maskStride+clsWord] = lo, hi
		var out [1]uint64
		longStarts(ms, clsWord, 1, L, out[:])
		if got := out[0]; got != want {
			t.Fatalf("longStarts(%064b, %064b, %d) = %064b, want %064b", lo, hi, L, got, want)
		}
	}
}

type foundRun struct{ c, st, e int }

// collectRuns lists the runs a finder reports for data (every class).
func collectRuns(s *Scanner, f runFinder, data []byte) []foundRun {
	var got []foundRun
	s.runHook = func(c, st, e int) { got = append(got, foundRun{c, st, e}) }
	defer func() { s.runHook = nil }()
	switch f {
	case runsSample:
		s.sampleRuns(data, 0, allRunClasses)
	default:
		s.runFinder = f
		s.maskRuns(data, 0, allRunClasses)
	}
	return got
}

// runFinders lists the finders this machine can run.
func runFinders() []runFinder {
	fs := []runFinder{runsSample, runsMaskGo}
	if hasMaskAsm {
		fs = append(fs, runsMaskAsm)
	}
	return fs
}

// TestRunFindersEqualReference: every run finder reports, in the same
// order, exactly the runs of the reference walk (every maximal run found
// byte by byte) that are at least minRun long, on random documents of
// class-run-shaped tokens whose lengths straddle minRun and the 64-byte
// block bounds, including a class with minRun above what the masks handle.
func TestRunFindersEqualReference(t *testing.T) {
	idx, _ := edgeIndex(t)
	long, _ := edgeIndex(t)
	long.minRun[clsText] = 90 // past maxMaskRun: sampled
	long.minRun[clsWord] = 64
	long.minRun[clsHex] = 1
	long.minRun[clsAlnum] = maxMaskRun
	long.minRun[clsDigit] = 3
	long.startParams = newStartParams(&long.minRun)
	alphas := []string{alphaDigits, alphaHex, alphaHexUp + ":-.", alphaB64, alphaText, "abcXYZ019._%+@-",
		"\"&=;,{}[]", "\x00\x01\xff\x80 "}
	rng := rand.New(rand.NewPCG(9, 10))
	for _, x := range []*Index{idx, long} {
		sc := x.NewScanner()
		for k := 0; k < 3000; k++ {
			var d []byte
			for len(d) < 64*(1+k%6)+rng.IntN(64) {
				a := alphas[rng.IntN(len(alphas))]
				n := 1 + rng.IntN(20)
				if rng.IntN(4) == 0 {
					n = 50 + rng.IntN(150)
				}
				for i := 0; i < n; i++ {
					d = append(d, a[rng.IntN(len(a))])
				}
			}
			d = d[:len(d)-rng.IntN(min(len(d), 64))]
			var want []foundRun
			sc.runHook = func(c, st, e int) {
				if e-st >= x.minRun[c] {
					want = append(want, foundRun{c, st, e})
				}
			}
			sc.allRuns(d, 0, allRunClasses)
			for _, f := range runFinders() {
				if got := collectRuns(sc, f, d); !slices.Equal(got, want) {
					t.Fatalf("finder %d on %q:\ngot  %v\nwant %v", f, d, got, want)
				}
			}
		}
	}
}

// TestHexUpper: the mask answers probe uses agree with the byte loop they
// replace, for ranges of every length and alignment, across blocks.
func TestHexUpper(t *testing.T) {
	idx, _ := edgeIndex(t)
	rng := rand.New(rand.NewPCG(13, 14))
	for _, f := range []runFinder{runsMaskGo, runsMaskAsm} {
		if f == runsMaskAsm && !hasMaskAsm {
			continue
		}
		sc := idx.NewScanner()
		sc.runFinder = f
		for k := 0; k < 300; k++ {
			d := make([]byte, 1+rng.IntN(300))
			for i := range d {
				d[i] = "0123456789abcdefABCDEF:.-xZ+"[rng.IntN(28-k%20)]
			}
			layer := k % (maxLayers + 1)
			sc.buildMasks(d, layer)
			for j := 0; j < 50; j++ {
				st := rng.IntN(len(d))
				e := st + rng.IntN(len(d)-st+1)
				wantHex, wantUp := true, false
				for _, b := range d[st:e] {
					wantHex = wantHex && lut[b]&(1<<clsHexSep) != 0
					wantUp = wantUp || b >= 'A' && b <= 'F'
				}
				if !wantHex {
					wantUp = false
				}
				if h, u := sc.hexUpper(layer, st, e); h != wantHex || u != wantUp {
					t.Fatalf("finder %d %q[%d:%d]: got %v %v want %v %v", f, d, st, e, h, u, wantHex, wantUp)
				}
			}
		}
	}
}

// looksBinaryRef is the byte loop looksBinary replaces.
func looksBinaryRef(b []byte) bool {
	if len(b) > 128 {
		b = b[:128]
	}
	bin := 0
	for _, c := range b {
		if (c < 0x20 && c != '\n' && c != '\r' && c != '\t') || c >= 0x7f {
			bin++
		}
	}
	return bin*8 > len(b)
}

func TestLooksBinary(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	var all [256]byte
	for i := range all {
		all[i] = byte(i)
	}
	for k := 0; k < 20000; k++ {
		d := make([]byte, rng.IntN(200))
		p := rng.IntN(40) // share of odd bytes
		for i := range d {
			if rng.IntN(100) < p {
				d[i] = all[rng.IntN(256)]
			} else {
				const pool = " \t\r\n~}azAZ09\x7f\x1f\x20\x80\xff\x00\x08\x0b\x0c\x0e"
				d[i] = pool[rng.IntN(len(pool))]
			}
		}
		if got, want := looksBinary(d), looksBinaryRef(d); got != want {
			t.Fatalf("%q: got %v want %v", d, got, want)
		}
	}
}

// TestTextRun: the mask-derived text segment equals the byte walk's.
func TestTextRun(t *testing.T) {
	idx, _ := edgeIndex(t)
	rng := rand.New(rand.NewPCG(17, 18))
	for _, f := range []runFinder{runsMaskGo, runsMaskAsm} {
		if f == runsMaskAsm && !hasMaskAsm {
			continue
		}
		sc := idx.NewScanner()
		sc.runFinder = f
		for k := 0; k < 500; k++ {
			d := make([]byte, 1+rng.IntN(400))
			for i := range d {
				d[i] = "ab+%1 &=\"x"[rng.IntN(10)]
				if rng.IntN(3) == 0 {
					d[i] = 'q' // long text runs across blocks
				}
			}
			sc.buildMasks(d, 1)
			for t0 := range d {
				if lut[d[t0]]&(1<<clsText) == 0 {
					continue
				}
				i, j := t0, t0
				for i > 0 && lut[d[i-1]]&(1<<clsText) != 0 {
					i--
				}
				for j < len(d) && lut[d[j]]&(1<<clsText) != 0 {
					j++
				}
				if gi, gj := sc.textRun(1, t0); gi != i || gj != j {
					t.Fatalf("finder %d %q at %d: got [%d,%d) want [%d,%d)", f, d, t0, gi, gj, i, j)
				}
			}
		}
	}
}

// TestLongStartsKernel: the all-classes kernel equals the per-class Go
// longStarts and runStarts for random masks and every minRun from 1 to
// maxMaskRun, and flags exactly the blocks with starts.
func TestLongStartsKernel(t *testing.T) {
	if !hasMaskAsm {
		t.Skip("no AVX-512 VBMI+GFNI: the kernel is never used here")
	}
	rng := rand.New(rand.NewPCG(19, 20))
	for k := 0; k < 3000; k++ {
		nblk := 1 + rng.IntN(6)
		ms := make([]uint64, (nblk+1)*maskStride)
		for i := range ms[:nblk*maskStride] {
			ms[i] = rng.Uint64() | rng.Uint64() | rng.Uint64()
			if rng.IntN(4) == 0 {
				ms[i] = ^uint64(0)
			}
		}
		var minRun [numRunClasses]int
		for c := range minRun {
			minRun[c] = 1 + rng.IntN(maxMaskRun)
		}
		p := newStartParams(&minRun)
		got := make([]uint64, nblk*maskStride)
		nz := make([]byte, nblk)
		runStartsAll(ms, nblk, got, nz, &p)
		want := make([]uint64, nblk)
		for c, L := range minRun {
			longStarts(ms, c, nblk, L, want)
			runStarts(want)
			for blk := range want {
				if got[blk*maskStride+c] != want[blk] {
					t.Fatalf("class %d L %d block %d: got %064b want %064b", c, L, blk, got[blk*maskStride+c], want[blk])
				}
				if nz[blk]>>c&1 != b2u(want[blk] != 0) {
					t.Fatalf("class %d L %d block %d: nz %08b, starts %064b", c, L, blk, nz[blk], want[blk])
				}
			}
		}
	}
}

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// TestWalkRuns: walkRuns (the assembly walker on amd64) and walkRunsGo
// both list exactly the maximal runs of at least minRun bits whose length
// is selected, found bit by bit, for one-class and block-major starts,
// with and without the per-block start bytes, across block boundaries.
func TestWalkRuns(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	longSeen := 0
	for k := 0; k < 3000; k++ {
		nblk := 1 + rng.IntN(6)
		long := k%8 == 0 // runs of 1024 bits and more, which vis does not filter
		if long {
			nblk = 17 + rng.IntN(6)
		}
		ms := make([]uint64, (nblk+1)*maskStride)
		for i := range ms[:nblk*maskStride] {
			switch rng.IntN(4) {
			case 0:
				ms[i] = ^uint64(0)
			case 1:
				ms[i] = rng.Uint64() & rng.Uint64()
			default:
				ms[i] = rng.Uint64() | rng.Uint64() | rng.Uint64()
			}
		}
		if long {
			for c := 0; c < numRunClasses; c++ {
				from := rng.IntN(nblk - 15)
				for blk := from; blk < from+15+rng.IntN(nblk-from-14); blk++ {
					ms[blk*maskStride+c] = ^uint64(0)
				}
			}
		}
		var vis lenSet
		for n := 0; n < 1024; n++ {
			if rng.IntN(3) != 0 {
				vis.add(n)
			}
		}
		out := make([]uint64, walkOutLen(nblk))
		all := make([]uint64, nblk*maskStride)
		nz := make([]byte, nblk)
		one := make([][]uint64, numRunClasses)
		minRun := make([]int, numRunClasses)
		for c := range one {
			minRun[c] = 1 + rng.IntN(maxMaskRun)
			one[c] = make([]uint64, nblk)
			longStarts(ms, c, nblk, minRun[c], one[c])
			runStarts(one[c])
			for blk, v := range one[c] {
				all[blk*maskStride+c] = v
				if v != 0 {
					nz[blk] |= 1 << c
				}
			}
		}
		for c := 0; c < numRunClasses; c++ {
			var want []uint64
			for i := 0; i < nblk*64; {
				if ms[i/64*maskStride+c]>>(i%64)&1 == 0 {
					i++
					continue
				}
				j := i
				for ms[j/64*maskStride+c]>>(j%64)&1 != 0 {
					j++ // the zero block ends every run
				}
				if n := j - i; n >= minRun[c] && (n >= 1024 || vis.has(n)) {
					want = append(want, uint64(i)|uint64(j)<<32)
					if n >= 1024 {
						longSeen++
					}
				}
				i = j
			}
			for _, v := range []struct {
				as     []uint64
				stride int
				nz     []byte
			}{{one[c], 1, nil}, {all, maskStride, nil}, {all, maskStride, nz}} {
				for name, walk := range map[string]func([]uint64, int, []uint64, int, []byte, int, *lenSet, []uint64) int{"walkRuns": walkRuns, "walkRunsGo": walkRunsGo} {
					clear(out)
					got := out[:walk(ms, c, v.as, v.stride, v.nz, nblk, &vis, out)]
					if !slices.Equal(got, want) {
						t.Fatalf("%s case %d class %d minRun %d stride %d nz %v:\ngot  %x\nwant %x", name, k, c, minRun[c], v.stride, v.nz != nil, got, want)
					}
				}
			}
		}
	}
	if longSeen < 100 {
		t.Fatalf("only %d runs of 1024 bits or more: the long-run path is not exercised", longSeen)
	}
}

// TestGramScreen: gramScreenRuns (the assembly kernel on amd64) and
// gramScreenRunsGo pass exactly the samples inGram passes, in order, on
// runs made of window forms' bytes (so samples hit) and random bytes,
// folded or not, several runs per call.
func TestGramScreen(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Secret = "gram-screen-test"
	idx, errs, err := BuildIndex(cfg, benchLab(30))
	if err != nil || len(errs) > 0 {
		t.Fatal(err, errs)
	}
	forms := plaintextForms(30)
	rng := rand.New(rand.NewPCG(25, 26))
	hitsSeen, samplesSeen := 0, 0
	for k := 0; k < 3000; k++ {
		stride := 1 + rng.IntN(gramSpan)
		w0 := stride + 7 + rng.IntN(30)
		fold := uint64(0)
		if rng.IntN(2) == 0 {
			fold = 0x2020202020202020
		}
		// Disjoint runs longer than w0, separated by gaps of 0-3 bytes.
		var data []byte
		var runs []uint64
		for nr := 1 + rng.IntN(6); len(runs) < nr; {
			data = append(data, "  \x00"[:rng.IntN(4)]...)
			st := len(data)
			for len(data)-st <= w0+rng.IntN(300) {
				if rng.IntN(2) == 0 {
					data = append(data, forms[rng.IntN(len(forms))]...)
				} else {
					data = append(data, "0123456789abcdefABCDEF+/=-:."[rng.IntN(28)])
				}
			}
			runs = append(runs, uint64(st)|uint64(len(data))<<32)
		}
		var want []uint64
		for i, r := range runs {
			st, e := int(uint32(r)), int(r>>32)
			for q := 0; q*stride < e-st-w0+stride; q++ {
				samplesSeen++
				p := st + q*stride
				if p+8 > e {
					t.Fatalf("case %d: sample %d of run [%d, %d) reads past the run", k, p, st, e)
				}
				if idx.inGram(le64(data[p:]) | fold) {
					want = append(want, uint64(i)<<32|uint64(p))
				}
			}
		}
		hitsSeen += len(want)
		for name, screen := range map[string]func(*Index, []byte, []uint64, int, int, uint64, []uint64) int{
			"gramScreenRuns": gramScreenRuns, "gramScreenRunsGo": gramScreenRunsGo,
		} {
			out := make([]uint64, gramHitsLen(len(data), len(runs), stride))
			n := screen(idx, data, runs, stride, w0, fold, out)
			if !slices.Equal(out[:n], want) {
				t.Fatalf("case %d stride %d w0 %d: %s passed %x, want %x", k, stride, w0, name, out[:n], want)
			}
		}
	}
	if hitsSeen < 1000 || hitsSeen == samplesSeen {
		t.Fatalf("%d of %d samples hit: the test does not exercise both paths", hitsSeen, samplesSeen)
	}
}
