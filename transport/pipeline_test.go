package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// flowIndex recovers i from a sampleFlow(i) record.
func flowIndex(r *flowpb.FlowRecord) int { return int(r.SrcMac[5]) | int(r.SrcMac[4])<<8 }

// gateWriter hands each Write call to a test-supplied function before
// recording the messages as acknowledged (by input index, decoded from the
// value), so tests can hold a batch "in the broker" and fail it.
type gateWriter struct {
	mu    sync.Mutex
	acked map[int]bool
	order []int
	calls int
	gate  func(call int) error // called without the lock; nil means accept
}

func newGateWriter(gate func(call int) error) *gateWriter {
	return &gateWriter{acked: map[int]bool{}, gate: gate}
}

func (w *gateWriter) Write(_ context.Context, msgs []Message) error {
	w.mu.Lock()
	w.calls++
	call := w.calls
	w.mu.Unlock()
	if w.gate != nil {
		if err := w.gate(call); err != nil {
			return err
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range msgs {
		r := &flowpb.FlowRecord{}
		if err := proto.Unmarshal(m.Value, r); err != nil {
			return fmt.Errorf("output not decodable: %w", err)
		}
		w.acked[flowIndex(r)] = true
		w.order = append(w.order, flowIndex(r))
	}
	return nil
}

func (w *gateWriter) Close() error { return nil }

func (w *gateWriter) isAcked(i int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked[i]
}

func (w *gateWriter) snapshot() (order []int, calls int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.order...), w.calls
}

// checkedReader is a memReader whose Commit verifies the delivery contract:
// every committed record's output was acknowledged before the commit, and
// commits never go backwards. Commit is also recorded, so tests can assert
// that a failed batch and the ones after it were never committed.
type checkedReader struct {
	*memReader
	w       *gateWriter
	mu      sync.Mutex
	commits [][2]int64 // first and last offset of each Commit call
	errs    []string
}

func (r *checkedReader) Commit(ctx context.Context, msgs []Message) error {
	r.mu.Lock()
	if len(msgs) > 0 {
		first, last := msgs[0].Offset, msgs[len(msgs)-1].Offset
		if n := len(r.commits); n > 0 && first != r.commits[n-1][1]+1 {
			r.errs = append(r.errs, fmt.Sprintf("commit of %d..%d after %d..%d: out of order or gap", first, last, r.commits[n-1][0], r.commits[n-1][1]))
		}
		r.commits = append(r.commits, [2]int64{first, last})
	}
	for _, m := range msgs {
		if !r.w.isAcked(int(m.Offset)) {
			r.errs = append(r.errs, fmt.Sprintf("offset %d committed before its output was acknowledged", m.Offset))
		}
	}
	r.mu.Unlock()
	return r.memReader.Commit(ctx, msgs)
}

func (r *checkedReader) result() (commits [][2]int64, errs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][2]int64(nil), r.commits...), append([]string(nil), r.errs...)
}

// flowLog returns a memLog holding sampleFlow(0..n-1) at offsets 0..n-1.
func flowLog(n int) *memLog {
	l := &memLog{}
	for i := 0; i < n; i++ {
		r := sampleFlow(i)
		l.append(r.SrcAddr, mustMarshal(r))
	}
	return l
}

// countingStage passes records through and counts Process calls.
func countingStage(n *atomic.Int64) Stage[*flowpb.FlowRecord, *flowpb.FlowRecord] {
	return Stage[*flowpb.FlowRecord, *flowpb.FlowRecord]{
		Name: "test-pipeline",
		Process: func(_ context.Context, in *flowpb.FlowRecord, emit func(*flowpb.FlowRecord)) error {
			n.Add(1)
			emit(in)
			return nil
		},
	}
}

