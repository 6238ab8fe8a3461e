package transport

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// readTopic reads n records of topic from the start with a throw-away group.
func readTopic(t *testing.T, cfg Config, topic string, n int) []Message {
	t.Helper()
	r := NewKafkaReader(cfg, topic, "reader-"+topic+"-"+time.Now().Format("150405.000000000"), nil)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []Message
	for len(out) < n {
		batch, err := r.Fetch(ctx)
		if err != nil {
			t.Fatalf("reading %s: got %d of %d records: %v", topic, len(out), n, err)
		}
		for _, m := range batch {
			m.Key, m.Value = append([]byte(nil), m.Key...), append([]byte(nil), m.Value...)
			out = append(out, m)
		}
	}
	return out
}

// TestKafkaRunnerDeadLetter: a malformed record lands on the dead-letter
// topic with a reason; records after it are processed.
func TestKafkaRunnerDeadLetter(t *testing.T) {
	cfg := kafkaConfig(t, testenv.Kafka(t))
	in, out, dlqTopic := uniqueTopic(t, "in"), uniqueTopic(t, "out"), uniqueTopic(t, "dlq")
	cfg.Partitions = 1 // one partition keeps "later" well defined
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := EnsureTopics(ctx, cfg, in, out, dlqTopic); err != nil {
		t.Fatal(err)
	}
	w := NewKafkaWriter(cfg, in, nil)
	defer w.Close()
	garbage := []byte("{this is not protobuf\xff\xff")
	msgs := []Message{{Value: mustMarshal(sampleFlow(0))}, {Key: []byte("k"), Value: garbage}}
	for i := 1; i <= 10; i++ {
		msgs = append(msgs, Message{Value: mustMarshal(sampleFlow(i))})
	}
	if err := w.Write(ctx, msgs); err != nil {
		t.Fatal(err)
	}

	src := NewKafkaReader(cfg, in, cfg.GroupID("test-dlq"), nil)
	dst, dlq := NewKafkaWriter(cfg, out, nil), NewKafkaWriter(cfg, dlqTopic, nil)
	defer dst.Close()
	defer dlq.Close()
	rctx, rcancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- Run(rctx, cfg, src, dst, dlq, passStage()) }()

	got := readTopic(t, cfg, out, 11)
	dls := readTopic(t, cfg, dlqTopic, 1)
	rcancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	src.Close()
	for i, m := range got {
		rec := &flowpb.FlowRecord{}
		if err := proto.Unmarshal(m.Value, rec); err != nil {
			t.Fatal(err)
		}
		want := sampleFlow(i)
		want.Gateway = "processed"
		if !proto.Equal(rec, want) {
			t.Fatalf("output %d: %v", i, rec)
		}
	}
	dl := &flowpb.DeadLetter{}
	if err := proto.Unmarshal(dls[0].Value, dl); err != nil {
		t.Fatal(err)
	}
	if dl.SourceTopic != in || dl.Offset != 1 || dl.Stage != "test-pass" || string(dl.Payload) != string(garbage) ||
		string(dl.Key) != "k" || !strings.Contains(dl.Reason, "cannot decode") {
		t.Fatalf("dead letter %+v", dl)
	}
}

// failWriter fails every write.
type failWriter struct{ calls atomic.Int64 }

func (w *failWriter) Write(context.Context, []Message) error {
	w.calls.Add(1)
	return errors.New("downstream unavailable")
}
func (w *failWriter) Close() error { return nil }

