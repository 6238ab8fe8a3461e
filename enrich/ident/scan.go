package ident

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"encoding/binary"
	"io"
	"math/bits"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// Candidate classes. The scanner walks the bytes once and tracks maximal
// runs of each class at the same time; a run (or a window inside a long
// run) whose length equals the length of some indexed form is hashed and
// probed. The classes are chosen so every form string is a run of at least
// one of them when it is delimited the way apps delimit values.
const (
	clsHexSep = iota // [0-9A-Fa-f:.-]: digits, hex, MACs, UUIDs; case-folded
	clsB64           // [A-Za-z0-9+/_-]: base64 (std and URL alphabets)
	clsWord          // [A-Za-z0-9._%+@-]: e-mail, E.164 with '+', URL-encoded
	clsText          // anything between strong delimiters (quotes, &, =, ...)
	clsHex           // [0-9A-Fa-f]: hex/digit values between separators (DNS labels)
	clsAlnum         // [A-Za-z0-9]: alphanumeric values between separators
	clsDigit         // [0-9]: numbers; digit-only forms match whole digit runs only
	clsB64Pad        // length set only: base64 runs followed by '=' padding
	numClasses
	numRunClasses = clsB64Pad
	allRunClasses = 1<<numRunClasses - 1
)

const (
	maxCandidate = 1023 // longest form indexed (and candidate probed)
	minForm      = 4    // shorter forms are not indexed: they would match words
	minWindow    = 8    // shortest form searched inside longer runs
	minB64Decode = 12   // shortest base64 run tried as an encoded layer
	gramSpan     = 7    // longest sampling stride of window screening (Index.gram)
)

// narrowOrder lists run classes from the narrowest character set to the widest.
var narrowOrder = [...]int{clsDigit, clsHex, clsHexSep, clsAlnum, clsB64, clsWord, clsText}

var lut = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		alnum := b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
		hexd := b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F'
		if hexd || b == ':' || b == '.' || b == '-' {
			t[c] |= 1 << clsHexSep
		}
		if alnum || b == '+' || b == '/' || b == '_' || b == '-' {
			t[c] |= 1 << clsB64
		}
		if alnum || b == '.' || b == '_' || b == '%' || b == '+' || b == '@' || b == '-' {
			t[c] |= 1 << clsWord
		}
		if hexd {
			t[c] |= 1 << clsHex
		}
		if alnum {
			t[c] |= 1 << clsAlnum
		}
		if b >= '0' && b <= '9' {
			t[c] |= 1 << clsDigit
		}
		strong := b < 0x20 || b == 0x7f || bytes.IndexByte([]byte("\"'<>&=?;,{}[]\\|`"), b) >= 0
		if !strong {
			t[c] |= 1 << clsText
		}
	}
	return t
}()

// classesOf returns the classes every byte of s belongs to.
func classesOf(s []byte) uint8 {
	c := uint8(allRunClasses)
	for _, b := range s {
		c &= lut[b]
	}
	return c
}

// normalize appends s to dst, lower-cased if s is entirely of the hex class
// so "A4:50:..", "a4:50:.." and "DA39A3EE.." match one entry each. Both the
// index and the scanner use it, so it only has to be deterministic.
func normalize(dst, s []byte) []byte {
	if classesOf(s)&(1<<clsHexSep) == 0 {
		return append(dst, s...)
	}
	for _, b := range s {
		if b >= 'A' && b <= 'F' {
			b += 'a' - 'A'
		}
		dst = append(dst, b)
	}
	return dst
}

type hit struct {
	o      uint32
	f      form
	off, n int32
	layer  uint8
}

type span struct{ s, e int32 }

// Scanner is the per-goroutine scanning state of an Index: scratch buffers,
// decompressors and a pool of match messages, all reused so a steady-state
// scan allocates nothing. A Scanner must not be used concurrently.
type Scanner struct {
	idx  *Index
	norm []byte
	hits []hit

	layerBuf [maxLayers + 1][]byte
	b64      [maxLayers + 1][]span

	budgetBytes int
	budgetWin   int
	exhausted   bool

	br   bytes.Reader
	gz   *gzip.Reader
	zl   io.ReadCloser
	fl   io.ReadCloser
	pool []*flowpb.IdentifierMatch
	used int

	// masks holds the class bitmasks of each layer's data (maskRuns); a
	// layer's stay valid while deeper layers are scanned.
	masks  [maxLayers + 1][]uint64
	starts []uint64  // run starts per block (maskRuns)
	runs   []uint64  // one class's runs to visit, st | e<<32 (walkRuns)
	one    [1]uint64 // run's one run, for runs
	wruns  []uint64  // one class's runs queued for windowRuns, st | e<<32
	whits  []uint64  // samples gramScreenRuns passed
	nz     []byte    // per block, the classes with a run start (maskRuns, kernel)
	// special holds the special bytes (spPct...) each layer's data has,
	// or spAll where that is not known (set by buildMasks).
	special [maxLayers + 1]uint8
	// partial: the layer's scan skips runs of some classes.
	partial [maxLayers + 1]bool
	// runFinder selects how maximal runs are found: from class bitmasks
	// (built with AVX-512 VBMI or in pure Go) or by sampling. Tests set it
	// to check every finder against the reference.
	runFinder runFinder
	// runHook, if set (tests), receives every run instead of run.
	runHook func(c, st, e int)

	hdrField map[string]string
	target   *flowpb.Enrichment
	emitFn   func(*flowpb.IdentifierMatch)

	// reference selects the straightforward implementations the fast
	// paths replace (no window prefilters, full base64 decoding before the
	// plausibility test, a byte-by-byte URL segment walk decoding every
	// segment with an escape or '+', normalise-and-compare before every
	// probe). Tests set it to check that the fast paths find exactly the
	// same matches.
	reference bool
}

