package ident_test

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

const testSecret = "test-secret-0123456789"

// labID is one inventory identifier plus the base shapes the test expects,
// written out by hand (not computed by the package). Access points (device
// "ap:...", types bssid and ssid) are configured as cfg.AccessPoints.
type labID struct {
	dev   string
	typ   ident.Type
	value string
	bases map[string]string
}

var lab = []labID{
	{"lab-0007", ident.TypeIMEI, "865123456789018", map[string]string{
		"digits": "865123456789018", "imei14": "86512345678901", "imei14-0": "865123456789010"}},
	{"lab-0007", ident.TypeIMEISV, "8651234567890123", map[string]string{
		"digits": "8651234567890123", "imei14": "86512345678901"}},
	{"lab-0007", ident.TypeIMSI, "404450123456789", map[string]string{"digits": "404450123456789"}},
	{"lab-0007", ident.TypeICCID, "8991000912345678907", map[string]string{
		"digits": "8991000912345678907", "iccid-f": "8991000912345678907F"}},
	{"lab-0007", ident.TypeMSISDN, "+919812345678", map[string]string{
		"e164": "+919812345678", "e164-noplus": "919812345678", "national": "9812345678",
		"national-trunk": "09812345678", "intl-00": "00919812345678"}},
	{"lab-0007", ident.TypeWiFiMAC, "a4:50:46:12:34:56", map[string]string{
		"colon-lower": "a4:50:46:12:34:56", "colon-upper": "A4:50:46:12:34:56",
		"dash-lower": "a4-50-46-12-34-56", "dash-upper": "A4-50-46-12-34-56",
		"no-sep-lower": "a45046123456", "no-sep-upper": "A45046123456", "dot-lower": "a450.4612.3456"}},
	{"lab-0007", ident.TypeBTMAC, "F4-F5-D8-9A-BC-DE", map[string]string{
		"colon-lower": "f4:f5:d8:9a:bc:de", "colon-upper": "F4:F5:D8:9A:BC:DE",
		"dash-lower": "f4-f5-d8-9a-bc-de", "dash-upper": "F4-F5-D8-9A-BC-DE",
		"no-sep-lower": "f4f5d89abcde", "no-sep-upper": "F4F5D89ABCDE", "dot-lower": "f4f5.d89a.bcde"}},
	{"lab-0007", ident.TypeAndroidID, "9774d56d682e549c", map[string]string{
		"lower": "9774d56d682e549c", "upper": "9774D56D682E549C"}},
	{"lab-0007", ident.TypeAdvertisingID, "38400000-8cf0-11bd-b23e-10b96e40000d", map[string]string{
		"lower": "38400000-8cf0-11bd-b23e-10b96e40000d", "upper": "38400000-8CF0-11BD-B23E-10B96E40000D",
		"no-sep-lower": "384000008cf011bdb23e10b96e40000d", "no-sep-upper": "384000008CF011BDB23E10B96E40000D"}},
	// A MEID stored with its check digit: the 14-digit shapes plus the raw value.
	{"lab-0007", ident.TypeMEID, "A100003C0FFEE15", map[string]string{
		"upper": "A100003C0FFEE1", "lower": "a100003c0ffee1", "raw": "A100003C0FFEE15"}},
	{"lab-0007", ident.TypeSerial, "R58M12ABCDE", map[string]string{"raw": "R58M12ABCDE", "lower": "r58m12abcde"}},
	{"lab-0007", ident.TypeEmail, "Lab0007@Example.com", map[string]string{"raw": "Lab0007@Example.com", "lower": "lab0007@example.com"}},
	{"lab-0007", ident.TypeCanary, "Canary Contact 7", map[string]string{"raw": "Canary Contact 7"}},
	{"lab-0007", ident.TypeCanary, "+447700900123", map[string]string{
		"e164": "+447700900123", "e164-noplus": "447700900123", "national-trunk": "07700900123",
		"national": "7700900123", "intl-00": "00447700900123"}},
	// A second device, so attribution between devices is checked too.
	{"lab-0008", ident.TypeIMEI, "356938035643809", map[string]string{
		"digits": "356938035643809", "imei14": "35693803564380", "imei14-0": "356938035643800"}},
	{"lab-0008", ident.TypeMSISDN, "+8613800138000", map[string]string{
		"e164": "+8613800138000", "e164-noplus": "8613800138000", "national": "13800138000",
		"national-trunk": "013800138000", "intl-00": "008613800138000"}},
	// The lab access point (a location side channel), from cfg.AccessPoints.
	{"ap:lab-5g", ident.TypeBSSID, "00:1a:2b:3c:4d:5e", map[string]string{
		"colon-lower": "00:1a:2b:3c:4d:5e", "colon-upper": "00:1A:2B:3C:4D:5E",
		"dash-lower": "00-1a-2b-3c-4d-5e", "dash-upper": "00-1A-2B-3C-4D-5E",
		"no-sep-lower": "001a2b3c4d5e", "no-sep-upper": "001A2B3C4D5E", "dot-lower": "001a.2b3c.4d5e"}},
	{"ap:lab-5g", ident.TypeSSID, "ExfilLab-5G", map[string]string{"raw": "ExfilLab-5G", "lower": "exfillab-5g"}},
}

