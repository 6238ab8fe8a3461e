package enrich

import (
	"bytes"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/internal/strarena"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// Config holds the enrich stage's own settings (the lookup tables have
// their own sections: geoip, inventory, identifiers).
type Config struct {
	Redact bool `yaml:"redact" help:"mask the bytes of every identifier match in the record's fields (DNS name, SNI, HTTP path/host/user-agent/headers/body, snippets) before it leaves the stage; off keeps identifiers in clear in flows.enriched and ClickHouse"`
}

// DefaultConfig redacts: identifiers must not appear in clear downstream.
func DefaultConfig() Config { return Config{Redact: true} }

var mRedacted = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "exfilwatch_enrich_redacted_fields_total",
	Help: "Record field values rewritten to mask identifier matches, by how: span (the matched bytes) or whole (the whole value: match under a decoding layer).",
}, []string{"how"})

var (
	mRedactSpan  = mRedacted.WithLabelValues("span")
	mRedactWhole = mRedacted.WithLabelValues("whole")
)

// maskByte replaces redacted bytes: no digit, hex, base64 or word
// character, so a masked span is no candidate of those classes again.
const maskByte = '*'

// Field names the scanner uses for header values; a header beyond the
// scanner's cache of header names is reported under the bare prefix.
const (
	headerPrefix  = "http.header."
	headerGeneric = "http.header"
)

// slot is one scanned field value of the record being redacted.
type slot struct {
	field string // the scanner's field name; "" for header values (see name)
	name  string // header name, for header values
	str   *string
	byt   *[]byte
	orig  []byte // read-only view of the value (strings may be arena-backed and shared)
	out   []byte // masked copy in redactor.scratch; nil while unchanged
	whole bool   // out is entirely masked
}

// holds reports whether a match reported under field may lie in s.
func (s *slot) holds(field string) bool {
	if s.field != "" {
		return s.field == field
	}
	if field == headerGeneric {
		return true
	}
	n, ok := strings.CutPrefix(field, headerPrefix)
	return ok && strings.EqualFold(n, s.name)
}

// needle is an exact matched byte string, masked wherever else it occurs.
type needle struct {
	slot, off, n int
}

// redactor is the Worker's redaction state, reused from record to record.
type redactor struct {
	slots   []slot
	cand    []int
	needles []needle
	scratch []byte
	sa      strarena.Arena // redacted strings: never rewritten, safe to retain
}

// stringBytes views s without copying; the bytes are only read.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func (r *redactor) addString(field, name string, p *string) {
	if *p != "" {
		r.slots = append(r.slots, slot{field: field, name: name, str: p, orig: stringBytes(*p)})
	}
}

func (r *redactor) addBytes(field string, p *[]byte) {
	if len(*p) > 0 {
		r.slots = append(r.slots, slot{field: field, byt: p, orig: *p})
	}
}

// redact masks the identifier matches ms in rec's fields. Rules:
//
//   - layer 0 (found in the field as sent): [offset, offset+length) is
//     overwritten with '*' (same length, so offsets stay meaningful), and
//     every other occurrence of the same bytes in any searched field of the
//     record is masked too (the scanner reports one match per form and
//     field, so a repeat in the same field has no match of its own).
//   - layers > 0 (found after URL/JSON/base64/gzip decoding): the encoded
//     span is unknown, so the whole value of the field is masked.
//   - a field name shared by several values (snippets of one direction,
//     repeated header names) is resolved to the values where the span can
//     lie: it fits, and holds no delimiter a scanner candidate cannot hold.
//     If several remain they are all masked (over-masking is the safe side)
//     and the bytes are not swept elsewhere (which ones are the identifier
//     is unknown). Under a decoding layer every value of that name goes.
//
// Strings are replaced by new strings (the decoder's may be shared arena
// strings); byte fields are replaced by copies: nothing the record pointed
// to before is written.
func (r *redactor) redact(rec *flowpb.FlowRecord, ms []*flowpb.IdentifierMatch) {
	r.slots, r.needles = r.slots[:0], r.needles[:0]
	if d := rec.Dns; d != nil {
		r.addString(ident.FieldDNSQuery, "", &d.QueryName)
	}
	if t := rec.Tls; t != nil {
		r.addString(ident.FieldTLSSNI, "", &t.Sni)
	}
	if h := rec.Http; h != nil {
		r.addString(ident.FieldHTTPPath, "", &h.Path)
		r.addString(ident.FieldHTTPHost, "", &h.Host)
		r.addString(ident.FieldHTTPUA, "", &h.UserAgent)
		for _, hd := range h.Headers {
			if hd != nil {
				r.addString("", hd.Name, &hd.Value)
			}
		}
		r.addBytes(ident.FieldHTTPBody, &h.BodyPrefix)
	}
	for _, sn := range rec.Snippets {
		if sn == nil {
			continue
		}
		f := ident.FieldSnippetOut
		if sn.Direction == flowpb.Direction_DIRECTION_INBOUND {
			f = ident.FieldSnippetIn
		}
		r.addBytes(f, &sn.Data)
	}
	total := 0
	for i := range r.slots {
		total += len(r.slots[i].orig)
	}
	if cap(r.scratch) < total {
		r.scratch = make([]byte, 0, total)
	}
	r.scratch = r.scratch[:0] // outs are carved from it: it must not move

	for _, m := range ms {
		r.apply(m)
	}
	r.sweep()
	r.install()
}

