// Package pipeline wires exfilwatch's stages together: it holds the complete
// configuration and runs each stage (collect, enrich, detect, sink) between
// a Reader and a Writer, Kafka or JSON lines. The stage subcommands and the
// all-in-one demo share this code; cmd/exfilwatch only parses flags.
package pipeline

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/exfilwatch/exfilwatch/bpf"
	"github.com/exfilwatch/exfilwatch/collector"
	"github.com/exfilwatch/exfilwatch/detect"
	"github.com/exfilwatch/exfilwatch/enrich"
	"github.com/exfilwatch/exfilwatch/enrich/geo"
	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/enrich/inventory"
	"github.com/exfilwatch/exfilwatch/internal/obs"
	"github.com/exfilwatch/exfilwatch/sink/clickhouse"
	"github.com/exfilwatch/exfilwatch/sink/webhook"
	"github.com/exfilwatch/exfilwatch/transport"
)

// Config is the whole exfilwatch configuration file.
type Config struct {
	obs.Config  `yaml:",inline"`
	LabSubnets  []string          `yaml:"lab_subnets" help:"CIDR prefixes of the lab's devices, used by collector and geoip unless they set their own"`
	Kafka       transport.Config  `yaml:"kafka" help:"Kafka transport between stages"`
	Collector   collector.Config  `yaml:"collector" help:"flow accounting (live and pcap)"`
	BPF         bpf.Config        `yaml:"bpf" help:"eBPF probe on the gateway"`
	GeoIP       geo.Config        `yaml:"geoip" help:"GeoIP databases"`
	Inventory   inventory.Config  `yaml:"inventory" help:"lab inventory and DHCP leases"`
	Identifiers ident.Config      `yaml:"identifiers" help:"hashed-identifier matching"`
	Enrich      enrich.Config     `yaml:"enrich" help:"enrich stage: what happens to the identifiers it finds"`
	Detect      detect.Config     `yaml:"detect" help:"detectors"`
	DetectState DetectStateConfig `yaml:"detect_state" help:"persistence of detector state"`
	ClickHouse  clickhouse.Config `yaml:"clickhouse" help:"ClickHouse sink"`
	Webhooks    webhook.Config    `yaml:"webhooks" help:"alert webhooks"`
}

// DetectStateConfig says where the detect stage keeps its state checkpoint.
type DetectStateConfig struct {
	SnapshotPath     string        `yaml:"snapshot_path" help:"file the detect stage checkpoints its state to, in step with its Kafka offset commits, and restores it from at start (the directory is created; empty: state is kept in memory only and starts empty after a restart; not used when reading a file with --in)"`
	SnapshotInterval time.Duration `yaml:"snapshot_interval" help:"how often the detector state is checkpointed; offsets are committed only with a checkpoint, so a restart re-reads up to this much input"`
	FlushInterval    time.Duration `yaml:"flush_interval" help:"how often (wall clock) windows are re-scored and expired alerts closed while records flow"`
}

// DefaultSnapshotPath is under the state directory of the systemd units
// (StateDirectory=exfilwatch) and of the Kubernetes detect pods' volume.
const DefaultSnapshotPath = "/var/lib/exfilwatch/detect.snapshot"

// Validate checks the values.
func (c DetectStateConfig) Validate() error {
	if c.SnapshotInterval < time.Second {
		return fmt.Errorf("snapshot_interval: must be at least 1s, not %s", c.SnapshotInterval)
	}
	if c.FlushInterval < 100*time.Millisecond {
		return fmt.Errorf("flush_interval: must be at least 100ms, not %s", c.FlushInterval)
	}
	return nil
}

// DefaultConfig returns the defaults of every section.
func DefaultConfig() Config {
	return Config{
		Config:      obs.DefaultConfig(),
		Kafka:       transport.DefaultConfig(),
		Collector:   collector.DefaultConfig(),
		BPF:         bpf.DefaultConfig(),
		GeoIP:       geo.DefaultConfig(),
		Inventory:   inventory.DefaultConfig(),
		Identifiers: ident.DefaultConfig(),
		Enrich:      enrich.DefaultConfig(),
		Detect:      detect.DefaultConfig(),
		DetectState: DetectStateConfig{SnapshotPath: DefaultSnapshotPath, SnapshotInterval: time.Minute, FlushInterval: 5 * time.Second},
		ClickHouse:  clickhouse.DefaultConfig(),
		Webhooks:    webhook.DefaultConfig(),
	}
}

// Resolve copies shared settings into the sections that use them. Call it
// after loading and before building stages.
func (c *Config) Resolve() {
	if len(c.Collector.LabSubnets) == 0 {
		c.Collector.LabSubnets = c.LabSubnets
	}
	if len(c.GeoIP.LabSubnets) == 0 {
		c.GeoIP.LabSubnets = c.LabSubnets
	}
}

// Validate checks the top-level keys.
func (c Config) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	for _, s := range c.LabSubnets {
		if _, err := netip.ParsePrefix(s); err != nil {
			return fmt.Errorf("lab_subnets: invalid CIDR prefix %q", s)
		}
	}
	return nil
}