// canonicalBases are the bases whose reversal is hashed and encoded like a
// base of its own (docs/identifiers.md); every other base is reversed as a
// plain string only.
var canonicalBases = map[ident.Type][]string{
	ident.TypeIMEI: {"digits"}, ident.TypeIMEISV: {"digits"}, ident.TypeIMSI: {"digits"},
	ident.TypeICCID: {"digits"}, ident.TypeMSISDN: {"e164", "e164-noplus"},
	ident.TypeCanary:  {"e164", "e164-noplus", "raw"},
	ident.TypeWiFiMAC: {"colon-lower"}, ident.TypeBTMAC: {"colon-lower"}, ident.TypeBSSID: {"colon-lower"},
	ident.TypeAndroidID: {"lower"}, ident.TypeAdvertisingID: {"lower"}, ident.TypeMEID: {"upper"},
	ident.TypeSerial: {"raw"}, ident.TypeEmail: {"raw"}, ident.TypeSSID: {"raw"},
}

func isCanonical(t ident.Type, b string) bool {
	for _, c := range canonicalBases[t] {
		if c == b {
			return true
		}
	}
	return false
}

func buildLab(t testing.TB) *ident.Index {
	t.Helper()
	cfg := ident.DefaultConfig()
	cfg.Secret = testSecret
	var ids []ident.Identifier
	aps := map[string]*ident.AccessPoint{}
	for _, l := range lab {
		switch l.typ {
		case ident.TypeBSSID, ident.TypeSSID:
			ap := aps[l.dev]
			if ap == nil {
				cfg.AccessPoints = append(cfg.AccessPoints, ident.AccessPoint{Name: l.dev})
				ap = &cfg.AccessPoints[len(cfg.AccessPoints)-1]
				aps[l.dev] = ap
			}
			if l.typ == ident.TypeBSSID {
				ap.BSSID = l.value
			} else {
				ap.SSID = l.value
			}
		default:
			ids = append(ids, ident.Identifier{Device: l.dev, Type: l.typ, Value: l.value})
		}
	}
	idx, errs, err := ident.BuildIndex(cfg, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		t.Errorf("build: %v", e)
	}
	return idx
}

// transformNames lists the transforms in expansion order ("" is none).
var transformNames = []string{"",
	"md5-hex-lower", "md5-base64", "md5-base64-url-nopad",
	"sha1-hex-lower", "sha1-base64", "sha1-base64-url-nopad",
	"sha256-hex-lower", "sha256-base64", "sha256-base64-url-nopad",
	"sha512-hex-lower", "sha512-base64", "sha512-base64-url-nopad",
	"base64", "base64-nopad", "base64-url", "base64-url-nopad", "urlenc", "hex"}

