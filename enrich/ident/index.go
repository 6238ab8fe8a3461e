package ident

import (
	"bytes"
	"fmt"
	"math/bits"
	"sync"

	"github.com/zeebo/xxh3"
)

// Index holds the keyed xxh3 hashes of every form of every inventory
// identifier, each pointing to its owners (device, type, form). It keeps no
// plaintext identifier: only 64-bit hashes, device ids and small integers.
// An Index is immutable once built and safe for concurrent use; scanning
// state lives in Scanners (one per worker goroutine).
type Index struct {
	seed uint64
	cfg  Config

	// Open-addressing multi-map with linear probing: keys[i] == 0 is an
	// empty slot; entries with equal keys sit in the same probe run, so a
	// lookup collects every owner of a hash (identifiers shared between
	// devices, or the rare 64-bit collision).
	keys  []uint64
	vals  []uint32
	mask  uint64
	count int

	// filter is a one-bit-per-hash set of the forms eligible for sliding
	// windows; it is ~1/20 the size of the table so most window probes are
	// answered from cache.
	filter []uint64
	fmask  uint64

	// anchor has one bit per hashed 8-byte prefix of the window-eligible
	// forms (every window form is at least minWindow = 8 bytes): a window
	// start position is only considered if its prefix is here. Eight bytes
	// rather than four because with thousands of devices every 4-hex-digit
	// prefix occurs in some random MAC, Android ID or UUID, which made a
	// 4-byte anchor pass nearly every offset of a hex token.
	anchor []uint64
	ashift uint
	// gram has one bit per hashed 8 bytes found at offsets 0..gramSpan-1
	// of a window-eligible form. Every window of class c at least
	// gramStride[c]+7 long covers an offset that is a multiple of
	// gramStride[c] within its first gramStride[c] bytes, so a run is
	// screened at those sampled offsets only, and the anchor is tested at
	// the gramStride[c] offsets before a sample that hits: a fifth to a
	// seventh of the lookups of testing every offset.
	gram       []uint64
	gshift     uint
	gramStride [numClasses]int
	// anchorLen is the same keyed by (prefix, window length): the second
	// test before a window is hashed.
	anchorLen []uint64
	alshift   uint

	// spaceForms: some form contains a space, so '+' (form encoding of a
	// space) is worth decoding.
	spaceForms bool

	devices []string

	lens [numClasses]lenSet
	wins [numClasses][]int // window lengths per class, ascending
	// refWins are the window lengths the reference scanner slides: wins
	// plus the lengths of all-digit plain forms, which windows never match
	// (a number inside a longer number is another number, see windows).
	refWins [numClasses][]int

	// probeFilter (one all-ones word if Builder.probeFilter was cleared) has one bit per (seeded
	// hash of the) first 8 bytes, last 8 bytes and length of every indexed
	// form at least 8 long: a whole run is only hashed and looked up in the
	// table if its bit is set.
	// About 11 bits per form (8 MiB at 6 M forms), so roughly 1 in 12
	// random candidates of an indexed length passes; the table itself is
	// ~20x larger and on real traffic each lookup is a cache miss.
	probeFilter []uint64
	pfshift     uint
	// minRun is the shortest run of each class worth looking at (0: none).
	minRun [numRunClasses]int
	// visit holds, per class, the run lengths below 1024 that run can do
	// anything with: an indexed length, a length windows slide over, or
	// any length for text (trimmed first) and base64 (padding, layers).
	// maskRuns skips the other runs without calling run.
	visit [numRunClasses]lenSet
	// startParams drive the longStarts kernel (from minRun).
	startParams startParams

	pool sync.Pool
}

// Owner packing: device 17 bits | type 4 bits | form 11 bits.
const (
	maxDevices = 1 << 17
	ownerForm  = 1<<11 - 1
)

func packOwner(dev int, t Type, f form) uint32 {
	return uint32(dev)<<15 | uint32(t)<<11 | uint32(f)
}

func ownerDev(o uint32) int      { return int(o >> 15) }
func ownerType(o uint32) Type    { return Type(o >> 11 & 15) }
func ownerForm_(o uint32) form   { return form(o & ownerForm) }
func sameIdent(a, b uint32) bool { return a>>11 == b>>11 }

// lenSet is a bitmap of candidate lengths 0..1023.
type lenSet [16]uint64