const maxLayers = 3

// NewScanner returns scanning state for one worker goroutine.
func (x *Index) NewScanner() *Scanner {
	return &Scanner{idx: x, hdrField: map[string]string{}, runFinder: defaultRunFinder}
}

// Scan searches data (one field of a record, named by field) for indexed
// identifiers and calls emit for each match. The message passed to emit is
// owned by the Index's internal scanner pool and only valid during the call.
// Safe for concurrent use; it borrows a Scanner from a pool.
func (x *Index) Scan(field string, data []byte, cleartext bool, emit func(m *flowpb.IdentifierMatch)) {
	s := x.pool.Get().(*Scanner)
	s.Scan(field, data, cleartext, emit)
	x.pool.Put(s)
}

// Scan searches data for indexed identifiers, peeling up to three encoding
// layers, and calls emit once per (device, identifier type, form) found. The
// message passed to emit is reused after the next Scan or ScanRecord call on
// this Scanner: copy it (proto.Clone) to keep it longer.
func (s *Scanner) Scan(field string, data []byte, cleartext bool, emit func(m *flowpb.IdentifierMatch)) {
	s.used = 0
	s.resetBudget()
	s.scanField(field, data, cleartext, emit)
	scannedBytesTotal.Add(float64(s.idx.cfg.MaxScanBytes - s.budgetBytes))
	if s.exhausted {
		budgetExhaustedTotal.Inc()
	}
}

func (s *Scanner) resetBudget() {
	c := &s.idx.cfg
	s.budgetBytes = c.MaxScanBytes
	s.budgetWin = c.MaxWindowProbes
	s.exhausted = false
}

// scanField scans one field and reports its deduplicated matches.
func (s *Scanner) scanField(field string, data []byte, cleartext bool, emit func(m *flowpb.IdentifierMatch)) int {
	s.hits = s.hits[:0]
	s.scanLayer(data, 0)
	if len(s.hits) == 0 {
		return 0
	}
	before := s.used
	s.emitHits(field, cleartext, emit)
	return s.used - before
}

// suppressed drops hit i when an earlier-or-better hit of the same device and
// identifier covers it: the same form at a shallower layer (the decoded view
// repeats what was already seen) or earlier in the same layer (the earliest
// occurrence is reported, whichever class run found it first: the fast
// paths skip redundant probes, so discovery order differs between them and
// the reference), or, in the same layer, a strictly longer
// match containing it ("+919812345678" contains its national number).
func (s *Scanner) suppressed(i int) bool {
	a := s.hits[i]
	for j, b := range s.hits {
		if j == i || !sameIdent(a.o, b.o) {
			continue
		}
		if a.f == b.f && (b.layer < a.layer || b.layer == a.layer && (b.off < a.off || b.off == a.off && j < i)) {
			return true
		}
		if a.layer == b.layer && b.n > a.n && b.off <= a.off && a.off+a.n <= b.off+b.n {
			return true
		}
	}
	return false
}

func (s *Scanner) match() *flowpb.IdentifierMatch {
	if s.used == len(s.pool) {
		s.pool = append(s.pool, &flowpb.IdentifierMatch{})
	}
	m := s.pool[s.used]
	s.used++
	return m
}

// scanLayer walks data once, tracking runs of every class, then tries the
// decodings that reveal another layer.
func (s *Scanner) scanLayer(data []byte, layer int) {
	s.scanLayerMask(data, layer, 1<<numRunClasses-1, true)
}

// scanLayerMask scans data for runs of the classes in mask, then (if decode)
// tries the decodings that reveal another layer.
func (s *Scanner) scanLayerMask(data []byte, layer int, mask uint8, decode bool) {
	if len(data) > s.budgetBytes {
		data = data[:s.budgetBytes]
		s.exhausted = true
	}
	s.budgetBytes -= len(data)
	if len(data) == 0 {
		return
	}
	s.b64[layer] = s.b64[layer][:0]
	s.special[layer] = spAll
	s.partial[layer] = mask != allRunClasses
	if s.reference {
		s.allRuns(data, layer, mask)
	} else {
		switch s.runFinder {
		case runsMaskAsm, runsMaskGo:
			s.maskRuns(data, layer, mask)
		default:
			s.sampleRuns(data, layer, mask)
		}
	}
	if decode && layer < maxLayers && s.idx.cfg.MaxLayers > layer {
		s.decodeLayers(data, layer)
	}
}