// transforms computes every transform of s with the standard library: the
// strings each transform name stands for (urlenc may be a query and a path
// escape; it is absent when escaping changes nothing). The *-hex-upper
// names are the upper-case spelling of the same digest (hex is matched
// case-insensitively and reported in the case seen).
func transforms(s string) map[string][]string {
	out := map[string][]string{"": {s}}
	m := md5.Sum([]byte(s))
	s1 := sha1.Sum([]byte(s))
	s2 := sha256.Sum256([]byte(s))
	s5 := sha512.Sum512([]byte(s))
	for n, d := range map[string][]byte{"md5": m[:], "sha1": s1[:], "sha256": s2[:], "sha512": s5[:]} {
		out[n+"-hex-lower"] = []string{hex.EncodeToString(d)}
		out[n+"-hex-upper"] = []string{strings.ToUpper(hex.EncodeToString(d))}
		out[n+"-base64"] = []string{base64.StdEncoding.EncodeToString(d)}
		out[n+"-base64-url-nopad"] = []string{base64.RawURLEncoding.EncodeToString(d)}
	}
	out["base64"] = []string{base64.StdEncoding.EncodeToString([]byte(s))}
	out["base64-nopad"] = []string{base64.RawStdEncoding.EncodeToString([]byte(s))}
	out["base64-url"] = []string{base64.URLEncoding.EncodeToString([]byte(s))}
	out["base64-url-nopad"] = []string{base64.RawURLEncoding.EncodeToString([]byte(s))}
	if q := url.QueryEscape(s); q != s {
		out["urlenc"] = []string{q}
		if p := url.PathEscape(s); p != q && p != s {
			out["urlenc"] = append(out["urlenc"], p)
		}
	}
	out["hex"] = []string{hex.EncodeToString([]byte(s))}
	out["hex-upper"] = []string{strings.ToUpper(hex.EncodeToString([]byte(s)))}
	return out
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// baseString is the string of base name b (possibly "<b>/reversed").
func baseString(l labID, b string) (string, bool) {
	name, rev := strings.CutSuffix(b, "/reversed")
	var s string
	switch name {
	case "raw-upper":
		s = strings.ToUpper(l.value)
	case "raw":
		s = l.value
		if v, ok := l.bases["raw"]; ok {
			s = v
		}
	default:
		v, ok := l.bases[name]
		if !ok || v == "" {
			return "", false
		}
		s = v
	}
	if rev {
		s = reverse(s)
	}
	return s, true
}

// formStrings recomputes, independently, the strings a reported form name
// stands for: "<base>[/reversed][/<transform>]".
func formStrings(l labID, name string) []string {
	parts := strings.Split(name, "/")
	b, tr := parts[0], ""
	rest := parts[1:]
	if len(rest) > 0 && rest[0] == "reversed" {
		b += "/reversed"
		rest = rest[1:]
	}
	if len(rest) > 0 {
		tr = rest[0]
	}
	s, ok := baseString(l, b)
	if !ok {
		return nil
	}
	return transforms(s)[tr]
}

// expectedBases lists an identifier's bases as docs/identifiers.md states
// them: the hand-written shapes, then each shape reversed unless that gives
// a string already listed; the reversal is transformed only for canonical
// bases.
func expectedBases(l labID) (names []string, transformed map[string]bool) {
	seen := map[string]bool{}
	transformed = map[string]bool{}
	var order []string
	for b, v := range l.bases {
		if v != "" {
			order = append(order, b)
		}
	}
	sort.Strings(order)
	for _, b := range order {
		seen[l.bases[b]] = true
		names = append(names, b)
		transformed[b] = true
	}
	for _, b := range order {
		r := reverse(l.bases[b])
		if seen[r] {
			continue
		}
		seen[r] = true
		names = append(names, b+"/reversed")
		transformed[b+"/reversed"] = isCanonical(l.typ, b)
	}
	return names, transformed
}

// expectedForms is the independent form table of one identifier: every
// (form name, string) pair the index must hold (upper-case hex spellings
// excluded: they are the same entries, matched case-insensitively).
func expectedForms(l labID) map[[2]string]bool {
	out := map[[2]string]bool{}
	names, transformed := expectedBases(l)
	for _, b := range names {
		s, _ := baseString(l, b)
		tr := transforms(s)
		for _, tn := range transformNames {
			if tn != "" && !transformed[b] {
				break
			}
			name := b
			if tn != "" {
				name += "/" + tn
			}
			for _, v := range tr[tn] {
				out[[2]string{name, v}] = true
			}
		}
	}
	return out
}

// planted is one (identifier, form string) to find.
type planted struct {
	l    labID
	name string
	s    string
}

// allPlanted lists every form string of every lab identifier, the
// upper-case hex spellings included.
func allPlanted() []planted {
	var out []planted
	for _, l := range lab {
		pairs := expectedForms(l)
		keys := make([][2]string, 0, len(pairs))
		for k := range pairs {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i][0]+"\x00"+keys[i][1] < keys[j][0]+"\x00"+keys[j][1] })
		for _, k := range keys {
			out = append(out, planted{l, k[0], k[1]})
			up := ""
			switch {
			case strings.HasSuffix(k[0], "-hex-lower"):
				up = strings.TrimSuffix(k[0], "-lower") + "-upper"
			case strings.HasSuffix(k[0], "/hex"):
				up = k[0] + "-upper"
			}
			if up != "" {
				out = append(out, planted{l, up, strings.ToUpper(k[1])})
			}
		}
	}
	return out
}

