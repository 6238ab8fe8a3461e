package transport

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// tallyStage's state is the number of records it processed; it
// checkpoints every third batch and keeps its last stored checkpoint.
type tallyStage struct {
	state   atomic.Int64
	batches int
	mu      sync.Mutex
	saved   int64
	pos     []Message
}

func (c *tallyStage) stage(applied []Message) Stage[*flowpb.FlowRecord, *flowpb.FlowRecord] {
	st := passStage()
	process := st.Process
	st.Process = func(ctx context.Context, in *flowpb.FlowRecord, emit func(*flowpb.FlowRecord)) error {
		c.state.Add(1)
		return process(ctx, in, emit)
	}
	st.Checkpoint = func(final bool) SaveFunc {
		c.batches++
		if !final && c.batches%3 != 0 {
			return nil
		}
		state := c.state.Load()
		return func(_ context.Context, pos []Message) error {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.saved, c.pos = state, slices.Clone(pos)
			return nil
		}
	}
	st.Applied = applied
	return st
}

// crashWriter acknowledges writes until the crash-th, which fails fatally.
type crashWriter struct {
	calls atomic.Int64
	crash int64
}

func (w *crashWriter) Write(context.Context, []Message) error {
	if w.calls.Add(1) >= w.crash {
		return Fatal(errors.New("node lost power"))
	}
	return nil
}
func (w *crashWriter) Close() error { return nil }

// TestKafkaCheckpointRestart: on a real broker, a stage that crashes after
// some checkpoints and restarts from its last one (same group) ends with
// state covering every record exactly once, whatever the committed offsets
// were at the crash.
func TestKafkaCheckpointRestart(t *testing.T) {
	cfg := kafkaConfig(t, testenv.Kafka(t))
	cfg.BatchSize = 20
	in := uniqueTopic(t, "ckpt")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := EnsureTopics(ctx, cfg, in); err != nil {
		t.Fatal(err)
	}
	const n = 500
	produceFlows(t, cfg, in, 0, n)
	group := cfg.GroupID("test-ckpt-" + in)

	first := &tallyStage{}
	src := NewKafkaReader(cfg, in, group, nil)
	err := Run(ctx, cfg, src, &crashWriter{crash: 8}, &memWriter{}, first.stage(nil))
	src.Close()
	if err == nil {
		t.Fatal("the crashed run returned nil")
	}
	if first.saved == 0 || first.saved >= n {
		t.Fatalf("checkpoint before the crash holds %d records; want some, not all", first.saved)
	}

	// Restart from the stored checkpoint.
	second := &tallyStage{}
	second.state.Store(first.saved)
	src = NewKafkaReader(cfg, in, group, nil)
	defer src.Close()
	rctx, rcancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- Run(rctx, cfg, src, &memWriter{}, &memWriter{}, second.stage(first.pos)) }()
	for second.state.Load() < n && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	rcancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	covered := int64(0)
	for _, p := range second.pos {
		covered += p.Offset + 1
	}
	if second.saved != n || covered != n {
		t.Fatalf("final checkpoint: state counts %d records, its position covers %d; want %d and %d", second.saved, covered, n, n)
	}
}