// run handles one maximal run [st, e) of class c.
func (s *Scanner) run(data []byte, c, st, e, layer int) {
	if s.runHook != nil {
		s.runHook(c, st, e)
		return
	}
	s.one[0] = uint64(st) | uint64(e)<<32
	s.visitRuns(data, c, layer, s.one[:])
}

// visitRuns handles the maximal runs of class c in rs (st | e<<32, in position
// order): one loop per class, so that the common case, a run nothing is
// indexed for, costs no call.
func (s *Scanner) visitRuns(data []byte, c, layer int, rs []uint64) {
	x := s.idx
	switch c {
	case clsText:
		lens := &x.lens[clsText]
		for _, r := range rs {
			st, e := int(uint32(r)), int(r>>32)
			for st < e && data[st] == ' ' {
				st++
			}
			for e > st && data[e-1] == ' ' {
				e--
			}
			if lens.has(e - st) {
				s.probe(data, st, e, layer, clsText, e > st)
			}
		}
		return
	case clsB64:
		s.b64Runs(data, layer, rs) // then probes and windows as for any class
	}
	lens := &x.lens[c]
	w0 := s.windowMin(c)
	for _, r := range rs {
		st, e := int(uint32(r)), int(r>>32)
		// Index.mayMatch, written out so that it is inlined: most
		// candidates stop there.
		if L := e - st; !lens.has(L) {
		} else if s.reference {
			s.probe(data, st, e, layer, c, true)
		} else if L < 8 || x.mayHold(load64(data, st)|fold8, load64(data, e-8)|fold8, L) {
			s.probePassed(data, st, e, layer, c, true)
		}
		if e-st > w0 {
			s.window(data, c, layer, r)
		}
	}
}

// b64Runs does what base64 runs need beyond visitRuns's probes and windows:
// probes with the '=' padding after the run, and the spans decodeLayers
// tries as base64 layers.
func (s *Scanner) b64Runs(data []byte, layer int, rs []uint64) {
	pad := &s.idx.lens[clsB64Pad]
	for _, r := range rs {
		st, e := int(uint32(r)), int(r>>32)
		p := 0
		for e+p < len(data) && p < 2 && data[e+p] == '=' {
			p++
		}
		for k := 1; k <= p; k++ {
			if pad.has(e - st + k) {
				s.probe(data, st, e+k, layer, clsText, false) // '=' is not hex
			}
		}
		// A run decoding to at most 9 bytes whose first byte is >= 0x80
		// (first character's sextet >= 32) has more than a tenth of them
		// non-printable and no compression header: b64Layer would refuse
		// it at the first quantum (numbers glued into base64-class runs).
		if e-st >= minB64Decode && layer < maxLayers && (e-st > 13 || b64Val[data[st]] < 32 || s.reference) {
			s.b64[layer] = append(s.b64[layer], span{int32(st), int32(e + p)})
		}
	}
}

// windowMin is the length a run of class c must exceed to be searched for
// windows (no window length: never).
func (s *Scanner) windowMin(c int) int {
	ws := s.idx.wins[c]
	if s.reference {
		ws = s.idx.refWins[c]
	}
	if len(ws) == 0 {
		return 1 << 30
	}
	return ws[0]
}

// window searches the run r (st | e<<32) of class c for windows: at once
// for the reference scanner, else queued for windowRuns.
func (s *Scanner) window(data []byte, c, layer int, r uint64) {
	if s.reference {
		s.windows(data, c, int(uint32(r)), int(r>>32), layer)
		return
	}
	s.wruns = append(s.wruns, r)
}

// subClasses[c] are classes strictly inside class c that together hold
// every candidate whose narrowest class (narrowOrder) is strictly inside c.
var subClasses = [numRunClasses]uint8{
	clsDigit:  0,
	clsHex:    1 << clsDigit,
	clsHexSep: 1 << clsHex,
	clsAlnum:  1 << clsHex,
	clsB64:    1 << clsAlnum,
	clsWord:   1 << clsAlnum,
	clsText:   1<<clsHexSep | 1<<clsB64 | 1<<clsWord,
}

// narrowerOwns reports whether data[st:e], a maximal run of class c (text:
// trimmed of spaces), lies entirely in a class strictly inside c. Then it
// is also a maximal run of its narrowest class, and since an indexed form's
// length is kept only under the form's narrowest class (Builder.Add), that
// run's probe finds every form this probe could: probing here again could
// only repeat its hits. Only where every class is scanned (not partial), and
// never for the reference scanner.
func (s *Scanner) narrowerOwns(data []byte, c, st, e, layer int) bool {
	// Both ends first: in binary data nearly every text run fails there.
	sub := subClasses[c] & lut[data[st]] & lut[data[e-1]]
	if sub == 0 || s.reference || s.partial[layer] {
		return false
	}
	if s.runFinder == runsSample {
		return classesOf(data[st:e])&sub != 0
	}
	for ; sub != 0; sub &= sub - 1 {
		k := bits.TrailingZeros8(sub)
		all := true
		for i := st; i < e && all; i += 64 {
			n := min(e-i, 64)
			all = s.maskRange(layer, k, i, i+n) == ^uint64(0)>>(64-n)
		}
		if all {
			return true
		}
	}
	return false
}

