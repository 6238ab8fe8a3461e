package detect

import (
	"strings"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/config"
)

// The section must load through the project's config loader: durations,
// the long-connection threshold array and per-group policy maps.
func TestConfigLoadsFromYAML(t *testing.T) {
	var root struct {
		Detect Config `yaml:"detect" help:"detectors"`
	}
	root.Detect = DefaultConfig()
	doc := `
detect:
  suppression: 30m
  beaconing:
    threshold: 0.8
    long_conn_thresholds: [2h, 4h, 8h, 12h]
  destination_policy:
    groups:
      india-retail:
        deny_countries: [CN]
      bank:
        allow_asns: [15169, 16509]
  dns_tunnel:
    unique_subdomains: 200
`
	if err := config.LoadYAML([]byte(doc), &root); err != nil {
		t.Fatal(err)
	}
	c := root.Detect
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Suppression != 30*time.Minute || c.Beacon.Threshold != 0.8 || c.Beacon.LongConnThresholds[0] != 2*time.Hour ||
		c.Policy.Groups["india-retail"].DenyCountries[0] != "CN" || c.Policy.Groups["bank"].AllowASNs[1] != 16509 ||
		c.DNS.UniqueSubdomains != 200 || c.Volume.ZThreshold != 3 {
		t.Fatalf("loaded %+v", c)
	}
	for _, f := range config.Fields(&root) {
		if f.Help == "" {
			t.Errorf("%s has no help text", f.Key)
		}
		if !strings.HasPrefix(f.Key, "detect.") {
			t.Errorf("key %s", f.Key)
		}
	}
}
