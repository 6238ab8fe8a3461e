package geo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
)

func geoipData(t testing.TB) string {
	t.Helper()
	return filepath.Join(testenv.SharedTestdata(t), "geoip")
}

func openFiles(t testing.TB, files ...string) *DB {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Databases = files
	db, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// --- mmdblookup (libmaxminddb) as the independent reader -------------------

// mmdblookupAll runs `mmdblookup --file F --ip IP` once per address (the tool
// has no batch mode; a process costs about 1 ms) in a bounded pool and
// returns the parsed record of each, nil when the address is not found.
func mmdblookupAll(t *testing.T, file string, addrs []netip.Addr) []map[string]any {
	t.Helper()
	tool := testenv.Tool(t, "mmdblookup")
	out := make([]map[string]any, len(addrs))
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	work := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				out[i], errs[i] = mmdblookup(tool, file, addrs[i].String())
			}
		}()
	}
	for i := range addrs {
		work <- i
	}
	close(work)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("mmdblookup %s %s: %v", file, addrs[i], err)
		}
	}
	return out
}

func mmdblookup(tool, file, ip string) (map[string]any, error) {
	cmd := exec.Command(tool, "--file", file, "--ip", ip)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if strings.Contains(stderr.String(), "Could not find an entry") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, stderr.String())
	}
	v, err := parseMMDBLookup(stdout.String())
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("top-level value is %T, not a map", v)
	}
	return m, nil
}

// parseMMDBLookup parses mmdblookup's annotated dump: one token per line,
// `{`/`}`/`[`/`]`, `"key":`, or `VALUE <type>`. Numbers become uint64,
// int64, float64 or *big.Int (uint128), strings string, booleans bool.
func parseMMDBLookup(s string) (any, error) {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	pos := 0
	var value func() (any, error)
	value = func() (any, error) {
		if pos >= len(lines) {
			return nil, errors.New("unexpected end of output")
		}
		l := lines[pos]
		pos++
		switch l {
		case "{":
			m := map[string]any{}
			for pos < len(lines) && lines[pos] != "}" {
				k := lines[pos]
				if !strings.HasPrefix(k, `"`) || !strings.HasSuffix(k, `":`) {
					return nil, fmt.Errorf("bad key line %q", k)
				}
				pos++
				v, err := value()
				if err != nil {
					return nil, err
				}
				m[k[1:len(k)-2]] = v
			}
			pos++
			return m, nil
		case "[":
			var a []any
			for pos < len(lines) && lines[pos] != "]" {
				v, err := value()
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			pos++
			return a, nil
		}
		i := strings.LastIndex(l, " <")
		if i < 0 || !strings.HasSuffix(l, ">") {
			return nil, fmt.Errorf("bad value line %q", l)
		}
		raw, typ := l[:i], l[i+2:len(l)-1]
		switch typ {
		case "utf8_string":
			if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
				return nil, fmt.Errorf("bad string %q", raw)
			}
			return raw[1 : len(raw)-1], nil
		case "uint16", "uint32", "uint64":
			return strconv.ParseUint(raw, 10, 64)
		case "int32":
			return strconv.ParseInt(raw, 10, 64)
		case "double", "float":
			return strconv.ParseFloat(raw, 64)
		case "boolean":
			return raw == "true", nil
		case "uint128":
			n, ok := new(big.Int).SetString(strings.TrimPrefix(raw, "0x"), 16)
			if !ok {
				return nil, fmt.Errorf("bad uint128 %q", raw)
			}
			return n, nil
		case "bytes":
			return raw, nil
		}
		return nil, fmt.Errorf("unknown type %q", typ)
	}
	return value()
}

// --- expected answers, computed from a generic record ----------------------

// want is the expected database answer (the comparable part of record).
type want struct {
	country, city, org string
	lat, lon           float64
	asn                uint32
}

func (w want) String() string {
	return fmt.Sprintf("{country=%q city=%q lat=%v lon=%v asn=%d org=%q}", w.country, w.city, w.lat, w.lon, w.asn, w.org)
}

