package transport

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Topics names the Kafka topics between stages.
type Topics struct {
	Raw        string `yaml:"raw" help:"topic the collector writes flow records to"`
	Enriched   string `yaml:"enriched" help:"topic enrich writes enriched flow records to"`
	Alerts     string `yaml:"alerts" help:"topic detect writes alerts to"`
	DeadLetter string `yaml:"dead_letter" help:"topic for records a stage could not decode or process"`
}

// Config holds the Kafka transport and stage-runner settings shared by all
// stages. The defaults are tuned for throughput with acks=all (see the
// package benchmarks); kafka-go's own defaults (1 s linger, 100-record
// batches, a synchronous commit per record) are 100-1000x slower.
type Config struct {
	Brokers           []string      `yaml:"brokers" help:"Kafka bootstrap addresses, host:port, comma separated"`
	Topics            Topics        `yaml:"topics" help:"topic names"`
	CreateTopics      bool          `yaml:"create_topics" help:"create missing topics at start-up"`
	Partitions        int           `yaml:"partitions" help:"partitions for topics created at start-up"`
	ReplicationFactor int           `yaml:"replication_factor" help:"replication factor for topics created at start-up"`
	GroupPrefix       string        `yaml:"group_prefix" help:"consumer group id prefix; a stage's group is <prefix>-<stage>"`
	ClientID          string        `yaml:"client_id" help:"client id sent to the brokers"`
	Instance          string        `yaml:"instance" help:"stable name of this consumer in its group (empty: the host name); partitions go to instances in name order, so a restarted instance gets its partitions, and its detector state, back"`
	BatchSize         int           `yaml:"batch_size" help:"max records per fetched batch (the unit of processing and commit)"`
	BatchTimeout      time.Duration `yaml:"batch_timeout" help:"how long a fetch waits to fill a batch once it has one record"`
	ProduceBatchSize  int           `yaml:"produce_batch_size" help:"max records per produce request and partition"`
	BatchBytes        int           `yaml:"batch_bytes" help:"max bytes of one produce request per partition (keep <= broker message.max.bytes)"`
	ProduceLinger     time.Duration `yaml:"produce_linger" help:"how long a partly filled produce batch waits for more records (writes are synchronous, so keep it short)"`
	FetchMaxWait      time.Duration `yaml:"fetch_max_wait" help:"how long the broker may hold a fetch request waiting for fetch_min_bytes"`
	FetchMinBytes     int           `yaml:"fetch_min_bytes" help:"bytes the broker should gather before answering a fetch"`
	FetchMaxBytes     int           `yaml:"fetch_max_bytes" help:"max bytes of one fetch response"`
	QueueCapacity     int           `yaml:"queue_capacity" help:"records the consumer buffers ahead of processing"`
	Compression       string        `yaml:"compression" help:"produce compression: none, gzip, snappy, lz4 or zstd"`
	SessionTimeout    time.Duration `yaml:"session_timeout" help:"consumer group session timeout"`
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval" help:"consumer group heartbeat interval (also bounds rebalance reaction time)"`
	StartFromOldest   bool          `yaml:"start_from_oldest" help:"a new consumer group starts at the oldest record (else the newest)"`
	RetryBackoffMin   time.Duration `yaml:"retry_backoff_min" help:"first delay when retrying a failed write, commit or sink batch"`
	RetryBackoffMax   time.Duration `yaml:"retry_backoff_max" help:"cap of the exponential retry delay"`
	PipelineDepth     int           `yaml:"pipeline_depth" help:"batches a stage holds between fetch and commit: 3 overlaps processing one, writing the previous and committing the one before; 1 is sequential"`
	DrainTimeout      time.Duration `yaml:"drain_timeout" help:"on shutdown, how long to finish, write and commit the in-flight batches"`
	DialTimeout       time.Duration `yaml:"dial_timeout" help:"TCP connect timeout to brokers"`
}

// DefaultConfig returns settings for the dev stack (one broker on loopback).
func DefaultConfig() Config {
	return Config{
		Brokers: []string{"127.0.0.1:9092"},
		Topics: Topics{
			Raw:        "exfilwatch.flows.raw",
			Enriched:   "exfilwatch.flows.enriched",
			Alerts:     "exfilwatch.alerts",
			DeadLetter: "exfilwatch.dead-letter",
		},
		CreateTopics:      true,
		Partitions:        4,
		ReplicationFactor: 1,
		GroupPrefix:       "exfilwatch",
		ClientID:          "exfilwatch",
		BatchSize:         10000,
		BatchTimeout:      5 * time.Millisecond,
		ProduceBatchSize:  1000,
		BatchBytes:        1 << 20,
		ProduceLinger:     200 * time.Microsecond,
		FetchMaxWait:      100 * time.Millisecond,
		FetchMinBytes:     1,
		FetchMaxBytes:     16 << 20,
		QueueCapacity:     20000,
		Compression:       "lz4",
		SessionTimeout:    10 * time.Second,
		HeartbeatInterval: time.Second,
		StartFromOldest:   true,
		RetryBackoffMin:   100 * time.Millisecond,
		RetryBackoffMax:   10 * time.Second,
		PipelineDepth:     3,
		DrainTimeout:      30 * time.Second,
		DialTimeout:       5 * time.Second,
	}
}

