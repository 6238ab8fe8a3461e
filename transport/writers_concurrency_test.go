package transport

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// writeConcurrently has g goroutines write per records each, in batches of
// batch, through w (values in format f), and fails on any Write error.
func writeConcurrently(t *testing.T, w Writer, f Format, g, per, batch int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, g)
	for gi := 0; gi < g; gi++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := 0; start < per; start += batch {
				var msgs []Message
				for i := start; i < min(per, start+batch); i++ {
					rec := sampleFlow(gi*per + i)
					v, err := AppendEncoded(nil, rec, f)
					if err != nil {
						errs <- err
						return
					}
					msgs = append(msgs, Message{Key: rec.SrcAddr, Value: v, Format: f})
				}
				if err := w.Write(context.Background(), msgs); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestJSONLWriterConcurrentUse: stages sharing one dead-letter file writer
// get every line written whole.
func TestJSONLWriterConcurrentUse(t *testing.T) {
	var buf bytes.Buffer
	w := NewJSONLWriter(&buf)
	writeConcurrently(t, w, FormatJSON, 4, 200, 7)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		rec := &flowpb.FlowRecord{}
		if err := protojson.Unmarshal([]byte(line), rec); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		seen[rec.Id] = true
	}
	if len(seen) != 800 {
		t.Fatalf("%d distinct records written, want 800", len(seen))
	}
}

// TestKafkaWriterConcurrentUse: concurrent Writes to one KafkaWriter (the
// shared dead-letter writer) on the embedded broker all arrive intact.
func TestKafkaWriterConcurrentUse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bootstrap, stop, err := StartEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	cfg := kafkaConfig(t, bootstrap)
	topic := "concurrent.writes"
	if err := EnsureTopics(ctx, cfg, topic); err != nil {
		t.Fatal(err)
	}
	w := NewKafkaWriter(cfg, topic, nil)
	defer w.Close()
	writeConcurrently(t, w, FormatProto, 4, 250, 50)
	seen := newSeenSet()
	for _, m := range readTopic(t, cfg, topic, 1000) {
		seen.add(m)
	}
	if seen.bad != nil {
		t.Fatal(seen.bad)
	}
	for i := 0; i < 1000; i++ {
		if seen.seen[i] == 0 {
			t.Fatalf("record %d missing", i)
		}
	}
}