// TestFormTableExact: the package expands each lab identifier into exactly
// the (form, string) pairs of the independent table above, no more (an
// untested form) and no fewer.
func TestFormTableExact(t *testing.T) {
	types := map[ident.Type]bool{}
	for _, l := range lab {
		types[l.typ] = true
		got, err := ident.ExpandForms(l.typ, l.value)
		if err != nil {
			t.Fatalf("%s %s: %v", l.dev, l.typ, err)
		}
		gotSet := map[[2]string]bool{}
		for _, p := range got {
			gotSet[p] = true
		}
		want := expectedForms(l)
		for p := range want {
			if !gotSet[p] {
				t.Errorf("%s %s: form %s = %q not produced", l.dev, l.typ, p[0], p[1])
			}
		}
		for p := range gotSet {
			if !want[p] {
				t.Errorf("%s %s: form %s = %q produced but not in the table", l.dev, l.typ, p[0], p[1])
			}
		}
	}
	for _, n := range ident.TypeNames() {
		if typ, _ := ident.ParseType(n); !types[typ] {
			t.Errorf("no lab identifier of type %s", n)
		}
	}
}

// ldhLabel: the form fits one DNS label / SNI host name label as is
// (letters, digits, inner hyphens, at most 63 characters).
var ldhLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// hexFolded: the scanner matches these characters case-insensitively.
var hexFolded = regexp.MustCompile(`^[0-9A-Fa-f:.-]+$`)

type carrier struct {
	name string
	// folded: the carrier loses case (hex forms are then reported in the
	// case seen, which may differ from the planted form's).
	folded bool
	// carry returns what the carrier puts on the wire for form string s
	// and whether it can carry it at all.
	carry func(s string) (string, bool)
	rec   func(s string) *flowpb.FlowRecord
}

// gzWriters reuses gzip writers: a new one allocates about 1 MB, which
// dominated the carrier tests' run time.
var gzWriters = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzWriters.Get().(*gzip.Writer)
	w.Reset(&buf)
	w.Write(b)
	w.Close()
	gzWriters.Put(w)
	return buf.Bytes()
}

func always(s string) (string, bool) { return s, true }

// dnsCarry: a DNS query name is case-insensitive and the collector records
// it lower-cased (collector/parse/dns.go), so a form is carried as its
// lower-case spelling, and only if that is still the form: digits, lower
// case, or hex (matched case-insensitively). Base64 with capitals is not.
func dnsCarry(s string) (string, bool) {
	q := strings.ToLower(s)
	return q, ldhLabel.MatchString(s) && (q == s || hexFolded.MatchString(s))
}

// sniCarry: the SNI host name is recorded as the client sent it.
func sniCarry(s string) (string, bool) { return s, ldhLabel.MatchString(s) }