// windows slides every window length of class c over the run [st, e), so an
// identifier glued to other characters of the same class is still found:
// the reference scanner's way, every offset tested. The fast paths queue
// the run for windowRuns instead.
func (s *Scanner) windows(data []byte, c, st, e, layer int) {
	run := data[st:e]
	var fold uint64
	if c == clsHexSep {
		fold = fold8
	}
	ws := s.idx.refWins[c]
	for off := 0; off <= len(run)-ws[0]; off++ {
		if s.windowsAt(run, st, off, le64(run[off:])|fold, c, layer, ws) {
			return
		}
	}
}

// windowRuns searches the runs of class c that run queued in s.wruns for
// windows, then empties the queue. Bounded by the scanner's window budget.
//
// Sampled screening (Index.gram): with stride s, the window at off of a run
// covers the sample q in [off, off+s), and q+8 <= off+ws[0] <= the run's
// length. One call-free kernel (gramScreenRuns) screens the samples of all
// the queued runs; only the samples it passes are looked at here, at the s
// offsets up to each of them. Queueing the runs keeps the per-run cost of
// a call and its setup out of the common case, where no sample hits.
func (s *Scanner) windowRuns(data []byte, c, layer int) {
	wr := s.wruns
	s.wruns = s.wruns[:0]
	if len(wr) == 0 {
		return
	}
	x := s.idx
	// For hex-class bytes OR 0x20 is exactly the case fold (digits and
	// ':' '.' '-' already have that bit), so anchors are tested on the raw
	// bytes and only surviving windows are copied and folded.
	var fold uint64
	if c == clsHexSep {
		fold = fold8
	}
	ws := x.wins[c]
	stride := x.gramStride[c]
	if need := gramHitsLen(len(data), len(wr), stride); cap(s.whits) < need {
		s.whits = make([]uint64, need)
	}
	n := gramScreenRuns(x, data, wr, stride, ws[0], fold, s.whits[:cap(s.whits)])
	for _, h := range s.whits[:n] {
		r := wr[h>>32]
		st, e := int(uint32(r)), int(r>>32)
		run := data[st:e]
		last := len(run) - ws[0]
		q := int(uint32(h)) - st
		for off := max(0, q-stride+1); off <= min(q, last); off++ {
			p := le64(run[off:]) | fold
			if x.inAnchor(p) && s.windowsAt(run, st, off, p, c, layer, ws) {
				return // window budget spent
			}
		}
	}
}

// gramHitsLen bounds the samples gramScreenRuns takes from nruns disjoint
// runs of one class in n bytes: a run of length L has at most L/stride + 1.
func gramHitsLen(n, nruns, stride int) int { return n/stride + nruns + 1 }

// gramScreenRunsGo writes to out, as i<<32 | (st+q), every sample of each
// run i = [st, e) of runs (st | e<<32, inside data): offsets q = 0, stride,
// ... below e-st-w0+stride, whose 8 bytes at data[st+q:] ORed with fold are
// in x's gram bitmap. It returns how many it wrote. The assembly version
// replaces it on amd64.
func gramScreenRunsGo(x *Index, data []byte, runs []uint64, stride, w0 int, fold uint64, out []uint64) int {
	n := 0
	for i, r := range runs {
		st, e := int(uint32(r)), int(r>>32)
		for q := st; q < e-w0+stride; q += stride {
			if x.inGram(le64(data[q:]) | fold) {
				out[n] = uint64(i)<<32 | uint64(q)
				n++
			}
		}
	}
	return n
}

// windowsAt tries every window length of class c at offset off of run
// (which starts at data offset st); p is the window's folded first 8 bytes.
// It reports whether the window budget ran out.
func (s *Scanner) windowsAt(run []byte, st, off int, p uint64, c, layer int, ws []int) bool {
	x := s.idx
	for _, w := range ws {
		if off+w > len(run) {
			break
		}
		if w == len(run) {
			continue // the whole run was probed already
		}
		// An unpadded base64 form whose last character is a partial
		// quantum is a prefix of the encoding of any longer value with
		// the same start: only accept it where the run ends.
		if c == clsB64 && w%4 != 0 && off+w < len(run) {
			continue
		}
		if !x.inAnchorLen(p, w) && !s.reference {
			continue
		}
		win := run[off : off+w]
		upper := false
		if c == clsHexSep {
			// A number inside a longer number is another number: all-digit
			// windows are left to the digit class, which probes whole runs.
			digits := true
			s.norm = s.norm[:0]
			for _, b := range win {
				digits = digits && b >= '0' && b <= '9'
				upper = upper || b >= 'A' && b <= 'F'
				s.norm = append(s.norm, b|0x20)
			}
			if digits {
				continue
			}
			win = s.norm
		}
		if s.budgetWin <= 0 {
			s.exhausted = true
			return true
		}
		s.budgetWin--
		h := x.hash(win)
		if !x.inFilter(h) && !s.reference {
			continue
		}
		before := len(s.hits)
		s.lookup(h, st+off, w, layer, upper, win)
		if c == clsB64 && len(s.hits) > before && b64GluedDigits(run, off, w) {
			s.hits = s.hits[:before]
		}
	}
	return false
}