func (l *lenSet) add(n int) {
	if n < 1024 {
		l[n>>6] |= 1 << (n & 63)
	}
}

// min returns the smallest length in the set, or 0.
func (l *lenSet) min() int {
	for i, w := range l {
		if w != 0 {
			return i*64 + bits.TrailingZeros64(w)
		}
	}
	return 0
}

func (l *lenSet) has(n int) bool { return n < 1024 && l[n>>6]&(1<<(n&63)) != 0 }

// Identifier is one inventory value to index.
type Identifier struct {
	Device string // device id it belongs to (or an access point name)
	Type   Type
	Value  string
}

// Builder accumulates identifiers into a new Index.
type prefixLen struct {
	p uint64
	n int
}

type Builder struct {
	idx    *Index
	exp    *expander
	devIdx map[string]int
	norm   []byte

	filterCount int
	prefixes    map[uint64]struct{}
	prefixLens  map[prefixLen]struct{}
	grams       []uint64 // 8 bytes at each offset < gramSpan of every window form
	probeKeys   []uint64 // probeKey of every form, set into probeFilter by Build
	// probeFilter builds the whole-run probe filter (on by NewBuilder).
	// With the table cached (one payload scanned over and over) it is a
	// wash on headers; on payloads that vary, where each table lookup of a
	// random token misses the cache, headers scan 7 % and JSON 6 % faster
	// (BenchmarkScan headers-varied/json, 10k devices), for 16 MiB.
	probeFilter bool
}

// NewBuilder starts an index keyed with cfg's secret seed.
func NewBuilder(cfg Config) (*Builder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	seed, err := cfg.seed()
	if err != nil {
		return nil, err
	}
	idx := &Index{seed: seed, cfg: cfg}
	idx.alloc(1 << 12)
	idx.filter = make([]uint64, 1<<10)
	idx.fmask = uint64(len(idx.filter))*64 - 1
	return &Builder{idx: idx, exp: newExpander(), devIdx: map[string]int{},
		prefixes: map[uint64]struct{}{}, prefixLens: map[prefixLen]struct{}{}, probeFilter: true}, nil
}

// Add expands one identifier into all its forms and indexes their hashes.
// A value that cannot be parsed for its type is returned as an error and
// not indexed.
func (b *Builder) Add(id Identifier) error {
	vs, err := baseVariants(id.Type, id.Value)
	if err != nil {
		return fmt.Errorf("%s %s: %w", id.Device, id.Type, err)
	}
	dev, ok := b.devIdx[id.Device]
	if !ok {
		if len(b.idx.devices) >= maxDevices {
			return fmt.Errorf("%s: more than %d devices", id.Device, maxDevices)
		}
		dev = len(b.idx.devices)
		b.devIdx[id.Device] = dev
		b.idx.devices = append(b.idx.devices, id.Device)
	}
	b.exp.expand(vs, func(s string, f form) {
		if len(s) < minForm || len(s) > maxCandidate {
			return
		}
		b.norm = normalize(b.norm[:0], []byte(s))
		h := b.idx.hash(b.norm)
		b.idx.insert(h, packOwner(dev, id.Type, f))
		cls := classesOf(b.norm)
		// Probe a form only from its narrowest class: every run of a wider
		// class that equals the form is also a run of the narrowest one
		// (delimited by even more characters), and keeping the wide
		// classes' length sets small is what keeps scanning text cheap.
		for _, c := range narrowOrder {
			if cls&(1<<c) != 0 {
				b.idx.lens[c].add(len(b.norm))
				break
			}
		}
		if n := len(b.norm); n > 1 && b.norm[n-1] == '=' && classesOf(trimPad(b.norm))&(1<<clsB64) != 0 {
			b.idx.lens[clsB64Pad].add(n)
		}
		if bytes.IndexByte(b.norm, ' ') >= 0 {
			b.idx.spaceForms = true
		}
		if b.probeFilter && len(b.norm) >= 8 {
			b.probeKeys = append(b.probeKeys, b.idx.probeKey(le64(b.norm)|fold8, le64(b.norm[len(b.norm)-8:])|fold8, len(b.norm)))
		}
		if f.transform() == tNone && cls&(1<<clsHexSep) != 0 && cls&(1<<clsDigit) != 0 && len(b.norm) >= minWindow {
			addLen(&b.idx.refWins[clsHexSep], len(b.norm))
		}
		if c, ok := windowClass(f, cls, len(b.norm)); ok {
			b.prefixes[le64(b.norm)] = struct{}{}
			for j := 0; j < gramSpan && j+8 <= len(b.norm); j++ {
				b.grams = append(b.grams, le64(b.norm[j:]))
			}
			b.prefixLens[prefixLen{le64(b.norm), len(b.norm)}] = struct{}{}
			b.addWindow(c, len(b.norm), h)
		}
	})
	return nil
}

