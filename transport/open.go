package transport

import (
	"context"
	"log/slog"
)

// OpenReader returns the input of a stage: a JSON-lines reader of path when
// path is set ("-" is standard input, as for --in), else a Kafka consumer of
// topic in the consumer group cfg.GroupID(stage).
func OpenReader(cfg Config, path, topic, stage string, log *slog.Logger) (Reader, error) {
	if path != "" {
		return OpenJSONLReader(path, cfg.BatchSize)
	}
	return NewKafkaReader(cfg, topic, cfg.GroupID(stage), log), nil
}

// OpenWriter returns an output of a stage: a JSON-lines writer of path when
// path is set ("-" is standard output, as for --out), else a Kafka producer
// for topic.
func OpenWriter(cfg Config, path, topic string, log *slog.Logger) (Writer, error) {
	if path != "" {
		return CreateJSONLWriter(path)
	}
	return NewKafkaWriter(cfg, topic, log), nil
}

// EnsureConfiguredTopics creates the four pipeline topics of cfg when
// cfg.CreateTopics is set (a no-op otherwise).
func EnsureConfiguredTopics(ctx context.Context, cfg Config) error {
	if !cfg.CreateTopics {
		return nil
	}
	t := cfg.Topics
	return EnsureTopics(ctx, cfg, t.Raw, t.Enriched, t.Alerts, t.DeadLetter)
}