// b64GluedDigits reports whether the base64 window run[off:off+w], decoded
// in its own alignment, starts (ends) with a digit right after (before) a
// decoded digit of the neighbouring quantum: the encoding of a number
// inside a longer number, which is another number, as for plain windows.
// A neighbour shorter than a quantum cannot be decoded in the window's
// alignment and does not count.
func b64GluedDigits(run []byte, off, w int) bool {
	if off >= 4 && w >= 4 {
		if p, ok := b64Quantum(run[off-4 : off]); ok && isDigit(byte(p)) {
			if f, ok := b64Quantum(run[off : off+4]); ok && isDigit(byte(f>>16)) {
				return true
			}
		}
	}
	if w%4 == 0 && off+w+4 <= len(run) {
		if l, ok := b64Quantum(run[off+w-4 : off+w]); ok && isDigit(byte(l)) {
			if n, ok := b64Quantum(run[off+w : off+w+4]); ok && isDigit(byte(n>>16)) {
				return true
			}
		}
	}
	return false
}

// b64Quantum decodes four base64 characters (either alphabet) into their
// 24 bits.
func b64Quantum(q []byte) (uint32, bool) {
	var v uint32
	for _, c := range q[:4] {
		d := b64Val[c]
		if d == 0xff {
			return 0, false
		}
		v = v<<6 | uint32(d)
	}
	return v, true
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func le64(b []byte) uint64 {
	return binary.LittleEndian.Uint64(b)
}

// probe hashes the candidate data[st:e] (normalised) and records its owners.
// c is a class all of the candidate's bytes are in (clsText if no narrower
// one is known): digits and hex runs need no test for what normalize does.
// With own, a candidate that a narrower class owns (narrowerOwns) is left to
// that class's probe; that is tested after the whole-run filter, which
// dismisses nearly every candidate for less.
func (s *Scanner) probe(data []byte, st, e, layer, c int, own bool) {
	cand := data[st:e]
	if s.reference {
		s.norm = normalize(s.norm[:0], cand)
		upper := !bytes.Equal(s.norm, cand)
		s.lookup(s.idx.hash(s.norm), st, e-st, layer, upper, nil)
		return
	}
	if s.idx.mayMatch(data, st, e) {
		s.probePassed(data, st, e, layer, c, own)
	}
}

// probePassed is probe for a candidate Index.mayMatch passed.
func (s *Scanner) probePassed(data []byte, st, e, layer, c int, own bool) {
	cand := data[st:e]
	if own && s.narrowerOwns(data, c, st, e, layer) {
		return
	}
	// normalize changes the candidate only if it is all hex-class and has
	// an upper-case A-F: find out in one pass that stops at the first
	// non-hex byte, and hash the input in place otherwise.
	var upper bool
	if s.runFinder == runsSample {
		for _, b := range cand {
			if lut[b]&(1<<clsHexSep) == 0 {
				upper = false
				break
			}
			upper = upper || b >= 'A' && b <= 'F'
		}
	} else {
		switch c {
		case clsDigit:
		case clsHex, clsHexSep:
			for i := st; i < e && !upper; i += 64 {
				upper = s.maskRange(layer, maskUpper, i, min(i+64, e)) != 0
			}
		default:
			// Where every class is scanned, run probes an alphanumeric run
			// only with a non-hex letter (else the hex run probes it) and a
			// text candidate only with a byte outside hexsep (or with '='
			// padding): nothing to fold.
			if (c == clsAlnum || c == clsText) && !s.partial[layer] {
				break
			}
			// maskRuns built this layer's masks: read the answer off them.
			_, upper = s.hexUpper(layer, st, e)
		}
	}
	if !upper {
		s.lookup(s.idx.hash(cand), st, e-st, layer, false, nil)
		return
	}
	s.norm = s.norm[:0]
	for _, b := range cand {
		s.norm = append(s.norm, b|0x20)
	}
	s.lookup(s.idx.hash(s.norm), st, e-st, layer, true, nil)
}

// lookup records the owners of hash h. For a window (win != nil) only forms
// searched inside longer runs count: the filter in front of window lookups
// holds exactly those, and without this test a filter false positive would
// report, say, a digest glued inside a longer token, which whole-token-only
// forms must not match (and a scan would then depend on filter collisions).
func (s *Scanner) lookup(h uint64, off, n, layer int, upper bool, win []byte) {
	x := s.idx
	i := h & x.mask
	// The window's classes are only needed on a key match, which most
	// window lookups (filter false positives) never reach.
	var winCls uint8
	clsDone := false
	for {
		k := x.keys[i]
		if k == 0 {
			return
		}
		if k == h {
			o := x.vals[i]
			f := ownerForm_(o)
			if win != nil {
				if !clsDone {
					winCls, clsDone = classesOf(win), true
				}
				if _, ok := windowClass(f, winCls, n); !ok {
					i = (i + 1) & x.mask
					continue
				}
			}
			if upper {
				f = f.upper()
			}
			s.hits = append(s.hits, hit{o: o, f: f, off: int32(off), n: int32(n), layer: uint8(layer)})
		}
		i = (i + 1) & x.mask
	}
}

// decodeLayers looks for encodings wrapping more data and scans what they
// decode to one layer deeper: URL (percent/plus) encoding, JSON string
// escapes, base64 runs, and gzip/zlib streams (partial streams are
// decompressed as far as they go).
func (s *Scanner) decodeLayers(data []byte, layer int) {
	next := layer + 1
	// Each decoder below looks only if its trigger bytes occur (special).
	sp := s.special[layer]
	gz := -1
	if sp&spGzip != 0 {
		gz = bytes.Index(data, gzipMagic)
	}
	if gz >= 0 {
		s.inflate(data[gz:], next, compGzip)
	} else if len(data) > 2 && isZlibHeader(data) {
		s.inflate(data, next, compZlib)
	}
	// Text encodings are only peeled off text: binary payload (TLS records,
	// media) would "decode" to more binary at the cost of rescans. Without
	// a control or high byte (nor a NUL, which pads the masks' last block
	// and so has no special bit) the sample is all text.
	if (sp&(spCtl|spHigh) != 0 || bytes.IndexByte(data[:min(len(data), 128)], 0) >= 0) && looksBinary(data) {
		return
	}
	if s.reference {
		if bytes.IndexByte(data, '%') >= 0 || (s.idx.spaceForms && bytes.IndexByte(data, '+') >= 0) {
			s.urlSegments(data, next)
		}
	} else if sp&spPct != 0 || s.idx.spaceForms && sp&spPlus != 0 {
		s.urlSegmentsFast(data, next)
	}
	if sp&spBackslash != 0 && (bytes.Contains(data, []byte(`\u`)) || bytes.Contains(data, []byte(`\/`))) {
		if out, ok := jsonUnescape(s.layerBuf[next][:0], data); ok {
			s.layerBuf[next] = out
			s.scanLayer(out, next)
		}
	}
	for _, span := range s.b64[layer] {
		if s.budgetBytes <= 0 {
			s.exhausted = true
			return
		}
		var out []byte
		var ok bool
		if s.reference {
			out, ok = b64Decode(s.layerBuf[next][:0], data[span.s:span.e])
			ok = ok && plausibleLayer(out)
		} else if b64Rejected(data[span.s:span.e]) {
			continue
		} else {
			out, ok = b64Layer(s.layerBuf[next][:0], data[span.s:span.e])
		}
		s.layerBuf[next] = out
		if ok {
			s.scanLayer(out, next)
		}
	}
}

// looksBinary samples the first 128 bytes: more than 1 in 8 outside
// printable ASCII and common whitespace means binary.
func looksBinary(b []byte) bool {
	if len(b) > 128 {
		b = b[:128]
	}
	// Eight bytes at a time: each test leaves bit 7 of a byte set where
	// it holds; all are exact per byte (no carry crosses a byte).
	const lo7, hi = 0x7f7f7f7f7f7f7f7f, 0x8080808080808080
	eq := func(v, c uint64) uint64 { // bytes of v equal to c
		y := v ^ c*0x0101010101010101
		return ^((y&lo7 + lo7) | y) & hi
	}
	bin, i := 0, 0
	for ; i+8 <= len(b); i += 8 {
		v := le64(b[i:])
		t := v & lo7
		odd := v&hi | ^(t+0x6060606060606060)&hi | (t+0x0101010101010101)&hi // >= 0x80, < 0x20, == 0x7f
		odd &^= eq(v, '\n') | eq(v, '\r') | eq(v, '\t')
		bin += bits.OnesCount64(odd)
	}
	for _, c := range b[i:] {
		if (c < 0x20 && c != '\n' && c != '\r' && c != '\t') || c >= 0x7f {
			bin++
		}
	}
	return bin*8 > len(b)
}

var gzipMagic = []byte{0x1f, 0x8b, 0x08}

// emptyZlib is a complete zlib stream of zero bytes.
var emptyZlib = []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01}

