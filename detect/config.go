package detect

import (
	"fmt"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// Config holds every detector's settings. Each detector has its own section
// with an enabled switch; thresholds default to the published anchors cited in
// docs/detectors.md (RITA v5, Splunk ESCU, Elastic DED).
type Config struct {
	Suppression   time.Duration `yaml:"suppression" help:"repeat matches of one dedup key within this window update the open alert instead of raising a new one (Zeek default 1h)"`
	MaxFlowIDs    int           `yaml:"max_flow_ids" help:"flow ids sampled into each alert"`
	DeviceIdleTTL time.Duration `yaml:"device_idle_ttl" help:"drop all state of a device not seen for this long (record time)"`
	MaxDevices    int           `yaml:"max_devices" help:"devices tracked per engine; the longest idle is evicted beyond this"`
	MaxOpenAlerts int           `yaml:"max_open_alerts" help:"open (suppressing) alerts kept per engine; the oldest is closed beyond this"`

	IdentifierLeak IdentifierLeakConfig `yaml:"identifier_leak" help:"identifier matches found by enrich"`
	Cleartext      CleartextConfig      `yaml:"identifiers_over_cleartext" help:"identifier matches in flows without TLS/QUIC"`
	Policy         PolicyConfig         `yaml:"destination_policy" help:"per device group country/ASN allow and deny lists"`
	Volume         VolumeConfig         `yaml:"upload_volume" help:"bytes sent per destination against the device's own baseline"`
	Beacon         BeaconConfig         `yaml:"beaconing" help:"RITA-style beacons, long connections and strobes"`
	DNS            DNSConfig            `yaml:"dns_tunnel" help:"DNS tunnelling per device and registrable domain"`
	FirstSeen      FirstSeenConfig      `yaml:"first_seen_destination" help:"destination country/ASN never seen before for a device model"`
}

// IdentifierLeakConfig configures identifier_leak.
type IdentifierLeakConfig struct {
	Enabled         bool              `yaml:"enabled" help:"raise an alert for every identifier match"`
	TypeSeverity    map[string]string `yaml:"type_severity" help:"base severity per identifier_type (info, low, medium, high, critical); others use default_severity"`
	DefaultSeverity string            `yaml:"default_severity" help:"base severity of identifier types not listed in type_severity"`
}

// CleartextConfig configures identifiers_over_cleartext.
type CleartextConfig struct {
	Enabled bool `yaml:"enabled" help:"raise a separate alert when an identifier crossed the network in cleartext"`
}

// GroupPolicy is the destination policy of one device group. Deny lists win;
// a non-empty allow list makes everything else a violation.
type GroupPolicy struct {
	DenyCountries  []string `yaml:"deny_countries" help:"ISO 3166-1 alpha-2 codes the group must not talk to"`
	AllowCountries []string `yaml:"allow_countries" help:"if set, the only countries the group may talk to"`
	DenyASNs       []uint32 `yaml:"deny_asns" help:"ASNs the group must not talk to"`
	AllowASNs      []uint32 `yaml:"allow_asns" help:"if set, the only ASNs the group may talk to"`
}

// PolicyConfig configures destination_policy.
type PolicyConfig struct {
	Enabled bool                   `yaml:"enabled" help:"check destinations against group policies"`
	Window  time.Duration          `yaml:"window" help:"one alert per device, destination and window; bytes and flows are counted per window"`
	Groups  map[string]GroupPolicy `yaml:"groups" help:"policy per device group; the group \"*\" applies to devices whose group has no entry"`
}

// VolumeConfig configures upload_volume.
type VolumeConfig struct {
	Enabled         bool          `yaml:"enabled" help:"compare bytes sent per destination org/country with the device's baseline"`
	Window          time.Duration `yaml:"window" help:"baseline bucket length (Elastic DED uses 3h)"`
	Alpha           float64       `yaml:"alpha" help:"EWMA smoothing factor of the per-window baseline, in (0,1]"`
	WarmupWindows   int           `yaml:"warmup_windows" help:"windows of baseline needed before z-scores alert"`
	ZThreshold      float64       `yaml:"z_threshold" help:"alert when (bytes-mean)/stddev reaches this (Splunk 2, community 3)"`
	MinBytes        uint64        `yaml:"min_bytes" help:"never alert on a window below this many bytes"`
	MinStddevFrac   float64       `yaml:"min_stddev_frac" help:"stddev floor as a fraction of the mean so constant baselines do not make every byte anomalous"`
	MaxDestinations int           `yaml:"max_destinations" help:"destinations with a baseline per device; the longest idle is evicted"`
	FlowMinBytes    uint64        `yaml:"flow_min_bytes" help:"single-flow rule: bytes_out needed"`
	FlowRatio       float64       `yaml:"flow_ratio" help:"single-flow rule: bytes_out must be at least this multiple of bytes_in"`
}

// BeaconConfig configures beaconing, long connections and strobes.
type BeaconConfig struct {
	Enabled            bool             `yaml:"enabled" help:"RITA v5 beacon score per device and destination (IP and host)"`
	Window             time.Duration    `yaml:"window" help:"sliding window scored (RITA 24h, split into 24 bins)"`
	Threshold          float64          `yaml:"threshold" help:"alert when the beacon score reaches this (RITA low band 0.75)"`
	UniqueConnections  int              `yaml:"unique_connections" help:"distinct connection timestamps (seconds) needed before scoring (RITA minimum 4)"`
	MaxTimestamps      int              `yaml:"max_timestamps" help:"most recent connections kept per pair for the timestamp and size scores"`
	ScoreInterval      time.Duration    `yaml:"score_interval" help:"rescore a pair at most this often (record time)"`
	MaxPairs           int              `yaml:"max_pairs" help:"destinations tracked per device; the longest idle is evicted"`
	LongConnEnabled    bool             `yaml:"long_conn_enabled" help:"alert on total connection time per pair over the window"`
	LongConnThresholds [4]time.Duration `yaml:"long_conn_thresholds" help:"base, low, medium, high total duration (RITA 1h, 4h, 8h, 12h)"`
	StrobeEnabled      bool             `yaml:"strobe_enabled" help:"alert on pairs with at least strobe_connections connections in the window"`
	StrobeConnections  int              `yaml:"strobe_connections" help:"connections per pair per window that make a strobe (RITA 86400 = 1/s over 24h)"`

	// RITA v5's prevalence modifier: a destination most of the lab talks to
	// (an OS or CDN endpoint) is less likely a C2 channel than one only a
	// phone or two use, whatever the timing statistics say.
	PrevalenceMinDevices int     `yaml:"prevalence_min_devices" help:"devices with beacon state needed before the prevalence modifier applies (fractions of a handful of phones say little)"`
	PrevalenceHigh       float64 `yaml:"prevalence_decrease_threshold" help:"fraction of devices contacting a destination at or above which its beacon score is lowered (RITA 0.5)"`
	PrevalenceDecrease   float64 `yaml:"prevalence_score_decrease" help:"subtracted from the beacon score of destinations that common (RITA 0.15; 0 disables)"`
	PrevalenceLow        float64 `yaml:"prevalence_increase_threshold" help:"fraction of devices at or below which a destination's beacon score is raised (RITA 0.02)"`
	PrevalenceIncrease   float64 `yaml:"prevalence_score_increase" help:"added to the beacon score of destinations that rare (RITA's sample config 0.15; default 0: rare benign destinations are the norm in a lab)"`
}

// DNSConfig configures dns_tunnel.
type DNSConfig struct {
	Enabled          bool          `yaml:"enabled" help:"score DNS queries per device and registrable domain"`
	Window           time.Duration `yaml:"window" help:"counting window (RITA and Splunk count per day / search window)"`
	UniqueSubdomains int           `yaml:"unique_subdomains" help:"distinct names under one registrable domain per window that alert (RITA base 100)"`
	MaxTracked       int           `yaml:"max_tracked" help:"distinct names remembered per domain and window (exact set of 32-bit hashes; counts saturate here)"`
	QueryChars       int           `yaml:"query_chars" help:"characters of subdomain text per domain and window that alert (Splunk 10000)"`
	QueryRate        int           `yaml:"query_rate" help:"queries per domain and window that alert (0 disables)"`
	LongLabel        int           `yaml:"long_label" help:"subdomain length counted as long (community Zeek 52)"`
	MinEntropy       float64       `yaml:"min_entropy" help:"Shannon entropy (bits/char) a long subdomain needs to count as encoded"`
	EncodedQueries   int           `yaml:"encoded_queries" help:"long high-entropy queries per domain and window that alert (0 disables)"`
	MaxDomains       int           `yaml:"max_domains" help:"registrable domains tracked per device; the longest idle is evicted"`
}

// FirstSeenConfig configures first_seen_destination.
type FirstSeenConfig struct {
	Enabled     bool          `yaml:"enabled" help:"alert on a destination country or ASN new to a device model"`
	Learning    time.Duration `yaml:"learning" help:"record time per model spent learning before new destinations alert"`
	MaxPerModel int           `yaml:"max_per_model" help:"countries plus ASNs remembered per model"`
}

// DefaultConfig enables every detector with anchored defaults and no
// destination policy groups (policy needs site-specific lists).
func DefaultConfig() Config {
	return Config{
		Suppression:   time.Hour,
		MaxFlowIDs:    8,
		DeviceIdleTTL: 48 * time.Hour,
		MaxDevices:    100_000,
		MaxOpenAlerts: 100_000,
		IdentifierLeak: IdentifierLeakConfig{
			Enabled: true,
			TypeSeverity: map[string]string{
				"imei": "high", "imeisv": "high", "imsi": "high", "msisdn": "high", "iccid": "high",
				"contact": "high", "contacts": "high", "sms": "high", "canary": "high",
				"wifi_mac": "medium", "bt_mac": "medium", "android_id": "medium", "serial": "medium",
				"bssid": "medium", "ssid": "medium", "email": "medium",
				"aaid": "low", "advertising_id": "low", "gaid": "low", "idfa": "low",
			},
			DefaultSeverity: "medium",
		},
		Cleartext: CleartextConfig{Enabled: true},
		Policy:    PolicyConfig{Enabled: true, Window: time.Hour},
		Volume: VolumeConfig{
			Enabled: true, Window: time.Hour, Alpha: 0.2, WarmupWindows: 6, ZThreshold: 3,
			MinBytes: 5 << 20, MinStddevFrac: 0.1, MaxDestinations: 64,
			FlowMinBytes: 10 << 20, FlowRatio: 10,
		},
		Beacon: BeaconConfig{
			Enabled: true, Window: 24 * time.Hour, Threshold: 0.75, UniqueConnections: 4,
			MaxTimestamps: 128, ScoreInterval: 15 * time.Minute, MaxPairs: 256,
			LongConnEnabled:    true,
			LongConnThresholds: [4]time.Duration{time.Hour, 4 * time.Hour, 8 * time.Hour, 12 * time.Hour},
			StrobeEnabled:      true, StrobeConnections: 86_400,
			PrevalenceMinDevices: 10, PrevalenceHigh: 0.5, PrevalenceDecrease: 0.15, PrevalenceLow: 0.02, PrevalenceIncrease: 0,
		},
		DNS: DNSConfig{
			Enabled: true, Window: 24 * time.Hour, UniqueSubdomains: 100, MaxTracked: 1024,
			QueryChars: 10_000, QueryRate: 0, LongLabel: 52, MinEntropy: 3.5, EncodedQueries: 20, MaxDomains: 64,
		},
		FirstSeen: FirstSeenConfig{Enabled: true, Learning: 24 * time.Hour, MaxPerModel: 4096},
	}
}

// Validate checks every value; errors start with the yaml key they concern.
func (c Config) Validate() error {
	pos := func(key string, v int64) error {
		if v <= 0 {
			return fmt.Errorf("%s: must be positive, got %d", key, v)
		}
		return nil
	}
	for _, chk := range []struct {
		key string
		v   int64
	}{
		{"suppression", int64(c.Suppression)},
		{"max_flow_ids", int64(c.MaxFlowIDs)},
		{"device_idle_ttl", int64(c.DeviceIdleTTL)},
		{"max_devices", int64(c.MaxDevices)},
		{"max_open_alerts", int64(c.MaxOpenAlerts)},
		{"destination_policy.window", int64(c.Policy.Window)},
		{"upload_volume.window", int64(c.Volume.Window)},
		{"upload_volume.max_destinations", int64(c.Volume.MaxDestinations)},
		{"beaconing.window", int64(c.Beacon.Window)},
		{"beaconing.max_timestamps", int64(c.Beacon.MaxTimestamps)},
		{"beaconing.score_interval", int64(c.Beacon.ScoreInterval)},
		{"beaconing.max_pairs", int64(c.Beacon.MaxPairs)},
		{"beaconing.strobe_connections", int64(c.Beacon.StrobeConnections)},
		{"dns_tunnel.window", int64(c.DNS.Window)},
		{"dns_tunnel.unique_subdomains", int64(c.DNS.UniqueSubdomains)},
		{"dns_tunnel.max_tracked", int64(c.DNS.MaxTracked)},
		{"dns_tunnel.max_domains", int64(c.DNS.MaxDomains)},
		{"dns_tunnel.long_label", int64(c.DNS.LongLabel)},
		{"first_seen_destination.learning", int64(c.FirstSeen.Learning)},
		{"first_seen_destination.max_per_model", int64(c.FirstSeen.MaxPerModel)},
	} {
		if err := pos(chk.key, chk.v); err != nil {
			return err
		}
	}
	if _, err := parseSeverity(c.IdentifierLeak.DefaultSeverity); err != nil {
		return fmt.Errorf("identifier_leak.default_severity: %w", err)
	}
	for t, s := range c.IdentifierLeak.TypeSeverity {
		if _, err := parseSeverity(s); err != nil {
			return fmt.Errorf("identifier_leak.type_severity.%s: %w", t, err)
		}
	}
	for g, p := range c.Policy.Groups {
		key := "destination_policy.groups." + g
		for _, cc := range append(append([]string(nil), p.DenyCountries...), p.AllowCountries...) {
			if !isCountryCode(cc) {
				return fmt.Errorf("%s: invalid country code %q (want ISO 3166-1 alpha-2 like CN)", key, cc)
			}
		}
		for _, a := range append(append([]uint32(nil), p.DenyASNs...), p.AllowASNs...) {
			if a == 0 {
				return fmt.Errorf("%s: ASN 0 is not a valid ASN", key)
			}
		}
	}
	v := c.Volume
	if !(v.Alpha > 0 && v.Alpha <= 1) {
		return fmt.Errorf("upload_volume.alpha: must be in (0,1], got %g", v.Alpha)
	}
	if v.WarmupWindows < 1 {
		return fmt.Errorf("upload_volume.warmup_windows: must be at least 1, got %d", v.WarmupWindows)
	}
	if !(v.ZThreshold > 0) {
		return fmt.Errorf("upload_volume.z_threshold: must be positive, got %g", v.ZThreshold)
	}
	if v.MinStddevFrac < 0 {
		return fmt.Errorf("upload_volume.min_stddev_frac: must not be negative, got %g", v.MinStddevFrac)
	}
	if !(v.FlowRatio >= 1) {
		return fmt.Errorf("upload_volume.flow_ratio: must be at least 1, got %g", v.FlowRatio)
	}
	b := c.Beacon
	if b.Window%time.Duration(24) != 0 || b.Window < 24*time.Second {
		return fmt.Errorf("beaconing.window: must be at least 24s and divisible into 24 bins, got %s", b.Window)
	}
	if !(b.Threshold > 0 && b.Threshold <= 1) {
		return fmt.Errorf("beaconing.threshold: must be in (0,1], got %g", b.Threshold)
	}
	if b.UniqueConnections < 4 {
		return fmt.Errorf("beaconing.unique_connections: must be at least 4 (RITA minimum), got %d", b.UniqueConnections)
	}
	if b.MaxTimestamps < b.UniqueConnections {
		return fmt.Errorf("beaconing.max_timestamps: must be at least unique_connections (%d), got %d", b.UniqueConnections, b.MaxTimestamps)
	}
	if b.PrevalenceMinDevices < 1 {
		return fmt.Errorf("beaconing.prevalence_min_devices: must be at least 1, got %d", b.PrevalenceMinDevices)
	}
	for _, f := range []struct {
		key string
		v   float64
	}{
		{"beaconing.prevalence_decrease_threshold", b.PrevalenceHigh},
		{"beaconing.prevalence_score_decrease", b.PrevalenceDecrease},
		{"beaconing.prevalence_increase_threshold", b.PrevalenceLow},
		{"beaconing.prevalence_score_increase", b.PrevalenceIncrease},
	} {
		if !(f.v >= 0 && f.v <= 1) {
			return fmt.Errorf("%s: must be in [0,1], got %g", f.key, f.v)
		}
	}
	if b.PrevalenceLow >= b.PrevalenceHigh {
		return fmt.Errorf("beaconing.prevalence_increase_threshold: must be below prevalence_decrease_threshold (%g), got %g", b.PrevalenceHigh, b.PrevalenceLow)
	}
	for i := range b.LongConnThresholds {
		if b.LongConnThresholds[i] <= 0 || (i > 0 && b.LongConnThresholds[i] <= b.LongConnThresholds[i-1]) {
			return fmt.Errorf("beaconing.long_conn_thresholds: must be positive and strictly increasing, got %v", b.LongConnThresholds)
		}
	}
	d := c.DNS
	if d.MaxTracked < d.UniqueSubdomains {
		return fmt.Errorf("dns_tunnel.max_tracked: must be at least unique_subdomains (%d), got %d", d.UniqueSubdomains, d.MaxTracked)
	}
	if d.QueryChars < 0 || d.QueryRate < 0 || d.EncodedQueries < 0 {
		return fmt.Errorf("dns_tunnel: query_chars, query_rate and encoded_queries must not be negative")
	}
	if d.MinEntropy < 0 || d.MinEntropy > 8 {
		return fmt.Errorf("dns_tunnel.min_entropy: must be in [0,8] bits/char, got %g", d.MinEntropy)
	}
	return nil
}

func isCountryCode(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}

func parseSeverity(s string) (flowpb.Severity, error) {
	switch s {
	case "info":
		return flowpb.Severity_SEVERITY_INFO, nil
	case "low":
		return flowpb.Severity_SEVERITY_LOW, nil
	case "medium":
		return flowpb.Severity_SEVERITY_MEDIUM, nil
	case "high":
		return flowpb.Severity_SEVERITY_HIGH, nil
	case "critical":
		return flowpb.Severity_SEVERITY_CRITICAL, nil
	}
	return 0, fmt.Errorf("unknown severity %q (want info, low, medium, high or critical)", s)
}