func gotOf(r record) want {
	return want{country: r.country, city: r.city, org: r.org, lat: r.lat, lon: r.lon, asn: r.asn}
}

func dig(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

func str(v any) string { s, _ := v.(string); return s }

func num(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint16:
		return float64(x), true
	case int64:
		return float64(x), true
	case int32:
		return float64(x), true
	case int:
		return float64(x), true
	}
	return 0, false
}

// expectGeoIP2 states the GeoIP2-layout contract independently of mmdb.go:
// country.iso_code falling back to registered_country.iso_code,
// city.names.en, location.{latitude,longitude} (both or neither),
// autonomous_system_number/organization.
func expectGeoIP2(m map[string]any) want {
	var w want
	if m == nil {
		return w
	}
	w.country = str(dig(m, "country", "iso_code"))
	if w.country == "" {
		w.country = str(dig(m, "registered_country", "iso_code"))
	}
	w.city = str(dig(m, "city", "names", "en"))
	lat, ok1 := num(dig(m, "location", "latitude"))
	lon, ok2 := num(dig(m, "location", "longitude"))
	if ok1 && ok2 {
		w.lat, w.lon = lat, lon
	}
	if n, ok := num(dig(m, "autonomous_system_number")); ok {
		w.asn = uint32(n)
	}
	w.org = str(dig(m, "autonomous_system_organization"))
	return w
}

// expectFlat is the flat-layout contract for the fields the test files use.
func expectFlat(m map[string]any) want {
	var w want
	if m == nil {
		return w
	}
	w.country = str(m["country_code"])
	w.city = str(m["city"])
	lat, ok1 := num(m["latitude"])
	lon, ok2 := num(m["longitude"])
	if ok1 && ok2 {
		w.lat, w.lon = lat, lon
	}
	if n, ok := num(m["asn"]); ok {
		w.asn = uint32(n)
	} else if s := str(m["asn"]); s != "" {
		n, _ := strconv.ParseUint(strings.TrimPrefix(s, "AS"), 10, 32)
		w.asn = uint32(n)
	}
	w.org = str(m["as_name"])
	return w
}

// sameAnswer compares with a tolerance on coordinates when the reference
// printed them rounded (mmdblookup prints doubles with 6 decimals).
func sameAnswer(got, exp want, coordTol float64) bool {
	if got.country != exp.country || got.city != exp.city || got.org != exp.org || got.asn != exp.asn {
		return false
	}
	return math.Abs(got.lat-exp.lat) <= coordTol && math.Abs(got.lon-exp.lon) <= coordTol
}

// --- address generation ----------------------------------------------------

// lastAddr returns the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	_, l := prefixSpanRef(p)
	return l
}

// prefixSpanRef computes a prefix's first and last address with math/big,
// independently of table.go.
func prefixSpanRef(p netip.Prefix) (netip.Addr, netip.Addr) {
	p = p.Masked()
	width := p.Addr().BitLen()
	first := new(big.Int).SetBytes(p.Addr().AsSlice())
	host := new(big.Int).Lsh(big.NewInt(1), uint(width-p.Bits()))
	last := new(big.Int).Add(first, host)
	last.Sub(last, big.NewInt(1))
	b := last.FillBytes(make([]byte, width/8))
	a, _ := netip.AddrFromSlice(b)
	return p.Addr(), a
}

// randomIn returns a uniformly random address inside p.
func randomIn(rng *rand.Rand, p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if rng.IntN(2) == 1 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func randomV4(rng *rand.Rand) netip.Addr {
	var b [4]byte
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return netip.AddrFrom4(b)
}

func randomV6(rng *rand.Rand) netip.Addr {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return netip.AddrFrom16(b)
}

// assertOneLineNaming checks a start-up error is one line and names path.
func assertOneLineNaming(t *testing.T, err error, path string) {
	t.Helper()
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error is not one line: %q", msg)
	}
	if !strings.Contains(msg, path) {
		t.Errorf("error does not name %s: %q", path, msg)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