func isZlibHeader(b []byte) bool {
	return b[0] == 0x78 && (uint16(b[0])<<8|uint16(b[1]))%31 == 0
}

type compression int

const (
	compGzip compression = iota
	compZlib
	compDeflate
)

// inflate decompresses what is there of a (possibly truncated) stream into
// the layer buffer and scans it.
func (s *Scanner) inflate(data []byte, layer int, kind compression) {
	if layer > maxLayers {
		return
	}
	limit := s.idx.cfg.MaxInflateBytes
	if limit > s.budgetBytes {
		limit = s.budgetBytes
	}
	if limit <= 0 {
		return
	}
	s.br.Reset(data)
	var r io.Reader
	switch kind {
	case compGzip:
		if s.gz == nil {
			s.gz = new(gzip.Reader)
		}
		if err := s.gz.Reset(&s.br); err != nil {
			return
		}
		s.gz.Multistream(false)
		r = s.gz
	case compZlib:
		if s.zl == nil {
			// zlib has no zero-value reader: make one from an empty stream
			// once, then Reset it (a failed Reset leaves it reusable).
			zl, err := zlib.NewReader(bytes.NewReader(emptyZlib))
			if err != nil {
				return
			}
			s.zl = zl
		}
		if err := s.zl.(zlib.Resetter).Reset(&s.br, nil); err != nil {
			return
		}
		r = s.zl
	case compDeflate:
		if s.fl == nil {
			s.fl = flate.NewReader(&s.br)
		} else if err := s.fl.(flate.Resetter).Reset(&s.br, nil); err != nil {
			return
		}
		r = s.fl
	}
	buf := s.layerBuf[layer]
	if cap(buf) < limit {
		buf = make([]byte, 0, limit)
	}
	buf = buf[:limit]
	n := 0
	for n < limit {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil || m == 0 {
			break
		}
	}
	s.layerBuf[layer] = buf[:0]
	if n > 0 {
		s.scanLayer(buf[:n], layer)
	}
}

