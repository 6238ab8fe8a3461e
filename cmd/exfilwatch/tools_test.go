package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/collector/communityid"
	"github.com/exfilwatch/exfilwatch/eval"
	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/sim"
)

// TestMatchPcapEqualsTruth: `exfilwatch match --pcap --inventory` over a
// simulated lab finds exactly the ground truth's observable leaks: the same
// (flow, owner device, identifier type) set, the flow named by the
// Community ID computed here from the truth's 5-tuple. (Forms are named
// differently: the truth says how the simulator encoded a value, a match
// how the matcher decoded it; the ident tests check forms.)
func TestMatchPcapEqualsTruth(t *testing.T) {
	dir := t.TempDir()
	opts := sim.DefaultOptions()
	opts.Devices, opts.Seed, opts.Background = 8, 21, 5
	files, err := sim.Generate(opts).WriteDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "match", "--pcap", files.Pcap, "--inventory", files.Inventory)
	if code != 0 {
		t.Fatalf("match: exit %d: %s", code, errOut)
	}
	type leak struct{ flow, device, typ string }
	got := map[leak]int{}
	for n, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m struct {
			CommunityID string `json:"community_id"`
			Match       struct {
				DeviceID       string `json:"device_id"`
				IdentifierType string `json:"identifier_type"`
			} `json:"match"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("output line %d %q: %v", n+1, line, err)
		}
		got[leak{m.CommunityID, m.Match.DeviceID, m.Match.IdentifierType}]++
	}

	truth, err := eval.ReadTruthFile(files.Truth)
	if err != nil {
		t.Fatal(err)
	}
	want := map[leak]int{}
	unobservable := 0
	for _, tr := range truth {
		if tr.IdentifierType == "" {
			continue
		}
		if !tr.Observable {
			unobservable++
			continue
		}
		src, dst := netip.MustParseAddr(tr.Src), netip.MustParseAddr(tr.Dst)
		cid := communityid.New(0).String(src.AsSlice(), dst.AsSlice(), tr.Proto, tr.SrcPort, tr.DstPort)
		want[leak{cid, tr.Device, tr.IdentifierType}]++
	}
	if len(want) < 10 || unobservable == 0 {
		t.Fatalf("ground truth has %d observable and %d unobservable leaks; the lab is too small to test anything", len(want), unobservable)
	}
	for k := range want {
		if got[k] == 0 {
			t.Errorf("ground-truth leak not matched: %+v", k)
		}
	}
	for k := range got {
		if want[k] == 0 {
			t.Errorf("match reported a leak the ground truth does not have: %+v", k)
		}
	}
}

// mmdbValue asks mmdblookup for one value of the record of ip in file; ok
// is false when the address or the path is not in the database.
func mmdbValue(t *testing.T, tool, file, ip string, path ...string) (string, bool) {
	t.Helper()
	out, err := exec.Command(tool, append([]string{"--file", file, "--ip", ip}, path...)...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if strings.Contains(s, "Could not find an entry") || strings.Contains(s, "lookup path does not match") {
		return "", false
	}
	if err != nil {
		t.Fatalf("mmdblookup %s %s %v: %v: %s", file, ip, path, err, s)
	}
	v, typ, ok := strings.Cut(s, " <")
	if !ok {
		t.Fatalf("mmdblookup %s %v: unexpected output %q", ip, path, s)
	}
	if strings.HasPrefix(typ, "utf8_string") {
		v = strings.Trim(v, `"`)
	}
	return v, true
}

// TestGeoMatchesMMDBLookup: `exfilwatch geo --db CITY --db ASN IP...` prints
// per address what libmaxminddb's mmdblookup reads from MaxMind's test
// databases (country, else the registered country; city; location; AS
// number and organisation).
func TestGeoMatchesMMDBLookup(t *testing.T) {
	tool := testenv.Tool(t, "mmdblookup")
	dir := filepath.Join(testenv.SharedTestdata(t), "geoip", "maxmind-test")
	city, asn := filepath.Join(dir, "GeoIP2-City-Test.mmdb"), filepath.Join(dir, "GeoLite2-ASN-Test.mmdb")
	ips := []string{"81.2.69.142", "2.125.160.216", "89.160.20.112", "216.160.83.56", "67.43.156.1", "1.128.0.1", "12.81.92.1", "2a02:cf40::1"}
	code, out, errOut := runCLI(t, append([]string{"geo", "--db", city, "--db", asn}, ips...)...)
	if code != 0 {
		t.Fatalf("geo: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(ips) {
		t.Fatalf("%d lines for %d addresses:\n%s", len(lines), len(ips), out)
	}
	withASN, withCity := 0, 0
	for i, ip := range ips {
		var got map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &got); err != nil {
			t.Fatalf("line %d %q: %v", i+1, lines[i], err)
		}
		want := map[string]any{"ip": ip, "addr_class": "ADDR_CLASS_PUBLIC"} // all globally routable
		if v, ok := mmdbValue(t, tool, city, ip, "country", "iso_code"); ok {
			want["country"] = v
		} else if v, ok := mmdbValue(t, tool, city, ip, "registered_country", "iso_code"); ok {
			want["country"] = v
		}
		if v, ok := mmdbValue(t, tool, city, ip, "city", "names", "en"); ok {
			want["city"] = v
			withCity++
		}
		for _, k := range []string{"latitude", "longitude"} {
			if v, ok := mmdbValue(t, tool, city, ip, "location", k); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatal(err)
				}
				want[k] = f
			}
		}
		if v, ok := mmdbValue(t, tool, asn, ip, "autonomous_system_number"); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			want["asn"] = n
			withASN++
		}
		if v, ok := mmdbValue(t, tool, asn, ip, "autonomous_system_organization"); ok {
			want["org"] = v
		}
		// mmdblookup prints doubles with %f: compare coordinates to 1e-6.
		for _, k := range []string{"latitude", "longitude"} {
			g, gok := got[k].(float64)
			w, wok := want[k].(float64)
			if gok && wok && math.Abs(g-w) <= 5e-7+1e-12 {
				got[k] = w
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n geo prints  %v\n mmdblookup %v", ip, got, want)
		}
	}
	if withASN < 3 || withCity < 3 {
		t.Errorf("only %d addresses with an ASN and %d with a city: pick other test addresses", withASN, withCity)
	}
}

