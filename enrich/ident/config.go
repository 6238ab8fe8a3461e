package ident

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/zeebo/xxh3"
)

// Config configures identifier matching. The secret keys every stored hash:
// without it an attacker holding the index (a heap dump) could enumerate
// the small IMEI/MAC spaces offline; with it the index is useless outside
// the deployment.
type Config struct {
	Secret          string        `yaml:"secret" help:"per-deployment secret keying the identifier hashes (>= 16 characters, or 0x + 16 hex digits); never logged"`
	SecretFile      string        `yaml:"secret_file" help:"file holding the secret, used when secret is empty"`
	MaxLayers       int           `yaml:"max_layers" help:"encoding layers peeled per field (url, json escapes, base64, gzip/deflate), 0 to 3"`
	MaxScanBytes    int           `yaml:"max_scan_bytes" help:"bytes scanned per record (or Scan call) across all fields and decoded layers"`
	MaxWindowProbes int           `yaml:"max_window_probes" help:"sliding-window probes per record, bounding the search for identifiers glued inside longer runs"`
	MaxInflateBytes int           `yaml:"max_inflate_bytes" help:"bytes decompressed from one gzip/zlib/deflate stream"`
	AccessPoints    []AccessPoint `yaml:"access_points" help:"lab Wi-Fi access points whose BSSID and SSID are matched like device identifiers"`
}

// AccessPoint is a lab Wi-Fi network. Apps use the BSSID/SSID of the network a
// phone is on as a location proxy ("50 Ways to Leak Your Data").
type AccessPoint struct {
	Name  string `yaml:"name" help:"name reported as device_id of matches, e.g. ap:lab-2g"`
	BSSID string `yaml:"bssid" help:"access point MAC address"`
	SSID  string `yaml:"ssid" help:"network name"`
}

// DefaultConfig returns the defaults (no secret: one must be configured).
func DefaultConfig() Config {
	return Config{
		MaxLayers:       3,
		MaxScanBytes:    1 << 20,
		MaxWindowProbes: 1 << 16,
		MaxInflateBytes: 64 << 10,
	}
}

// Validate checks the settings; errors start with the key concerned.
func (c Config) Validate() error {
	var errs []error
	if c.Secret == "" && c.SecretFile == "" {
		errs = append(errs, errors.New("secret: required (or secret_file)"))
	}
	if c.Secret != "" && len(c.Secret) < 16 {
		errs = append(errs, fmt.Errorf("secret: want at least 16 characters, got %d", len(c.Secret)))
	}
	if c.Secret == "" && c.SecretFile != "" {
		if _, err := os.Stat(c.SecretFile); err != nil {
			errs = append(errs, fmt.Errorf("secret_file: %w", err))
		}
	}
	if c.MaxLayers < 0 || c.MaxLayers > maxLayers {
		errs = append(errs, fmt.Errorf("max_layers: want 0 to %d, got %d", maxLayers, c.MaxLayers))
	}
	if c.MaxScanBytes < 1 {
		errs = append(errs, fmt.Errorf("max_scan_bytes: want > 0, got %d", c.MaxScanBytes))
	}
	if c.MaxWindowProbes < 0 {
		errs = append(errs, fmt.Errorf("max_window_probes: want >= 0, got %d", c.MaxWindowProbes))
	}
	if c.MaxInflateBytes < 0 {
		errs = append(errs, fmt.Errorf("max_inflate_bytes: want >= 0, got %d", c.MaxInflateBytes))
	}
	for i, ap := range c.AccessPoints {
		if ap.Name == "" {
			errs = append(errs, fmt.Errorf("access_points[%d].name: required", i))
		}
		if ap.BSSID == "" && ap.SSID == "" {
			errs = append(errs, fmt.Errorf("access_points[%d]: bssid or ssid required", i))
		}
		if ap.BSSID != "" {
			if _, err := ParseMAC(ap.BSSID); err != nil {
				errs = append(errs, fmt.Errorf("access_points[%d].bssid: %w", i, err))
			}
		}
	}
	return errors.Join(errs...)
}

// seed derives the 64-bit xxh3 seed from the secret: "0x" followed by 16 hex
// digits is used as is, anything else is hashed down to 64 bits.
func (c Config) seed() (uint64, error) {
	sec := c.Secret
	if sec == "" {
		b, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return 0, fmt.Errorf("secret_file: %w", err)
		}
		sec = strings.TrimSpace(string(b))
		if len(sec) < 16 {
			return 0, fmt.Errorf("secret_file: secret shorter than 16 characters")
		}
	}
	if len(sec) == 18 && strings.HasPrefix(sec, "0x") {
		if v, err := strconv.ParseUint(sec[2:], 16, 64); err == nil {
			return v, nil
		}
	}
	return xxh3.HashString(sec), nil
}

// AccessPointIdentifiers returns the identifiers of the configured access
// points, to add to a Builder next to the inventory's.
func (c Config) AccessPointIdentifiers() []Identifier {
	var out []Identifier
	for _, ap := range c.AccessPoints {
		if ap.BSSID != "" {
			out = append(out, Identifier{Device: ap.Name, Type: TypeBSSID, Value: ap.BSSID})
		}
		if ap.SSID != "" {
			out = append(out, Identifier{Device: ap.Name, Type: TypeSSID, Value: ap.SSID})
		}
	}
	return out
}
