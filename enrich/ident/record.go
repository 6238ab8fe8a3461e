package ident

import (
	"strings"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// Field names used in IdentifierMatch.field.
const (
	FieldSnippetOut = "snippet.out"
	FieldSnippetIn  = "snippet.in"
	FieldHTTPPath   = "http.path"
	FieldHTTPHost   = "http.host"
	FieldHTTPUA     = "http.header.user-agent"
	FieldHTTPBody   = "http.body"
	FieldDNSQuery   = "dns.query"
	FieldTLSSNI     = "tls.sni"
	fieldHTTPHeader = "http.header"
)

const maxHeaderFieldNames = 1024

// ScanRecord searches every payload-bearing field of rec (snippets in both
// directions, HTTP path/query, host, header values and body prefix, the DNS
// query name, the TLS SNI) and appends the matches to rec.Enrichment.Matches.
// It returns the number of matches added. The appended messages belong to
// the Scanner and are reused by its next ScanRecord/Scan call: marshal or
// clone the record before scanning the next one.
//
// cleartext is true for payload of flows without TLS/QUIC, and always for the
// DNS query name and the SNI, which travel in clear on the wire.
func (s *Scanner) ScanRecord(rec *flowpb.FlowRecord) int {
	s.used = 0
	s.resetBudget()
	if rec.Enrichment == nil {
		rec.Enrichment = &flowpb.Enrichment{}
	}
	e := rec.Enrichment
	before := len(e.Matches)
	emit := s.appendTo(e)
	payloadClear := rec.Tls == nil
	if d := rec.Dns; d != nil && d.QueryName != "" {
		s.scanField(FieldDNSQuery, stringBytes(d.QueryName), true, emit)
	}
	if t := rec.Tls; t != nil && t.Sni != "" {
		s.scanField(FieldTLSSNI, stringBytes(t.Sni), true, emit)
	}
	if h := rec.Http; h != nil {
		s.scanField(FieldHTTPPath, stringBytes(h.Path), payloadClear, emit)
		s.scanField(FieldHTTPHost, stringBytes(h.Host), payloadClear, emit)
		s.scanField(FieldHTTPUA, stringBytes(h.UserAgent), payloadClear, emit)
		for _, hd := range h.Headers {
			s.scanField(s.headerField(hd.Name), stringBytes(hd.Value), payloadClear, emit)
		}
		if len(h.BodyPrefix) > 0 {
			s.scanBody(h, payloadClear, emit)
		}
	}
	for _, sn := range rec.Snippets {
		f := FieldSnippetOut
		if sn.Direction == flowpb.Direction_DIRECTION_INBOUND {
			f = FieldSnippetIn
		}
		s.scanField(f, sn.Data, payloadClear, emit)
	}
	scannedBytesTotal.Add(float64(s.idx.cfg.MaxScanBytes - s.budgetBytes))
	if s.exhausted {
		budgetExhaustedTotal.Inc()
	}
	return len(e.Matches) - before
}

// scanBody scans the body prefix; a gzip/deflate Content-Encoding is
// decompressed as the first layer (the generic layer detection would find
// gzip and zlib by their magic bytes, but not raw deflate).
func (s *Scanner) scanBody(h *flowpb.HTTPInfo, clear bool, emit func(*flowpb.IdentifierMatch)) {
	if strings.EqualFold(h.ContentEncoding, "deflate") && !(len(h.BodyPrefix) > 2 && isZlibHeader(h.BodyPrefix)) {
		s.hits = s.hits[:0]
		s.inflate(h.BodyPrefix, 1, compDeflate)
		s.emitHits(FieldHTTPBody, clear, emit)
		return
	}
	s.scanField(FieldHTTPBody, h.BodyPrefix, clear, emit)
}

func (s *Scanner) emitHits(field string, clear bool, emit func(*flowpb.IdentifierMatch)) {
	for i := range s.hits {
		h := &s.hits[i]
		if s.suppressed(i) {
			continue
		}
		m := s.match()
		t := ownerType(h.o)
		m.DeviceId = s.idx.devices[ownerDev(h.o)]
		m.IdentifierType = typeNames[t]
		m.Form = formNames[h.f]
		m.Field = field
		m.Offset = uint32(h.off)
		m.Length = uint32(h.n)
		m.Cleartext = clear
		m.Layers = uint32(h.layer)
		matchCounters[t].Inc()
		emit(m)
	}
}

// appendTo returns an emit function appending to e.Matches; the closure is
// created once per Scanner so ScanRecord does not allocate one per record.
func (s *Scanner) appendTo(e *flowpb.Enrichment) func(*flowpb.IdentifierMatch) {
	s.target = e
	if s.emitFn == nil {
		s.emitFn = func(m *flowpb.IdentifierMatch) { s.target.Matches = append(s.target.Matches, m) }
	}
	return s.emitFn
}

// headerField returns "http.header.<lower-case name>", interned so a
// steady stream of the same header names allocates nothing.
func (s *Scanner) headerField(name string) string {
	if f, ok := s.hdrField[name]; ok {
		return f
	}
	if len(s.hdrField) >= maxHeaderFieldNames {
		return fieldHTTPHeader
	}
	f := fieldHTTPHeader + "." + strings.ToLower(name)
	s.hdrField[name] = f
	return f
}
