package inventory

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

func TestParseReportsBadEntriesWithLines(t *testing.T) {
	s, err := Load("testdata/inventory.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range s.Devices {
		ids = append(ids, d.ID)
	}
	if got := strings.Join(ids, ","); got != "lab-0007,lab-0010,lab-0013,lab-0014" {
		t.Errorf("loaded devices %s", got)
	}
	want := []struct {
		line    int
		warning bool
		frag    string
	}{
		{9, true, "imei[0]: imei: check digit mismatch"},
		{15, false, "macs[0]: mac: invalid hex digit"},
		{18, false, "ips[0]: not an IP address"},
		{19, false, "duplicate of the entry at line 2"},
		{29, false, "identifiers.imsi[0]: imsi: want 6 to 15 digits"},
		{32, false, "identifiers.fingerprint: unknown type"},
		{33, false, "id: required"},
	}
	if len(s.Problems) != len(want) {
		t.Errorf("got %d problems: %v", len(s.Problems), s.Problems)
	}
	for i, w := range want {
		if i >= len(s.Problems) {
			break
		}
		p := s.Problems[i]
		if p.Line != w.line || p.Warning != w.warning || !strings.Contains(p.Msg, w.frag) {
			t.Errorf("problem %d: got line %d warning %v %q, want line %d %v %q", i, p.Line, p.Warning, p.Msg, w.line, w.warning, w.frag)
		}
		if strings.Contains(p.Error(), "865123456789018") || strings.Contains(p.Error(), "zz:50") {
			t.Errorf("problem message quotes the value: %s", p.Error())
		}
	}
	if len(s.Identifiers) != 6 {
		t.Errorf("want 6 identifiers (lab-0007: 4, lab-0010: 2), got %d", len(s.Identifiers))
	}
}