// apply masks one match in the slots that may hold it.
func (r *redactor) apply(m *flowpb.IdentifierMatch) {
	off, n := int(m.Offset), int(m.Length)
	layered := m.Layers > 0 || n == 0 // n == 0: a producer without lengths
	r.cand = r.cand[:0]
	for i := range r.slots {
		s := &r.slots[i]
		if !s.holds(m.Field) {
			continue
		}
		if !layered && (off+n > len(s.orig) || !plausibleSpan(s.orig[off:off+n])) {
			continue
		}
		r.cand = append(r.cand, i)
	}
	if len(r.cand) == 0 && !layered {
		// Nothing where the span can be (a changed record, a scanner
		// quirk): mask every value of that name rather than none.
		for i := range r.slots {
			if r.slots[i].holds(m.Field) {
				r.cand = append(r.cand, i)
			}
		}
		layered = true
	}
	if len(r.cand) == 0 && strings.HasPrefix(m.Field, headerGeneric) {
		// A header name the scanner spelled otherwise (its lower-casing
		// is not EqualFold for every rune): every header value goes.
		for i := range r.slots {
			if r.slots[i].field == "" {
				r.cand = append(r.cand, i)
			}
		}
		layered = true
	}
	for _, i := range r.cand {
		s := &r.slots[i]
		if layered || off+n > len(s.orig) {
			r.maskWhole(s)
			continue
		}
		r.mask(s, off, n)
	}
	if layered || len(r.cand) == 0 {
		return
	}
	first := r.slots[r.cand[0]].orig[off : off+n]
	for _, i := range r.cand[1:] {
		if !bytes.Equal(r.slots[i].orig[off:off+n], first) {
			return // ambiguous: which bytes are the identifier is unknown
		}
	}
	r.needles = append(r.needles, needle{slot: r.cand[0], off: off, n: n})
}

// plausibleSpan reports whether b can be a scanner candidate: every
// candidate class excludes control bytes and the strong delimiters, except
// the '=' padding that may end a base64 form.
func plausibleSpan(b []byte) bool {
	b = bytes.TrimRight(b, "=")
	for _, c := range b {
		if c < 0x20 || c == 0x7f || strings.IndexByte("\"'<>&=?;,{}[]\\|`", c) >= 0 {
			return false
		}
	}
	return len(b) > 0
}

// sweep masks every occurrence of the needles in every slot. The search
// resumes after each hit: an occurrence overlapping a masked one is already
// broken, and the sweep stays linear in the value.
func (r *redactor) sweep() {
	for _, nd := range r.needles {
		pat := r.slots[nd.slot].orig[nd.off : nd.off+nd.n]
		for i := range r.slots {
			s := &r.slots[i]
			if s.whole {
				continue
			}
			for at := 0; ; {
				j := bytes.Index(s.orig[at:], pat)
				if j < 0 {
					break
				}
				r.mask(s, at+j, len(pat))
				at += j + len(pat)
			}
		}
	}
}

// copyOut gives s its masked copy on first change.
func (r *redactor) copyOut(s *slot) {
	if s.out == nil {
		start := len(r.scratch)
		r.scratch = append(r.scratch, s.orig...)
		s.out = r.scratch[start:len(r.scratch):len(r.scratch)]
	}
}

func (r *redactor) mask(s *slot, off, n int) {
	r.copyOut(s)
	for i := off; i < off+n; i++ {
		s.out[i] = maskByte
	}
}

func (r *redactor) maskWhole(s *slot) {
	r.copyOut(s)
	for i := range s.out {
		s.out[i] = maskByte
	}
	s.whole = true
}

// install replaces the changed values: strings from the worker's string
// arena, byte fields from one fresh buffer per record (the originals may
// belong to the decoder or to the producer of the record).
func (r *redactor) install() {
	nb := 0
	for i := range r.slots {
		if s := &r.slots[i]; s.out != nil && s.byt != nil {
			nb += len(s.out)
		}
	}
	var buf []byte
	if nb > 0 {
		buf = make([]byte, 0, nb)
	}
	for i := range r.slots {
		s := &r.slots[i]
		if s.out == nil {
			continue
		}
		if s.whole {
			mRedactWhole.Inc()
		} else {
			mRedactSpan.Inc()
		}
		if s.byt != nil {
			start := len(buf)
			buf = append(buf, s.out...)
			*s.byt = buf[start:len(buf):len(buf)]
			continue
		}
		if !utf8.Valid(s.out) {
			// A span cut a multi-byte character (proto3 strings must stay
			// valid UTF-8): give up the value.
			for j := range s.out {
				s.out[j] = maskByte
			}
		}
		*s.str = r.sa.String(s.out)
	}
	for i := range r.slots {
		r.slots[i] = slot{} // drop references to the record
	}
}
