package geo

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Config selects the databases and how their records map onto flowpb.Geo.
type Config struct {
	Databases      []string           `yaml:"databases" help:"MMDB (.mmdb) or CSV range files (optionally .gz), merged in order; a later file overrides earlier ones attribute by attribute"`
	Mappings       map[string]Mapping `yaml:"mappings" help:"per-file layout and field paths, keyed by the path as written in databases or by its base name"`
	LabSubnets     []string           `yaml:"lab_subnets" help:"CIDR prefixes of the phone lab; addresses inside get addr_class LAB and no geo data"`
	NAT64Prefixes  []string           `yaml:"nat64_prefixes" help:"/96 NAT64 prefixes whose embedded IPv4 address is looked up instead (e.g. 64:ff9b::/96)"`
	ReloadInterval time.Duration      `yaml:"reload_interval" help:"how often to poll the database files for changes (size or mtime); 0 disables reloading"`
	Verify         bool               `yaml:"verify" help:"run the full MMDB structural verifier before loading (slower start, catches more corruption)"`
}

// Mapping describes one database's record layout. Empty fields fall back to
// the defaults of the layout, detected from the file when Layout is "auto".
type Mapping struct {
	Layout     string   `yaml:"layout" help:"record layout: auto, geoip2 (country.iso_code, city.names.en, location.*) or flat (country_code, city, asn, as_name, ...)"`
	Country    []string `yaml:"country" help:"dotted field paths for the ISO country code, first present wins"`
	City       []string `yaml:"city" help:"dotted field paths for the city name"`
	Latitude   []string `yaml:"latitude" help:"dotted field paths for the latitude"`
	Longitude  []string `yaml:"longitude" help:"dotted field paths for the longitude"`
	ASN        []string `yaml:"asn" help:"dotted field paths for the AS number (number or \"AS123\" string)"`
	Org        []string `yaml:"org" help:"dotted field paths for the AS organisation"`
	CSVColumns []string `yaml:"csv_columns" help:"CSV column meanings: first_ip, last_ip, asn, org, country, city, latitude, longitude or \"\" to ignore"`
}

// DefaultConfig returns a configuration without databases (every address is
// only classified), the well-known NAT64 prefix and a 1-minute reload poll.
func DefaultConfig() Config {
	return Config{
		NAT64Prefixes:  []string{"64:ff9b::/96"},
		ReloadInterval: time.Minute,
	}
}

var csvColumnNames = []string{"first_ip", "last_ip", "asn", "org", "country", "city", "latitude", "longitude", ""}

// Validate checks the configuration; errors start with the key concerned.
func (c Config) Validate() error {
	for i, p := range c.Databases {
		if p == "" {
			return fmt.Errorf("databases[%d]: empty path", i)
		}
		st, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("databases[%d]: file not found: %s", i, p)
			}
			return fmt.Errorf("databases[%d]: %s: %w", i, p, err)
		}
		if st.IsDir() {
			return fmt.Errorf("databases[%d]: is a directory: %s", i, p)
		}
	}
	for k, m := range c.Mappings {
		if !slices.Contains(c.Databases, k) && !slices.ContainsFunc(c.Databases, func(p string) bool { return filepath.Base(p) == k }) {
			return fmt.Errorf("mappings.%s: matches no file in databases", k)
		}
		switch m.Layout {
		case "", "auto", layoutGeoIP2, layoutFlat:
		default:
			return fmt.Errorf("mappings.%s.layout: unknown layout %q (want auto, geoip2 or flat)", k, m.Layout)
		}
		for _, col := range m.CSVColumns {
			if !slices.Contains(csvColumnNames, col) {
				return fmt.Errorf("mappings.%s.csv_columns: unknown column %q (want one of %s)", k, col, strings.Join(csvColumnNames[:len(csvColumnNames)-1], ", "))
			}
		}
		if len(m.CSVColumns) > 0 && (!slices.Contains(m.CSVColumns, "first_ip") || !slices.Contains(m.CSVColumns, "last_ip")) {
			return fmt.Errorf("mappings.%s.csv_columns: first_ip and last_ip are required", k)
		}
	}
	if _, err := parsePrefixes(c.LabSubnets); err != nil {
		return fmt.Errorf("lab_subnets: %w", err)
	}
	ps, err := parsePrefixes(c.NAT64Prefixes)
	if err != nil {
		return fmt.Errorf("nat64_prefixes: %w", err)
	}
	for _, p := range ps {
		if p.Bits() != 96 || !p.Addr().Is6() {
			return fmt.Errorf("nat64_prefixes: %s: only IPv6 /96 prefixes are supported", p)
		}
	}
	if c.ReloadInterval < 0 {
		return fmt.Errorf("reload_interval: must not be negative")
	}
	return nil
}

func parsePrefixes(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("invalid prefix %q", s)
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// mappingFor returns the mapping configured for path, if any.
func (c Config) mappingFor(path string) Mapping {
	if m, ok := c.Mappings[path]; ok {
		return m
	}
	return c.Mappings[filepath.Base(path)]
}
