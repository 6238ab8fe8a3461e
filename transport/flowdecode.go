package transport

import (
	"encoding/binary"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/internal/strarena"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// flowDecoder decodes binary FlowRecords into one reused message without
// the dozen allocations per record of proto.Unmarshal (which allocates every
// sub-message, slice, byte field and string afresh). It is used by Run,
// whose Process contract already says the input message is reused for the
// next record.
//
// Ownership: every sub-message, slice and byte field it installs in the
// record is owned by the decoder and overwritten by the next decode; the
// decoder never writes into objects a stage put into the record (it replaces
// the pointers). Byte fields are carved from one arena with capped capacity,
// so a stage appending to one cannot clobber another. Strings are immutable:
// short ones are interned (gateway names, SNIs, geo and device fields repeat
// from record to record); unique ones (record id, Community ID, HTTP path,
// long values) are carved from an append-only string arena (strarena), which
// never rewrites bytes it handed out, so a stage may keep any string past
// the record (a retained string pins at most one strarena.SlabSize slab).
// Interning these instead would miss nearly always, and a fixed-size form
// would change the schema's Go types; the arena costs one 1 KiB allocation
// per ~20 records (BenchmarkFlowDecoder: 2 -> 0 allocs/op, 56 -> 51 B/op).
//
// A flowDecoder (its arenas included) belongs to one goroutine: Run decodes
// on its fetching goroutine only.
//
// Anything the fast path does not handle exactly as proto.Unmarshal would
// (unknown fields, groups, a known field with an unexpected wire type,
// invalid UTF-8, malformed input) makes decode fall back to proto.Unmarshal,
// so results and errors are always those of proto.Unmarshal.
type flowDecoder struct {
	arena []byte // byte fields; rewritten by every decode
	strs  map[string]string
	sa    strarena.Arena // non-interned strings; never rewritten

	dns                     *flowpb.DNSInfo
	tls                     *flowpb.TLSInfo
	http                    *flowpb.HTTPInfo
	enr                     *flowpb.Enrichment
	srcGeo, dstGeo          *flowpb.Geo
	device                  *flowpb.Device
	ifaces, alpn            []string
	answers                 [][]byte
	headers                 []*flowpb.HTTPHeader
	snippets                []*flowpb.Snippet
	matches                 []*flowpb.IdentifierMatch
	headerPool              []*flowpb.HTTPHeader
	snippetPool             []*flowpb.Snippet
	matchPool               []*flowpb.IdentifierMatch
	nHeader, nSnip, nMatch  int
	fastDecodes, fallbacks  int // for tests
	internMax, internMaxLen int
}

func newFlowDecoder() *flowDecoder {
	return &flowDecoder{strs: map[string]string{}, internMax: 4096, internMaxLen: 64}
}

// decode replaces m's contents with the record encoded in b.
func (d *flowDecoder) decode(b []byte, m *flowpb.FlowRecord) error {
	m.Reset()
	if cap(d.arena) < len(b) {
		// Byte fields never exceed the input, so the arena does not grow
		// (and move) while one record is decoded.
		d.arena = make([]byte, 0, max(2*len(b), 4096))
	}
	d.arena = d.arena[:0]
	d.nHeader, d.nSnip, d.nMatch = 0, 0, 0
	if d.record(m, b) {
		d.keep(m)
		d.fastDecodes++
		return nil
	}
	d.fallbacks++
	return proto.Unmarshal(b, m)
}

// keep remembers the (possibly grown) slices installed in m, so their
// capacity is reused by the next decode.
func (d *flowDecoder) keep(m *flowpb.FlowRecord) {
	if m.Interfaces != nil {
		d.ifaces = m.Interfaces[:0]
	}
	if m.Snippets != nil {
		d.snippets = m.Snippets[:0]
	}
	if t := m.Tls; t != nil && t.Alpn != nil {
		d.alpn = t.Alpn[:0]
	}
	if n := m.Dns; n != nil && n.Answers != nil {
		d.answers = n.Answers[:0]
	}
	if h := m.Http; h != nil && h.Headers != nil {
		d.headers = h.Headers[:0]
	}
	if e := m.Enrichment; e != nil && e.Matches != nil {
		d.matches = e.Matches[:0]
	}
}

// fields walks the fields of one encoded message.
type fields struct {
	b   []byte
	tag uint64 // field number << 3 | wire type
	u   uint64 // varint or fixed value
	v   []byte // length-delimited value
	bad bool
}

// Wire types, for the tag constants below.
const (
	tVarint = uint64(protowire.VarintType)
	tFixed  = uint64(protowire.Fixed64Type)
	tBytes  = uint64(protowire.BytesType)
)

func (f *fields) next() bool {
	b := f.b
	if len(b) == 0 || f.bad {
		return false
	}
	// One-byte tags and values are the common case; longer ones go through
	// protowire, whose rules (overlong and truncated varints) thus apply.
	var tag uint64
	if b[0] < 0x80 {
		tag, b = uint64(b[0]), b[1:]
	} else {
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			f.bad = true
			return false
		}
		tag, b = v, b[n:]
	}
	switch tag & 7 {
	case tVarint:
		if len(b) > 0 && b[0] < 0x80 {
			f.u, b = uint64(b[0]), b[1:]
			break
		}
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			f.bad = true
			return false
		}
		f.u, b = v, b[n:]
	case tBytes:
		var l uint64
		if len(b) > 0 && b[0] < 0x80 {
			l, b = uint64(b[0]), b[1:]
		} else {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				f.bad = true
				return false
			}
			l, b = v, b[n:]
		}
		if l > uint64(len(b)) {
			f.bad = true
			return false
		}
		f.v, b = b[:l:l], b[l:]
	case tFixed:
		if len(b) < 8 {
			f.bad = true
			return false
		}
		f.u, b = binary.LittleEndian.Uint64(b), b[8:]
	default: // fixed32 (unused by the schema) and groups: slow path
		f.bad = true
		return false
	}
	f.b, f.tag = b, tag
	return true
}

