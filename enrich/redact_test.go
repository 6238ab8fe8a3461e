package enrich

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/sim"
)

// plainForms lists v and the shapes it is commonly sent in, all of which
// must be absent from a redacted record.
func plainForms(v string) []string {
	sum1, sum5, sum256 := sha1.Sum([]byte(v)), md5.Sum([]byte(v)), sha256.Sum256([]byte(v))
	fs := []string{
		v, strings.ToLower(v), strings.ToUpper(v), url.QueryEscape(v),
		base64.StdEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v)),
		hex.EncodeToString([]byte(v)),
		hex.EncodeToString(sum1[:]), strings.ToUpper(hex.EncodeToString(sum1[:])),
		hex.EncodeToString(sum5[:]), hex.EncodeToString(sum256[:]),
	}
	return fs
}

// leaked returns the forms of v found in the record's protobuf encoding
// (bytes fields appear verbatim there) or its JSON mapping.
func leaked(t *testing.T, rec *flowpb.FlowRecord, v string) []string {
	t.Helper()
	pb, err := proto.Marshal(rec)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	js, err := protojson.Marshal(rec)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	var out []string
	for _, f := range plainForms(v) {
		if bytes.Contains(pb, []byte(f)) || bytes.Contains(js, []byte(f)) {
			out = append(out, f)
		}
	}
	return out
}

// fieldValue returns the value of the record field a match names (the
// first header value of that name; the first snippet of that direction).
func fieldValue(rec *flowpb.FlowRecord, field string) []byte {
	switch field {
	case ident.FieldDNSQuery:
		return []byte(rec.GetDns().GetQueryName())
	case ident.FieldTLSSNI:
		return []byte(rec.GetTls().GetSni())
	case ident.FieldHTTPPath:
		return []byte(rec.GetHttp().GetPath())
	case ident.FieldHTTPHost:
		return []byte(rec.GetHttp().GetHost())
	case ident.FieldHTTPUA:
		return []byte(rec.GetHttp().GetUserAgent())
	case ident.FieldHTTPBody:
		return rec.GetHttp().GetBodyPrefix()
	case ident.FieldSnippetOut, ident.FieldSnippetIn:
		for _, s := range rec.Snippets {
			if (s.Direction == flowpb.Direction_DIRECTION_INBOUND) == (field == ident.FieldSnippetIn) {
				return s.Data
			}
		}
		return nil
	}
	for _, h := range rec.GetHttp().GetHeaders() {
		if "http.header."+strings.ToLower(h.Name) == field {
			return []byte(h.Value)
		}
	}
	return nil
}

// placements put v into one field of a record, as apps send it.
var placements = []struct {
	field string
	put   func(r *flowpb.FlowRecord, v string)
}{
	{ident.FieldDNSQuery, func(r *flowpb.FlowRecord, v string) {
		r.Protocol, r.DstPort = 17, 53
		r.Dns = &flowpb.DNSInfo{QueryName: strings.ToLower(v) + ".t.example.com", QueryType: 16}
	}},
	{ident.FieldTLSSNI, func(r *flowpb.FlowRecord, v string) {
		r.DstPort = 443
		r.Tls = &flowpb.TLSInfo{Sni: strings.ToLower(v) + ".cdn.example.net", Alpn: []string{"h2"}, Version: 0x0304}
	}},
	{ident.FieldHTTPPath, func(r *flowpb.FlowRecord, v string) {
		r.Http = &flowpb.HTTPInfo{Method: "GET", Host: "api.example.com", Path: "/v1/collect?id=" + v + "&t=1"}
	}},
	{ident.FieldHTTPHost, func(r *flowpb.FlowRecord, v string) {
		r.Http = &flowpb.HTTPInfo{Method: "GET", Host: strings.ToLower(v) + ".example.com", Path: "/"}
	}},
	{ident.FieldHTTPUA, func(r *flowpb.FlowRecord, v string) {
		r.Http = &flowpb.HTTPInfo{Method: "GET", Host: "api.example.com", Path: "/", UserAgent: "Acme/2.1 (Android 13; " + v + ")"}
	}},
	{"http.header.x-device-id", func(r *flowpb.FlowRecord, v string) {
		r.Http = &flowpb.HTTPInfo{Method: "GET", Host: "api.example.com", Path: "/", Headers: []*flowpb.HTTPHeader{
			{Name: "Accept", Value: "application/json"}, {Name: "X-Device-Id", Value: v}, {Name: "Connection", Value: "close"}}}
	}},
	{ident.FieldHTTPBody, func(r *flowpb.FlowRecord, v string) {
		r.Http = &flowpb.HTTPInfo{Method: "POST", Host: "api.example.com", Path: "/e", ContentType: "application/json",
			BodyPrefix: []byte(`{"event":"open","id":"` + v + `","n":3}`)}
	}},
	{ident.FieldSnippetOut, func(r *flowpb.FlowRecord, v string) {
		r.Snippets = []*flowpb.Snippet{{Direction: flowpb.Direction_DIRECTION_OUTBOUND,
			Data: []byte("POST /e HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nev=open&id=" + v + "&n=3")}}
	}},
	{ident.FieldSnippetIn, func(r *flowpb.FlowRecord, v string) {
		r.Snippets = []*flowpb.Snippet{
			{Direction: flowpb.Direction_DIRECTION_OUTBOUND, Data: []byte("GET /whoami HTTP/1.1\r\nHost: api.example.com\r\n\r\n")},
			{Direction: flowpb.Direction_DIRECTION_INBOUND, Data: []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"device\":\"" + v + "\"}")}}
	}},
}

