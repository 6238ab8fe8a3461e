package detect

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"

	"github.com/exfilwatch/exfilwatch/detect/rita"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/zeebo/xxh3"
)

// dnsState counts one device's queries under one registrable domain in the
// current window.
//
// Distinct names are an exact open-addressing set of 32-bit hashes of the
// full query name that grows up to dns_tunnel.max_tracked entries and then
// saturates, so memory per domain is bounded (4 bytes per tracked name at a
// load factor of at most 1/2: 8 KiB at the default 1024) and counts up to
// the cap are exact but for 32-bit collisions (expected < 0.0002 at 1024).
type dnsState struct {
	domain   string
	winStart int64
	lastSeen int64
	set      []uint32 // 0 = empty
	distinct int
	chars    int // characters of subdomain text (query name minus the domain)
	queries  int
	encoded  int // long, high-entropy subdomains
	maxLabel int
}

func (s *dnsState) reset(ws int64) {
	s.winStart = ws
	clear(s.set)
	s.distinct, s.chars, s.queries, s.encoded, s.maxLabel = 0, 0, 0, 0, 0
}

// add inserts h, reporting whether it was new. The set doubles while the
// distinct count stays below cap; at the cap new names are not counted.
func (s *dnsState) add(h uint32, limit int) bool {
	if h == 0 {
		h = 1
	}
	if s.distinct >= limit {
		return false
	}
	if 2*(s.distinct+1) > len(s.set) {
		s.grow(limit)
	}
	mask := uint32(len(s.set) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		switch s.set[i] {
		case h:
			return false
		case 0:
			s.set[i] = h
			s.distinct++
			return true
		}
	}
}

func (s *dnsState) grow(limit int) {
	n := max(16, 2*len(s.set))
	if maxSize := 1 << bits.Len(uint(2*limit-1)); n > maxSize {
		n = maxSize
	}
	if n == len(s.set) {
		return
	}
	old := s.set
	s.set = make([]uint32, n)
	mask := uint32(n - 1)
	for _, h := range old {
		if h == 0 {
			continue
		}
		i := h & mask
		for s.set[i] != 0 {
			i = (i + 1) & mask
		}
		s.set[i] = h
	}
}

// dnsTunnel scores a DNS query per device and registrable domain.
func (e *Engine) dnsTunnel(d *device, rec *flowpb.FlowRecord, ts int64, emit func(*flowpb.Alert)) {
	c := e.cfg.DNS
	name := rec.Dns.QueryName
	if strings.HasSuffix(name, ".arpa") || strings.HasSuffix(name, ".local") {
		return
	}
	domain := e.registrable(name)
	sub := ""
	if len(name) > len(domain) {
		sub = name[:len(name)-len(domain)-1]
	}
	h := xxh3.HashString(domain)
	s := d.dns.get(h)
	if s == nil {
		if d.dns.len() >= c.MaxDomains {
			if k, ok := d.dns.oldest(func(s *dnsState) int64 { return s.lastSeen }); ok {
				d.dns.del(k)
			}
		}
		s = &dnsState{domain: strings.Clone(domain)}
		d.dns.put(h, s)
	}
	s.lastSeen = max(s.lastSeen, ts)
	if ws := windowStart(ts, c.Window); ws > s.winStart {
		s.reset(ws)
	}
	s.queries++
	s.chars += len(sub)
	s.add(uint32(xxh3.HashString(name)), c.MaxTracked)
	if sub != "" {
		longest := 0
		for l := range strings.SplitSeq(sub, ".") {
			longest = max(longest, len(l))
		}
		s.maxLabel = max(s.maxLabel, longest)
		if len(sub) >= c.LongLabel && Entropy(sub) >= c.MinEntropy {
			s.encoded++
		}
	}

	var reason string
	switch {
	case s.distinct >= c.UniqueSubdomains:
		reason = "unique_subdomains"
	case c.QueryChars > 0 && s.chars >= c.QueryChars:
		reason = "query_chars"
	case c.EncodedQueries > 0 && s.encoded >= c.EncodedQueries:
		reason = "encoded_queries"
	case c.QueryRate > 0 && s.queries >= c.QueryRate:
		reason = "query_rate"
	default:
		return
	}
	// RITA's subdomain buckets 100/500/800/1000 (scaled to the configured
	// base) decide the severity; the other triggers are medium.
	base := float64(c.UniqueSubdomains)
	score := rita.BucketedScore(float64(s.distinct), base, 5*base, 8*base, 10*base)
	sev := flowpb.Severity_SEVERITY_MEDIUM
	switch {
	case score >= 0.8:
		sev = flowpb.Severity_SEVERITY_CRITICAL
	case score >= 0.6:
		sev = flowpb.Severity_SEVERITY_HIGH
	}
	e.key(detDNS, d)
	e.keyPart(domain)
	if e.bump(detDNS, ts, rec, 0, sev, score, emit) {
		return
	}
	dst := destination(rec)
	dst.Host = strings.Clone(domain) // may be a slice of an arena string
	evidence := []*flowpb.Evidence{
		ev("trigger", reason),
		ev("domain", domain),
		ev("unique_names", strconv.Itoa(s.distinct)),
		ev("query_chars", strconv.Itoa(s.chars)),
		ev("queries", strconv.Itoa(s.queries)),
		ev("encoded_queries", strconv.Itoa(s.encoded)),
		ev("longest_label", strconv.Itoa(s.maxLabel)),
		ev("window", c.Window.String()),
	}
	summary := fmt.Sprintf("possible DNS tunnel via %s: %d unique names, %d query characters, %d queries this window (%s)",
		domain, s.distinct, s.chars, s.queries, reason)
	e.raise(detDNS, d, ts, s.winStart, s.winStart+int64(c.Window), dst, rec, 0, sev, score, summary, evidence, emit)
}

// suffixCacheMax bounds the registrable-domain cache; it is cleared when full.
const suffixCacheMax = 1 << 16

// tailLabels is how many rightmost labels decide a name's registrable domain:
// the longest public-suffix rules (wildcards included) span 6 labels, so the
// eTLD+1 of a name equals that of its last 7 labels.
const tailLabels = 7

// registrable is registrable(name) through a cache keyed by the name's last
// tailLabels labels. publicsuffix allocates on every call (it first tries to
// parse the name as an IP address), the cache makes repeat names free.
func (e *Engine) registrable(name string) string {
	if ownKey(name) {
		return name
	}
	tail := name
	dots := 0
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '.' {
			dots++
			if dots == tailLabels {
				tail = name[i+1:]
				break
			}
		}
	}
	if r, ok := e.suffixCache[tail]; ok {
		return name[len(name)-len(r):]
	}
	r := registrable(tail)
	if !strings.HasSuffix(name, r) {
		r = tail
	}
	if len(e.suffixCache) >= suffixCacheMax {
		clear(e.suffixCache)
	}
	e.suffixCache[strings.Clone(tail)] = strings.Clone(r)
	return name[len(name)-len(r):]
}

// Entropy is the Shannon entropy of s in bits per byte. For short strings it
// is at most log2(len(s)), which is why dns_tunnel only judges long names.
func Entropy(s string) float64 {
	if len(s) == 0 {
		return 0
	}
	var counts [256]uint16
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	n := float64(len(s))
	var h float64
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}
