package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// backoff is a capped exponential delay with jitter, reset after a success.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(c Config) backoff { return backoff{min: c.RetryBackoffMin, max: c.RetryBackoffMax} }

// wait sleeps for the next delay or until ctx is done.
func (b *backoff) wait(ctx context.Context) error {
	if b.cur == 0 {
		b.cur = b.min
	} else if b.cur *= 2; b.cur > b.max {
		b.cur = b.max
	}
	d := b.cur/2 + rand.N(b.cur/2+1) // jitter so restarted stages do not retry in lockstep
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryable tells whether a Kafka error can succeed on a later attempt:
// network errors and errors Kafka marks as retriable (leader moves, broker
// not available, timeouts). Oversized messages or bad requests never will.
func retryable(err error) bool {
	var tooLarge kafka.MessageTooLargeError
	if errors.As(err, &tooLarge) {
		return false
	}
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		return kerr.Temporary() || kerr == kafka.UnknownTopicOrPartition
	}
	return true // I/O errors, refused connections, closed sockets
}

func kafkaLogger(l *slog.Logger, level slog.Level) kafka.Logger {
	return kafka.LoggerFunc(func(msg string, args ...any) {
		if l.Enabled(context.Background(), level) {
			l.Log(context.Background(), level, fmt.Sprintf(msg, args...), "component", "kafka-go")
		}
	})
}

// KafkaWriter produces to one topic with acks=all, the configured compression
// and key hashing, so one device's records (same key) stay ordered in one
// partition. Write blocks until the batch is acknowledged, retrying failed
// records with exponential backoff until ctx is done. It is safe for
// concurrent use: stages share one dead-letter writer.
type KafkaWriter struct {
	w     *kafka.Writer
	topic string
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	spare [][]kafka.Message // conversion buffers of finished Write calls
}

// NewKafkaWriter returns a writer for topic. It does not connect until the
// first Write.
func NewKafkaWriter(cfg Config, topic string, log *slog.Logger) *KafkaWriter {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("topic", topic)
	w := &kafka.Writer{
		Addr:     kafka.TCP(cfg.Brokers...),
		Topic:    topic,
		Balancer: &kafka.Hash{},
		// kafka-go retries temporary errors itself a couple of times; the
		// outer loop in Write handles longer outages with logging and metrics.
		MaxAttempts:     3,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: 500 * time.Millisecond,
		// Write hands over whole batches and blocks, so nothing else can fill
		// a partial batch: linger only adds latency to every call, and
		// kafka-go preallocates ProduceBatchSize slots per batch, so batches
		// are kept moderate (measured in BenchmarkKafkaProduce).
		BatchSize:              cfg.ProduceBatchSize,
		BatchBytes:             int64(cfg.BatchBytes),
		BatchTimeout:           cfg.ProduceLinger,
		ReadTimeout:            30 * time.Second,
		WriteTimeout:           30 * time.Second,
		RequiredAcks:           kafka.RequireAll,
		Compression:            cfg.compression(),
		AllowAutoTopicCreation: false,
		ErrorLogger:            kafkaLogger(log, slog.LevelDebug),
		Transport: &kafka.Transport{
			Dial:        (&net.Dialer{Timeout: cfg.DialTimeout}).DialContext,
			ClientID:    cfg.ClientID,
			IdleTimeout: time.Minute,
			MetadataTTL: 30 * time.Second,
		},
	}
	return &KafkaWriter{w: w, topic: topic, cfg: cfg, log: log}
}

// Write implements Writer.
func (w *KafkaWriter) Write(ctx context.Context, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	kmsgs := w.buffer()
	for i := range msgs {
		kmsgs = append(kmsgs, kafka.Message{Key: msgs[i].Key, Value: msgs[i].Value, Time: msgs[i].Time})
	}
	defer w.release(kmsgs)
	pending := kmsgs
	bo := newBackoff(w.cfg)
	for attempt := 1; ; attempt++ {
		err := w.w.WriteMessages(ctx, pending...)
		if err == nil {
			return nil
		}
		metBrokerErrors.WithLabelValues("write").Inc()
		if ctx.Err() != nil {
			return fmt.Errorf("kafka write to %s: %w", w.topic, err)
		}
		// Keep only the records that failed: a partial failure must not
		// duplicate the records already acknowledged.
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(pending) {
			n := 0
			for i, e := range werrs {
				if e == nil {
					continue
				}
				if !retryable(e) {
					return fmt.Errorf("kafka write to %s: %w", w.topic, e)
				}
				pending[n] = pending[i] // compact in place: i >= n
				n++
			}
			pending = pending[:n]
		} else if !retryable(err) {
			return fmt.Errorf("kafka write to %s: %w", w.topic, err)
		}
		w.log.Warn("kafka write failed; retrying", "attempt", attempt, "records", len(pending), "err", firstError(err))
		metRetries.WithLabelValues("write").Inc()
		if werr := bo.wait(ctx); werr != nil {
			return fmt.Errorf("kafka write to %s: gave up after %d attempts: %w", w.topic, attempt, firstError(err))
		}
	}
}

