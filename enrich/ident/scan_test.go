package ident_test

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

func scanAll(sc *ident.Scanner, data []byte) []string {
	var got []string
	sc.Scan("x", data, true, func(m *flowpb.IdentifierMatch) {
		got = append(got, fmt.Sprintf("%s/%s/%s@%d+%d", m.DeviceId, m.IdentifierType, m.Form, m.Offset, m.Layers))
	})
	return got
}

// TestNearMissesDoNotMatch: one digit changed, foreign IMEIs, random digit
// strings and random hex of every digest length must never match.
func TestNearMissesDoNotMatch(t *testing.T) {
	idx := buildLab(t)
	sc := idx.NewScanner()
	rng := rand.New(rand.NewPCG(1, 2))
	var near []string
	for _, l := range lab {
		for _, v := range l.bases {
			for i := 0; i < len(v); i++ {
				c := v[i]
				if c >= '0' && c <= '9' {
					near = append(near, v[:i]+string('0'+(c-'0'+1)%10)+v[i+1:])
				}
			}
		}
	}
	near = append(near, "490154203237518", "352099001761481") // other valid IMEIs
	legit := map[string]bool{}
	for _, p := range allPlanted() {
		legit[p.s] = true
	}
	for _, s := range near {
		if legit[s] || keepsHexForm(s) {
			continue // e.g. a changed check digit can yield the IMEI14+"0" form
		}
		if got := scanAll(sc, []byte("id="+s+"&x=1")); len(got) > 0 {
			t.Errorf("near miss %q matched: %v", s, got)
		}
	}
	const digits, hexd = "0123456789", "0123456789abcdef"
	randStr := func(alpha string, n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = alpha[rng.IntN(len(alpha))]
		}
		return b
	}
	n := 0
	for i := 0; i < 100000; i++ {
		for _, tok := range [][]byte{randStr(digits, 15), randStr(digits, 10+i%10), randStr(hexd, []int{12, 16, 32, 40, 64, 128}[i%6])} {
			n++
			if got := scanAll(sc, tok); len(got) > 0 {
				t.Fatalf("random token %q matched: %v", tok, got)
			}
		}
	}
	if n < 300000 {
		t.Fatal("too few random tokens")
	}
}

// TestGluedAndLayered covers identifiers glued into longer runs and nested
// encodings: base64 of a URL-encoded JSON, gzip inside base64, a truncated
// gzip stream, raw deflate bodies, JSON \u escapes.
func TestGluedAndLayered(t *testing.T) {
	idx := buildLab(t)
	sc := idx.NewScanner()
	imei := "865123456789018"
	json1 := `{"imei":"` + imei + `","x":1}`
	filler := make([]byte, 200<<10)
	for i := range filler {
		filler[i] = "abcdefghijklmnopqrstuvwxyz "[rand.IntN(27)]
	}
	gzBuf := gz(append([]byte(json1), filler...))
	cases := []struct {
		name, in, want string
	}{
		{"glued digits", "abc" + imei + "xyz", "lab-0007/imei/digits@3+0"},
		{"glued in hex", "deadbeef" + imei + "cafe", "lab-0007/imei/digits@8+0"},
		{"dns label glued", "x" + imei + "y.t.example", "lab-0007/imei/digits@1+0"},
		{"base64 in path", "/u/" + base64.RawURLEncoding.EncodeToString([]byte(imei)), "lab-0007/imei/digits/base64@3+0"},
		{"base64 of urlencoded json", "d=" + base64.StdEncoding.EncodeToString([]byte("p=%7B%22imei%22%3A%22"+imei+"%22%7D")), "lab-0007/imei/digits@"},
		{"gzip inside base64", "z=" + base64.StdEncoding.EncodeToString(gz([]byte(json1))), "lab-0007/imei/digits@9+2"},
		{"json unicode escape", `{"e":"Lab0007\u0040Example.com"}`, "lab-0007/email/raw@6+1"},
		{"truncated gzip", "HTTP/1.1 200 OK\r\n\r\n" + string(gzBuf[:len(gzBuf)/2]), "lab-0007/imei/digits@"},
		{"plus as space", "name=Canary+Contact+7&x=1", "lab-0007/canary/raw@0+1"},
		{"mac upper no sep", "m=A45046123456;", "lab-0007/wifi_mac/no-sep-upper@2+0"},
		{"contact canary phone national", "from=07700900123", "lab-0007/canary/national-trunk@5+0"},
	}
	for _, c := range cases {
		got := scanAll(sc, []byte(c.in))
		ok := false
		for _, g := range got {
			if strings.HasPrefix(g, c.want) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s: want %s, got %v", c.name, c.want, got)
		}
	}
	// Raw deflate body (Content-Encoding: deflate without zlib header).
	var fb bytes.Buffer
	fw, _ := flate.NewWriter(&fb, flate.BestSpeed)
	fw.Write([]byte(json1))
	fw.Close()
	rec := &flowpb.FlowRecord{Http: &flowpb.HTTPInfo{ContentEncoding: "deflate", BodyPrefix: fb.Bytes()}}
	sc.ScanRecord(rec)
	if len(rec.Enrichment.Matches) == 0 || rec.Enrichment.Matches[0].Field != ident.FieldHTTPBody || rec.Enrichment.Matches[0].Layers != 1 {
		t.Errorf("deflate body: got %v", rec.Enrichment.Matches)
	}
}