// Validate checks the settings; each error starts with the key it concerns.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if len(c.Brokers) == 0 {
		bad("brokers", "at least one broker address is required")
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			bad("brokers", "invalid address %q (want host:port)", b)
		}
	}
	for key, t := range map[string]string{
		"topics.raw": c.Topics.Raw, "topics.enriched": c.Topics.Enriched,
		"topics.alerts": c.Topics.Alerts, "topics.dead_letter": c.Topics.DeadLetter,
	} {
		if err := validTopic(t); err != nil {
			bad(key, "%v", err)
		}
	}
	if c.Partitions < 1 {
		bad("partitions", "must be >= 1, got %d", c.Partitions)
	}
	if c.ReplicationFactor < 1 {
		bad("replication_factor", "must be >= 1, got %d", c.ReplicationFactor)
	}
	if c.GroupPrefix == "" {
		bad("group_prefix", "must not be empty")
	}
	if c.BatchSize < 1 {
		bad("batch_size", "must be >= 1, got %d", c.BatchSize)
	}
	if c.ProduceBatchSize < 1 {
		bad("produce_batch_size", "must be >= 1, got %d", c.ProduceBatchSize)
	}
	if c.ProduceLinger <= 0 {
		bad("produce_linger", "must be > 0")
	}
	if c.BatchBytes < 1024 {
		bad("batch_bytes", "must be >= 1024, got %d", c.BatchBytes)
	}
	if c.BatchTimeout <= 0 {
		bad("batch_timeout", "must be > 0")
	}
	if c.FetchMaxWait <= 0 {
		bad("fetch_max_wait", "must be > 0")
	}
	if c.FetchMinBytes < 1 || c.FetchMaxBytes < c.FetchMinBytes {
		bad("fetch_max_bytes", "need 1 <= fetch_min_bytes (%d) <= fetch_max_bytes (%d)", c.FetchMinBytes, c.FetchMaxBytes)
	}
	if c.QueueCapacity < 1 {
		bad("queue_capacity", "must be >= 1")
	}
	switch strings.ToLower(c.Compression) {
	case "", "none", "gzip", "snappy", "lz4", "zstd":
	default:
		bad("compression", "unknown codec %q (want none, gzip, snappy, lz4 or zstd)", c.Compression)
	}
	if c.SessionTimeout < time.Second || c.HeartbeatInterval <= 0 || c.HeartbeatInterval >= c.SessionTimeout {
		bad("heartbeat_interval", "need 0 < heartbeat_interval (%s) < session_timeout (%s), session_timeout >= 1s", c.HeartbeatInterval, c.SessionTimeout)
	}
	if c.RetryBackoffMin <= 0 || c.RetryBackoffMax < c.RetryBackoffMin {
		bad("retry_backoff_max", "need 0 < retry_backoff_min (%s) <= retry_backoff_max (%s)", c.RetryBackoffMin, c.RetryBackoffMax)
	}
	if c.PipelineDepth < 1 || c.PipelineDepth > 16 {
		bad("pipeline_depth", "must be between 1 and 16, got %d", c.PipelineDepth)
	}
	if c.DrainTimeout <= 0 {
		bad("drain_timeout", "must be > 0")
	}
	if c.DialTimeout <= 0 {
		bad("dial_timeout", "must be > 0")
	}
	return errors.Join(errs...)
}

// validTopic applies Kafka's topic name rules.
func validTopic(t string) error {
	if t == "" {
		return errors.New("must not be empty")
	}
	if len(t) > 249 || t == "." || t == ".." {
		return fmt.Errorf("invalid topic name %q", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("invalid topic name %q (allowed: a-z A-Z 0-9 . _ -)", t)
		}
	}
	return nil
}

// GroupID is the consumer group a stage consumes with.
func (c Config) GroupID(stage string) string { return c.GroupPrefix + "-" + stage }

// compression maps the codec to kafka-go's Writer.Compression value.
func (c Config) compression() kafka.Compression {
	switch strings.ToLower(c.Compression) {
	case "gzip":
		return kafka.Gzip
	case "snappy":
		return kafka.Snappy
	case "lz4":
		return kafka.Lz4
	case "zstd":
		return kafka.Zstd
	}
	return 0
}