// TestPipelineWriteFailureStopsCommits: batch 2's write is held until batch
// 3 has been fetched and processed (proving the overlap), then rejected.
// Batch 1 is committed; batches 2 and 3 never are, batch 3 is never written,
// and Run returns the write error.
func TestPipelineWriteFailureStopsCommits(t *testing.T) {
	log := flowLog(50)
	var processed atomic.Int64
	w := newGateWriter(func(call int) error {
		if call != 2 {
			return nil
		}
		deadline := time.Now().Add(10 * time.Second)
		for processed.Load() < 30 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if processed.Load() < 30 {
			return errors.New("batch 3 was not processed while batch 2 was being written")
		}
		return Fatal(errors.New("record too large"))
	})
	r := &checkedReader{memReader: log.reader(10), w: w}
	cfg := testConfig()
	cfg.PipelineDepth = 2
	err := Run(context.Background(), cfg, r, w, nil, countingStage(&processed))
	if err == nil || !strings.Contains(err.Error(), "record too large") {
		t.Fatalf("Run returned %v, want the write error", err)
	}
	commits, errs := r.result()
	if len(errs) > 0 {
		t.Fatal(strings.Join(errs, "\n"))
	}
	if len(commits) != 1 || commits[0] != [2]int64{0, 9} || log.committed != 10 {
		t.Fatalf("commits %v (committed offset %d), want only batch 0..9", commits, log.committed)
	}
	order, calls := w.snapshot()
	if calls != 2 || len(order) != 10 {
		t.Fatalf("%d writes, %d records acknowledged; want 2 writes (the second failing) and 10 records", calls, len(order))
	}
	if p := processed.Load(); p != 30 {
		t.Fatalf("%d records processed, want 30 (pipeline depth 2 bounds the batches in flight)", p)
	}
}

// TestPipelineFatalProcessCommitsEarlierBatch: a Fatal Process error in
// batch 2 while batch 1 is still being written: batch 1 is still written and
// committed (as the sequential loop did), batch 2 is not.
func TestPipelineFatalProcessCommitsEarlierBatch(t *testing.T) {
	log := flowLog(30)
	fatalSeen := make(chan struct{})
	w := newGateWriter(func(call int) error {
		if call == 1 {
			select {
			case <-fatalSeen:
			case <-time.After(10 * time.Second):
				return Fatal(errors.New("batch 2 never processed"))
			}
		}
		return nil
	})
	st := Stage[*flowpb.FlowRecord, *flowpb.FlowRecord]{
		Name: "test-pipeline-fatal",
		Process: func(_ context.Context, in *flowpb.FlowRecord, emit func(*flowpb.FlowRecord)) error {
			if flowIndex(in) == 15 {
				close(fatalSeen)
				return Fatal(errors.New("model file vanished"))
			}
			emit(in)
			return nil
		},
	}
	r := &checkedReader{memReader: log.reader(10), w: w}
	err := Run(context.Background(), testConfig(), r, w, newGateWriter(nil), st)
	if err == nil || !strings.Contains(err.Error(), "model file vanished") {
		t.Fatalf("Run returned %v, want the Fatal error", err)
	}
	commits, errs := r.result()
	if len(errs) > 0 {
		t.Fatal(strings.Join(errs, "\n"))
	}
	if len(commits) != 1 || commits[0] != [2]int64{0, 9} {
		t.Fatalf("commits %v, want only batch 0..9", commits)
	}
	if order, _ := w.snapshot(); len(order) != 10 {
		t.Fatalf("%d records written, want 10", len(order))
	}
}

// TestPipelineDrainsAllInFlight: ctx is cancelled while batch 1 is held in
// the writer and batch 2 is already processed; both are written and
// committed before Run returns nil.
func TestPipelineDrainsAllInFlight(t *testing.T) {
	log := flowLog(20)
	var processed atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	w := newGateWriter(func(call int) error {
		if call == 1 {
			for processed.Load() < 20 {
				time.Sleep(time.Millisecond)
			}
			cancel()
			time.Sleep(10 * time.Millisecond) // let the fetcher see the cancellation
		}
		return nil
	})
	r := &checkedReader{memReader: log.reader(10), w: w}
	cfg := testConfig()
	cfg.DrainTimeout = 5 * time.Second
	if err := Run(ctx, cfg, r, w, nil, countingStage(&processed)); err != nil {
		t.Fatalf("Run: %v", err)
	}
	commits, errs := r.result()
	if len(errs) > 0 {
		t.Fatal(strings.Join(errs, "\n"))
	}
	if len(commits) != 2 || log.committed != 20 {
		t.Fatalf("commits %v (committed offset %d), want both batches", commits, log.committed)
	}
}

