package transport

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

func benchEncode(b *testing.B, rec *flowpb.FlowRecord, f Format) {
	buf, _ := AppendEncoded(nil, rec, f)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		if buf, err = AppendEncoded(buf[:0], rec, f); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDecode(b *testing.B, rec *flowpb.FlowRecord, f Format) {
	buf, _ := AppendEncoded(nil, rec, f)
	into := &flowpb.FlowRecord{}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := Decode(buf, f, into); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	b.Run("flow200B/proto", func(b *testing.B) { benchEncode(b, sampleFlow(1), FormatProto) })
	b.Run("flow1KBsnippets/proto", func(b *testing.B) { benchEncode(b, flowWithSnippets(1), FormatProto) })
	b.Run("flow200B/json", func(b *testing.B) { benchEncode(b, sampleFlow(1), FormatJSON) })
}

func BenchmarkDecode(b *testing.B) {
	b.Run("flow200B/proto", func(b *testing.B) { benchDecode(b, sampleFlow(1), FormatProto) })
	b.Run("flow1KBsnippets/proto", func(b *testing.B) { benchDecode(b, flowWithSnippets(1), FormatProto) })
	b.Run("flow200B/json", func(b *testing.B) { benchDecode(b, sampleFlow(1), FormatJSON) })
}

// loopReader returns the same pre-encoded batch forever.
type loopReader struct{ batch []Message }

func (r *loopReader) Fetch(ctx context.Context) ([]Message, error) { return r.batch, ctx.Err() }
func (r *loopReader) Commit(context.Context, []Message) error      { return nil }
func (r *loopReader) Close() error                                 { return nil }

type nullWriter struct{}

func (nullWriter) Write(context.Context, []Message) error { return nil }
func (nullWriter) Close() error                           { return nil }

// BenchmarkRunnerPerRecord: the runner's own cost per record (decode into a
// reused message, Process, encode into the arena, write, commit) without a
// broker, with and without a (no-op) Stage.Prefetch: its groups decode into
// 16 messages in turn. One op = one record.
func BenchmarkRunnerPerRecord(b *testing.B) {
	const batch = 1000
	r := &loopReader{}
	for i := 0; i < batch; i++ {
		rec := sampleFlow(i)
		r.batch = append(r.batch, Message{Key: rec.SrcAddr, Value: mustMarshal(rec)})
	}
	for _, prefetch := range []bool{false, true} {
		b.Run(fmt.Sprintf("prefetch=%v", prefetch), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			n := 0
			st := Stage[*flowpb.FlowRecord, *flowpb.FlowRecord]{
				Name: "bench",
				Process: func(_ context.Context, in *flowpb.FlowRecord, emit func(*flowpb.FlowRecord)) error {
					emit(in)
					if n++; n == b.N {
						cancel()
					}
					return nil
				},
			}
			if prefetch {
				st.Prefetch = func([]*flowpb.FlowRecord) {}
			}
			b.ReportAllocs()
			b.ResetTimer()
			if err := Run(ctx, DefaultConfig(), r, nullWriter{}, nil, st); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// produceBench writes batches of 200-byte flow records through write and
// reports records/s and MB/s. One op = one record.
func produceBench(b *testing.B, batch int, write func(ctx context.Context, msgs []Message) error) {
	msgs := make([]Message, batch)
	size := 0
	for i := range msgs {
		rec := sampleFlow(i)
		msgs[i] = Message{Key: rec.SrcAddr, Value: mustMarshal(rec)}
		size += len(msgs[i].Value)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; done += batch {
		n := min(batch, b.N-done)
		if err := write(ctx, msgs[:n]); err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(b.N)/el, "records/s")
	b.ReportMetric(float64(b.N)*float64(size)/float64(batch)/el/1e6, "MB/s")
}

func benchKafkaConfig(b *testing.B) Config {
	cfg := kafkaConfig(b, testenv.Kafka(b))
	cfg.BatchSize = DefaultConfig().BatchSize // kafkaConfig shrinks it for tests
	// Knobs for exploring settings by hand; the defaults are what ships.
	if v := os.Getenv("BENCH_PARTITIONS"); v != "" {
		fmt.Sscan(v, &cfg.Partitions)
	}
	if v := os.Getenv("BENCH_WRITER_BATCH"); v != "" {
		fmt.Sscan(v, &cfg.ProduceBatchSize)
	}
	if v := os.Getenv("BENCH_COMPRESSION"); v != "" {
		cfg.Compression = v
	}
	if v := os.Getenv("BENCH_LINGER"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		cfg.ProduceLinger = d
	}
	return cfg
}

// BenchmarkKafkaProduce compares the tuned KafkaWriter (acks=all, 200 µs
// linger, 1000-record produce batches) with kafka-go's default Writer settings
// (1 s BatchTimeout, BatchSize 100, acks=none) given the same slices, against
// the dev-stack broker, for 10k- and 1k-record Write calls.
func BenchmarkKafkaProduce(b *testing.B) {
	for _, per := range []int{10000, 1000} {
		for _, codec := range []string{"lz4", "zstd", "none"} {
			if per != 10000 && codec != "lz4" {
				continue
			}
			b.Run(fmt.Sprintf("tuned/acks=all/%s/per-call=%d", codec, per), func(b *testing.B) {
				cfg := benchKafkaConfig(b)
				cfg.Compression = codec
				topic := uniqueTopic(b, "produce")
				if err := EnsureTopics(context.Background(), cfg, topic); err != nil {
					b.Fatal(err)
				}
				w := NewKafkaWriter(cfg, topic, nil)
				defer w.Close()
				produceBench(b, per, w.Write)
			})
		}
		for _, acks := range []kafka.RequiredAcks{kafka.RequireNone, kafka.RequireAll} {
			b.Run(fmt.Sprintf("kafka-go-defaults/acks=%v/per-call=%d", acks, per), func(b *testing.B) {
				cfg := benchKafkaConfig(b)
				topic := uniqueTopic(b, "produce")
				if err := EnsureTopics(context.Background(), cfg, topic); err != nil {
					b.Fatal(err)
				}
				// Only a private Transport differs from the defaults: the shared
				// DefaultTransport may hold metadata cached before topic creation.
				w := &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Topic: topic, RequiredAcks: acks, Transport: &kafka.Transport{}}
				defer w.Close()
				var km []kafka.Message
				if per < 10000 && b.N > 20000 {
					// Each call waits out the 1 s linger: keep the run short.
					b.Skip("slow baseline: run with -benchtime 20000x")
				}
				produceBench(b, per, func(ctx context.Context, msgs []Message) error {
					km = km[:0]
					for _, m := range msgs {
						km = append(km, kafka.Message{Key: m.Key, Value: m.Value})
					}
					return w.WriteMessages(ctx, km...)
				})
			})
		}
	}
}

// BenchmarkKafkaConsume: group consumption with Fetch + Commit per batch of
// records produced beforehand (not timed). One op = one record.
func BenchmarkKafkaConsume(b *testing.B) {
	for _, name := range []string{"tuned", "kafka-go-defaults"} {
		b.Run(name, func(b *testing.B) {
			cfg := benchKafkaConfig(b)
			topic := uniqueTopic(b, "consume")
			if err := EnsureTopics(context.Background(), cfg, topic); err != nil {
				b.Fatal(err)
			}
			n := b.N
			if name != "tuned" {
				n = min(n, 2000) // a synchronous commit per record: keep the run short
			}
			produceFlows(b, cfg, topic, 0, n)
			size := len(mustMarshal(sampleFlow(1)))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			var (
				fetch  func() (int, error)
				closer func() error
			)
			if name == "tuned" {
				r := NewKafkaReader(cfg, topic, "bench-"+topic, nil)
				closer = r.Close
				fetch = func() (int, error) {
					batch, err := r.Fetch(ctx)
					if err != nil {
						return 0, err
					}
					return len(batch), r.Commit(ctx, batch)
				}
			} else {
				// kafka-go defaults: ReadMessage commits synchronously per record.
				r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, GroupID: "bench-" + topic, Topic: topic, StartOffset: kafka.FirstOffset})
				closer = r.Close
				fetch = func() (int, error) {
					_, err := r.ReadMessage(ctx)
					return 1, err
				}
			}
			defer closer()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for got := 0; got < n; {
				n, err := fetch()
				if err != nil {
					b.Fatal(err)
				}
				got += n
			}
			el := time.Since(start).Seconds()
			b.ReportMetric(float64(n)/el, "records/s")
			b.ReportMetric(float64(n)*float64(size)/el/1e6, "MB/s")
		})
	}
}

// BenchmarkKafkaStage: a pass-through stage under Run, consuming from one
// topic and producing to another on the dev-stack broker (decode, encode,
// acks=all write, commit). "baseline" is the runner as it was before
// pipelining and the protowire decoder (one batch at a time, proto.Unmarshal);
// depth=N is the pipelined runner with N batches in flight (1 = sequential).
// One op = one record.
func BenchmarkKafkaStage(b *testing.B) {
	b.Run("baseline", func(b *testing.B) {
		fastFlowDecode = false
		defer func() { fastFlowDecode = true }()
		cfg := benchKafkaConfig(b)
		cfg.PipelineDepth = 1
		benchKafkaStage(b, cfg)
	})
	for _, depth := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			cfg := benchKafkaConfig(b)
			cfg.PipelineDepth = depth
			benchKafkaStage(b, cfg)
		})
	}
}