var carriers = []carrier{
	{"http-get-query", false, always, func(s string) *flowpb.FlowRecord {
		return &flowpb.FlowRecord{Http: &flowpb.HTTPInfo{Method: "GET", Host: "api.example.net",
			Path: "/v1/ping?ts=1700000000&id=" + url.QueryEscape(s) + "&lang=en"}}
	}},
	{"http-json-post", false, always, func(s string) *flowpb.FlowRecord {
		body, _ := json.Marshal(map[string]any{"app": "com.example", "device": map[string]string{"id": s}, "n": 3})
		return &flowpb.FlowRecord{Http: &flowpb.HTTPInfo{Method: "POST", Path: "/collect",
			ContentType: "application/json", BodyPrefix: body}}
	}},
	{"http-json-post-gzip", false, always, func(s string) *flowpb.FlowRecord {
		body, _ := json.Marshal(map[string]any{"events": []any{map[string]string{"uid": s, "k": "v"}}})
		return &flowpb.FlowRecord{Http: &flowpb.HTTPInfo{Method: "POST", Path: "/collect",
			ContentType: "application/json", ContentEncoding: "gzip", BodyPrefix: gz(body)}}
	}},
	{"http-header", false, func(s string) (string, bool) { return s, !strings.ContainsAny(s, "\r\n") }, func(s string) *flowpb.FlowRecord {
		return &flowpb.FlowRecord{Http: &flowpb.HTTPInfo{Method: "GET", Path: "/",
			Headers: []*flowpb.HTTPHeader{{Name: "Accept", Value: "*/*"}, {Name: "X-Device-Id", Value: s}}}}
	}},
	{"dns-query-label", true, dnsCarry, func(s string) *flowpb.FlowRecord {
		return &flowpb.FlowRecord{Dns: &flowpb.DNSInfo{QueryName: s + ".t.tracker.example"}}
	}},
	{"tls-sni-label", false, sniCarry, func(s string) *flowpb.FlowRecord {
		return &flowpb.FlowRecord{Tls: &flowpb.TLSInfo{Sni: s + ".cdn.example.com"}}
	}},
	{"quic-sni-label", false, sniCarry, func(s string) *flowpb.FlowRecord {
		return &flowpb.FlowRecord{Tls: &flowpb.TLSInfo{Sni: "x." + s + ".q.example.net", Quic: true}}
	}},
}

// TestEveryFormEveryCarrier plants each form of each identifier in each
// carrier that can carry it and expects a match naming the right device and
// type, with a form whose independently computed string is exactly what was
// carried. Every form must be found in the HTTP query, both JSON bodies and
// the header; DNS and SNI carry the forms that fit a label (see dnsCarry,
// sniCarry and docs/identifiers.md).
func TestEveryFormEveryCarrier(t *testing.T) {
	idx := buildLab(t)
	sc := idx.NewScanner()
	total := 0
	perCarrier := map[string]int{}
	typeCarrier := map[string]bool{}
	for _, p := range allPlanted() {
		for _, c := range carriers {
			wire, ok := c.carry(p.s)
			if !ok {
				if strings.HasPrefix(c.name, "http-") {
					t.Errorf("%s cannot carry %s %s form %s", c.name, p.l.dev, p.l.typ, p.name)
				}
				continue
			}
			rec := c.rec(wire)
			sc.ScanRecord(rec)
			total++
			perCarrier[c.name]++
			found := false
			var got []string
			for _, m := range rec.GetEnrichment().GetMatches() {
				got = append(got, m.DeviceId+"/"+m.IdentifierType+"/"+m.Form+"@"+m.Field)
				if m.DeviceId != p.l.dev || m.IdentifierType != p.l.typ.String() {
					continue
				}
				for _, fs := range formStrings(p.l, m.Form) {
					found = found || fs == wire || c.folded && strings.EqualFold(fs, wire)
				}
			}
			if !found {
				t.Errorf("%s: %s %s form %s (%q) not matched; got %v", c.name, p.l.dev, p.l.typ, p.name, wire, got)
			}
			typeCarrier[p.l.typ.String()+"@"+c.name] = true
		}
	}
	for _, l := range lab {
		for _, c := range carriers {
			if !typeCarrier[l.typ.String()+"@"+c.name] {
				t.Errorf("no %s form carried by %s", l.typ, c.name)
			}
		}
	}
	if total < 10000 {
		t.Fatalf("only %d planted cases: the form table shrank", total)
	}
	t.Logf("%d cases: %v", total, perCarrier)
}

// luhn appends the Luhn check digit to d.
func luhn(d string) string {
	sum := 0
	for i := 0; i < len(d); i++ {
		n := int(d[len(d)-1-i] - '0')
		if i%2 == 0 {
			if n *= 2; n > 9 {
				n -= 9
			}
		}
		sum += n
	}
	return d + string(rune('0'+(10-sum%10)%10))
}