type idCase struct{ typ, v string }

func deviceIDs(d *sim.Device) []idCase {
	return []idCase{
		{"imei", d.IMEI}, {"imsi", d.IMSI}, {"iccid", d.ICCID}, {"msisdn", d.MSISDN},
		{"wifi_mac", fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", d.MAC[0], d.MAC[1], d.MAC[2], d.MAC[3], d.MAC[4], d.MAC[5])},
		{"android_id", d.AndroidID}, {"advertising_id", d.AdID}, {"email", d.Email},
		{"serial", d.Serial}, {"canary", d.CanaryNumber},
	}
}

// TestRedactEveryIdentifierEveryField: each identifier of a device, in
// clear in each searched field, leaves the stage with its match recorded
// (type, field, offset, length; layer 0) and its bytes masked in place: no
// common form of it is left in the protobuf or JSON of the record, the
// mask covers exactly the match and the rest of the field is unchanged.
func TestRedactEveryIdentifierEveryField(t *testing.T) {
	fx := newFixture(t, 4)
	w := fx.e.NewWorker()
	d := fx.lab.Devices[1]
	for _, id := range deviceIDs(d) {
		for _, p := range placements {
			if id.typ == "email" && (p.field == ident.FieldDNSQuery || p.field == ident.FieldTLSSNI || p.field == ident.FieldHTTPHost) {
				// Glued into a host name an e-mail is one longer word-class
				// token, which the scanner does not match (a scanner
				// property, not redaction's).
				continue
			}
			t.Run(id.typ+"/"+p.field, func(t *testing.T) {
				rec := record(d, "36.110.10.10", "")
				p.put(rec, id.v)
				before := append([]byte(nil), fieldValue(rec, p.field)...)
				w.Enrich(rec)
				var m *flowpb.IdentifierMatch
				for _, x := range rec.Enrichment.Matches {
					if x.IdentifierType == id.typ && x.Field == p.field && x.DeviceId == d.ID && x.Layers == 0 {
						m = x
					}
				}
				if m == nil {
					t.Fatalf("no %s match in %s: %v", id.typ, p.field, rec.Enrichment.Matches)
				}
				if m.Form == "" {
					t.Fatalf("match without form: %v", m)
				}
				want := bytes.Index(bytes.ToLower(before), []byte(strings.ToLower(id.v)))
				if int(m.Offset) != want || int(m.Length) != len(id.v) {
					t.Fatalf("match at %d+%d, want %d+%d (%v)", m.Offset, m.Length, want, len(id.v), m)
				}
				after := fieldValue(rec, p.field)
				if len(after) != len(before) {
					t.Fatalf("field length changed: %q -> %q", before, after)
				}
				for i := range after {
					masked := i >= want && i < want+len(id.v)
					if masked && after[i] != maskByte || !masked && after[i] != before[i] {
						t.Fatalf("field after redaction %q (before %q), want exactly [%d,%d) masked", after, before, want, want+len(id.v))
					}
				}
				if l := leaked(t, rec, id.v); len(l) > 0 {
					t.Fatalf("identifier still in the record as %q: %v", l, rec)
				}
			})
		}
	}
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.Bytes()
}

// TestRedactLayered: matches under decoding layers (base64, URL encoding,
// gzip body) mask the whole value of their field, which keeps its length.
func TestRedactLayered(t *testing.T) {
	fx := newFixture(t, 4)
	w := fx.e.NewWorker()
	d := fx.lab.Devices[2]
	js := `{"imei":"` + d.IMEI + `","aid":"` + d.AndroidID + `"}`
	cases := []struct {
		name, field string
		put         func(r *flowpb.FlowRecord)
	}{
		{"base64 path", ident.FieldHTTPPath, func(r *flowpb.FlowRecord) {
			r.Http = &flowpb.HTTPInfo{Method: "GET", Host: "t.example.com", Path: "/p?d=" + base64.StdEncoding.EncodeToString([]byte(js))}
		}},
		{"url-encoded header", "http.header.x-payload", func(r *flowpb.FlowRecord) {
			r.Http = &flowpb.HTTPInfo{Method: "GET", Host: "t.example.com", Path: "/", Headers: []*flowpb.HTTPHeader{
				{Name: "Accept", Value: "*/*"}, {Name: "X-Payload", Value: percentAll(js)}}}
		}},
		{"gzip body", ident.FieldHTTPBody, func(r *flowpb.FlowRecord) {
			r.Http = &flowpb.HTTPInfo{Method: "POST", Host: "t.example.com", Path: "/up", ContentEncoding: "gzip", BodyPrefix: gzipped(t, js)}
		}},
		{"base64 snippet", ident.FieldSnippetOut, func(r *flowpb.FlowRecord) {
			r.Snippets = []*flowpb.Snippet{
				{Direction: flowpb.Direction_DIRECTION_OUTBOUND, Data: []byte("d=" + base64.URLEncoding.EncodeToString([]byte(js)))},
				{Direction: flowpb.Direction_DIRECTION_INBOUND, Data: []byte("HTTP/1.1 204 No Content\r\n\r\n")},
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := record(d, "36.110.10.10", "")
			c.put(rec)
			n := len(fieldValue(rec, c.field))
			var in []byte
			if len(rec.Snippets) > 1 {
				in = append([]byte(nil), rec.Snippets[1].Data...)
			}
			w.Enrich(rec)
			found := false
			for _, m := range rec.Enrichment.Matches {
				if m.Field == c.field && m.IdentifierType == "imei" && m.Layers > 0 && m.Length == uint32(len(d.IMEI)) {
					found = true
				}
			}
			if !found {
				t.Fatalf("no layered imei match in %s: %v", c.field, rec.Enrichment.Matches)
			}
			if got := fieldValue(rec, c.field); string(got) != strings.Repeat("*", n) {
				t.Fatalf("%s after redaction %q, want %d '*'", c.field, got, n)
			}
			if in != nil && !bytes.Equal(rec.Snippets[1].Data, in) {
				t.Fatalf("inbound snippet without match changed: %q", rec.Snippets[1].Data)
			}
			for _, v := range []string{d.IMEI, d.AndroidID} {
				if l := leaked(t, rec, v); len(l) > 0 {
					t.Fatalf("identifier still in the record as %q", l)
				}
			}
			if bytes.Contains(mustMarshal(t, rec), []byte(base64.StdEncoding.EncodeToString([]byte(js))[:16])) {
				t.Fatal("encoded payload still in the record")
			}
		})
	}
}

// percentAll percent-encodes every byte of s (as some SDKs do), so nothing
// of s is visible before URL decoding.
func percentAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRedactRepeatsAndSharedNames: the scanner reports an identifier once
// per field and form, so its repeats are masked by value, in every field;
// a field name shared by several values (two outbound snippets, a repeated
// header) masks only the value the match can lie in.
func TestRedactRepeatsAndSharedNames(t *testing.T) {
	fx := newFixture(t, 4)
	w := fx.e.NewWorker()
	d := fx.lab.Devices[0]
	first := "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	second := "q=" + d.IMEI + "&r=" + d.IMEI + "&s=1"
	rec := record(d, "36.110.10.10", "")
	rec.Snippets = []*flowpb.Snippet{
		{Direction: flowpb.Direction_DIRECTION_OUTBOUND, Data: []byte(first)},
		{Direction: flowpb.Direction_DIRECTION_OUTBOUND, PacketIndex: 1, Data: []byte(second)},
	}
	rec.Http = &flowpb.HTTPInfo{Method: "GET", Host: "x", Path: "/a", Headers: []*flowpb.HTTPHeader{
		{Name: "X-Id", Value: "none"}, {Name: "X-Id", Value: d.AndroidID}, {Name: "X-Other", Value: "k=" + d.IMEI}}}
	w.Enrich(rec)
	if got := string(rec.Snippets[0].Data); got != first {
		t.Fatalf("snippet without the identifier changed: %q", got)
	}
	if got, want := string(rec.Snippets[1].Data), "q="+strings.Repeat("*", 15)+"&r="+strings.Repeat("*", 15)+"&s=1"; got != want {
		t.Fatalf("snippet %q, want %q", got, want)
	}
	hs := rec.Http.Headers
	if hs[0].Value != "none" || hs[1].Value != strings.Repeat("*", len(d.AndroidID)) || hs[2].Value != "k="+strings.Repeat("*", 15) {
		t.Fatalf("headers %v", hs)
	}
	for _, v := range []string{d.IMEI, d.AndroidID} {
		if l := leaked(t, rec, v); len(l) > 0 {
			t.Fatalf("identifier still in the record as %q", l)
		}
	}
}

// noMatchRecord carries payload in every searched field but no identifier.
func noMatchRecord(d *sim.Device) *flowpb.FlowRecord {
	rec := record(d, "142.250.74.36", "POST /v2/events?app=com.example.game&session=8f14e45fceea167a5a36dedd4bea2543 HTTP/1.1\r\nHost: api.example.com\r\n\r\n{\"ev\":1}")
	rec.Dns = &flowpb.DNSInfo{QueryName: "api.example.com", QueryType: 1}
	rec.Tls = &flowpb.TLSInfo{Sni: "api.example.com"}
	rec.Http = &flowpb.HTTPInfo{Method: "POST", Host: "api.example.com", Path: "/v2/events?app=com.example.game", UserAgent: "Dalvik/2.1.0",
		Headers: []*flowpb.HTTPHeader{{Name: "Cookie", Value: "sid=a9993e364706816aba3e25717850c26c9cd0d89d"}}, BodyPrefix: []byte(`{"ev":1}`)}
	return rec
}

// TestNoMatchUntouched: a record without matches is byte-identical after
// the stage except for its enrichment, and keeps its very strings and
// slices; enriching it allocates nothing.
func TestNoMatchUntouched(t *testing.T) {
	fx := newFixture(t, 4)
	w := fx.e.NewWorker()
	rec := noMatchRecord(fx.lab.Devices[0])
	want := mustMarshal(t, rec)
	path, snip := rec.Http.Path, rec.Snippets[0].Data
	w.Enrich(rec)
	if len(rec.Enrichment.Matches) != 0 {
		t.Fatalf("unexpected matches %v", rec.Enrichment.Matches)
	}
	en := rec.Enrichment
	rec.Enrichment = nil
	if got := mustMarshal(t, rec); !bytes.Equal(got, want) {
		t.Fatalf("record changed:\n got %x\nwant %x", got, want)
	}
	if &snip[0] != &rec.Snippets[0].Data[0] || path != rec.Http.Path {
		t.Fatal("unchanged fields were replaced")
	}
	rec.Enrichment = en
	if a := testing.AllocsPerRun(200, func() { w.Enrich(rec) }); a != 0 {
		t.Fatalf("%v allocs per no-match record", a)
	}
}

// TestRedactDoesNotWriteInputs: redaction replaces values, never writes
// the bytes the record pointed to (decoder strings are shared arena
// memory; byte fields may belong to the producer).
func TestRedactDoesNotWriteInputs(t *testing.T) {
	fx := newFixture(t, 4)
	w := fx.e.NewWorker()
	d := fx.lab.Devices[3]
	data := []byte("imei=" + d.IMEI)
	body := []byte(`{"id":"` + d.IMEI + `"}`)
	keep := string(data) + string(body)
	rec := record(d, "36.110.10.10", "")
	rec.Snippets = []*flowpb.Snippet{{Direction: flowpb.Direction_DIRECTION_OUTBOUND, Data: data}}
	path := "/c?imei=" + d.IMEI
	rec.Http = &flowpb.HTTPInfo{Method: "GET", Host: "x", Path: path, BodyPrefix: body}
	pathCopy := strings.Clone(path)
	w.Enrich(rec)
	if string(data)+string(body) != keep || path != pathCopy {
		t.Fatal("redaction wrote into the record's original bytes")
	}
	if rec.Http.Path == path || bytes.Equal(rec.Snippets[0].Data, data) {
		t.Fatal("not redacted")
	}
}

// TestRedactOff: with enrich.redact off the identifiers stay (and the leak
// check above sees them), matches are still recorded.
func TestRedactOff(t *testing.T) {
	fx := newFixture(t, 4)
	fx.e.SetConfig(Config{Redact: false})
	w := fx.e.NewWorker()
	d := fx.lab.Devices[1]
	rec := record(d, "36.110.10.10", "")
	placements[2].put(rec, d.IMEI)
	w.Enrich(rec)
	if len(rec.Enrichment.Matches) == 0 || len(leaked(t, rec, d.IMEI)) == 0 {
		t.Fatalf("redaction off: matches %v, path %q", rec.Enrichment.Matches, rec.Http.Path)
	}
}

// BenchmarkEnrichRedact: records with an IMEI in the snippet and the path
// (the match path: scan plus redaction).
func BenchmarkEnrichRedact(b *testing.B) {
	fx := newFixture(b, 1000)
	w := fx.e.NewWorker()
	recs := make([]*flowpb.FlowRecord, 256)
	for i := range recs {
		d := fx.lab.Devices[i%len(fx.lab.Devices)]
		recs[i] = record(d, "36.110.10.10", "GET /c?imei="+d.IMEI+" HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
		recs[i].Http = &flowpb.HTTPInfo{Method: "GET", Host: "api.example.com", Path: "/c?imei=" + d.IMEI}
	}
	orig := make([]*flowpb.FlowRecord, len(recs))
	for i, r := range recs {
		orig[i] = proto.Clone(r).(*flowpb.FlowRecord)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r := recs[i%len(recs)]
		o := orig[i%len(recs)]
		r.Snippets[0].Data, r.Http.Path = o.Snippets[0].Data, o.Http.Path
		w.Enrich(r)
	}
}

// FuzzRedact: arbitrary field values and matches (any field name, offset,
// length, layers) never panic, keep every value's length and UTF-8
// validity, only ever turn bytes into '*', and mask the span of a layer-0
// match in a single-valued field when it fits.
func FuzzRedact(f *testing.F) {
	f.Add("/c?id=356938035643809", []byte("imei=356938035643809"), "X-Id", "353", ident.FieldHTTPPath, uint32(6), uint32(15), uint32(0))
	f.Add("/p", []byte("d=eyJpbWVpIjoiMzU2OTM4MDM1NjQzODA5In0="), "a", "b", ident.FieldSnippetOut, uint32(3), uint32(15), uint32(1))
	f.Add("/é", []byte{0xff}, "X-Id", "v=ünïcode", "http.header.x-id", uint32(3), uint32(2), uint32(0))
	f.Fuzz(func(t *testing.T, path string, snip []byte, hname, hval, field string, off, n, layers uint32) {
		if !utf8.ValidString(path) || !utf8.ValidString(hname) || !utf8.ValidString(hval) {
			return
		}
		rec := &flowpb.FlowRecord{
			Dns:  &flowpb.DNSInfo{QueryName: path},
			Http: &flowpb.HTTPInfo{Path: path, Host: hval, Headers: []*flowpb.HTTPHeader{{Name: hname, Value: hval}, {Name: hname, Value: path}}, BodyPrefix: snip},
			Snippets: []*flowpb.Snippet{
				{Direction: flowpb.Direction_DIRECTION_OUTBOUND, Data: snip},
				{Direction: flowpb.Direction_DIRECTION_INBOUND, Data: []byte(path)},
			},
		}
		before := proto.Clone(rec).(*flowpb.FlowRecord)
		m := &flowpb.IdentifierMatch{Field: field, Offset: off, Length: n, Layers: layers}
		var r redactor
		r.redact(rec, []*flowpb.IdentifierMatch{m})
		if _, err := proto.Marshal(rec); err != nil {
			t.Fatalf("redacted record does not marshal: %v", err)
		}
		check := func(name string, b, a []byte) {
			if len(a) != len(b) {
				t.Fatalf("%s: length %d -> %d", name, len(b), len(a))
			}
			for i := range a {
				if a[i] != b[i] && a[i] != maskByte {
					t.Fatalf("%s: byte %d %q -> %q", name, i, b[i], a[i])
				}
			}
		}
		check("dns", []byte(before.Dns.QueryName), []byte(rec.Dns.QueryName))
		check("path", []byte(before.Http.Path), []byte(rec.Http.Path))
		check("host", []byte(before.Http.Host), []byte(rec.Http.Host))
		check("body", before.Http.BodyPrefix, rec.Http.BodyPrefix)
		for i := range rec.Http.Headers {
			check("header", []byte(before.Http.Headers[i].Value), []byte(rec.Http.Headers[i].Value))
		}
		for i := range rec.Snippets {
			check("snippet", before.Snippets[i].Data, rec.Snippets[i].Data)
		}
		if layers == 0 && n > 0 && field == ident.FieldHTTPPath && uint64(off)+uint64(n) <= uint64(len(path)) {
			for _, c := range []byte(rec.Http.Path[off : off+n]) {
				if c != maskByte {
					t.Fatalf("path %q: span %d+%d not masked", rec.Http.Path, off, n)
				}
			}
		}
	})
}

// TestRedactUnlocatedMatch: matches the record does not place exactly err
// on the side of masking: an unknown header name masks every header value,
// a span outside its field the whole field, a span that fits in two
// snippets of its direction both (and is not swept elsewhere).
func TestRedactUnlocatedMatch(t *testing.T) {
	rec := &flowpb.FlowRecord{
		Http: &flowpb.HTTPInfo{Path: "/short", Headers: []*flowpb.HTTPHeader{{Name: "A", Value: "one"}, {Name: "B", Value: "two"}}},
		Snippets: []*flowpb.Snippet{
			{Direction: flowpb.Direction_DIRECTION_OUTBOUND, Data: []byte("x=111122223333")},
			{Direction: flowpb.Direction_DIRECTION_OUTBOUND, Data: []byte("y=444455556666")},
			{Direction: flowpb.Direction_DIRECTION_INBOUND, Data: []byte("z=111122223333")},
		},
	}
	var r redactor
	r.redact(rec, []*flowpb.IdentifierMatch{
		{Field: "http.header.x-gone", Offset: 0, Length: 3},
		{Field: ident.FieldHTTPPath, Offset: 4, Length: 10},
		{Field: ident.FieldSnippetOut, Offset: 2, Length: 12},
	})
	h := rec.Http
	if h.Headers[0].Value != "***" || h.Headers[1].Value != "***" || h.Path != "******" {
		t.Fatalf("headers %v, path %q", h.Headers, h.Path)
	}
	for i, want := range []string{"x=************", "y=************", "z=111122223333"} {
		if got := string(rec.Snippets[i].Data); got != want {
			t.Fatalf("snippet %d %q, want %q", i, got, want)
		}
	}
}
