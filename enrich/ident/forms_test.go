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
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

const testSecret = "test-secret-0123456789"

// labID is one inventory identifier plus the base shapes the test expects,
// written out by hand (not computed by the package).
type labID struct {
	dev   string
	typ   ident.Type
	value string
	bases map[string]string
}

var lab = []labID{
	{"lab-0007", ident.TypeIMEI, "865123456789018", map[string]string{
		"digits": "865123456789018", "imei14": "86512345678901", "imei14-0": "865123456789010"}},
	{"lab-0007", ident.TypeIMEISV, "8651234567890123", map[string]string{"digits": "8651234567890123"}},
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
	{"lab-0007", ident.TypeAndroidID, "9774d56d682e549c", map[string]string{
		"lower": "9774d56d682e549c", "upper": "9774D56D682E549C"}},
	{"lab-0007", ident.TypeAdvertisingID, "38400000-8cf0-11bd-b23e-10b96e40000d", map[string]string{
		"lower": "38400000-8cf0-11bd-b23e-10b96e40000d", "upper": "38400000-8CF0-11BD-B23E-10B96E40000D",
		"no-sep-lower": "384000008cf011bdb23e10b96e40000d", "no-sep-upper": "384000008CF011BDB23E10B96E40000D"}},
	{"lab-0007", ident.TypeSerial, "R58M12ABCDE", map[string]string{"raw": "R58M12ABCDE", "lower": "r58m12abcde"}},
	{"lab-0007", ident.TypeEmail, "Lab0007@Example.com", map[string]string{"raw": "Lab0007@Example.com", "lower": "lab0007@example.com"}},
	{"lab-0007", ident.TypeCanary, "Canary Contact 7", map[string]string{"raw": "Canary Contact 7"}},
	{"lab-0007", ident.TypeCanary, "+447700900123", map[string]string{
		"e164": "+447700900123", "e164-noplus": "447700900123", "national-trunk": "07700900123", "national": "7700900123"}},
	// A second device, so attribution between devices is checked too.
	{"lab-0008", ident.TypeIMEI, "356938035643809", map[string]string{
		"digits": "356938035643809", "imei14": "35693803564380", "imei14-0": "356938035643800"}},
	{"lab-0008", ident.TypeMSISDN, "+8613800138000", map[string]string{"e164": "+8613800138000", "national": "13800138000"}},
}

