package ident

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// scanStrings returns every match of one Scan as "device/type/form@offset+layers".
func scanStrings(sc *Scanner, data []byte) []string {
	var got []string
	sc.Scan("x", data, true, func(m *flowpb.IdentifierMatch) {
		got = append(got, fmt.Sprintf("%s/%s/%s@%d+%d", m.DeviceId, m.IdentifierType, m.Form, m.Offset, m.Layers))
	})
	return got
}

// corpusGen writes random documents in the shapes the scanner sees (headers
// with cookies, JSON, query strings, DNS names, binary) with identifier
// forms of a lab planted in them: whole, glued into longer runs of their own
// class, base64-, URL- and gzip-wrapped, and with one character changed.
type corpusGen struct {
	rng   *rand.Rand
	forms []string
}

func (g *corpusGen) pick(alpha string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alpha[g.rng.IntN(len(alpha))]
	}
	return string(b)
}

const (
	alphaDigits = "0123456789"
	alphaHex    = "0123456789abcdef"
	alphaHexUp  = "0123456789ABCDEF"
	alphaB64    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	alphaText   = "abcdefghijklmnopqrstuvwxyz ABCDEFXYZ0123456789-_.:/%+@"
)

// planted returns one identifier form, possibly disguised.
func (g *corpusGen) planted() string {
	f := g.forms[g.rng.IntN(len(g.forms))]
	switch g.rng.IntN(12) {
	case 0: // glued between characters of its own class
		if strings.Trim(f, alphaHex+":.-") == "" {
			return g.pick(alphaHex, g.rng.IntN(20)) + f + g.pick(alphaHex, g.rng.IntN(20))
		}
		return g.pick(alphaB64, g.rng.IntN(20)) + f + g.pick(alphaB64, g.rng.IntN(20))
	case 1:
		return base64.StdEncoding.EncodeToString([]byte(`{"id":"` + f + `"}`))
	case 2:
		return url.QueryEscape("v=" + f + "&w=1")
	case 3: // a near miss
		b := []byte(f)
		i := g.rng.IntN(len(b))
		b[i] = alphaHex[g.rng.IntN(16)]
		return string(b)
	case 4:
		return strings.ToUpper(f)
	case 5: // base64 glued into a longer base64 token
		return g.pick(alphaB64, 4*g.rng.IntN(6)) + base64.StdEncoding.EncodeToString([]byte(f)) + g.pick(alphaB64, g.rng.IntN(30))
	case 6:
		return hex.EncodeToString([]byte(f))
	}
	return f
}