// TestGeoUsesTheConfig: geo reads the same geoip configuration as the
// enrich stage (--config, EXFILWATCH_* variables, --geoip.* flags): a CSV
// file whose column order only geoip.mappings knows, and a NAT64 prefix
// only the config names, give the same answers as the enrich stage's
// output for flows to those addresses.
func TestGeoUsesTheConfig(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "ranges.csv")
	if err := os.WriteFile(csv, []byte("Example Org,NZ,81.2.69.0,81.2.69.255,64511\nOther Org,BR,89.160.20.0,89.160.20.255,64512\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(inv, []byte("devices:\n  - id: lab-1\n    model: Pixel 7\n    ips: [\"10.9.0.2\"]\n    identifiers:\n      imei: [\"865123456789019\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "exfilwatch.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`lab_subnets: [10.9.0.0/16]
metrics_addr: ""
inventory:
  path: %s
identifiers:
  secret: "0x0123456789abcdef"
geoip:
  databases: [%s]
  mappings:
    ranges.csv:
      csv_columns: [org, country, first_ip, last_ip, asn]
  nat64_prefixes: ["2001:db8:64::/96"]
`, inv, csv)), 0o644); err != nil {
		t.Fatal(err)
	}
	ips := []string{"81.2.69.7", "2001:db8:64::5102:4507", "89.160.20.9", "10.9.1.2", "64:ff9b::5102:4507"}
	code, out, errOut := runCLI(t, append([]string{"geo", "--config", cfgFile}, ips...)...)
	if code != 0 {
		t.Fatalf("geo --config: exit %d: %s", code, errOut)
	}
	got := strings.Split(strings.TrimSpace(out), "\n")

	// What the enrich stage attaches, with the same config, to flows to
	// those addresses.
	in := filepath.Join(dir, "flows.jsonl")
	var flows strings.Builder
	for i, ip := range ips {
		b := netip.MustParseAddr(ip).As16()
		fmt.Fprintf(&flows, `{"schema_version":1,"id":"f%d","src_addr":"%s","dst_addr":"%s","protocol":6,"src_port":40000,"dst_port":443,"direction":"DIRECTION_OUTBOUND"}`+"\n",
			i, b64(netip.MustParseAddr("10.9.0.2").As16()), b64(b))
	}
	if err := os.WriteFile(in, []byte(flows.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	enriched := filepath.Join(dir, "enriched.jsonl")
	code, _, errOut = runCLI(t, "enrich", "--config", cfgFile, "--in", in, "--out", enriched)
	if code != 0 {
		t.Fatalf("enrich --config: exit %d: %s", code, errOut)
	}
	b, err := os.ReadFile(enriched)
	if err != nil {
		t.Fatal(err)
	}
	recs := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(recs) != len(ips) || len(got) != len(ips) {
		t.Fatalf("geo printed %d lines, enrich wrote %d records, for %d addresses", len(got), len(recs), len(ips))
	}
	for i, ip := range ips {
		var rec struct {
			Enrichment struct {
				DstGeo map[string]any `json:"dstGeo"`
			} `json:"enrichment"`
		}
		if err := json.Unmarshal([]byte(recs[i]), &rec); err != nil {
			t.Fatal(err)
		}
		var line map[string]any
		if err := json.Unmarshal([]byte(got[i]), &line); err != nil {
			t.Fatal(err)
		}
		if line["ip"] != ip {
			t.Errorf("line %d is for %v, want %s", i+1, line["ip"], ip)
		}
		delete(line, "ip")
		want := map[string]any{}
		for k, v := range rec.Enrichment.DstGeo {
			want[snake(k)] = v
		}
		if !reflect.DeepEqual(line, want) {
			t.Errorf("%s: geo prints %v, enrich attaches %v", ip, line, want)
		}
	}
	// Known answers, so both cannot be wrong the same way.
	for i, w := range []string{`"country":"NZ"`, `"country":"NZ"`, `"org":"Other Org"`, `"addr_class":"ADDR_CLASS_LAB"`, `"addr_class":"ADDR_CLASS_PUBLIC"`} {
		if !strings.Contains(got[i], w) {
			t.Errorf("%s: %s lacks %s", ips[i], got[i], w)
		}
	}
	if strings.Contains(got[4], "NZ") {
		t.Errorf("64:ff9b::/96 is not a NAT64 prefix in this config: %s", got[4])
	}

	// Flags override the file, as for the stages.
	code, out, errOut = runCLI(t, "geo", "--config", cfgFile, "--geoip.nat64_prefixes", "64:ff9b::/96", "64:ff9b::5102:4507", "2001:db8:64::5102:4507")
	if code != 0 {
		t.Fatalf("geo --geoip.nat64_prefixes: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"country":"NZ"`) || strings.Contains(lines[1], "NZ") {
		t.Errorf("with --geoip.nat64_prefixes 64:ff9b::/96:\n%s", out)
	}
}

func b64(a [16]byte) string {
	b, _ := json.Marshal(a[:])
	return strings.Trim(string(b), `"`)
}

// snake turns protojson's lowerCamel names into the proto names geo prints.
func snake(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
