package ident

import "math/bits"

// Class bitmasks: classMasks turns each 64-byte block of the input into one
// 64-bit membership mask per class (bit i: byte i of the block is in the
// class), and maskRuns finds the maximal runs of at least minRun bytes from
// those masks with shifts and ANDs. Compared with sampling every minRun-th
// byte once per class (sampleRuns) this looks at every byte once for all
// classes, without a data-dependent branch per sampled byte; the masks are
// built with AVX-512 VBMI where available (a 128-entry byte table lookup
// over 64 bytes per instruction), in pure Go otherwise.

type runFinder uint8

const (
	runsSample  runFinder = iota // sampleRuns
	runsMaskGo                   // maskRuns, masks built in Go
	runsMaskAsm                  // maskRuns, masks built by the assembly kernel
)

// defaultRunFinder is the fastest finder on this machine.
var defaultRunFinder = func() runFinder {
	if hasMaskAsm {
		return runsMaskAsm
	}
	return runsMaskGo
}()

// maskStride is the number of uint64 masks per block: one per run class
// and, in the last slot, upper-case hex letters A-F (what normalize folds),
// so a block's masks are one cache line.
const (
	maskStride = 8
	maskUpper  = 7
	upperBit   = 1 << maskUpper // the A-F bit in the kernel's table
)

// maskBits is lut plus upperBit for A-F: the kernel's per-byte bits.
var maskBits = func() (t [256]uint8) {
	t = lut
	for b := 'A'; b <= 'F'; b++ {
		t[b] |= upperBit
	}
	return t
}()

// spread[b] has bit 8*c set for every class c of byte b: ORing
// spread[b_i]<<i over eight bytes gives, in byte c, class c's mask of those
// eight bytes.
var spread = func() (t [256]uint64) {
	for b := range t {
		for c := 0; c < maskStride; c++ {
			if maskBits[b]&(1<<c) != 0 {
				t[b] |= 1 << (8 * c)
			}
		}
	}
	return t
}()

// classMasksGo writes the masks of the len(data)/64 blocks of data (a
// multiple of 64 bytes) to out[blk*maskStride+c].
func classMasksGo(data []byte, out []uint64) {
	for blk := 0; blk+64 <= len(data); blk += 64 {
		b := data[blk : blk+64 : blk+64]
		var w [8]uint64
		for g := range w {
			p := b[g*8 : g*8+8 : g*8+8]
			w[g] = spread[p[0]] | spread[p[1]]<<1 | spread[p[2]]<<2 | spread[p[3]]<<3 |
				spread[p[4]]<<4 | spread[p[5]]<<5 | spread[p[6]]<<6 | spread[p[7]]<<7
		}
		// w[g] byte c is class c's mask of bytes 8g..8g+7; transposing the
		// 8x8 byte matrix makes w[c] byte g that, i.e. w[c] is class c's mask.
		for g := 0; g < 4; g++ {
			t := (w[g]>>32 ^ w[g+4]) & 0x00000000ffffffff
			w[g] ^= t << 32
			w[g+4] ^= t
		}
		for _, g := range [4]int{0, 1, 4, 5} {
			t := (w[g]>>16 ^ w[g+2]) & 0x0000ffff0000ffff
			w[g] ^= t << 16
			w[g+2] ^= t
		}
		for g := 0; g < 8; g += 2 {
			t := (w[g]>>8 ^ w[g+1]) & 0x00ff00ff00ff00ff
			w[g] ^= t << 8
			w[g+1] ^= t
		}
		copy(out[blk/64*maskStride:blk/64*maskStride+8], w[:])
	}
}

// Special bytes: whether a layer holds any of them decides whether the
// decoders that need them run at all (decodeLayers), so a layer without
// '%', '+', '\\' or 0x1f is not searched for them once per decoder, and a
// layer without control or high bytes is not sampled for binary content.
const (
	spPct       = 1 << iota // '%': URL escapes
	spPlus                  // '+': URL-encoded spaces
	spBackslash             // '\\': JSON escapes
	spGzip                  // 0x1f: first byte of the gzip magic
	spCtl                   // 0x01-0x1f but tab, CR, LF: not text (NUL pads the last block)
	spHigh                  // 0x7f-0xff: not text
	spAll       = 1<<iota - 1
)