func (g *corpusGen) token() string {
	switch g.rng.IntN(9) {
	case 0:
		return g.pick(alphaDigits, 1+g.rng.IntN(24))
	case 1:
		return g.pick(alphaHex, 1+g.rng.IntN(70))
	case 2:
		return g.pick(alphaHexUp, 1+g.rng.IntN(40))
	case 3:
		return g.pick(alphaB64, 1+g.rng.IntN(130))
	case 4:
		return g.pick(alphaText, 1+g.rng.IntN(40))
	case 5, 6:
		return g.planted()
	case 7:
		n := 12 + g.rng.IntN(100)
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(g.rng.Uint32())
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return g.pick(alphaHex, 8) + "-" + g.pick(alphaHex, 4) + "-" + g.pick(alphaHex, 4) + "-" + g.pick(alphaHex, 4) + "-" + g.pick(alphaHex, 12)
}

func (g *corpusGen) doc() []byte {
	var b bytes.Buffer
	switch g.rng.IntN(6) {
	case 0: // headers with cookies
		b.WriteString("GET /api/v1/x?a=" + g.token() + "&b=" + g.token() + " HTTP/1.1\r\nHost: h.example\r\nCookie: ")
		for i := g.rng.IntN(8); i >= 0; i-- {
			b.WriteString(g.pick("abcdefgh_", 3) + "=" + g.token() + "; ")
		}
		b.WriteString("\r\nUser-Agent: " + g.token() + " " + g.token() + "\r\n\r\n")
	case 1: // JSON
		b.WriteString("{")
		for i := g.rng.IntN(30); i >= 0; i-- {
			fmt.Fprintf(&b, `"%s":"%s",`, g.pick("abcdefghij_", 5), g.token())
			if g.rng.IntN(4) == 0 {
				fmt.Fprintf(&b, `"n":%s,`, g.pick(alphaDigits, 1+g.rng.IntN(15)))
			}
		}
		b.WriteString(`"end":1}`)
	case 2: // query string
		for i := g.rng.IntN(20); i >= 0; i-- {
			b.WriteString(g.pick("abcdefg", 3) + "=" + g.token() + "&")
		}
	case 3: // DNS name
		for i := g.rng.IntN(5); i >= 0; i-- {
			b.WriteString(g.token() + ".")
		}
		b.WriteString("example.com")
	case 4: // gzip of a JSON document
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		fmt.Fprintf(zw, `{"a":"%s","b":"%s"}`, g.token(), g.token())
		zw.Close()
		b.WriteString("HTTP/1.1 200 OK\r\n\r\n")
		b.Write(zb.Bytes())
	default: // binary with tokens in it
		for i := g.rng.IntN(400); i >= 0; i-- {
			b.WriteByte(byte(g.rng.Uint32()))
		}
		b.WriteString(g.token())
		for i := g.rng.IntN(400); i >= 0; i-- {
			b.WriteByte(byte(g.rng.Uint32()))
		}
	}
	return b.Bytes()
}

// TestFastPathEqualsReference scans a large randomized corpus with planted
// identifiers twice, with the fast paths (window prefilters, early base64
// verdicts) and with the straightforward reference paths, and requires the
// same matches, offsets and layers from both.
func TestFastPathEqualsReference(t *testing.T) {
	const devices = 300
	cfg := DefaultConfig()
	cfg.Secret = "fastpath-secret-0123456789"
	cfg.MaxWindowProbes = 1 << 30 // the reference path hashes every window
	ids := benchLab(devices)
	idx, errs, err := BuildIndex(cfg, ids)
	if err != nil || len(errs) > 0 {
		t.Fatal(err, errs)
	}
	// Plant a sample of every device's forms (all forms of 300 devices
	// would make each planted string rarely repeat).
	var forms []string
	e := newExpander()
	rng := rand.New(rand.NewPCG(11, 12))
	for i, id := range ids {
		if i%7 != 0 && i >= 12 {
			continue
		}
		vs, err := baseVariants(id.Type, id.Value)
		if err != nil {
			t.Fatal(err)
		}
		e.expand(vs, func(s string, _ form) {
			if len(s) >= minForm && len(s) <= 200 {
				forms = append(forms, s)
			}
		})
	}
	g := &corpusGen{rng: rng, forms: forms}
	// The same index without the whole-run probe filter (NewBuilder's
	// default is with it) must agree too.
	b, err := NewBuilder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.probeFilter = false
	for _, id := range ids {
		if err := b.Add(id); err != nil {
			t.Fatal(err)
		}
	}
	noFilter := b.Build().NewScanner()
	fast, ref := idx.NewScanner(), idx.NewScanner()
	ref.reference = true
	docs, matches := 6000, 0
	if testing.Short() {
		docs = 1000
	}
	for i := 0; i < docs; i++ {
		d := g.doc()
		want := scanStrings(ref, d)
		slices.Sort(want)
		for _, f := range runFinders() {
			fast.runFinder = f
			got := scanStrings(fast, d)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("doc %d finder %d %q:\nfast      %v\nreference %v", i, f, d, got, want)
			}
		}
		if got := scanStrings(noFilter, d); !slices.Equal(sorted(got), want) {
			t.Fatalf("doc %d without probe filter %q:\nfast      %v\nreference %v", i, d, got, want)
		}
		matches += len(want)
	}
	// The corpus must exercise the matcher, not only agree on nothing.
	if matches < docs/2 {
		t.Fatalf("only %d matches in %d documents", matches, docs)
	}
	t.Logf("%d documents, %d matches, identical", docs, matches)
}

// TestB64LayerEqualsReference: the one-pass base64 layer decoder agrees
// with b64Decode + plausibleLayer on text, binary, compressed, mixed
// alphabets and odd lengths.
func TestB64LayerEqualsReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var inputs [][]byte
	for i := 0; i < 20000; i++ {
		n := rng.IntN(120)
		raw := make([]byte, n)
		switch i % 5 {
		case 0: // random bytes
			for j := range raw {
				raw[j] = byte(rng.Uint32())
			}
		case 1: // printable text with a sprinkle of binary
			for j := range raw {
				raw[j] = byte(0x20 + rng.IntN(95))
				if rng.IntN(12) == 0 {
					raw[j] = byte(rng.Uint32())
				}
			}
		case 2: // compressed headers
			for j := range raw {
				raw[j] = byte(rng.Uint32())
			}
			if n >= 3 {
				if rng.IntN(2) == 0 {
					copy(raw, gzipMagic)
				} else {
					raw[0], raw[1] = 0x78, 0x9c
				}
			}
		default:
			for j := range raw {
				raw[j] = byte(0x20 + rng.IntN(95))
			}
		}
		var enc string
		switch rng.IntN(4) {
		case 0:
			enc = base64.StdEncoding.EncodeToString(raw)
		case 1:
			enc = base64.RawStdEncoding.EncodeToString(raw)
		case 2:
			enc = base64.RawURLEncoding.EncodeToString(raw)
		default:
			enc = base64.URLEncoding.EncodeToString(raw)
		}
		if rng.IntN(10) == 0 && len(enc) > 2 { // both alphabets in one run
			b := []byte(enc)
			b[rng.IntN(len(b))] = '-'
			b[rng.IntN(len(b))] = '/'
			enc = string(b)
		}
		if rng.IntN(10) == 0 && len(enc) > 0 { // odd lengths
			enc = enc[:rng.IntN(len(enc))]
		}
		inputs = append(inputs, []byte(enc))
	}
	var a, b []byte
	accepted := 0
	for _, in := range inputs {
		var okA, okB bool
		a, okA = b64Decode(a[:0], in)
		okA = okA && plausibleLayer(a)
		b, okB = b64Layer(b[:0], in)
		if okA != okB || okA && !bytes.Equal(a, b) {
			t.Fatalf("%q: reference %v %x, fast %v %x", in, okA, a, okB, b)
		}
		if okA {
			accepted++
		}
	}
	if accepted < len(inputs)/5 || accepted > len(inputs)*9/10 {
		t.Fatalf("implausible mix: %d of %d accepted", accepted, len(inputs))
	}
}

