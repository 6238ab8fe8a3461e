package sim

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
)

func TestLuhn(t *testing.T) {
	// Known valid IMEI from public examples: 490154203237518.
	if got := luhnComplete("49015420323751"); got != "490154203237518" {
		t.Fatalf("luhn: %s", got)
	}
}

func TestGenerateDeterministicAndLabelled(t *testing.T) {
	o := DefaultOptions()
	o.Devices = 12
	a, b := Generate(o), Generate(o)
	var pa, pb bytes.Buffer
	if _, err := a.wire.writePcap(&pa); err != nil {
		t.Fatal(err)
	}
	if _, err := b.wire.writePcap(&pb); err != nil {
		t.Fatal(err)
	}
	if len(a.Truth) == 0 || len(a.Truth) != len(b.Truth) {
		t.Fatalf("truth rows %d vs %d", len(a.Truth), len(b.Truth))
	}
	scen := map[string]int{}
	carriers := map[string]bool{}
	for _, tr := range a.Truth {
		scen[tr.Scenario]++
		carriers[tr.Carrier] = true
	}
	for _, s := range []string{"leak", "beacon", "dns_tunnel", "bulk_upload", "first_seen"} {
		if scen[s] == 0 {
			t.Errorf("no %s scenario", s)
		}
	}
	for _, c := range append(append([]string{"tls-payload"}, httpCarriers...), nameCarriers...) {
		if !carriers[c] {
			t.Errorf("no leak over %s", c)
		}
	}
}

// The pcap must be readable by an independent tool, and the QUIC Initials and
// TLS ClientHellos must decode there with the SNI the truth says.
func TestPcapDecodesInTshark(t *testing.T) {
	tshark := testenv.Tool(t, "tshark")
	o := DefaultOptions()
	o.Devices = 9
	o.Background = 2
	c := Generate(o)
	dir := t.TempDir()
	files, err := c.WriteDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tshark, "-r", files.Pcap, "-Y", "quic", "-T", "fields", "-e", "tls.handshake.extensions_server_name").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	var snis []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasSuffix(l, ".api.adtrack-sg.com") {
			snis = append(snis, l)
		}
	}
	want := 0
	for _, tr := range c.Truth {
		if tr.Carrier == "quic-sni" {
			want++
		}
	}
	if want == 0 || len(snis) != want {
		t.Fatalf("tshark decoded %d QUIC SNIs, truth has %d quic-sni leaks", len(snis), want)
	}
}

// Every simulated frame fits a standard 1500-byte MTU (plus the Ethernet
// header), so the corpus can be replayed live onto a real lab link.
func TestFramesFitMTU(t *testing.T) {
	o := DefaultOptions()
	o.Devices = 9
	o.Background = 5
	c := Generate(o)
	for i, p := range c.wire.pkts {
		if len(p.data) > 1514 {
			t.Fatalf("frame %d is %d bytes", i, len(p.data))
		}
	}
}
