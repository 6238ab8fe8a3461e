package clickhouse

import (
	"context"
	"sync"
	"time"
)

// Batcher collects records from a stream into INSERT-sized blocks: it calls
// flush when size items are waiting, or when the oldest waiting item has
// waited longer than wait (Run drives the timer). flush is typically
// "WriteFlows, then commit the Kafka offsets of these records"; Add blocks
// while a flush runs, which is the backpressure that holds the consumer
// back while ClickHouse is down.
//
// Items are only dropped from the buffer after flush returned nil; a failed
// flush keeps them and the next Add, Flush or tick retries the whole block.
type Batcher[T any] struct {
	size  int
	wait  time.Duration
	flush func(context.Context, []T) error

	mu     sync.Mutex
	buf    []T
	oldest time.Time
}

// NewBatcher returns a batcher flushing at size items or after wait.
func NewBatcher[T any](size int, wait time.Duration, flush func(context.Context, []T) error) *Batcher[T] {
	return &Batcher[T]{size: size, wait: wait, flush: flush, buf: make([]T, 0, size)}
}

// Add queues items, flushing every time size items are waiting.
func (b *Batcher[T]) Add(ctx context.Context, items ...T) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(items) > 0 {
		if len(b.buf) == 0 {
			b.oldest = time.Now()
		}
		n := min(len(items), b.size-len(b.buf))
		b.buf = append(b.buf, items[:n]...)
		items = items[n:]
		if len(b.buf) >= b.size {
			if err := b.flushLocked(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Flush hands whatever is waiting to flush now.
func (b *Batcher[T]) Flush(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked(ctx)
}

// Len is the number of items waiting.
func (b *Batcher[T]) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

func (b *Batcher[T]) flushLocked(ctx context.Context) error {
	if len(b.buf) == 0 {
		return nil
	}
	if err := b.flush(ctx, b.buf); err != nil {
		return err
	}
	clear(b.buf) // release references for the GC
	b.buf = b.buf[:0]
	return nil
}

// Run flushes on the wait timer until ctx ends, then flushes what is left
// with a fresh context bounded by final (0: no final flush). It returns the
// first flush error.
func (b *Batcher[T]) Run(ctx context.Context, final time.Duration) error {
	tick := time.NewTicker(max(b.wait/4, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if final <= 0 {
				return nil
			}
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), final)
			defer cancel()
			return b.Flush(fctx)
		case <-tick.C:
			b.mu.Lock()
			var err error
			if len(b.buf) > 0 && time.Since(b.oldest) >= b.wait {
				err = b.flushLocked(ctx)
			}
			b.mu.Unlock()
			if err != nil && ctx.Err() == nil {
				return err
			}
		}
	}
}
