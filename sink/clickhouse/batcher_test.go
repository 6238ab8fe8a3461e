package clickhouse

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

type sinkRecorder struct {
	mu      sync.Mutex
	batches [][]int
	fail    bool
}

func (s *sinkRecorder) flush(_ context.Context, items []int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("down")
	}
	s.batches = append(s.batches, slices.Clone(items))
	return nil
}

func (s *sinkRecorder) get() [][]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.batches)
}

func TestBatcherBySize(t *testing.T) {
	rec := &sinkRecorder{}
	b := NewBatcher(4, time.Hour, rec.flush)
	ctx := context.Background()
	for i := range 10 {
		if err := b.Add(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	got := rec.get()
	if len(got) != 2 || !slices.Equal(got[0], []int{0, 1, 2, 3}) || !slices.Equal(got[1], []int{4, 5, 6, 7}) || b.Len() != 2 {
		t.Fatalf("batches %v, waiting %d", got, b.Len())
	}
	// A failing flush keeps the items; the next flush sends them.
	rec.fail = true
	if err := b.Add(ctx, 10, 11); err == nil {
		t.Fatal("Add hid the flush error")
	}
	if b.Len() != 4 {
		t.Fatalf("failed flush dropped items: %d waiting", b.Len())
	}
	rec.fail = false
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rec.get(); !slices.Equal(got[2], []int{8, 9, 10, 11}) {
		t.Fatalf("retried batch %v", got[2])
	}
}

func TestBatcherByTime(t *testing.T) {
	rec := &sinkRecorder{}
	b := NewBatcher(1000, 50*time.Millisecond, rec.flush)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx, time.Second) }()
	if err := b.Add(ctx, 1, 2, 3); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.get()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no time-based flush")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := rec.get(); !slices.Equal(got[0], []int{1, 2, 3}) {
		t.Fatalf("batch %v", got[0])
	}
	// Items left at shutdown are flushed by Run's final flush.
	b.mu.Lock()
	b.buf = append(b.buf, 4)
	b.oldest = time.Now().Add(time.Hour)
	b.mu.Unlock()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := rec.get(); len(got) != 2 || !slices.Equal(got[1], []int{4}) {
		t.Fatalf("final flush: %v", got)
	}
}