// TestKafkaCommitAfterAck: with a failing output writer the runner commits
// nothing, so a restarted stage in the same group gets every record again.
func TestKafkaCommitAfterAck(t *testing.T) {
	cfg := kafkaConfig(t, testenv.Kafka(t))
	in := uniqueTopic(t, "in")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := EnsureTopics(ctx, cfg, in); err != nil {
		t.Fatal(err)
	}
	produceFlows(t, cfg, in, 0, 500)
	group := cfg.GroupID("test-ack-" + in)

	fw := &failWriter{}
	src := NewKafkaReader(cfg, in, group, nil)
	rctx, rcancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- Run(rctx, cfg, src, fw, &memWriter{}, passStage()) }()
	for fw.calls.Load() < 3 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	rcancel()
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "downstream unavailable") {
		t.Fatalf("Run returned %v, want the write error", err)
	}
	src.Close()

	// Restart: same group, working writer. Every record must come again.
	good := &memWriter{}
	src = NewKafkaReader(cfg, in, group, nil)
	defer src.Close()
	rctx, rcancel = context.WithCancel(ctx)
	go func() { errc <- Run(rctx, cfg, src, good, &memWriter{}, passStage()) }()
	for ctx.Err() == nil {
		if vals, _, _ := good.snapshot(); len(decodeFlows(t, vals, FormatProto)) == 500 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rcancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	vals, _, _ := good.snapshot()
	if n := len(decodeFlows(t, vals, FormatProto)); n != 500 {
		t.Fatalf("after restart %d distinct records re-delivered, want 500", n)
	}
}

// TestEmbeddedBroker: the kfake broker works with the same kafka-go code:
// topic creation, produce, group consume and commit (a second member of the
// group resumes after the committed offset).
func TestEmbeddedBroker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bootstrap, stop, err := StartEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	cfg := kafkaConfig(t, bootstrap)
	topic := "embedded.flows"
	if err := EnsureTopics(ctx, cfg, topic); err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopics(ctx, cfg, topic); err != nil {
		t.Fatalf("EnsureTopics on an existing topic: %v", err)
	}
	produceFlows(t, cfg, topic, 0, 1000)

	group := cfg.GroupID("embedded")
	r := NewKafkaReader(cfg, topic, group, nil)
	seen := newSeenSet()
	for seen.count() < 600 {
		batch, err := r.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range batch {
			seen.add(m)
		}
		if err := r.Commit(ctx, batch); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}
	r.Close()
	produceFlows(t, cfg, topic, 1000, 1200)

	// A new member resumes from the committed offsets: it must get the rest
	// (and nothing committed before).
	r2 := NewKafkaReader(cfg, topic, group, nil)
	defer r2.Close()
	rest := newSeenSet()
	for seen.count()+rest.count() < 1200 || rest.count() < 1200-seen.count() {
		batch, err := r2.Fetch(ctx)
		if err != nil {
			t.Fatalf("after %d+%d records: %v", seen.count(), rest.count(), err)
		}
		for _, m := range batch {
			rest.add(m)
		}
	}
	if seen.bad != nil || rest.bad != nil {
		t.Fatal(seen.bad, rest.bad)
	}
	for i := range seen.seen {
		if rest.seen[i] > 0 {
			t.Fatalf("record %d re-delivered although committed", i)
		}
	}
	for i := 0; i < 1200; i++ {
		if seen.seen[i]+rest.seen[i] == 0 {
			t.Fatalf("record %d lost", i)
		}
	}
}

// TestOpenAndEnsureConfigured: the wiring helpers pick JSON lines for a path
// and Kafka otherwise, and create the configured topics on the broker.
func TestOpenAndEnsureConfigured(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bootstrap, stop, err := StartEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	cfg := kafkaConfig(t, bootstrap)
	if err := EnsureConfiguredTopics(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	w, err := OpenWriter(cfg, "", cfg.Topics.Raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(ctx, []Message{{Value: mustMarshal(sampleFlow(5))}}); err != nil {
		t.Fatalf("write to the created raw topic: %v", err)
	}
	r, err := OpenReader(cfg, "", cfg.Topics.Raw, "enrich", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, ok := r.(*KafkaReader); !ok {
		t.Fatalf("got %T for no path", r)
	}
	batch, err := r.Fetch(ctx)
	if err != nil || len(batch) != 1 {
		t.Fatalf("fetch: %v (%d)", err, len(batch))
	}
	jr, err := OpenReader(cfg, "testdata/fuzz/none.jsonl", "", "enrich", nil)
	if err == nil {
		jr.Close()
		t.Fatal("opening a missing file succeeded")
	}
}
