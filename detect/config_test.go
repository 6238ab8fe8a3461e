package detect

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultConfigValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidationErrors(t *testing.T) {
	cases := []struct {
		key string
		mut func(*Config)
	}{
		{"suppression:", func(c *Config) { c.Suppression = 0 }},
		{"beaconing.threshold:", func(c *Config) { c.Beacon.Threshold = 1.5 }},
		{"beaconing.unique_connections:", func(c *Config) { c.Beacon.UniqueConnections = 3 }},
		{"beaconing.max_timestamps:", func(c *Config) { c.Beacon.MaxTimestamps = 3; c.Beacon.UniqueConnections = 4 }},
		{"beaconing.window:", func(c *Config) { c.Beacon.Window = 25 * time.Nanosecond }},
		{"beaconing.long_conn_thresholds:", func(c *Config) { c.Beacon.LongConnThresholds[2] = time.Hour }},
		{"upload_volume.alpha:", func(c *Config) { c.Volume.Alpha = 0 }},
		{"upload_volume.z_threshold:", func(c *Config) { c.Volume.ZThreshold = -1 }},
		{"upload_volume.flow_ratio:", func(c *Config) { c.Volume.FlowRatio = 0.5 }},
		{"upload_volume.warmup_windows:", func(c *Config) { c.Volume.WarmupWindows = 0 }},
		{"dns_tunnel.max_tracked:", func(c *Config) { c.DNS.MaxTracked = 50 }},
		{"dns_tunnel.min_entropy:", func(c *Config) { c.DNS.MinEntropy = 9 }},
		{"dns_tunnel.unique_subdomains:", func(c *Config) { c.DNS.UniqueSubdomains = 0 }},
		{"identifier_leak.default_severity:", func(c *Config) { c.IdentifierLeak.DefaultSeverity = "severe" }},
		{"identifier_leak.type_severity.imei:", func(c *Config) { c.IdentifierLeak.TypeSeverity["imei"] = "urgent" }},
		{"destination_policy.groups.retail:", func(c *Config) {
			c.Policy.Groups = map[string]GroupPolicy{"retail": {DenyCountries: []string{"china"}}}
		}},
		{"destination_policy.groups.retail:", func(c *Config) {
			c.Policy.Groups = map[string]GroupPolicy{"retail": {AllowASNs: []uint32{0}}}
		}},
		{"first_seen_destination.learning:", func(c *Config) { c.FirstSeen.Learning = 0 }},
	}
	for _, tc := range cases {
		c := DefaultConfig()
		tc.mut(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.key) {
			t.Errorf("want error starting with %q, got %v", tc.key, err)
		}
		if _, err := New(c); err == nil {
			t.Errorf("New accepted invalid config (%s)", tc.key)
		}
	}
}