func trimPad(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == '=' {
		b = b[:len(b)-1]
	}
	return b
}

// windowClass decides which forms are searched for inside longer runs:
// the plain shapes of an identifier (digits/hex, possibly glued to other
// characters of the same class) and base64 encodings of it. Digest forms are
// only matched as whole tokens: apps send digests as values of their own.
func windowClass(f form, cls uint8, n int) (int, bool) {
	if n < minWindow {
		return 0, false
	}
	switch t := f.transform(); {
	case t == tNone && cls&(1<<clsHexSep) != 0 && cls&(1<<clsDigit) == 0:
		// All-digit forms are left out: windows that are all digits are
		// skipped (a number inside a longer number is another number), so
		// those forms cannot match in a window and would only weaken the
		// window filters and add window lengths.
		return clsHexSep, true
	case (t >= tB64 && t <= tB64URLNoPad) && cls&(1<<clsB64) != 0:
		return clsB64, true
	}
	return 0, false
}

// addLen adds n to the ascending set ws.
func addLen(ws *[]int, n int) {
	for _, w := range *ws {
		if w == n {
			return
		}
	}
	*ws = append(*ws, n)
	for i := len(*ws) - 1; i > 0 && (*ws)[i] < (*ws)[i-1]; i-- {
		(*ws)[i], (*ws)[i-1] = (*ws)[i-1], (*ws)[i]
	}
}

func (b *Builder) addWindow(c, n int, h uint64) {
	idx := b.idx
	addLen(&idx.wins[c], n)
	addLen(&idx.refWins[c], n)
	b.filterCount++
	if uint64(b.filterCount)*16 > idx.fmask+1 {
		b.growFilter()
	}
	idx.setFilter(h)
}

// Build finishes the index. The Builder must not be used afterwards.
func (b *Builder) Build() *Index {
	idx := b.idx
	b.idx = nil
	// Anchor bitmap: ~32 bits per distinct prefix keeps false anchors near 3 %.
	abits := uint(16)
	for 1<<abits < len(b.prefixes)*32 && abits < 26 {
		abits++
	}
	idx.anchor = make([]uint64, 1<<abits/64)
	idx.ashift = 64 - abits
	for p := range b.prefixes {
		i := idx.anchorBit(p)
		idx.anchor[i>>6] |= 1 << (i & 63)
	}
	abits = 16
	for 1<<abits < len(b.prefixLens)*32 && abits < 27 {
		abits++
	}
	idx.anchorLen = make([]uint64, 1<<abits/64)
	idx.alshift = 64 - abits
	for p := range b.prefixLens {
		i := idx.anchorLenBit(p.p, p.n)
		idx.anchorLen[i>>6] |= 1 << (i & 63)
	}
	abits = 16
	for 1<<abits < len(b.grams)*32 && abits < 26 {
		abits++
	}
	idx.gram = make([]uint64, 1<<abits/64)
	idx.gshift = 64 - abits
	for _, g := range b.grams {
		i := idx.gramBit(g)
		idx.gram[i>>6] |= 1 << (i & 63)
	}
	// prefixes and grams are plaintext fragments: drop them
	b.prefixes, b.prefixLens, b.grams = nil, nil, nil
	if b.probeFilter {
		pbits := uint(16)
		for 1<<pbits < len(b.probeKeys)*8 && pbits < 30 {
			pbits++
		}
		idx.probeFilter = make([]uint64, 1<<pbits/64)
		idx.pfshift = 64 - pbits
		for _, k := range b.probeKeys {
			i := k >> idx.pfshift
			idx.probeFilter[i>>6] |= 1 << (i & 63)
		}
	} else {
		// One all-ones word: every candidate passes, with no nil test.
		idx.probeFilter, idx.pfshift = []uint64{^uint64(0)}, 58
	}
	b.probeKeys = nil
	for c := 0; c < numRunClasses; c++ {
		m := idx.lens[c].min()
		if ws := idx.wins[c]; len(ws) > 0 && (m == 0 || ws[0]+1 < m) {
			m = ws[0] + 1
		}
		if c == clsB64 {
			// base64 runs are also decoded (layers) and may carry padding.
			if m == 0 || minB64Decode < m {
				m = minB64Decode
			}
			if p := idx.lens[clsB64Pad].min(); p > 0 && (p-2 < m) {
				m = max(p-2, 1)
			}
		}
		if m > 0 && m < minForm {
			m = minForm
		}
		idx.minRun[c] = m
		if ws := idx.wins[c]; len(ws) > 0 {
			idx.gramStride[c] = min(gramSpan, ws[0]-7)
		}
		idx.visit[c] = idx.lens[c]
		from := 1024
		if ws := idx.wins[c]; len(ws) > 0 {
			from = ws[0] + 1
		}
		if c == clsText || c == clsB64 {
			from = 1
		}
		for n := from; n < 1024; n++ {
			idx.visit[c].add(n)
		}
	}
	idx.startParams = newStartParams(&idx.minRun)
	idx.pool.New = func() any { return idx.NewScanner() }
	return idx
}

