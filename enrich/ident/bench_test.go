package ident

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ahocorasick "github.com/petar-dambovaliev/aho-corasick"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// benchLab makes n devices x 12 identifiers with valid formats.
func benchLab(n int) []Identifier {
	rng := rand.New(rand.NewPCG(7, uint64(n)))
	digits := func(k int) string {
		b := make([]byte, k)
		for i := range b {
			b[i] = byte('0' + rng.IntN(10))
		}
		return string(b)
	}
	hexs := func(k int) string {
		b := make([]byte, k)
		for i := range b {
			b[i] = "0123456789abcdef"[rng.IntN(16)]
		}
		return string(b)
	}
	mac := func() string {
		h := hexs(12)
		h = h[:1] + "2" + h[2:] // locally administered unicast
		return h[0:2] + ":" + h[2:4] + ":" + h[4:6] + ":" + h[6:8] + ":" + h[8:10] + ":" + h[10:12]
	}
	var ids []Identifier
	for i := 0; i < n; i++ {
		dev := fmt.Sprintf("lab-%05d", i)
		imei := "86" + digits(12)
		imei += string(LuhnDigit(imei))
		iccid := "8991" + digits(14)
		iccid += string(LuhnDigit(iccid))
		u := hexs(32)
		ids = append(ids, []Identifier{
			{dev, TypeIMEI, imei},
			{dev, TypeIMEISV, imei[:14] + digits(2)},
			{dev, TypeIMSI, "40445" + digits(10)},
			{dev, TypeICCID, iccid},
			{dev, TypeMSISDN, "+9198" + digits(8)},
			{dev, TypeWiFiMAC, mac()},
			{dev, TypeBTMAC, mac()},
			{dev, TypeAndroidID, hexs(16)},
			{dev, TypeAdvertisingID, u[0:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:]},
			{dev, TypeSerial, "R58M" + strings.ToUpper(hexs(7))},
			{dev, TypeEmail, fmt.Sprintf("lab%05d@example.com", i)},
			{dev, TypeCanary, fmt.Sprintf("Canary Contact %d", i)},
		}...)
	}
	return ids
}

// Realistic payloads: request headers with cookies, a JSON analytics body,
// and TLS-like random bytes.
func benchPayloads() map[string][]byte {
	rng := rand.New(rand.NewPCG(3, 4))
	rnd := make([]byte, 16<<10)
	for i := range rnd {
		rnd[i] = byte(rng.Uint32())
	}
	tok := make([]byte, 96)
	for i := range tok {
		tok[i] = byte(rng.Uint32())
	}
	headers := "GET /api/v2/feed?page=2&count=20&lang=en_IN&ts=1732450000123&sig=5f2b8c0e7d1a4b3c HTTP/1.1\r\n" +
		"Host: api.feed.example.com\r\n" +
		"User-Agent: Dalvik/2.1.0 (Linux; U; Android 11; Redmi Note 8 Pro MIUI/V12.5.1.0)\r\n" +
		"Accept: application/json, text/plain, */*\r\nAccept-Encoding: gzip\r\nAccept-Language: en-IN,en;q=0.9\r\n" +
		"Cookie: _ga=GA1.2.1234567890.1732450000; _gid=GA1.2.987654321.1732450000; sessionid=0f3c9a7be4d14c2a9c8e5b6f7a8d9e0c; " +
		"csrftoken=Xq8Zb2Lr9Tn4Vp6Wm1Kc3Hd5Jf7Gs0Ae; auth=" + base64.StdEncoding.EncodeToString(tok) + "\r\n" +
		"X-Request-Id: 7c9e6679-7425-40de-944b-e07fc1f90ae7\r\nConnection: keep-alive\r\n\r\n"
	json := `{"app":{"id":"com.example.news","ver":"5.12.3","build":51203},"device":{"os":"android","osv":"11","model":"Redmi Note 8 Pro",` +
		`"screen":{"w":1080,"h":2340,"dpi":440},"lang":"en_IN","tz":"Asia/Kolkata","carrier":"Jio 4G","net":"wifi"},` +
		`"events":[` + strings.Repeat(`{"name":"article_view","ts":1732450000123,"props":{"article_id":"a-98231","section":"sports","scroll":0.73,"dwell_ms":18342}},`, 12) +
		`{"name":"session_end","ts":1732450099123}],"session":"0f3c9a7be4d14c2a9c8e5b6f7a8d9e0c","seq":1842}`
	return map[string][]byte{"headers": []byte(headers), "json": []byte(json), "binary": rnd}
}