func buildLab(t testing.TB) *ident.Index {
	t.Helper()
	cfg := ident.DefaultConfig()
	cfg.Secret = testSecret
	var ids []ident.Identifier
	for _, l := range lab {
		ids = append(ids, ident.Identifier{Device: l.dev, Type: l.typ, Value: l.value})
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

// transforms computes every transform of s with the standard library.
func transforms(s string) map[string]string {
	out := map[string]string{"": s}
	digests := map[string][]byte{}
	m := md5.Sum([]byte(s))
	digests["md5"] = m[:]
	s1 := sha1.Sum([]byte(s))
	digests["sha1"] = s1[:]
	s2 := sha256.Sum256([]byte(s))
	digests["sha256"] = s2[:]
	s5 := sha512.Sum512([]byte(s))
	digests["sha512"] = s5[:]
	for n, d := range digests {
		out[n+"-hex-lower"] = hex.EncodeToString(d)
		out[n+"-hex-upper"] = strings.ToUpper(hex.EncodeToString(d))
		out[n+"-base64"] = base64.StdEncoding.EncodeToString(d)
		out[n+"-base64-url-nopad"] = base64.RawURLEncoding.EncodeToString(d)
	}
	out["base64"] = base64.StdEncoding.EncodeToString([]byte(s))
	out["base64-nopad"] = base64.RawStdEncoding.EncodeToString([]byte(s))
	out["base64-url"] = base64.URLEncoding.EncodeToString([]byte(s))
	out["base64-url-nopad"] = base64.RawURLEncoding.EncodeToString([]byte(s))
	if q := url.QueryEscape(s); q != s {
		out["urlenc"] = q
	}
	out["hex"] = hex.EncodeToString([]byte(s))
	out["hex-upper"] = strings.ToUpper(hex.EncodeToString([]byte(s)))
	return out
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// formString recomputes, independently, the string a reported form name
// stands for: "<base>[/reversed][/<transform>]".
func formString(l labID, name string) (string, bool) {
	parts := strings.Split(name, "/")
	b := parts[0]
	rev := len(parts) > 1 && parts[1] == "reversed"
	tr := ""
	if len(parts) > 1 && !rev {
		tr = parts[1]
	}
	if len(parts) > 2 {
		tr = parts[2]
	}
	var s string
	switch {
	case b == "raw-upper":
		s = strings.ToUpper(l.value)
	case b == "raw":
		s = l.value
	default:
		v, ok := l.bases[b]
		if !ok {
			return "", false
		}
		s = v
	}
	if rev {
		s = reverse(s)
	}
	v, ok := transforms(s)[tr]
	return v, ok
}

// planted is one (identifier, form string) to find.
type planted struct {
	l    labID
	name string
	s    string
}

func allPlanted() []planted {
	var out []planted
	for _, l := range lab {
		for bn, bv := range l.bases {
			for tn, tv := range transforms(bv) {
				name := bn
				if tn != "" {
					name += "/" + tn
				}
				out = append(out, planted{l, name, tv})
			}
			if r := reverse(bv); r != bv {
				out = append(out, planted{l, bn + "/reversed", r})
			}
		}
	}
	return out
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9-]{4,63}$`)

type carrier struct {
	name string
	ok   func(s string) bool
	rec  func(s string) *flowpb.FlowRecord
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

var carriers = []carrier{
	{"http-get-query", func(string) bool { return true }, func(s string) *flowpb.FlowRecord {
		return &flowpb.FlowRecord{Http: &flowpb.HTTPInfo{Method: "GET", Host: "api.example.net",
			Path: "/v1/ping?ts=1700000000&id=" + url.QueryEscape(s) + "&lang=en"}}
	}},
	{"http-json-post", func(string) bool { return true }, func(s string) *flowpb.FlowRecord {
		body, _ := json.Marshal(map[string]any{"app": "com.example", "device": map[string]string{"id": s}, "n": 3})
		return &flowpb.FlowRecord{Http: &flowpb.HTTPInfo{Method: "POST", Path: "/collect",
			ContentType: "application/json", BodyPrefix: body}}
	}},
	{"http-json-post-gzip", func(string) bool { return true }, func(s string) *flowpb.FlowRecord {
		body, _ := json.Marshal(map[string]any{"events": []any{map[string]string{"uid": s, "k": "v"}}})
		return &flowpb.FlowRecord{Http: &flowpb.HTTPInfo{Method: "POST", Path: "/collect",
			ContentType: "application/json", ContentEncoding: "gzip", BodyPrefix: gz(body)}}
	}},
	{"http-header", func(s string) bool { return !strings.ContainsAny(s, "\r\n") }, func(s string) *flowpb.FlowRecord {
		return &flowpb.FlowRecord{Http: &flowpb.HTTPInfo{Method: "GET", Path: "/",
			Headers: []*flowpb.HTTPHeader{{Name: "Accept", Value: "*/*"}, {Name: "X-Device-Id", Value: s}}}}
	}},
	{"dns-query-label", func(s string) bool { return dnsLabel.MatchString(s) }, func(s string) *flowpb.FlowRecord {
		return &flowpb.FlowRecord{Dns: &flowpb.DNSInfo{QueryName: s + ".t.tracker.example"}}
	}},
	{"tls-sni-label", func(s string) bool { return dnsLabel.MatchString(s) }, func(s string) *flowpb.FlowRecord {
		return &flowpb.FlowRecord{Tls: &flowpb.TLSInfo{Sni: "cdn-" + s + ".example.com"}}
	}},
}

// TestEveryFormEveryCarrier plants each form of each identifier in each
// carrier and expects a match naming the right device and type, with a form
// whose independently computed string is exactly what was planted.
func TestEveryFormEveryCarrier(t *testing.T) {
	idx := buildLab(t)
	sc := idx.NewScanner()
	total := 0
	for _, p := range allPlanted() {
		for _, c := range carriers {
			if !c.ok(p.s) {
				continue
			}
			rec := c.rec(p.s)
			sc.ScanRecord(rec)
			total++
			found := false
			var got []string
			for _, m := range rec.GetEnrichment().GetMatches() {
				got = append(got, m.DeviceId+"/"+m.IdentifierType+"/"+m.Form+"@"+m.Field)
				if m.DeviceId != p.l.dev || m.IdentifierType != p.l.typ.String() {
					continue
				}
				if fs, ok := formString(p.l, m.Form); ok && fs == p.s {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: %s %s form %s (%q) not matched; got %v", c.name, p.l.dev, p.l.typ, p.name, p.s, got)
			}
		}
	}
	if total < 2000 {
		t.Fatalf("only %d planted cases: the form table shrank", total)
	}
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