// fold8 ORs 0x20 into each of 8 bytes: the case fold of hex-class bytes.
// Filter keys are folded whatever the candidate's class, so a scanner need
// not find out a candidate's class before testing it.
const fold8 = 0x2020202020202020

// probeKey mixes a candidate's first and last 8 bytes (folded with fold8 by
// the caller) and its length with the seed; its top bits index probeFilter.
func (x *Index) probeKey(first, last uint64, n int) uint64 {
	h := (first ^ x.seed) * 0x9E3779B97F4A7C15
	h ^= (last + uint64(n)) * 0xC2B2AE3D27D4EB4F
	h ^= h >> 31
	return h * 0x94D049BB133111EB
}

// mayHold reports whether a candidate with these first and last 8 bytes
// and length n >= 8 can be an indexed form (false: it is not).
func (x *Index) mayHold(first, last uint64, n int) bool {
	i := x.probeKey(first, last, n) >> x.pfshift
	return x.probeFilter[i>>6]&(1<<(i&63)) != 0
}

// mayMatch is the whole-run filter test of the candidate data[st:e]
// (0 <= st <= e <= len(data)), false if it cannot be an indexed form. The
// key folds every byte with OR 0x20 (probeKey): for hex-class bytes that
// is exactly normalize's case fold, for others a fixed map the index
// applied too, so no class test comes first. Small enough to be inlined
// into the run loops, which call the scanner only for what it passes.
func (x *Index) mayMatch(data []byte, st, e int) bool {
	n := e - st
	return n < 8 || x.mayHold(load64(data, st)|fold8, load64(data, e-8)|fold8, n)
}

func (x *Index) gramBit(g uint64) uint64 {
	h := (g ^ x.seed) * 0xD6E8FEB86659FD93
	return (h ^ h>>32) * 0x9E3779B97F4A7C15 >> x.gshift
}

func (x *Index) inGram(g uint64) bool {
	i := x.gramBit(g)
	return x.gram[i>>6]&(1<<(i&63)) != 0
}

func (x *Index) anchorBit(p uint64) uint64 {
	return (p ^ x.seed) * 0x9E3779B97F4A7C15 >> x.ashift
}

func (x *Index) inAnchor(p uint64) bool {
	i := x.anchorBit(p)
	return x.anchor[i>>6]&(1<<(i&63)) != 0
}

func (x *Index) anchorLenBit(p uint64, n int) uint64 {
	h := (p ^ x.seed) * 0xC2B2AE3D27D4EB4F
	return (h ^ h>>29 ^ uint64(n)) * 0x9E3779B97F4A7C15 >> x.alshift
}

func (x *Index) inAnchorLen(p uint64, n int) bool {
	i := x.anchorLenBit(p, n)
	return x.anchorLen[i>>6]&(1<<(i&63)) != 0
}

func (x *Index) hash(b []byte) uint64 {
	h := xxh3.HashSeed(b, x.seed)
	if h == 0 {
		h = 1
	}
	return h
}

func (x *Index) alloc(n int) {
	x.keys = make([]uint64, n)
	x.vals = make([]uint32, n)
	x.mask = uint64(n - 1)
}

