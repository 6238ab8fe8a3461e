package transport

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

var topicSeq atomic.Int64

// uniqueTopic returns a topic name no other test (or earlier run) used.
func uniqueTopic(t testing.TB, what string) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, t.Name())
	return fmt.Sprintf("test.%s.%s.%d.%d", name, what, time.Now().UnixNano(), topicSeq.Add(1))
}

func kafkaConfig(t testing.TB, bootstrap string) Config {
	cfg := DefaultConfig()
	cfg.Brokers = strings.Split(bootstrap, ",")
	cfg.RetryBackoffMin = 20 * time.Millisecond
	cfg.RetryBackoffMax = 500 * time.Millisecond
	cfg.DrainTimeout = 2 * time.Second
	cfg.BatchSize = 2000
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// produceFlows writes sampleFlow(from..to-1) to topic.
func produceFlows(t testing.TB, cfg Config, topic string, from, to int) {
	t.Helper()
	w := NewKafkaWriter(cfg, topic, nil)
	defer w.Close()
	var msgs []Message
	for i := from; i < to; i++ {
		rec := sampleFlow(i)
		msgs = append(msgs, Message{Key: rec.SrcAddr, Value: mustMarshal(rec)})
		if len(msgs) == 5000 || i == to-1 {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			err := w.Write(ctx, msgs)
			cancel()
			if err != nil {
				t.Fatalf("produce: %v", err)
			}
			msgs = msgs[:0]
		}
	}
}

// seenSet records which sampleFlow indexes arrived, checking each unaltered.
type seenSet struct {
	mu   sync.Mutex
	seen map[int]int
	bad  error
}

func newSeenSet() *seenSet { return &seenSet{seen: map[int]int{}} }

func (s *seenSet) add(m Message) {
	rec := &flowpb.FlowRecord{}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := proto.Unmarshal(m.Value, rec); err != nil {
		s.bad = fmt.Errorf("offset %d: %w", m.Offset, err)
		return
	}
	var i int
	if _, err := fmt.Sscanf(rec.Id[strings.LastIndexByte(rec.Id, '/')+1:], "%d", &i); err != nil {
		s.bad = fmt.Errorf("bad id %q", rec.Id)
		return
	}
	if want := sampleFlow(i); !proto.Equal(rec, want) {
		s.bad = fmt.Errorf("record %d altered in transit:\n%v\n%v", i, rec, want)
	}
	if string(m.Key) != string(rec.SrcAddr) {
		s.bad = fmt.Errorf("record %d key %x, want src_addr", i, m.Key)
	}
	s.seen[i]++
}

func (s *seenSet) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.seen) }

// consume fetches, records and (if commit) commits until ctx is done, or
// until maxBatches batches (0 = no limit), after which it idles until ctx is
// done, like a member that hangs.
func consume(ctx context.Context, r Reader, s *seenSet, commit bool, batches *atomic.Int64, maxBatches int64) error {
	for {
		if maxBatches > 0 && batches.Load() >= maxBatches {
			<-ctx.Done()
			return nil
		}
		batch, err := r.Fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, m := range batch {
			s.add(m)
		}
		batches.Add(1)
		if commit {
			if err := r.Commit(ctx, batch); err != nil && ctx.Err() == nil {
				return err
			}
		}
	}
}

const roundTripRecords = 100_000

// TestKafkaRoundTripGroup: 100k records through a two-member consumer group
// arrive complete and unaltered.
func TestKafkaRoundTripGroup(t *testing.T) {
	cfg := kafkaConfig(t, testenv.Kafka(t))
	topic := uniqueTopic(t, "flows")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := EnsureTopics(ctx, cfg, topic); err != nil {
		t.Fatal(err)
	}
	produceFlows(t, cfg, topic, 0, roundTripRecords)

	group := "test-" + topic
	seen := newSeenSet()
	var batches [2]atomic.Int64
	cctx, ccancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for c := 0; c < 2; c++ {
		r := NewKafkaReader(cfg, topic, group, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			errs[c] = consume(cctx, r, seen, true, &batches[c], 0)
		}()
	}
	for seen.count() < roundTripRecords && ctx.Err() == nil && seen.bad == nil {
		time.Sleep(20 * time.Millisecond)
	}
	ccancel()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("consumer: %v", err)
		}
	}
	if seen.bad != nil {
		t.Fatal(seen.bad)
	}
	if n := seen.count(); n != roundTripRecords {
		t.Fatalf("received %d distinct records, want %d", n, roundTripRecords)
	}
	t.Logf("batches per consumer: %d, %d", batches[0].Load(), batches[1].Load())
}

// TestKafkaConsumerKilled: one member fetches records and dies without
// committing; the survivor must still deliver every record.
func TestKafkaConsumerKilled(t *testing.T) {
	cfg := kafkaConfig(t, testenv.Kafka(t))
	cfg.BatchSize = 500
	cfg.QueueCapacity = 1000
	topic := uniqueTopic(t, "flows")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := EnsureTopics(ctx, cfg, topic); err != nil {
		t.Fatal(err)
	}
	produceFlows(t, cfg, topic, 0, roundTripRecords)
	group := "test-" + topic

	// The victim joins first, fetches a few batches, never commits, and is
	// killed (ctx cancelled and closed) while the survivor is running.
	victimSeen, survivorSeen := newSeenSet(), newSeenSet()
	var vb, sb atomic.Int64
	victim := NewKafkaReader(cfg, topic, group, nil)
	vctx, vcancel := context.WithCancel(ctx)
	vdone := make(chan error, 1)
	go func() { vdone <- consume(vctx, victim, victimSeen, false, &vb, 3) }()
	for vb.Load() < 3 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}

	survivor := NewKafkaReader(cfg, topic, group, nil)
	defer survivor.Close()
	sctx, scancel := context.WithCancel(ctx)
	sdone := make(chan error, 1)
	go func() { sdone <- consume(sctx, survivor, survivorSeen, true, &sb, 0) }()
	for sb.Load() < 2 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	vcancel()
	if err := <-vdone; err != nil {
		t.Fatalf("victim: %v", err)
	}
	victim.Close()
	if victimSeen.count() == 0 {
		t.Fatal("victim consumed nothing; the test proves nothing")
	}

	for survivorSeen.count() < roundTripRecords && ctx.Err() == nil && survivorSeen.bad == nil {
		time.Sleep(20 * time.Millisecond)
	}
	scancel()
	if err := <-sdone; err != nil {
		t.Fatalf("survivor: %v", err)
	}
	if survivorSeen.bad != nil {
		t.Fatal(survivorSeen.bad)
	}
	if n := survivorSeen.count(); n != roundTripRecords {
		t.Fatalf("survivor received %d distinct records, want all %d (victim had fetched %d uncommitted)", n, roundTripRecords, victimSeen.count())
	}
	t.Logf("victim fetched %d records without committing; survivor got all %d", victimSeen.count(), roundTripRecords)
}