// buffer returns an empty conversion buffer, reusing one of an earlier
// Write, so that steady-state writes do not allocate one per call.
func (w *KafkaWriter) buffer() []kafka.Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.spare); n > 0 {
		b := w.spare[n-1]
		w.spare = w.spare[:n-1]
		return b
	}
	return nil
}

// release returns b for reuse once kafka-go no longer references it
// (WriteMessages is synchronous).
func (w *KafkaWriter) release(b []kafka.Message) {
	clear(b) // drop references to the caller's key and value bytes
	w.mu.Lock()
	w.spare = append(w.spare, b[:0])
	w.mu.Unlock()
}

// Close flushes nothing (Write is synchronous) and releases connections.
func (w *KafkaWriter) Close() error { return w.w.Close() }

// KafkaReader consumes one topic as a member of a consumer group. Offsets are
// committed only by Commit (never automatically), and commits are
// synchronous, so a record counts as consumed only once the runner saw its
// outputs acknowledged.
type KafkaReader struct {
	r       *kafka.Reader
	cfg     Config
	log     *slog.Logger
	buf     []Message
	commits []kafka.Message
}

// NewKafkaReader joins group and consumes topic.
func NewKafkaReader(cfg Config, topic, group string, log *slog.Logger) *KafkaReader {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("topic", topic, "group", group)
	start := kafka.LastOffset
	if cfg.StartFromOldest {
		start = kafka.FirstOffset
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           cfg.Brokers,
		GroupID:           group,
		Topic:             topic,
		Dialer:            &kafka.Dialer{ClientID: cfg.ClientID, Timeout: cfg.DialTimeout, DualStack: true},
		QueueCapacity:     cfg.QueueCapacity,
		MinBytes:          cfg.FetchMinBytes,
		MaxBytes:          cfg.FetchMaxBytes,
		MaxWait:           cfg.FetchMaxWait,
		HeartbeatInterval: cfg.HeartbeatInterval,
		SessionTimeout:    cfg.SessionTimeout,
		RebalanceTimeout:  cfg.SessionTimeout,
		JoinGroupBackoff:  cfg.RetryBackoffMin,
		ReadBackoffMin:    cfg.RetryBackoffMin,
		ReadBackoffMax:    cfg.RetryBackoffMax,
		CommitInterval:    0, // synchronous, explicit commits only
		// The range balancer is the fallback while a rolling upgrade mixes
		// in members that do not know the instance protocol.
		GroupBalancers: []kafka.GroupBalancer{InstanceBalancer{Instance: instanceName(cfg)}, kafka.RangeGroupBalancer{}},
		StartOffset:    start,
		ErrorLogger:    kafkaLogger(log, slog.LevelWarn),
	})
	return &KafkaReader{r: r, cfg: cfg, log: log, buf: make([]Message, 0, cfg.BatchSize)}
}

// Fetch implements Reader: it waits for one record, then gathers more for
// at most BatchTimeout or until BatchSize records.
func (r *KafkaReader) Fetch(ctx context.Context) ([]Message, error) {
	r.buf = r.buf[:0]
	var (
		m   kafka.Message
		err error
		bo  = newBackoff(r.cfg)
	)
	for attempt := 1; ; attempt++ {
		if m, err = r.r.FetchMessage(ctx); err == nil {
			break
		}
		if ctx.Err() != nil || errors.Is(err, io.EOF) { // cancelled, or reader closed
			return nil, err
		}
		// kafka-go reports group coordination failures (coordinator moving,
		// broker restarting) through FetchMessage while it keeps rejoining
		// in the background: wait and ask again.
		metBrokerErrors.WithLabelValues("fetch").Inc()
		metRetries.WithLabelValues("fetch").Inc()
		r.log.Warn("kafka fetch failed; retrying", "attempt", attempt, "err", err)
		if werr := bo.wait(ctx); werr != nil {
			return nil, werr
		}
	}
	r.buf = append(r.buf, fromKafka(&m))
	if r.cfg.BatchSize > 1 {
		lctx, cancel := context.WithTimeout(ctx, r.cfg.BatchTimeout)
		for len(r.buf) < r.cfg.BatchSize {
			m, err := r.r.FetchMessage(lctx)
			if err != nil {
				break // linger over, or an error that the next Fetch reports
			}
			r.buf = append(r.buf, fromKafka(&m))
		}
		cancel()
	}
	return r.buf, nil
}