var (
	benchOnce sync.Map // n -> *benchFixture
)

type benchFixture struct {
	idx    *Index
	forms  []string
	build  time.Duration
	heap   uint64
	once   sync.Once
	ac     *ahocorasick.AhoCorasick
	acDur  time.Duration
	acHeap uint64
}

func fixture(b *testing.B, n int) *benchFixture {
	v, _ := benchOnce.LoadOrStore(n, &benchFixture{})
	f := v.(*benchFixture)
	if f.idx != nil {
		return f
	}
	cfg := DefaultConfig()
	cfg.Secret = "bench-secret-0123456789"
	ids := benchLab(n)
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	t0 := time.Now()
	idx, errs, err := BuildIndex(cfg, ids)
	if err != nil || len(errs) > 0 {
		b.Fatal(err, errs)
	}
	f.build = time.Since(t0)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	f.heap = m1.HeapAlloc - m0.HeapAlloc
	f.idx = idx
	return f
}

// plaintextForms expands the same identifiers into plaintext strings, as an
// Aho-Corasick matcher would need them (benchmark baseline only).
func plaintextForms(n int) []string {
	e := newExpander()
	seen := map[string]bool{}
	var out []string
	for _, id := range benchLab(n) {
		vs, err := baseVariants(id.Type, id.Value)
		if err != nil {
			continue
		}
		e.expand(vs, func(s string, _ form) {
			if len(s) >= minForm && !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		})
	}
	return out
}

func BenchmarkBuildIndex(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			f := fixture(b, n)
			st := f.idx.Stats()
			b.ReportMetric(f.build.Seconds(), "build-s")
			b.ReportMetric(float64(st.Entries), "entries")
			b.ReportMetric(float64(st.Bytes)/(1<<20), "table-MiB")
			b.ReportMetric(float64(f.heap)/(1<<20), "heap-MiB")
			for i := 0; i < b.N; i++ {
			}
		})
	}
}

// variedHeaders returns n copies of the headers payload with fresh random
// cookie values of the same shapes: scanning one payload over and over lets
// the branch predictor learn it, which real traffic does not allow.
func variedHeaders(n int) [][]byte {
	base := benchPayloads()["headers"]
	rng := rand.New(rand.NewPCG(9, 9))
	out := make([][]byte, n)
	for i := range out {
		p := []byte(string(base))
		tok := make([]byte, 96+16)
		for j := range tok {
			tok[j] = byte(rng.Uint32())
		}
		k := strings.Index(string(p), "auth=") + len("auth=")
		copy(p[k:], base64.StdEncoding.EncodeToString(tok[:96]))
		k = strings.Index(string(p), "sessionid=") + len("sessionid=")
		copy(p[k:], fmt.Sprintf("%x", tok[96:]))
		out[i] = p
	}
	return out
}

// BenchmarkScan runs at 200 and 10,000 devices, or at the comma-separated
// device counts in EXFILWATCH_SCAN_DEVICES (scripts/scan-instructions.sh
// runs one size under valgrind, where building the 10,000-device index
// alone takes minutes).
func BenchmarkScan(b *testing.B) {
	payloads := map[string][][]byte{"headers-varied": variedHeaders(64)}
	for name, p := range benchPayloads() {
		payloads[name] = [][]byte{p}
	}
	sizes := []int{200, 10000}
	if v := os.Getenv("EXFILWATCH_SCAN_DEVICES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("EXFILWATCH_SCAN_DEVICES=%q: want comma-separated device counts", v)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		f := fixture(b, n)
		for _, name := range []string{"headers", "headers-varied", "json", "binary"} {
			docs := payloads[name]
			b.Run(fmt.Sprintf("devices=%d/%s", n, name), func(b *testing.B) {
				sc := f.idx.NewScanner()
				matches := 0
				emit := func(*flowpb.IdentifierMatch) { matches++ }
				// Warm-up: the first scans grow the scanner's buffers.
				for _, d := range docs {
					sc.Scan("snippet.out", d, true, emit)
				}
				b.SetBytes(int64(len(docs[0])))
				b.ReportAllocs()
				i := 0
				cpuBench(b, len(docs[0]), func() {
					measuredScan(sc, docs[i%len(docs)], emit)
					i++
				})
				b.ReportMetric(float64(len(docs[0])), "bytes/scan") // after cpuBench's ResetTimer, which drops metrics
			})
		}
	}
}