func benchKafkaStage(b *testing.B, cfg Config) {
	in, out := uniqueTopic(b, "in"), uniqueTopic(b, "out")
	if err := EnsureTopics(context.Background(), cfg, in, out); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { deleteTopics(b, cfg, in, out) })
	produceFlows(b, cfg, in, 0, b.N)
	src := NewKafkaReader(cfg, in, "bench-"+in, nil)
	defer src.Close()
	dst := NewKafkaWriter(cfg, out, nil)
	defer dst.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	st := Stage[*flowpb.FlowRecord, *flowpb.FlowRecord]{
		Name: "bench-stage",
		Process: func(_ context.Context, rec *flowpb.FlowRecord, emit func(*flowpb.FlowRecord)) error {
			emit(rec)
			if n++; n == b.N {
				cancel() // Run finishes the batches in flight (write + commit) and returns
			}
			return nil
		},
	}
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	if err := Run(ctx, cfg, src, dst, nil, st); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	// CPU of this process (runner and kafka-go, not the broker) per record:
	// less disturbed than records/s by other load on a shared machine.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/record")
}

// processCPU returns the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// deleteTopics removes benchmark topics (hundreds of MB each) from the
// shared dev broker; failures are only logged.
func deleteTopics(tb testing.TB, cfg Config, topics ...string) {
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 30 * time.Second}
	resp, err := client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: topics})
	if err == nil {
		for t, e := range resp.Errors {
			if e != nil {
				err = fmt.Errorf("%s: %w", t, e)
			}
		}
	}
	if err != nil {
		tb.Logf("deleting benchmark topics %v: %v", topics, err)
	}
}