// FuzzFastPathEqualsReference: on any input that stays within the scan
// budgets, the fast paths report exactly what the reference paths report.
func FuzzFastPathEqualsReference(f *testing.F) {
	cfg := DefaultConfig()
	cfg.Secret = "fuzz-secret-0123456789"
	cfg.MaxWindowProbes = 1 << 30
	idx, _, err := BuildIndex(cfg, []Identifier{
		{Device: "d", Type: TypeIMEI, Value: "865123456789018"},
		{Device: "d", Type: TypeWiFiMAC, Value: "a4:50:46:12:34:56"},
		{Device: "d", Type: TypeMSISDN, Value: "+919812345678"},
		{Device: "d", Type: TypeAdvertisingID, Value: "38400000-8cf0-11bd-b23e-10b96e40000d"},
		{Device: "d", Type: TypeCanary, Value: "Canary Contact 7"},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("id=865123456789018&m=A4-50-46-12-34-56&x=deadbeef865123456789018cafe"))
	f.Add([]byte(`{"x":"ODY1MTIzNDU2Nzg5MDE4","y":"\u0041","z":"xxxxODY1MTIzNDU2Nzg5MDE4yy"}`))
	f.Add([]byte("%2B919812345678+Canary+Contact+7&n=Canary+Contact+7"))
	f.Add([]byte("Cookie: a=38400000-8cf0-11bd-b23e-10b96e40000d; b=384000008CF011BDB23E10B96E40000D"))
	fast, ref := idx.NewScanner(), idx.NewScanner()
	ref.reference = true
	f.Fuzz(func(t *testing.T, data []byte) {
		want := scanStrings(ref, data)
		slices.Sort(want)
		for _, rf := range runFinders() {
			fast.runFinder = rf
			got := scanStrings(fast, data)
			if fast.exhausted || ref.exhausted {
				return // budgets cut the two paths at different points
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("finder %d %q:\nfast      %v\nreference %v", rf, data, got, want)
			}
		}
	})
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}

// TestWindowAtEveryOffset: a MAC without separators (the shortest hex
// window) and the base64 of an IMEI (the shortest base64 window class) glued
// at every offset of a longer run of their class are found at that offset:
// the sampled window screen (Index.gram) must not skip any start position.
func TestWindowAtEveryOffset(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Secret = "offset-secret-0123456789"
	idx, errs, err := BuildIndex(cfg, []Identifier{
		{Device: "d", Type: TypeWiFiMAC, Value: "a4:50:46:12:34:56"},
		{Device: "d", Type: TypeIMEI, Value: "865123456789018"},
	})
	if err != nil || len(errs) > 0 {
		t.Fatal(err, errs)
	}
	if s := idx.gramStride; s[clsHexSep] < 2 || s[clsB64] < 2 {
		t.Fatalf("strides %v: nothing sampled, the test would not test the screen", s)
	}
	sc := idx.NewScanner()
	cases := []struct{ value, alpha, typ string }{
		{"a45046123456", "fedcba9876543210", "wifi_mac"},
		{base64.StdEncoding.EncodeToString([]byte("865123456789018")), "QWERTYqwerty", "imei"},
	}
	for _, c := range cases {
		for k := 0; k < 3*gramSpan; k++ {
			for tail := 0; tail < gramSpan; tail += 3 {
				run := strings.Repeat(c.alpha, 4)
				doc := "v=" + run[:k] + c.value + run[:tail] + "&"
				want := 2 + k
				found := false
				sc.Scan("x", []byte(doc), true, func(m *flowpb.IdentifierMatch) {
					found = found || int(m.Offset) == want && m.IdentifierType == c.typ
				})
				if !found {
					t.Fatalf("%q: no match at offset %d", doc, want)
				}
			}
		}
	}
}
