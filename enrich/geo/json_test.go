package geo

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"google.golang.org/protobuf/encoding/protojson"
)

func TestLookupJSON(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "asn.csv")
	writeFile(t, path, "8.8.8.0,8.8.8.255,15169,\"Google, LLC \"\"quoted\"\"\"\n2001:4860::,2001:4860:ffff:ffff:ffff:ffff:ffff:ffff,15169,Google LLC\n")
	db := openFiles(t, path)
	var out bytes.Buffer
	ips := []string{"8.8.8.8", "2001:4860::8888", "10.0.0.1", "::ffff:8.8.8.8"}
	if err := LookupJSON(&out, db, ips); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(ips) {
		t.Fatalf("%d lines for %d IPs:\n%s", len(lines), len(ips), out.String())
	}
	for i, l := range lines {
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d not JSON: %v: %s", i, err, l)
		}
		var ip string
		_ = json.Unmarshal(m["ip"], &ip)
		if ip != ips[i] {
			t.Errorf("line %d: ip %q, want %q", i, ip, ips[i])
		}
		delete(m, "ip")
		rest, _ := json.Marshal(m)
		var got flowpb.Geo
		if err := protojson.Unmarshal(rest, &got); err != nil {
			t.Fatalf("line %d: not a flowpb.Geo: %v: %s", i, err, l)
		}
		want := lookup(db, ips[i])
		if got.String() != want.String() {
			t.Errorf("line %d: %v, Lookup says %v", i, &got, want)
		}
	}
	if !strings.Contains(lines[0], `"org":"Google, LLC \"quoted\""`) || !strings.Contains(lines[0], `"addr_class":"ADDR_CLASS_PUBLIC"`) {
		t.Errorf("unexpected first line: %s", lines[0])
	}

	out.Reset()
	err := LookupJSON(&out, db, []string{"8.8.8.8", "8.8.8.300"})
	if err == nil || !strings.Contains(err.Error(), `"8.8.8.300"`) {
		t.Errorf("bad IP: err %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("printed before rejecting a bad IP: %s", out.String())
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "a.csv")
	writeFile(t, f, "1.0.0.0,1.0.0.255,1,x\n")
	for _, c := range []struct {
		mod    func(*Config)
		prefix string
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.Databases = []string{filepath.Join(dir, "x.mmdb")} }, "databases[0]: file not found"},
		{func(c *Config) { c.Databases = []string{dir} }, "databases[0]: is a directory"},
		{func(c *Config) { c.LabSubnets = []string{"10.0.0.0/33"} }, "lab_subnets:"},
		{func(c *Config) { c.NAT64Prefixes = []string{"64:ff9b::/64"} }, "nat64_prefixes:"},
		{func(c *Config) { c.ReloadInterval = -1 }, "reload_interval:"},
		{func(c *Config) { c.Mappings = map[string]Mapping{"b.csv": {}} }, "mappings.b.csv:"},
		{func(c *Config) { c.Mappings = map[string]Mapping{"a.csv": {Layout: "nested"}} }, "mappings.a.csv.layout:"},
		{func(c *Config) { c.Mappings = map[string]Mapping{"a.csv": {CSVColumns: []string{"first_ip", "end"}}} }, "mappings.a.csv.csv_columns:"},
		{func(c *Config) { c.Mappings = map[string]Mapping{f: {CSVColumns: []string{"first_ip", "asn"}}} }, "mappings." + f + ".csv_columns:"},
	} {
		cfg := DefaultConfig()
		cfg.Databases = []string{f}
		c.mod(&cfg)
		err := cfg.Validate()
		if c.prefix == "" {
			if err != nil {
				t.Errorf("valid config rejected: %v", err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), c.prefix) {
			t.Errorf("got %v, want an error starting with %q", err, c.prefix)
		}
	}
}

// TestCSVColumns maps a country range file through csv_columns.
func TestCSVColumns(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "country.csv")
	writeFile(t, f, "start,end,cc,ignored\n5.6.7.0,5.6.7.255,NL,x\n2a00::,2a00:ff::,SE,y\n")
	cfg := DefaultConfig()
	cfg.Databases = []string{f}
	cfg.Mappings = map[string]Mapping{"country.csv": {CSVColumns: []string{"first_ip", "last_ip", "country", ""}}}
	db, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if g := lookup(db, "5.6.7.9"); g.Country != "NL" || g.Asn != 0 {
		t.Errorf("5.6.7.9: %v", g)
	}
	if g := lookup(db, "2a00:ff::"); g.Country != "SE" {
		t.Errorf("2a00:ff::: %v", g)
	}
	if g := lookup(db, "2a00:ff::1"); g.Country != "" {
		t.Errorf("2a00:ff::1: %v", g)
	}
}