// done reports whether the walk ended at the end of the input.
func (f *fields) done() bool { return !f.bad && len(f.b) == 0 }

// str returns v as a string, interned when short and asked for, else carved
// from the string arena; ok is false for invalid UTF-8 (proto3 strings must
// be valid; proto.Unmarshal reports the error).
func (d *flowDecoder) str(v []byte, intern bool) (string, bool) {
	if !utf8.Valid(v) {
		return "", false
	}
	if len(v) == 0 {
		return "", true
	}
	if !intern || len(v) > d.internMaxLen {
		return d.sa.String(v), true
	}
	if s, ok := d.strs[string(v)]; ok {
		return s, true
	}
	if len(d.strs) >= d.internMax {
		clear(d.strs) // bounded: a churn of distinct values cannot grow it
	}
	s := string(v)
	d.strs[s] = s
	return s, true
}

// bytes copies v into the arena; the result's capacity ends at its length.
func (d *flowDecoder) bytes(v []byte) []byte {
	start := len(d.arena)
	d.arena = append(d.arena, v...)
	return d.arena[start:len(d.arena):len(d.arena)]
}

func (d *flowDecoder) record(m *flowpb.FlowRecord, b []byte) bool {
	f := fields{b: b}
	for f.next() {
		var ok = true
		switch f.tag {
		case 1<<3 | tVarint:
			m.SchemaVersion = uint32(f.u)
		case 2<<3 | tBytes:
			m.Id, ok = d.str(f.v, false)
		case 3<<3 | tVarint:
			m.ObservedNs = int64(f.u)
		case 4<<3 | tVarint:
			m.FirstSeenNs = int64(f.u)
		case 5<<3 | tVarint:
			m.LastSeenNs = int64(f.u)
		case 6<<3 | tBytes:
			m.Gateway, ok = d.str(f.v, true)
		case 7<<3 | tBytes:
			var s string
			if s, ok = d.str(f.v, true); ok {
				if m.Interfaces == nil {
					m.Interfaces = d.ifaces[:0]
				}
				m.Interfaces = append(m.Interfaces, s)
			}
		case 8<<3 | tVarint:
			m.Direction = flowpb.Direction(int32(f.u))
		case 9<<3 | tBytes:
			m.SrcAddr = d.bytes(f.v)
		case 10<<3 | tBytes:
			m.DstAddr = d.bytes(f.v)
		case 11<<3 | tVarint:
			m.SrcPort = uint32(f.u)
		case 12<<3 | tVarint:
			m.DstPort = uint32(f.u)
		case 13<<3 | tVarint:
			m.Protocol = uint32(f.u)
		case 14<<3 | tVarint:
			m.IpVersion = uint32(f.u)
		case 15<<3 | tVarint:
			m.BytesOut = f.u
		case 16<<3 | tVarint:
			m.PacketsOut = f.u
		case 17<<3 | tVarint:
			m.BytesIn = f.u
		case 18<<3 | tVarint:
			m.PacketsIn = f.u
		case 19<<3 | tVarint:
			m.TcpFlagsOut = uint32(f.u)
		case 20<<3 | tVarint:
			m.TcpFlagsIn = uint32(f.u)
		case 21<<3 | tBytes:
			m.SrcMac = d.bytes(f.v)
		case 22<<3 | tBytes:
			m.CommunityId, ok = d.str(f.v, false)
		case 23<<3 | tVarint:
			m.EndReason = flowpb.EndReason(int32(f.u))
		case 24<<3 | tVarint:
			m.Fragments = uint32(f.u)
		case 30<<3 | tBytes:
			if m.Dns == nil { // a repeated singular message merges into the first
				if d.dns == nil {
					d.dns = &flowpb.DNSInfo{}
				}
				d.dns.Reset()
				m.Dns = d.dns
			}
			ok = d.dnsInfo(m.Dns, f.v)
		case 31<<3 | tBytes:
			if m.Tls == nil {
				if d.tls == nil {
					d.tls = &flowpb.TLSInfo{}
				}
				d.tls.Reset()
				m.Tls = d.tls
			}
			ok = d.tlsInfo(m.Tls, f.v)
		case 32<<3 | tBytes:
			if m.Http == nil {
				if d.http == nil {
					d.http = &flowpb.HTTPInfo{}
				}
				d.http.Reset()
				m.Http = d.http
			}
			ok = d.httpInfo(m.Http, f.v)
		case 33<<3 | tBytes:
			if d.nSnip == len(d.snippetPool) {
				d.snippetPool = append(d.snippetPool, &flowpb.Snippet{})
			}
			s := d.snippetPool[d.nSnip]
			d.nSnip++
			s.Reset()
			if m.Snippets == nil {
				m.Snippets = d.snippets[:0]
			}
			m.Snippets = append(m.Snippets, s)
			ok = d.snippet(s, f.v)
		case 40<<3 | tBytes:
			if m.Enrichment == nil {
				if d.enr == nil {
					d.enr = &flowpb.Enrichment{}
				}
				d.enr.Reset()
				m.Enrichment = d.enr
			}
			ok = d.enrichment(m.Enrichment, f.v)
		default:
			return false // unknown field or unexpected wire type
		}
		if !ok {
			return false
		}
	}
	return f.done()
}