var specialBits = func() (t [256]uint8) {
	t['%'], t['+'], t['\\'] = spPct, spPlus, spBackslash
	for c := 1; c < 0x20; c++ {
		if c != '\t' && c != '\r' && c != '\n' {
			t[c] = spCtl
		}
	}
	t[0x1f] |= spGzip
	for c := 0x7f; c < 256; c++ {
		t[c] = spHigh
	}
	return t
}()

// buildMasks fills s.masks[layer] for data, the last partial block padded with
// zero bytes (which belong to no class) and followed by one all-zero block
// so a block's successor can always be read, and returns the number of
// blocks of data.
func (s *Scanner) buildMasks(data []byte, layer int) int {
	nblk := (len(data) + 63) / 64
	need := (nblk + 1) * maskStride
	ms := s.masks[layer]
	if cap(ms) < need {
		ms = make([]uint64, need)
	}
	ms = ms[:need]
	s.masks[layer] = ms
	full := len(data) &^ 63
	asm := s.runFinder == runsMaskAsm
	var acc [8]uint64
	classMasks(data[:full], ms, asm, &acc)
	if full < len(data) {
		var tail [64]byte
		copy(tail[:], data[full:])
		classMasks(tail[:], ms[full/64*maskStride:], asm, &acc)
	}
	clear(ms[nblk*maskStride:])
	s.special[layer] = spAll // unknown: every decoder looks
	if asm {
		v := acc[0] | acc[1] | acc[2] | acc[3] | acc[4] | acc[5] | acc[6] | acc[7]
		v |= v >> 32
		v |= v >> 16
		v |= v >> 8
		s.special[layer] = uint8(v)
	}
	return nblk
}

// maskRange returns the mask bits of slot k for data[st:e] (e-st <= 64),
// low bit first, from the masks of layer.
func (s *Scanner) maskRange(layer, k, st, e int) uint64 {
	ms := s.masks[layer]
	blk, i := st/64, uint(st%64)
	v := ms[blk*maskStride+k] >> i
	if i != 0 {
		v |= ms[(blk+1)*maskStride+k] << (64 - i)
	}
	if n := uint(e - st); n < 64 {
		v &= 1<<n - 1
	}
	return v
}

// hexUpper reports, from the masks of layer, whether data[st:e] is all of
// the hex class (what normalize case-folds) and whether it has an A-F.
func (s *Scanner) hexUpper(layer, st, e int) (hexsep, upper bool) {
	for ; st < e; st += 64 {
		n := min(e-st, 64)
		all := ^uint64(0) >> (64 - n)
		if s.maskRange(layer, clsHexSep, st, st+n) != all {
			return false, false
		}
		upper = upper || s.maskRange(layer, maskUpper, st, st+n) != 0
	}
	return true, upper
}

// maxMaskRun is the longest minRun maskRuns finds from the masks (the
// start test of a block looks one block ahead, in doubling steps of at
// most 32); classes with longer ones are sampled.
const maxMaskRun = 63