func writeFile(t *testing.T, path, data string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestAttributionAndReload(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inv.yaml")
	src, _ := os.ReadFile("testdata/inventory.yaml")
	t0 := time.Now().Add(-time.Hour)
	writeFile(t, inv, string(src), t0)
	dnsmasq := filepath.Join(dir, "dnsmasq.leases")
	exp := time.Now().Add(time.Hour).Unix()
	writeFile(t, dnsmasq, "0 a4:50:46:00:00:13 10.20.0.113 phone13 *\n"+
		"1 a4:50:46:00:00:10 10.20.0.110 expired *\n"+
		"duid 00:01:00:01:2c:1f\n"+
		"1999999999 1234567 fd00::13 phone6 00:01\n"+
		strconvI(exp)+" a4:50:46:00:00:99 10.20.0.199 unknown *\n", t0)
	dhcpd := filepath.Join(dir, "dhcpd.leases")
	writeFile(t, dhcpd, `# comment
lease 10.20.0.114 {
  starts 4 2026/11/19 10:00:00;
  ends never;
  binding state active;
  hardware ethernet a4:50:46:00:00:14;
}
lease 10.20.0.115 {
  ends 4 2001/01/01 00:00:00;
  binding state active;
  hardware ethernet a4:50:46:00:00:13;
}
lease 10.20.0.116 {
  binding state free;
  hardware ethernet a4:50:46:00:00:13;
}
`, t0)
	var got []ident.Identifier
	iv, err := New(Config{Path: inv, DnsmasqLeases: []string{dnsmasq}, DhcpdLeases: []string{dhcpd}, ReloadInterval: time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(ids []ident.Identifier) { got = ids })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 || iv.Snapshot().Identifiers != nil {
		t.Errorf("onLoad got %d identifiers; snapshot keeps %d", len(got), len(iv.Snapshot().Identifiers))
	}
	mac := func(s string) []byte { m, _ := ident.ParseMAC(s); return m[:] }
	ip := netip.MustParseAddr
	cases := []struct {
		name string
		mac  []byte
		addr netip.Addr
		id   string
		by   string
	}{
		{"mac wins over ip", mac("a4:50:46:12:34:56"), ip("10.20.0.113"), "lab-0007", ByMAC},
		{"static ip", nil, ip("10.20.0.17"), "lab-0007", ByIP},
		{"ipv4-mapped static ip", nil, ip("::ffff:10.20.0.17"), "lab-0007", ByIP},
		{"unknown mac falls back to ip", mac("02:00:00:00:00:01"), ip("10.20.0.17"), "lab-0007", ByIP},
		{"dnsmasq lease", nil, ip("10.20.0.113"), "lab-0013", ByLease},
		{"dhcpd lease", nil, ip("10.20.0.114"), "lab-0014", ByLease},
		{"expired dnsmasq lease", nil, ip("10.20.0.110"), "", ""},
		{"expired dhcpd lease", nil, ip("10.20.0.115"), "", ""},
		{"free dhcpd lease", nil, ip("10.20.0.116"), "", ""},
		{"lease of unknown mac", nil, ip("10.20.0.199"), "", ""},
		{"skipped device", nil, ip("10.20.0.30"), "", ""},
	}
	for _, c := range cases {
		var d flowpb.Device
		ok := iv.Attribute(c.mac, c.addr, &d)
		if ok != (c.id != "") || d.Id != c.id || d.AttributedBy != c.by {
			t.Errorf("%s: got %v %q by %q, want %q by %q", c.name, ok, d.Id, d.AttributedBy, c.id, c.by)
		}
	}
	var d flowpb.Device
	if !iv.Attribute(nil, ip("10.20.0.17"), &d) || d.Model != "Redmi 1S" || d.Group != "india-retail" || d.OsVersion != "4.4.4" {
		t.Errorf("device fields: %v", &d)
	}
	m99, a113 := mac("a4:50:46:00:00:99"), ip("10.20.0.113")
	allocs := testing.AllocsPerRun(1000, func() {
		iv.Attribute(m99, a113, &d)
	})
	if allocs != 0 && !raceEnabled {
		t.Errorf("Attribute allocates %.1f", allocs)
	}

	// Unchanged files: no reload.
	if changed, err := iv.Reload(); err != nil || changed {
		t.Errorf("reload of unchanged files: %v %v", changed, err)
	}
	// Edit the inventory: lab-0013 gets a static IP; a broken file keeps the old state.
	writeFile(t, inv, strings.Replace(string(src), "model: leased only", "model: leased only\n    ips: [\"10.20.0.40\"]", 1), t0.Add(time.Minute))
	if changed, err := iv.Reload(); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	if !iv.Attribute(nil, ip("10.20.0.40"), &d) || d.Id != "lab-0013" {
		t.Errorf("after reload: %v", &d)
	}
	writeFile(t, inv, "devices: [unclosed", t0.Add(2*time.Minute))
	if _, err := iv.Reload(); err == nil {
		t.Error("broken inventory accepted")
	}
	if !iv.Attribute(nil, ip("10.20.0.40"), &d) || d.Id != "lab-0013" {
		t.Errorf("broken reload replaced the inventory: %v", &d)
	}
	// Lease file change: lab-0013 moves to a new address.
	writeFile(t, dnsmasq, "0 a4:50:46:00:00:13 10.20.0.213 phone13 *\n", t0.Add(3*time.Minute))
	if changed, _ := iv.Reload(); !changed {
		t.Error("lease change not picked up")
	}
	if !iv.Attribute(nil, ip("10.20.0.213"), &d) || d.AttributedBy != ByLease || iv.Attribute(nil, ip("10.20.0.113"), &d) {
		t.Errorf("lease reload: %v", &d)
	}
}

func strconvI(v int64) string { return strconvFormat(v) }

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "path: ") {
		t.Errorf("empty path: %v", err)
	}
	c.Path = "testdata/inventory.yaml"
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	c.ReloadInterval = 0
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "reload_interval: ") {
		t.Errorf("zero interval: %v", err)
	}
}