// keepsHexForm: m still contains, case-insensitively, a plain lab shape of
// 8+ characters that is not all digits. The scanner finds such shapes glued
// inside longer hex runs by design (windows over hex-with-separator runs),
// so m is no near miss: an MEID whose check digit changed is still the MEID.
func keepsHexForm(m string) bool {
	lm := strings.ToLower(m)
	for _, l := range lab {
		names, _ := expectedBases(l)
		for _, b := range names {
			v, _ := baseString(l, b)
			if len(v) >= 8 && strings.Trim(v, "0123456789") != "" && len(v) < len(m) && strings.Contains(lm, strings.ToLower(v)) {
				return true
			}
		}
	}
	return false
}

// TestNearMissesEveryCarrier: values one digit away from a lab identifier's
// shapes, valid IMEIs of other devices, and random 15-digit numbers, plain
// and in every transform, match nothing in any carrier.
func TestNearMissesEveryCarrier(t *testing.T) {
	idx := buildLab(t)
	sc := idx.NewScanner()
	legit := map[string]bool{}
	for _, p := range allPlanted() {
		legit[strings.ToLower(p.s)] = true
	}
	var near []string
	// A mutation can land on another base of the lab (an IMEI whose check
	// digit became 0 is its imei14-0 form): those are not near misses.
	bases := map[string]bool{}
	for _, l := range lab {
		names, _ := expectedBases(l)
		for _, b := range names {
			v, _ := baseString(l, b)
			bases[v] = true
		}
	}
	for _, l := range lab {
		names, transformed := expectedBases(l)
		for _, b := range names {
			v, _ := baseString(l, b)
			for i := 0; i < len(v); i++ {
				c := v[i]
				if c < '0' || c > '9' {
					continue
				}
				m := v[:i] + string(rune('0'+(c-'0'+1)%10)) + v[i+1:]
				var ms []string
				if !transformed[b] || !isCanonical(l.typ, strings.TrimSuffix(b, "/reversed")) {
					ms = []string{m}
				} else {
					for _, ss := range transforms(m) {
						ms = append(ms, ss...)
					}
				}
				if keepsHexForm(m) || bases[m] {
					continue
				}
				near = append(near, ms...)
			}
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var others []string
	others = append(others, "490154203237518", "352099001761481", "356938035643817")
	for range 200 {
		d := make([]byte, 14)
		for i := range d {
			d[i] = byte('0' + rng.IntN(10))
		}
		others = append(others, luhn(string(d)))
	}
	for _, o := range others {
		for _, ss := range transforms(o) {
			near = append(near, ss...)
		}
		for _, ss := range transforms(reverse(o)) {
			near = append(near, ss...)
		}
	}
	n := 0
	for _, s := range near {
		if legit[strings.ToLower(s)] {
			continue // e.g. a changed check digit can yield the IMEI14+"0" form
		}
		for _, c := range carriers {
			wire, ok := c.carry(s)
			if !ok {
				continue
			}
			rec := c.rec(wire)
			n++
			if sc.ScanRecord(rec) > 0 {
				var got []string
				for _, m := range rec.Enrichment.Matches {
					got = append(got, m.DeviceId+"/"+m.IdentifierType+"/"+m.Form)
				}
				t.Errorf("%s: near miss %q matched: %v", c.name, wire, got)
			}
		}
	}
	if n < 50000 {
		t.Fatalf("only %d near-miss cases", n)
	}
	t.Logf("%d near-miss cases", n)
}

// TestMatchesAreAttributedCorrectly checks that no match ever names a
// device/type whose identifier is not in the payload.
func TestMatchesAreAttributedCorrectly(t *testing.T) {
	idx := buildLab(t)
	sc := idx.NewScanner()
	for _, p := range allPlanted() {
		rec := carriers[0].rec(p.s)
		sc.ScanRecord(rec)
		for _, m := range rec.Enrichment.Matches {
			if m.DeviceId != p.l.dev {
				t.Errorf("planted %s of %s, matched device %s (%s %s)", p.name, p.l.dev, m.DeviceId, m.IdentifierType, m.Form)
			}
			if !m.Cleartext {
				t.Errorf("plain HTTP match not flagged cleartext")
			}
		}
	}
}