// longStarts writes to out[blk], for the nblk blocks of masks ms, the bits
// i where bytes i..i+L-1 of the block and its successor are all in class
// c (1 <= L <= maxMaskRun): positions where a run of at least L bytes
// starts or goes on. Doubling steps: after the step of k, bit i means
// i..i+2k-1 are set; one more shift by L-2k (< 2k) finishes. One loop per range
// of L keeps the shifts constant and the loop body free of branches.
func longStarts(ms []uint64, c, nblk, L int, out []uint64) {
	out = out[:nblk]
	step := func(lo, hi uint64, k uint) (uint64, uint64) {
		return lo & (lo>>k | hi<<(64-k)), hi & (hi >> k)
	}
	switch {
	case L < 2:
		for blk := range out {
			out[blk] = ms[blk*maskStride+c]
		}
	case L < 4:
		d := uint(L-2) & 63
		for blk := range out {
			lo, hi := ms[blk*maskStride+c], ms[(blk+1)*maskStride+c]
			lo, hi = step(lo, hi, 1)
			out[blk] = lo & (lo>>d | hi<<((64-d)&63))
		}
	case L < 8:
		d := uint(L-4) & 63
		for blk := range out {
			lo, hi := ms[blk*maskStride+c], ms[(blk+1)*maskStride+c]
			lo, hi = step(lo, hi, 1)
			lo, hi = step(lo, hi, 2)
			out[blk] = lo & (lo>>d | hi<<((64-d)&63))
		}
	case L < 16:
		d := uint(L-8) & 63
		for blk := range out {
			lo, hi := ms[blk*maskStride+c], ms[(blk+1)*maskStride+c]
			lo, hi = step(lo, hi, 1)
			lo, hi = step(lo, hi, 2)
			lo, hi = step(lo, hi, 4)
			out[blk] = lo & (lo>>d | hi<<((64-d)&63))
		}
	case L < 32:
		d := uint(L-16) & 63
		for blk := range out {
			lo, hi := ms[blk*maskStride+c], ms[(blk+1)*maskStride+c]
			lo, hi = step(lo, hi, 1)
			lo, hi = step(lo, hi, 2)
			lo, hi = step(lo, hi, 4)
			lo, hi = step(lo, hi, 8)
			out[blk] = lo & (lo>>d | hi<<((64-d)&63))
		}
	default:
		d := uint(L-32) & 63
		for blk := range out {
			lo, hi := ms[blk*maskStride+c], ms[(blk+1)*maskStride+c]
			lo, hi = step(lo, hi, 1)
			lo, hi = step(lo, hi, 2)
			lo, hi = step(lo, hi, 4)
			lo, hi = step(lo, hi, 8)
			lo, hi = step(lo, hi, 16)
			out[blk] = lo & (lo>>d | hi<<((64-d)&63))
		}
	}
}

// maskRuns calls run for every maximal run of each class in mask that is
// at least minRun long, class by class and in position order within a
// class, as sampleRuns does (the order hits are recorded in decides which
// of two equal hits is reported).
//
// For each block, longStarts marks the positions p with p..p+minRun-1 in
// the class; a maximal run of at least minRun bytes [st, e) is exactly an
// interval [st, e-minRun] of such positions, so its start is a marked bit
// whose predecessor is not marked (runStarts), and its end the first byte after st
// that is not in the class. Branches are taken per long run, not per
// byte or per short run.
func (s *Scanner) maskRuns(data []byte, layer int, mask uint8) {
	nblk := s.buildMasks(data, layer)
	ms := s.masks[layer]
	// asm: one kernel call computes every class's run starts, block-major
	// (as[blk*maskStride+c]), and which classes start a run in each block
	// (nz[blk]); otherwise one class at a time (as[blk]).
	asm := s.runFinder == runsMaskAsm
	need := nblk
	if asm {
		need = nblk * maskStride
	}
	if cap(s.starts) < need {
		s.starts = make([]uint64, need)
	}
	as := s.starts[:need]
	if asm {
		if cap(s.nz) < nblk {
			s.nz = make([]byte, nblk)
		}
		runStartsAll(ms, nblk, as, s.nz[:nblk], &s.idx.startParams)
	}
	var nz []byte
	if asm {
		nz = s.nz[:nblk]
	}
	if need := walkOutLen(nblk); cap(s.runs) < need {
		s.runs = make([]uint64, need)
	}
	runs := s.runs[:cap(s.runs)]
	for c := 0; c < numRunClasses; c++ {
		L := s.idx.minRun[c]
		if L == 0 || mask&(1<<c) == 0 {
			continue
		}
		if L > maxMaskRun {
			s.sampleClass(data, c, layer)
			continue
		}
		// Runs run would do nothing with are dropped here, unless a test
		// watches every run.
		vis := &s.idx.visit[c]
		if s.runHook != nil {
			vis = &allLens
		}
		stride := maskStride
		if !asm {
			stride = 1
			longStarts(ms, c, nblk, L, as)
			runStarts(as)
		}
		n := walkRuns(ms, c, as, stride, nz, nblk, vis, runs)
		if s.runHook != nil {
			for _, r := range runs[:n] {
				s.runHook(c, int(uint32(r)), int(r>>32))
			}
			continue
		}
		s.visitRuns(data, c, layer, runs[:n])
		s.windowRuns(data, c, layer)
	}
}