// urlSegments URL-decodes and rescans only the segments (runs between
// strong delimiters such as & = ; and quotes) that contain an escape, so a
// long header with one encoded value is not rescanned whole.
func (s *Scanner) urlSegments(data []byte, next int) {
	for i := 0; i < len(data); {
		if lut[data[i]]&(1<<clsText) == 0 {
			i++
			continue
		}
		j := i
		pct, plus := false, false
		for j < len(data) && lut[data[j]]&(1<<clsText) != 0 {
			switch c := data[j]; {
			case c == '+':
				plus = s.idx.spaceForms
			case c == '%' && j+2 < len(data) && isHexByte(data[j+1]) && isHexByte(data[j+2]):
				pct = true
			}
			j++
		}
		if (pct || plus) && j-i >= minForm {
			if out, ok := urlDecode(s.layerBuf[next][:0], data[i:j]); ok {
				s.layerBuf[next] = out
				if pct {
					s.scanLayer(out, next)
				} else {
					// '+' alone only turns into spaces: only forms with
					// spaces (text class) can newly appear.
					s.scanLayerMask(out, next, 1<<clsText, false)
				}
			}
		}
		i = j
	}
}

// urlSegmentsFast finds the same segments as urlSegments but only looks at
// the ones holding a '%' or '+' (found with IndexByte), and skips decoding a
// '+'-only segment whose decoded form cannot match: '+' turns into a space
// of the same length, the decoded segment is one text run, and it is only
// probed if its length, trimmed of spaces, is an indexed text length.
func (s *Scanner) urlSegmentsFast(data []byte, next int) {
	plusOK := s.idx.spaceForms
	// With masks, segment bounds come from the text mask of data's layer
	// and the escape tests from IndexByte instead of a walk byte by byte.
	layer := next - 1
	masks := s.runFinder != runsSample
	pos := 0
	nextPct, nextPlus := -1, -1 // next '%' / '+' at or after pos; -1: search again
	for pos < len(data) {
		if nextPct < pos && nextPct != len(data) {
			nextPct = indexFrom(data, pos, '%')
		}
		if plusOK && nextPlus < pos && nextPlus != len(data) {
			nextPlus = indexFrom(data, pos, '+')
		}
		t := nextPct
		if plusOK && nextPlus < t {
			t = nextPlus
		}
		if t >= len(data) {
			return
		}
		// The segment around the trigger: the maximal text run holding it
		// ('%' and '+' are text bytes). pos is always at a segment start or
		// past a non-text byte, so walking back stops at or after pos.
		var i, j int
		var pct, plus bool
		if masks {
			i, j = s.textRun(layer, t)
			pct, plus = hasEscape(data, i, j), plusOK && bytes.IndexByte(data[i:j], '+') >= 0
		} else {
			i = t
			for i > pos && lut[data[i-1]]&(1<<clsText) != 0 {
				i--
			}
			j = i
			for j < len(data) && lut[data[j]]&(1<<clsText) != 0 {
				switch c := data[j]; {
				case c == '+':
					plus = plusOK
				case c == '%' && j+2 < len(data) && isHexByte(data[j+1]) && isHexByte(data[j+2]):
					pct = true
				}
				j++
			}
		}
		pos = j
		if !(pct || plus) || j-i < minForm {
			continue
		}
		if !pct && !s.plusSegmentCanMatch(data[i:j]) {
			continue
		}
		if out, ok := urlDecode(s.layerBuf[next][:0], data[i:j]); ok {
			s.layerBuf[next] = out
			if pct {
				s.scanLayer(out, next)
			} else {
				s.scanLayerMask(out, next, 1<<clsText, false)
			}
		}
	}
}