func fromKafka(m *kafka.Message) Message {
	return Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time}
}

// Commit implements Reader. Only the highest offset per partition is sent.
// Transient failures are retried until ctx is done; a failure because the
// partition moved to another member (rebalance) is returned, and the records
// will be re-delivered to the new owner.
func (r *KafkaReader) Commit(ctx context.Context, msgs []Message) error {
	r.commits = r.commits[:0]
next:
	for i := range msgs {
		m := &msgs[i]
		for j := range r.commits {
			c := &r.commits[j]
			if c.Topic == m.Topic && c.Partition == m.Partition {
				c.Offset = max(c.Offset, m.Offset)
				continue next
			}
		}
		r.commits = append(r.commits, kafka.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset})
	}
	if len(r.commits) == 0 {
		return nil
	}
	bo := newBackoff(r.cfg)
	for attempt := 1; ; attempt++ {
		err := r.r.CommitMessages(ctx, r.commits...)
		if err == nil {
			return nil
		}
		metBrokerErrors.WithLabelValues("commit").Inc()
		if ctx.Err() != nil || !retryable(err) || errors.Is(err, kafka.RebalanceInProgress) ||
			errors.Is(err, kafka.IllegalGeneration) || errors.Is(err, kafka.UnknownMemberId) {
			return fmt.Errorf("kafka commit: %w", err)
		}
		r.log.Warn("kafka commit failed; retrying", "attempt", attempt, "err", err)
		metRetries.WithLabelValues("commit").Inc()
		if werr := bo.wait(ctx); werr != nil {
			return fmt.Errorf("kafka commit: %w", err)
		}
	}
}

// Lag returns the consumer's last known lag (records behind the partition end).
func (r *KafkaReader) Lag() int64 { return r.r.Stats().Lag }

// Close leaves the group; uncommitted records go to the remaining members.
func (r *KafkaReader) Close() error { return r.r.Close() }

// EnsureTopics creates the missing ones of topics with cfg.Partitions and
// cfg.ReplicationFactor and waits until each has a leader for every
// partition. Existing topics are left as they are.
func EnsureTopics(ctx context.Context, cfg Config, topics ...string) error {
	client := &kafka.Client{
		Addr:      kafka.TCP(cfg.Brokers...),
		Timeout:   30 * time.Second,
		Transport: &kafka.Transport{Dial: (&net.Dialer{Timeout: cfg.DialTimeout}).DialContext, ClientID: cfg.ClientID},
	}
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		if err := validTopic(t); err != nil {
			return fmt.Errorf("ensure topic %q: %w", t, err)
		}
		req.Topics = append(req.Topics, kafka.TopicConfig{
			Topic: t, NumPartitions: cfg.Partitions, ReplicationFactor: cfg.ReplicationFactor,
		})
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics on %v: %w", cfg.Brokers, err)
	}
	for t, e := range resp.Errors {
		if e != nil && !errors.Is(e, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", t, e)
		}
	}
	// Creation is asynchronous: wait until metadata shows every partition led.
	bo := backoff{min: 20 * time.Millisecond, max: 500 * time.Millisecond}
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
		if err == nil && allLed(md, topics) {
			return nil
		}
		if werr := bo.wait(ctx); werr != nil {
			return fmt.Errorf("topics %v not ready: %w", topics, errors.Join(werr, err))
		}
	}
}

func allLed(md *kafka.MetadataResponse, topics []string) bool {
	ready := 0
	for _, t := range md.Topics {
		if t.Error != nil || len(t.Partitions) == 0 {
			return false
		}
		for _, p := range t.Partitions {
			if p.Error != nil || p.Leader.Host == "" {
				return false
			}
		}
		ready++
	}
	return ready == len(topics)
}

// firstError shortens kafka.WriteErrors (one entry per record) to its first
// error, so logs and returned errors stay one readable line.
func firstError(err error) error {
	var werrs kafka.WriteErrors
	if !errors.As(err, &werrs) {
		return err
	}
	for _, e := range werrs {
		if e != nil {
			return fmt.Errorf("%d of %d records failed, first: %w", werrs.Count(), len(werrs), e)
		}
	}
	return err
}