// walkOutLen is the room walkRuns needs for nblk blocks: a run start
// follows a byte outside the class (or is at 0), so a class has at most
// one per two bytes, plus one.
func walkOutLen(nblk int) int { return nblk*32 + 1 }

// walkRunsGo writes to out, as st | e<<32 in position order, every maximal
// run [st, e) of class c whose length n is >= 1024 or in vis, from the
// masks ms and the run starts as: as[blk*stride + c*(stride/maskStride)]
// for block blk (stride 1: one class's starts, maskStride: every class's,
// block-major), skipping the blocks whose nz byte (if nz is not nil) lacks
// bit c. It returns the number of runs written; out must hold
// walkOutLen(nblk). The assembly version replaces it on amd64.
func walkRunsGo(ms []uint64, c int, as []uint64, stride int, nz []byte, nblk int, vis *lenSet, out []uint64) int {
	k := 0
	off := c * (stride / maskStride)
	for blk := 0; blk < nblk; blk++ {
		if nz != nil && nz[blk]&(1<<c) == 0 {
			continue
		}
		starts := as[blk*stride+off]
		for starts != 0 {
			i := bits.TrailingZeros64(starts)
			starts &= starts - 1
			st := blk*64 + i
			m := ms[blk*maskStride+c]
			var e int
			if t := bits.TrailingZeros64(^(m >> i)); i+t < 64 {
				e = st + t
			} else {
				// The run goes on into the next blocks; the zero
				// block after the data ends it.
				j := blk + 1
				for ms[j*maskStride+c] == ^uint64(0) {
					j++
				}
				e = j*64 + bits.TrailingZeros64(^ms[j*maskStride+c])
			}
			if n := e - st; n < 1024 && vis[n>>6]&(1<<(n&63)) == 0 {
				continue
			}
			out[k] = uint64(st) | uint64(e)<<32
			k++
		}
	}
	return k
}

var allLens = func() (l lenSet) {
	for i := range l {
		l[i] = ^uint64(0)
	}
	return l
}()

// runStarts turns one class's longStarts (as) into run starts in place: a
// marked position whose predecessor is not marked.
func runStarts(as []uint64) {
	var prev uint64
	for i, a := range as {
		as[i] = a &^ (a<<1 | prev>>63)
		prev = a
	}
}

// startParams are the per-class constants of the longStarts kernel, lane
// c for class c: the final shift d = L - 2^steps, 64 - d, and for each
// doubling step k = 1, 2, 4, 8, 16 the lanes whose L >= 2k take it.
// Lanes of classes without a usable minRun compute values nobody reads.
type startParams [2*maskStride + 5]uint64

func newStartParams(minRun *[numRunClasses]int) (p startParams) {
	for c := 0; c < numRunClasses; c++ {
		L := minRun[c]
		if L < 1 || L > maxMaskRun {
			L = 1
		}
		k := 1
		for st := 0; st < 5; st++ {
			if L >= 2*k {
				p[2*maskStride+st] |= 1 << c
				k *= 2
			}
		}
		p[c] = uint64(L - k)
		p[maskStride+c] = uint64(64 - (L - k))
	}
	p[maskStride+maskUpper] = 64 // unused lane: d = 0
	return p
}

// textRun returns the maximal text-class run [i, j) holding data[t] (a
// text byte), from the masks of layer.
func (s *Scanner) textRun(layer, t int) (i, j int) {
	ms := s.masks[layer]
	blk, b := t/64, uint(t%64)
	z := ^ms[blk*maskStride+clsText] & (1<<b - 1) // non-text bytes below t
	for z == 0 && blk > 0 {
		blk--
		z = ^ms[blk*maskStride+clsText]
	}
	if z != 0 {
		i = blk*64 + 64 - bits.LeadingZeros64(z)
	}
	blk = t / 64
	z = ^ms[blk*maskStride+clsText] &^ (2<<b - 1) // non-text bytes above t
	for z == 0 {
		blk++ // the zero block after the data ends the run
		z = ^ms[blk*maskStride+clsText]
	}
	return i, blk*64 + bits.TrailingZeros64(z)
}