// measuredScan is the scan BenchmarkScan times. scripts/scan-instructions.sh
// counts instructions inside it only, so the warm-up scans (which call Scan
// directly) and their one-off buffer growth are not in its figure.
//
//go:noinline
func measuredScan(sc *Scanner, d []byte, emit func(*flowpb.IdentifierMatch)) {
	sc.Scan("snippet.out", d, true, emit)
}

// BenchmarkAhoCorasick is the baseline: petar-dambovaliev/aho-corasick (DFA,
// ASCII case-insensitive, leftmost-longest) over the same plaintext forms.
// 200 devices (~120k patterns) by default, EXFILWATCH_AC_DEVICES to change:
// the automaton's build time and heap grow linearly with the patterns (see
// docs/benchmarks.md), and at 10,000 devices (~6 M patterns) it would need
// more memory than this machine has. The hashed index at the same size runs
// as BenchmarkScan/devices=200.
func BenchmarkAhoCorasick(b *testing.B) {
	payloads := benchPayloads()
	n := 200
	if v, err := strconv.Atoi(os.Getenv("EXFILWATCH_AC_DEVICES")); err == nil && v > 0 {
		n = v
	}
	f := fixture(b, n)
	f.once.Do(func() {
		forms := plaintextForms(n)
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		t0 := time.Now()
		bl := ahocorasick.NewAhoCorasickBuilder(ahocorasick.Opts{
			AsciiCaseInsensitive: true, MatchKind: ahocorasick.LeftMostLongestMatch, DFA: true})
		ac := bl.Build(forms)
		f.ac = &ac
		f.acDur = time.Since(t0)
		runtime.GC()
		runtime.ReadMemStats(&m1)
		f.acHeap = m1.HeapAlloc - m0.HeapAlloc
		f.forms = forms
	})
	for _, name := range []string{"headers", "json", "binary"} {
		data := string(payloads[name])
		b.Run(fmt.Sprintf("devices=%d/%s", n, name), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			cpuBench(b, len(data), func() { _ = f.ac.FindAll(data) })
			// After cpuBench: its ResetTimer drops metrics reported before.
			b.ReportMetric(f.acDur.Seconds(), "build-s")
			b.ReportMetric(float64(f.acHeap)/(1<<20), "heap-MiB")
			b.ReportMetric(float64(len(f.forms)), "patterns")
		})
	}
}

func BenchmarkScanRecord(b *testing.B) {
	f := fixture(b, 10000)
	p := benchPayloads()
	sc := f.idx.NewScanner()
	rec := &flowpb.FlowRecord{
		Dns:        &flowpb.DNSInfo{QueryName: "api.feed.example.com"},
		Http:       &flowpb.HTTPInfo{Path: "/api/v2/feed?page=2&count=20&lang=en_IN", Host: "api.feed.example.com", BodyPrefix: p["json"]},
		Snippets:   []*flowpb.Snippet{{Direction: flowpb.Direction_DIRECTION_OUTBOUND, Data: p["headers"]}},
		Enrichment: &flowpb.Enrichment{},
	}
	n := len(p["json"]) + len(p["headers"]) + 60
	b.SetBytes(int64(n))
	b.ReportAllocs()
	cpuBench(b, n, func() {
		rec.Enrichment.Matches = rec.Enrichment.Matches[:0]
		sc.ScanRecord(rec)
	})
}
