package pipeline

import (
	"context"
	"log/slog"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/transport"
)

// OpenDeadLetter returns where undecodable records go: the file named, else
// the Kafka dead-letter topic when Kafka is in use, else the log.
func OpenDeadLetter(cfg *Config, path string, useKafka bool, log *slog.Logger) (transport.Writer, error) {
	if path != "" {
		return transport.OpenWriter(cfg.Kafka, path, "", log)
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