// TestPipelineCommitAfterAckRandomized: random write latencies, failures
// (retried) and dead letters over many small batches at several depths;
// every commit must follow the acknowledgement of its outputs, commits must
// be contiguous and in order, and every record must be written in input
// order exactly once (no failure reaches the drain timeout).
func TestPipelineCommitAfterAckRandomized(t *testing.T) {
	const n = 600
	for _, depth := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("depth=%d", depth), func(t *testing.T) {
			log := flowLog(n)
			rng := rand.New(rand.NewPCG(uint64(depth), 7))
			var rmu sync.Mutex
			w := newGateWriter(func(int) error {
				rmu.Lock()
				d, fail := time.Duration(rng.IntN(300))*time.Microsecond, rng.IntN(5) == 0
				rmu.Unlock()
				time.Sleep(d)
				if fail {
					return errors.New("transient broker error")
				}
				return nil
			})
			var processed atomic.Int64
			st := countingStage(&processed)
			inner := st.Process
			st.Process = func(ctx context.Context, in *flowpb.FlowRecord, emit func(*flowpb.FlowRecord)) error {
				if flowIndex(in)%97 == 5 {
					return errors.New("unprocessable")
				}
				return inner(ctx, in, emit)
			}
			r := &checkedReader{memReader: log.reader(1 + rng.IntN(15)), w: w}
			cfg := testConfig()
			cfg.PipelineDepth = depth
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- Run(ctx, cfg, r, w, deadLetterAcks{w}, st) }()
			waitFor(t, "all records committed", func() bool { log.mu.Lock(); defer log.mu.Unlock(); return log.committed == n })
			cancel()
			if err := <-errc; err != nil {
				t.Fatalf("Run: %v", err)
			}
			_, errs := r.result()
			if len(errs) > 0 {
				t.Fatal(strings.Join(errs, "\n"))
			}
			order, _ := w.snapshot()
			// The gate fails a call before anything is recorded, so a retried
			// batch appears once, and batches must arrive in input order.
			want := 0
			for _, idx := range order {
				for want%97 == 5 {
					want++ // dead-lettered
				}
				if idx != want {
					t.Fatalf("acknowledged output of input %d, want input %d: order lost or duplicated", idx, want)
				}
				want++
			}
			for want%97 == 5 {
				want++
			}
			if want != n {
				t.Fatalf("outputs acknowledged up to input %d, want all %d", want, n)
			}
		})
	}
}

// deadLetterAcks is a dead-letter writer that marks the original record as
// acknowledged in w (by its offset), so checkedReader can apply the
// commit-after-ack rule to dead-lettered records too.
type deadLetterAcks struct{ w *gateWriter }

func (d deadLetterAcks) Write(_ context.Context, msgs []Message) error {
	d.w.mu.Lock()
	defer d.w.mu.Unlock()
	for _, m := range msgs {
		dl := &flowpb.DeadLetter{}
		if err := proto.Unmarshal(m.Value, dl); err != nil {
			return fmt.Errorf("dead letter not decodable: %w", err)
		}
		d.w.acked[int(dl.Offset)] = true
	}
	return nil
}

func (deadLetterAcks) Close() error { return nil }

// TestPipelineSinkBatchesNotOverwritten: RunSink decodes the next batch while
// WriteBatch (slow) still holds the previous one; the batch WriteBatch sees
// must stay intact until it returns, and every batch is committed in order.
func TestPipelineSinkBatchesNotOverwritten(t *testing.T) {
	const n = 200
	log := flowLog(n)
	var (
		mu   sync.Mutex
		seen = map[int]bool{}
		bad  []string
		next int
	)
	sk := Sink[*flowpb.FlowRecord]{
		Name: "test-pipeline-sink",
		WriteBatch: func(_ context.Context, batch []*flowpb.FlowRecord) error {
			before := make([]int, len(batch))
			for i, r := range batch {
				before[i] = flowIndex(r)
			}
			time.Sleep(2 * time.Millisecond) // the next batch is decoded meanwhile
			mu.Lock()
			defer mu.Unlock()
			for i, r := range batch {
				if idx := flowIndex(r); idx != before[i] || !proto.Equal(r, sampleFlow(idx)) {
					bad = append(bad, fmt.Sprintf("record %d changed during WriteBatch", before[i]))
				}
				if before[i] != next {
					bad = append(bad, fmt.Sprintf("got record %d, want %d", before[i], next))
				}
				next++
				seen[before[i]] = true
			}
			return nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- RunSink(ctx, testConfig(), log.reader(9), nil, sk) }()
	waitFor(t, "sink commit", func() bool { log.mu.Lock(); defer log.mu.Unlock(); return log.committed == n })
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatal(strings.Join(bad, "\n"))
	}
	if len(seen) != n {
		t.Fatalf("sink saw %d records, want %d", len(seen), n)
	}
}