func (x *Index) insert(h uint64, o uint32) {
	if (x.count+1)*10 > len(x.keys)*6 {
		x.grow()
	}
	i := h & x.mask
	for x.keys[i] != 0 {
		if x.keys[i] == h && sameIdent(x.vals[i], o) {
			return // same identifier already reachable by this hash: first form wins
		}
		i = (i + 1) & x.mask
	}
	x.keys[i], x.vals[i] = h, o
	x.count++
}

func (x *Index) grow() {
	ok, ov := x.keys, x.vals
	x.alloc(len(ok) * 2)
	x.count = 0
	for i, k := range ok {
		if k != 0 {
			j := k & x.mask
			for x.keys[j] != 0 {
				j = (j + 1) & x.mask
			}
			x.keys[j], x.vals[j] = k, ov[i]
			x.count++
		}
	}
}

func (x *Index) setFilter(h uint64) {
	b := (h >> 29) & x.fmask
	x.filter[b>>6] |= 1 << (b & 63)
}

func (x *Index) inFilter(h uint64) bool {
	b := (h >> 29) & x.fmask
	return x.filter[b>>6]&(1<<(b&63)) != 0
}

func (b *Builder) growFilter() {
	// Rebuilding needs the hashes of all window forms; they are all in the
	// table with a window-eligible form, so recompute from it.
	idx := b.idx
	idx.filter = make([]uint64, len(idx.filter)*2)
	idx.fmask = uint64(len(idx.filter))*64 - 1
	for i, k := range idx.keys {
		if k == 0 {
			continue
		}
		f := ownerForm_(idx.vals[i])
		t := f.transform()
		if t == tNone || (t >= tB64 && t <= tB64URLNoPad) {
			idx.setFilter(k)
		}
	}
}

// Stats describes an index for logs and benchmarks (never its contents).
type Stats struct {
	Devices   int
	Entries   int
	Slots     int
	Bytes     int // table + filter memory
	WindowLen map[string][]int
}

// Stats returns the index's size.
func (x *Index) Stats() Stats {
	return Stats{
		Devices: len(x.devices),
		Entries: x.count,
		Slots:   len(x.keys),
		Bytes:   len(x.keys)*12 + len(x.filter)*8 + len(x.anchor)*8 + len(x.gram)*8 + len(x.anchorLen)*8 + len(x.probeFilter)*8,
		WindowLen: map[string][]int{
			"hexsep": append([]int(nil), x.wins[clsHexSep]...),
			"base64": append([]int(nil), x.wins[clsB64]...),
		},
	}
}

// FalsePositiveRate is the probability that one random candidate token
// hits the table by a 64-bit hash collision: entries / 2^64.
func (x *Index) FalsePositiveRate() float64 {
	return float64(x.count) / (1 << 64)
}

// Validate checks one inventory value for its type the way the index will
// expand it. An error wrapping ErrChecksum means the value is well-formed but
// its check digit is wrong: it is still indexed (the device sends what it
// has), the inventory reports it as a warning.
func Validate(t Type, v string) error {
	if t >= numTypes {
		return fmt.Errorf("unknown identifier type %d", t)
	}
	switch t {
	case TypeIMEI, TypeIMEISV:
		_, _, err := NormalizeIMEI(v)
		return err
	case TypeICCID:
		_, err := NormalizeICCID(v)
		return err
	}
	_, err := baseVariants(t, v)
	return err
}

// BuildIndex builds an index from identifiers plus the configured access
// points. Values that fail validation are skipped and returned as errors
// (never echoing the value itself into logs is the caller's job: the
// errors name device and type; validation messages may quote the value).
func BuildIndex(cfg Config, ids []Identifier) (*Index, []error, error) {
	b, err := NewBuilder(cfg)
	if err != nil {
		return nil, nil, err
	}
	// Pre-size for ~64 entries per identifier at the 0.6 load limit, so a
	// large lab does not pay for repeated doubling (each a full rehash).
	if want := len(ids) * 64 * 10 / 6; want > len(b.idx.keys) {
		n := len(b.idx.keys)
		for n < want {
			n *= 2
		}
		b.idx.alloc(n)
	}
	var errs []error
	for _, id := range append(cfg.AccessPointIdentifiers(), ids...) {
		if err := b.Add(id); err != nil {
			errs = append(errs, err)
		}
	}
	return b.Build(), errs, nil
}