// hasEscape reports whether data[i:j] holds a '%' followed by two hex
// digits (which may lie past j, as in urlSegments).
func hasEscape(data []byte, i, j int) bool {
	for i < j {
		k := bytes.IndexByte(data[i:j], '%')
		if k < 0 {
			return false
		}
		k += i
		if k+2 < len(data) && isHexByte(data[k+1]) && isHexByte(data[k+2]) {
			return true
		}
		i = k + 1
	}
	return false
}

// plusSegmentCanMatch reports whether the '+'-decoded seg could hold a text
// form: scanLayerMask with the text class alone probes the one run of the
// decoded segment, trimmed of spaces, if it is at least minRun long and its
// trimmed length is indexed.
func (s *Scanner) plusSegmentCanMatch(seg []byte) bool {
	x := s.idx
	if L := x.minRun[clsText]; L == 0 || len(seg) < L {
		return false
	}
	st, e := 0, len(seg)
	for st < e && (seg[st] == ' ' || seg[st] == '+') {
		st++
	}
	for e > st && (seg[e-1] == ' ' || seg[e-1] == '+') {
		e--
	}
	return x.lens[clsText].has(e - st)
}

// indexFrom is the index of the first c in data[from:] (as an index into
// data), or len(data).
func indexFrom(data []byte, from int, c byte) int {
	if k := bytes.IndexByte(data[from:], c); k >= 0 {
		return from + k
	}
	return len(data)
}

func isHexByte(c byte) bool { return lut[c]&(1<<clsHex) != 0 }

// urlDecode percent-decodes src (and '+' to space, as in forms) into dst;
// ok is false if nothing changed. Malformed escapes are copied through.
func urlDecode(dst, src []byte) ([]byte, bool) {
	changed := false
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '%' && i+2 < len(src):
			hi, ok1 := unhex(src[i+1])
			lo, ok2 := unhex(src[i+2])
			if ok1 && ok2 {
				dst = append(dst, hi<<4|lo)
				i += 2
				changed = true
				continue
			}
		case c == '+':
			dst = append(dst, ' ')
			changed = true
			continue
		}
		dst = append(dst, c)
	}
	return dst, changed
}

// jsonUnescape resolves \uXXXX (BMP, as UTF-8) and \/ escapes; other
// escapes are kept so string boundaries stay intact.
func jsonUnescape(dst, src []byte) ([]byte, bool) {
	changed := false
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c == '\\' && i+1 < len(src) {
			switch src[i+1] {
			case '/':
				dst = append(dst, '/')
				i++
				changed = true
				continue
			case 'u':
				if i+5 < len(src) {
					var r rune
					ok := true
					for _, h := range src[i+2 : i+6] {
						v, okh := unhex(h)
						ok = ok && okh
						r = r<<4 | rune(v)
					}
					if ok {
						dst = appendRune(dst, r)
						i += 5
						changed = true
						continue
					}
				}
			}
		}
		dst = append(dst, c)
	}
	return dst, changed
}

func appendRune(dst []byte, r rune) []byte {
	switch {
	case r < 0x80:
		return append(dst, byte(r))
	case r < 0x800:
		return append(dst, 0xc0|byte(r>>6), 0x80|byte(r&0x3f))
	default:
		return append(dst, 0xe0|byte(r>>12), 0x80|byte(r>>6&0x3f), 0x80|byte(r&0x3f))
	}
}

// b64Decode decodes a base64 run in whichever alphabet its characters
// imply, tolerating missing padding and a trailing partial quantum.
func b64Decode(dst, src []byte) ([]byte, bool) {
	for len(src) > 0 && src[len(src)-1] == '=' {
		src = src[:len(src)-1]
	}
	if len(src)%4 == 1 { // a lone trailing character carries no full byte
		src = src[:len(src)-1]
	}
	enc := base64.RawStdEncoding
	if bytes.ContainsAny(src, "-_") {
		if bytes.ContainsAny(src, "+/") {
			return dst, false
		}
		enc = base64.RawURLEncoding
	}
	n := enc.DecodedLen(len(src))
	if cap(dst) < n {
		dst = make([]byte, 0, n*2)
	}
	dst = dst[:n]
	m, err := enc.Decode(dst, src)
	if err != nil {
		return dst[:0], false
	}
	return dst[:m], true
}

// plausibleLayer accepts decoded base64 worth scanning: compressed data or
// mostly printable text. Random tokens (session ids, signatures) decode to
// binary and are not rescanned.
func plausibleLayer(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	if bytes.HasPrefix(b, gzipMagic) || isZlibHeader(b) {
		return true
	}
	printable := 0
	for _, c := range b {
		if c >= 0x20 && c < 0x7f || c == '\n' || c == '\r' || c == '\t' {
			printable++
		}
	}
	return printable*10 >= len(b)*9
}
