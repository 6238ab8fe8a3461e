// Package collector turns observed packets into exfilwatch flow records:
// the pcap replay path (ReadPcap: pure-Go decode + flow table) here, and the
// flow table (collector/flow) that the live eBPF path feeds as a flow.Sink.
package collector

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/exfilwatch/exfilwatch/collector/flow"
)

// Config is the collector section of the exfilwatch configuration.
type Config struct {
	Gateway         string        `yaml:"gateway" help:"gateway name written into every flow record"`
	Interfaces      []string      `yaml:"interfaces" help:"lab-facing and uplink interfaces to attach to, in slot order (record interface names)"`
	LabSubnets      []string      `yaml:"lab_subnets" help:"CIDR prefixes of lab devices; the device side of a flow becomes its source"`
	IdleTimeout     time.Duration `yaml:"idle_timeout" help:"export a flow after this long without packets"`
	ActiveTimeout   time.Duration `yaml:"active_timeout" help:"export long-lived flows this often, continuing them with delta counters"`
	FinGrace        time.Duration `yaml:"fin_grace" help:"after FIN from both sides, wait this long for the last ACK before exporting"`
	MaxFlows        int           `yaml:"max_flows" help:"flow table size; the least recently active flow is evicted when full"`
	SnippetPackets  int           `yaml:"snippet_packets" help:"payload-carrying packets kept per flow direction for the payload parsers"`
	SnippetBytes    int           `yaml:"snippet_bytes" help:"payload bytes kept per snippet packet"`
	CommunityIDSeed uint16        `yaml:"community_id_seed" help:"Community ID v1 seed (0 matches Zeek/Suricata defaults)"`
	ExpireInterval  time.Duration `yaml:"expire_interval" help:"how often the live collector checks flows for timeouts"`
}

// DefaultConfig returns the documented defaults: 15 s idle, 60 s active,
// 65536 flows, 4 snippets of 1024 bytes per direction.
func DefaultConfig() Config {
	return Config{
		Gateway:        "gateway",
		IdleTimeout:    15 * time.Second,
		ActiveTimeout:  60 * time.Second,
		FinGrace:       time.Second,
		MaxFlows:       65536,
		SnippetPackets: 4,
		SnippetBytes:   1024,
		ExpireInterval: time.Second,
	}
}

// Validate checks the values; errors start with the yaml key they concern.
func (c Config) Validate() error {
	var errs []error
	if c.Gateway == "" {
		errs = append(errs, errors.New("gateway: must not be empty"))
	}
	if len(c.Interfaces) > 64 {
		errs = append(errs, fmt.Errorf("interfaces: at most 64 interfaces, got %d", len(c.Interfaces)))
	}
	for i, s := range c.LabSubnets {
		if _, err := netip.ParsePrefix(s); err != nil {
			errs = append(errs, fmt.Errorf("lab_subnets[%d]: invalid CIDR %q: %v", i, s, err))
		}
	}
	if c.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("idle_timeout: must be positive, got %s", c.IdleTimeout))
	}
	if c.ActiveTimeout <= 0 {
		errs = append(errs, fmt.Errorf("active_timeout: must be positive, got %s", c.ActiveTimeout))
	}
	if c.FinGrace <= 0 {
		errs = append(errs, fmt.Errorf("fin_grace: must be positive, got %s", c.FinGrace))
	}
	if c.MaxFlows < 1 || c.MaxFlows > 1<<26 {
		errs = append(errs, fmt.Errorf("max_flows: must be in 1..%d, got %d", 1<<26, c.MaxFlows))
	}
	if c.SnippetPackets < 0 || c.SnippetPackets > 64 {
		errs = append(errs, fmt.Errorf("snippet_packets: must be in 0..64, got %d", c.SnippetPackets))
	}
	if c.SnippetBytes < 0 || c.SnippetBytes > 65535 {
		errs = append(errs, fmt.Errorf("snippet_bytes: must be in 0..65535, got %d", c.SnippetBytes))
	}
	if c.ExpireInterval <= 0 {
		errs = append(errs, fmt.Errorf("expire_interval: must be positive, got %s", c.ExpireInterval))
	}
	return errors.Join(errs...)
}

// TableConfig converts c into the flow table's configuration. c must have
// passed Validate; invalid lab subnets are skipped.
func (c Config) TableConfig(parse flow.ParseFunc) flow.TableConfig {
	var subnets []netip.Prefix
	for _, s := range c.LabSubnets {
		if p, err := netip.ParsePrefix(s); err == nil {
			subnets = append(subnets, p.Masked())
		}
	}
	return flow.TableConfig{
		Gateway:         c.Gateway,
		Interfaces:      c.Interfaces,
		LabSubnets:      subnets,
		IdleTimeout:     c.IdleTimeout,
		ActiveTimeout:   c.ActiveTimeout,
		FinGrace:        c.FinGrace,
		MaxFlows:        c.MaxFlows,
		SnippetPackets:  c.SnippetPackets,
		SnippetBytes:    c.SnippetBytes,
		CommunityIDSeed: c.CommunityIDSeed,
		Parse:           parse,
	}
}
