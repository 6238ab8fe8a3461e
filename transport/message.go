// Package transport moves exfilwatch records between pipeline stages: over
// Kafka (segmentio/kafka-go) in production, over JSON-lines files or pipes for
// offline use, and through an embedded in-process broker for the zero-setup
// demo. It also holds the generic at-least-once stage runner every stage uses,
// so that decoding, dead-lettering, batching, acknowledgement and offset
// commits are implemented (and tested) once.
//
// Delivery contract: an input offset is committed only after every output the
// stage produced for it was durably acknowledged (Kafka acks=all, or flushed
// to the file), so a crash at any point re-delivers rather than loses records.
// Duplicates are possible; consumers dedupe on record ids where it matters.
package transport

import (
	"context"
	"time"
)

// Format says how a Message value is encoded.
type Format uint8

const (
	// FormatProto is binary protobuf, the Kafka wire format.
	FormatProto Format = iota
	// FormatJSON is the protobuf JSON mapping (protojson), one record per line
	// in JSON-lines files.
	FormatJSON
)

func (f Format) String() string {
	if f == FormatJSON {
		return "json"
	}
	return "proto"
}

// Message is one record as carried by a Reader or Writer. Key and Value may
// alias buffers owned by the Reader or the runner: they are valid until the
// next Fetch (readers) or until Write returns (writers).
type Message struct {
	Topic     string // Kafka topic, or the file name for JSON lines
	Partition int
	Offset    int64 // Kafka offset, or the 1-based line number for JSON lines
	Key       []byte
	Value     []byte
	Time      time.Time
	Format    Format
}

// Reader yields batches of input records and commits them once processed.
// The runner pipelines batches: Commit (of an earlier batch) may be called
// while Fetch runs on another goroutine, but Fetch is never called
// concurrently with itself, nor Commit with itself.
type Reader interface {
	// Fetch blocks until at least one record is available and returns a batch
	// of them. The slice and the bytes it references are reused by the next
	// Fetch. It returns io.EOF when a finite input (a file) is exhausted and
	// ctx.Err() when ctx is cancelled.
	Fetch(ctx context.Context) ([]Message, error)
	// Commit marks msgs (and everything before them in their partitions) as
	// processed. Only call it after their outputs were acknowledged. The
	// runner passes only Topic, Partition and Offset (Key and Value are nil:
	// the fetched bytes may already be reused).
	Commit(ctx context.Context, msgs []Message) error
	Close() error
}

// Writer sends records downstream.
type Writer interface {
	// Write returns nil only once every message is durably acknowledged
	// (Kafka: acks=all). On error, some messages may have been written
	// anyway; retrying the whole batch is safe under at-least-once.
	Write(ctx context.Context, msgs []Message) error
	Close() error
}

// FormatWriter is implemented by writers that need values in a specific
// encoding (JSON-lines files want protojson). Writers that do not implement
// it receive binary protobuf.
type FormatWriter interface {
	Writer
	Format() Format
}

// formatOf returns the encoding w wants.
func formatOf(w Writer) Format {
	if fw, ok := w.(FormatWriter); ok {
		return fw.Format()
	}
	return FormatProto
}