func (d *flowDecoder) dnsInfo(m *flowpb.DNSInfo, b []byte) bool {
	f := fields{b: b}
	for f.next() {
		ok := true
		switch f.tag {
		case 1<<3 | tBytes:
			m.QueryName, ok = d.str(f.v, true)
		case 2<<3 | tVarint:
			m.QueryType = uint32(f.u)
		case 3<<3 | tVarint:
			m.Rcode = uint32(f.u)
		case 4<<3 | tBytes:
			if m.Answers == nil {
				m.Answers = d.answers[:0]
			}
			m.Answers = append(m.Answers, d.bytes(f.v))
		case 5<<3 | tVarint:
			m.IsResponseSeen = f.u != 0
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return f.done()
}

func (d *flowDecoder) tlsInfo(m *flowpb.TLSInfo, b []byte) bool {
	f := fields{b: b}
	for f.next() {
		ok := true
		switch f.tag {
		case 1<<3 | tBytes:
			m.Sni, ok = d.str(f.v, true)
		case 2<<3 | tBytes:
			var s string
			if s, ok = d.str(f.v, true); ok {
				if m.Alpn == nil {
					m.Alpn = d.alpn[:0]
				}
				m.Alpn = append(m.Alpn, s)
			}
		case 3<<3 | tVarint:
			m.Version = uint32(f.u)
		case 4<<3 | tVarint:
			m.Quic = f.u != 0
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return f.done()
}

func (d *flowDecoder) httpInfo(m *flowpb.HTTPInfo, b []byte) bool {
	f := fields{b: b}
	for f.next() {
		ok := true
		switch f.tag {
		case 1<<3 | tBytes:
			m.Method, ok = d.str(f.v, true)
		case 2<<3 | tBytes:
			m.Host, ok = d.str(f.v, true)
		case 3<<3 | tBytes:
			m.Path, ok = d.str(f.v, false)
		case 4<<3 | tBytes:
			m.UserAgent, ok = d.str(f.v, true)
		case 5<<3 | tBytes:
			if d.nHeader == len(d.headerPool) {
				d.headerPool = append(d.headerPool, &flowpb.HTTPHeader{})
			}
			h := d.headerPool[d.nHeader]
			d.nHeader++
			h.Reset()
			if m.Headers == nil {
				m.Headers = d.headers[:0]
			}
			m.Headers = append(m.Headers, h)
			ok = d.httpHeader(h, f.v)
		case 6<<3 | tBytes:
			m.BodyPrefix = d.bytes(f.v)
		case 7<<3 | tBytes:
			m.ContentType, ok = d.str(f.v, true)
		case 8<<3 | tBytes:
			m.ContentEncoding, ok = d.str(f.v, true)
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return f.done()
}

func (d *flowDecoder) httpHeader(m *flowpb.HTTPHeader, b []byte) bool {
	f := fields{b: b}
	for f.next() {
		ok := true
		switch f.tag {
		case 1<<3 | tBytes:
			m.Name, ok = d.str(f.v, true)
		case 2<<3 | tBytes:
			m.Value, ok = d.str(f.v, true)
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return f.done()
}

func (d *flowDecoder) snippet(m *flowpb.Snippet, b []byte) bool {
	f := fields{b: b}
	for f.next() {
		switch f.tag {
		case 1<<3 | tVarint:
			m.Direction = flowpb.Direction(int32(f.u))
		case 2<<3 | tVarint:
			m.PacketIndex = uint32(f.u)
		case 3<<3 | tVarint:
			m.StreamOffset = uint32(f.u)
		case 4<<3 | tBytes:
			m.Data = d.bytes(f.v)
		case 5<<3 | tVarint:
			m.Truncated = f.u != 0
		default:
			return false
		}
	}
	return f.done()
}

func (d *flowDecoder) enrichment(m *flowpb.Enrichment, b []byte) bool {
	f := fields{b: b}
	for f.next() {
		ok := true
		switch f.tag {
		case 1<<3 | tBytes:
			if m.SrcGeo == nil {
				if d.srcGeo == nil {
					d.srcGeo = &flowpb.Geo{}
				}
				d.srcGeo.Reset()
				m.SrcGeo = d.srcGeo
			}
			ok = d.geo(m.SrcGeo, f.v)
		case 2<<3 | tBytes:
			if m.DstGeo == nil {
				if d.dstGeo == nil {
					d.dstGeo = &flowpb.Geo{}
				}
				d.dstGeo.Reset()
				m.DstGeo = d.dstGeo
			}
			ok = d.geo(m.DstGeo, f.v)
		case 3<<3 | tBytes:
			if m.Device == nil {
				if d.device == nil {
					d.device = &flowpb.Device{}
				}
				d.device.Reset()
				m.Device = d.device
			}
			ok = d.deviceInfo(m.Device, f.v)
		case 4<<3 | tBytes:
			if d.nMatch == len(d.matchPool) {
				d.matchPool = append(d.matchPool, &flowpb.IdentifierMatch{})
			}
			im := d.matchPool[d.nMatch]
			d.nMatch++
			im.Reset()
			if m.Matches == nil {
				m.Matches = d.matches[:0]
			}
			m.Matches = append(m.Matches, im)
			ok = d.match(im, f.v)
		case 5<<3 | tVarint:
			m.Cleartext = f.u != 0
		case 6<<3 | tVarint:
			m.EnrichedNs = int64(f.u)
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return f.done()
}

func (d *flowDecoder) geo(m *flowpb.Geo, b []byte) bool {
	f := fields{b: b}
	for f.next() {
		ok := true
		switch f.tag {
		case 1<<3 | tVarint:
			m.AddrClass = flowpb.AddrClass(int32(f.u))
		case 2<<3 | tBytes:
			m.Country, ok = d.str(f.v, true)
		case 3<<3 | tBytes:
			m.City, ok = d.str(f.v, true)
		case 4<<3 | tFixed:
			m.Latitude = math.Float64frombits(f.u)
		case 5<<3 | tFixed:
			m.Longitude = math.Float64frombits(f.u)
		case 6<<3 | tVarint:
			m.Asn = uint32(f.u)
		case 7<<3 | tBytes:
			m.Org, ok = d.str(f.v, true)
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return f.done()
}

func (d *flowDecoder) deviceInfo(m *flowpb.Device, b []byte) bool {
	f := fields{b: b}
	for f.next() {
		ok := true
		switch f.tag {
		case 1<<3 | tBytes:
			m.Id, ok = d.str(f.v, true)
		case 2<<3 | tBytes:
			m.Model, ok = d.str(f.v, true)
		case 3<<3 | tBytes:
			m.Group, ok = d.str(f.v, true)
		case 4<<3 | tBytes:
			m.OsVersion, ok = d.str(f.v, true)
		case 5<<3 | tBytes:
			m.AttributedBy, ok = d.str(f.v, true)
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return f.done()
}

func (d *flowDecoder) match(m *flowpb.IdentifierMatch, b []byte) bool {
	f := fields{b: b}
	for f.next() {
		ok := true
		switch f.tag {
		case 1<<3 | tBytes:
			m.DeviceId, ok = d.str(f.v, true)
		case 2<<3 | tBytes:
			m.IdentifierType, ok = d.str(f.v, true)
		case 3<<3 | tBytes:
			m.Form, ok = d.str(f.v, true)
		case 4<<3 | tBytes:
			m.Field, ok = d.str(f.v, true)
		case 5<<3 | tVarint:
			m.Offset = uint32(f.u)
		case 6<<3 | tVarint:
			m.Cleartext = f.u != 0
		case 7<<3 | tVarint:
			m.Layers = uint32(f.u)
		case 8<<3 | tVarint:
			m.Length = uint32(f.u)
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return f.done()
}
