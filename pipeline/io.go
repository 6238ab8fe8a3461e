package pipeline

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/transport"
)

// IO names where a stage reads and writes: a JSON-lines file ("-" for the
// standard streams) or, when empty, the stage's Kafka topic.
type IO struct {
	In, Out, DeadLetter string
}

// OpenReader returns the stage's input: the file in io.In, else a Kafka
// consumer in the stage's group on topic.
func OpenReader(cfg *Config, in, topic, stage string, log *slog.Logger) (transport.Reader, error) {
	if in != "" {
		r, err := transport.OpenJSONLReader(in, cfg.Kafka.BatchSize)
		if err != nil {
			return nil, fmt.Errorf("--in: %w", err)
		}
		return r, nil
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return nil, fmt.Errorf("kafka.brokers: no broker configured (or use --in FILE|-)")
	}
	return transport.NewKafkaReader(cfg.Kafka, topic, cfg.Kafka.GroupID(stage), log), nil
}

// OpenWriter returns the stage's output: the file in out, else a Kafka
// producer on topic.
func OpenWriter(cfg *Config, out, topic string, log *slog.Logger) (transport.Writer, error) {
	if out != "" {
		w, err := transport.CreateJSONLWriter(out)
		if err != nil {
			return nil, fmt.Errorf("--out: %w", err)
		}
		return w, nil
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return nil, fmt.Errorf("kafka.brokers: no broker configured (or use --out FILE|-)")
	}
	return transport.NewKafkaWriter(cfg.Kafka, topic, log), nil
}

// OpenDeadLetter returns where undecodable records go: the file named, else
// the Kafka dead-letter topic when Kafka is in use, else the log.
func OpenDeadLetter(cfg *Config, path string, useKafka bool, log *slog.Logger) (transport.Writer, error) {
	if path != "" {
		return OpenWriter(cfg, path, "", log)
	}
	if useKafka && len(cfg.Kafka.Brokers) > 0 {
		return transport.NewKafkaWriter(cfg.Kafka, cfg.Kafka.Topics.DeadLetter, log), nil
	}
	return LogDeadLetters{Log: log}, nil
}

// LogDeadLetters writes each dead letter as an error log line: offline runs
// without a dead-letter file still never drop a record silently.
type LogDeadLetters struct{ Log *slog.Logger }

// Write implements transport.Writer.
func (l LogDeadLetters) Write(_ context.Context, msgs []transport.Message) error {
	for _, m := range msgs {
		dl := &flowpb.DeadLetter{}
		if err := transport.Decode(m.Value, m.Format, dl); err != nil {
			l.Log.Error("dead letter (undecodable)", "bytes", len(m.Value))
			continue
		}
		l.Log.Error("dead letter", "stage", dl.Stage, "reason", dl.Reason, "source", dl.SourceTopic, "offset", dl.Offset)
	}
	return nil
}

// Close implements transport.Writer.
func (LogDeadLetters) Close() error { return nil }