// TestSharedIdentifier: a value two devices share (same canary text) is
// reported for both owners.
func TestSharedIdentifier(t *testing.T) {
	cfg := ident.DefaultConfig()
	cfg.Secret = testSecret
	cfg.AccessPoints = []ident.AccessPoint{{Name: "ap:lab-2g", BSSID: "00:11:22:33:44:55", SSID: "ExfilLab-2G"}}
	idx, errs, err := ident.BuildIndex(cfg, []ident.Identifier{
		{Device: "a", Type: ident.TypeCanary, Value: "shared canary"},
		{Device: "b", Type: ident.TypeCanary, Value: "shared canary"},
	})
	if err != nil || len(errs) > 0 {
		t.Fatal(err, errs)
	}
	got := scanAll(idx.NewScanner(), []byte(`{"c":"shared canary","ssid":"ExfilLab-2G","bssid":"00-11-22-33-44-55"}`))
	want := []string{"a/canary/raw@6+0", "b/canary/raw@6+0", "ap:lab-2g/ssid/raw@", "ap:lab-2g/bssid/dash-lower@"}
	for _, w := range want {
		ok := false
		for _, g := range got {
			ok = ok || strings.HasPrefix(g, w)
		}
		if !ok {
			t.Errorf("want %s in %v", w, got)
		}
	}
	if idx.FalsePositiveRate() <= 0 || idx.FalsePositiveRate() > 1e-15 {
		t.Errorf("false positive rate %g", idx.FalsePositiveRate())
	}
}

// TestNoPlaintextInIndex: the index's memory holds no identifier bytes.
func TestNoPlaintextInIndex(t *testing.T) {
	idx := buildLab(t)
	st := idx.Stats()
	if st.Entries == 0 {
		t.Fatal("empty index")
	}
	dump := fmt.Sprintf("%#v", st)
	for _, l := range lab {
		if strings.Contains(dump, l.value) {
			t.Errorf("stats leak %s", l.typ)
		}
	}
}

func TestScanRecordAllocs(t *testing.T) {
	idx := buildLab(t)
	sc := idx.NewScanner()
	body := gz([]byte(`{"imei":"865123456789018","aaid":"38400000-8cf0-11bd-b23e-10b96e40000d"}`))
	rec := &flowpb.FlowRecord{
		Dns: &flowpb.DNSInfo{QueryName: "865123456789018.t.example"},
		Http: &flowpb.HTTPInfo{Path: "/p?msisdn=%2B919812345678&m=a4:50:46:12:34:56", Host: "h.example",
			Headers:         []*flowpb.HTTPHeader{{Name: "X-Id", Value: "9774d56d682e549c"}, {Name: "Cookie", Value: "sid=0123456789abcdef0123456789abcdef; t=" + base64.StdEncoding.EncodeToString([]byte("404450123456789"))}},
			ContentEncoding: "gzip", BodyPrefix: body},
		Snippets:   []*flowpb.Snippet{{Direction: flowpb.Direction_DIRECTION_OUTBOUND, Data: []byte("GET /?e=Lab0007%40Example.com HTTP/1.1\r\n")}},
		Enrichment: &flowpb.Enrichment{},
	}
	n := sc.ScanRecord(rec)
	if n < 7 {
		t.Fatalf("want >= 7 matches, got %d: %v", n, rec.Enrichment.Matches)
	}
	allocs := testing.AllocsPerRun(200, func() {
		rec.Enrichment.Matches = rec.Enrichment.Matches[:0]
		sc.ScanRecord(rec)
	})
	if allocs != 0 {
		t.Errorf("ScanRecord allocates %.1f times per record", allocs)
	}
}
