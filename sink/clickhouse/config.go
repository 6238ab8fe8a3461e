package clickhouse

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"time"
)

// Config configures the ClickHouse sink.
type Config struct {
	Addr          string        `yaml:"addr" help:"native-protocol address host:port of the ClickHouse server"`
	Database      string        `yaml:"database" help:"database holding the exfilwatch tables (created if missing)"`
	Username      string        `yaml:"username" help:"ClickHouse user"`
	Password      string        `yaml:"password" help:"ClickHouse password (prefer the env override)"`
	Compression   string        `yaml:"compression" help:"native block compression: auto (none to a loopback address, else lz4), none, lz4 or zstd"`
	Profile       string        `yaml:"profile" help:"DDL profile: auto (from SELECT version()), portable (18.x-21.x) or modern (22.1+)"`
	TTLDays       int           `yaml:"ttl_days" help:"drop rows older than this many days (modern profile only; 0 keeps forever)"`
	MaxBatchRows  int           `yaml:"max_batch_rows" help:"rows per INSERT block; larger writes are split"`
	MaxBatchWait  time.Duration `yaml:"max_batch_wait" help:"longest time a Batcher holds rows before flushing"`
	FlowInserts   int           `yaml:"flow_inserts" help:"concurrent INSERTs (connections) a flows block of at least 4096 rows is split into (1-3; 0 means 1)"`
	DialTimeout   time.Duration `yaml:"dial_timeout" help:"timeout for connecting to the server"`
	ReadTimeout   time.Duration `yaml:"read_timeout" help:"timeout for one server round trip"`
	RetryInitial  time.Duration `yaml:"retry_initial" help:"first backoff after a failed insert"`
	RetryMax      time.Duration `yaml:"retry_max" help:"largest backoff between insert attempts (retries never give up while the context lives)"`
	MigrateOnOpen bool          `yaml:"migrate_on_open" help:"apply pending schema migrations when the sink starts"`
}

// DefaultConfig returns settings for the dev stack (deploy/dev/clickhouse.sh).
// Batch sizes follow the measured sweet spot (10k-100k rows per insert).
func DefaultConfig() Config {
	return Config{
		Addr:          "127.0.0.1:9000",
		Database:      "exfilwatch",
		Username:      "default",
		Compression:   "auto",
		Profile:       "auto",
		TTLDays:       90,
		MaxBatchRows:  100000,
		MaxBatchWait:  time.Second,
		FlowInserts:   1,
		DialTimeout:   5 * time.Second,
		ReadTimeout:   60 * time.Second,
		RetryInitial:  100 * time.Millisecond,
		RetryMax:      30 * time.Second,
		MigrateOnOpen: true,
	}
}

// compression resolves "auto": no compression to a server on this host,
// where lz4 only costs CPU on both ends (the client's ~15 % more per row,
// BenchmarkInsertFlows reused_lz4 vs reused), lz4 across a network.
func (c Config) compression() string {
	if c.Compression != "auto" {
		return c.Compression
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return "lz4"
	}
	if host == "localhost" {
		return "none"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return "none"
	}
	return "lz4"
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports the first invalid setting, prefixed with its yaml key.
func (c Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("addr: want host:port: %q", c.Addr)
	}
	if !identRE.MatchString(c.Database) {
		return fmt.Errorf("database: not a plain identifier: %q", c.Database)
	}
	switch c.Compression {
	case "auto", "none", "", "lz4", "zstd":
	default:
		return fmt.Errorf("compression: want auto, none, lz4 or zstd: %q", c.Compression)
	}
	switch c.Profile {
	case "auto", "", ProfilePortable.String(), ProfileModern.String():
	default:
		return fmt.Errorf("profile: want auto, portable or modern: %q", c.Profile)
	}
	if c.TTLDays < 0 {
		return errors.New("ttl_days: must be >= 0")
	}
	if c.MaxBatchRows <= 0 {
		return errors.New("max_batch_rows: must be > 0")
	}
	if c.FlowInserts < 0 || c.FlowInserts > maxFlowInserts {
		return fmt.Errorf("flow_inserts: want 0 to %d: %d", maxFlowInserts, c.FlowInserts)
	}
	if c.MaxBatchWait <= 0 {
		return errors.New("max_batch_wait: must be > 0")
	}
	if c.DialTimeout <= 0 {
		return errors.New("dial_timeout: must be > 0")
	}
	if c.ReadTimeout <= 0 {
		return errors.New("read_timeout: must be > 0")
	}
	if c.RetryInitial <= 0 {
		return errors.New("retry_initial: must be > 0")
	}
	if c.RetryMax < c.RetryInitial {
		return errors.New("retry_max: must be >= retry_initial")
	}
	return nil
}
