package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// Stage is a processing stage for Run: it turns each input record into zero
// or more output records.
type Stage[In, Out proto.Message] struct {
	// Name labels metrics and logs and is written into dead letters.
	Name string
	// Process handles one decoded input. in is reused for the next record
	// (proto.Clone it to keep it). emit encodes its argument immediately, so
	// the stage may reuse its output message after emit returns. A returned
	// error sends the input to the dead-letter writer and the stage goes on;
	// wrap the error with Fatal to stop the stage instead (the batch is then
	// not committed and will be re-delivered).
	Process func(ctx context.Context, in In, emit func(Out)) error
	// Key appends the Kafka key of out to dst; nil means DefaultKey.
	Key func(dst []byte, out Out) []byte
	// Log receives the runner's logs; nil means slog.Default().
	Log *slog.Logger
}

// Sink is a terminal stage for RunSink (no output topic).
type Sink[In proto.Message] struct {
	Name string
	// WriteBatch stores one batch of decoded inputs. The slice and the
	// messages are reused for the next batch. Offsets are committed only
	// after it returns nil; an error is retried with backoff (the same batch
	// again) until it succeeds or the stage is stopped. Wrap the error with
	// Fatal to stop at once.
	WriteBatch func(ctx context.Context, batch []In) error
	Log        *slog.Logger
}

type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }
func (e fatalError) Unwrap() error { return e.err }

// Fatal marks err as one that must stop the stage rather than dead-letter the
// record or be retried.
func Fatal(err error) error {
	if err == nil {
		return nil
	}
	return fatalError{err}
}

// IsFatal reports whether err was marked with Fatal.
func IsFatal(err error) bool {
	var f fatalError
	return errors.As(err, &f)
}

// newMessage returns a new empty message of the generated type T (a pointer
// type such as *flowpb.FlowRecord).
func newMessage[T proto.Message]() T {
	var zero T
	return zero.ProtoReflect().Type().New().Interface().(T)
}

// span locates one encoded output inside the runner's arena.
type span struct{ key, val, end int }

// core is the part of the runner shared by Run and RunSink: fetching,
// dead-lettering, committing, draining and metrics.
type core struct {
	cfg   Config
	name  string
	src   Reader
	dlq   Writer
	log   *slog.Logger
	dec   decoder
	wctx  context.Context // survives ctx cancellation for DrainTimeout
	stop  func()
	dlFmt Format
	dl    flowpb.DeadLetter
	dlBuf []byte
	dlSp  []span
	dlOut []Message
	lagAt time.Time

	in, out, bytesIn, bytesOut prometheus.Counter
	batchSec, batchRecs        prometheus.Observer
	lag                        prometheus.Gauge
}

func newCore(ctx context.Context, cfg Config, name string, src Reader, dlq Writer, log *slog.Logger, sample proto.Message) *core {
	if log == nil {
		log = slog.Default()
	}
	c := &core{
		cfg: cfg, name: name, src: src, dlq: dlq, log: log.With("stage", name),
		dec:       decoder{version: versionField(sample)},
		in:        metRecordsIn.WithLabelValues(name),
		out:       metRecordsOut.WithLabelValues(name),
		bytesIn:   metBytesIn.WithLabelValues(name),
		bytesOut:  metBytesOut.WithLabelValues(name),
		batchSec:  metBatchSeconds.WithLabelValues(name),
		batchRecs: metBatchRecords.WithLabelValues(name),
		lag:       metCommitLag.WithLabelValues(name),
	}
	if dlq != nil {
		c.dlFmt = formatOf(dlq)
	}
	// Work on a fetched batch goes on after ctx is cancelled, for at most
	// DrainTimeout, so that the in-flight batch is written and committed.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopAfter := context.AfterFunc(ctx, func() { time.AfterFunc(cfg.DrainTimeout, cancel) })
	c.wctx = wctx
	c.stop = func() { stopAfter(); cancel() }
	return c
}

// fetch returns the next batch, or done=true on a clean end (ctx cancelled or
// finite input exhausted).
func (c *core) fetch(ctx context.Context) (batch []Message, done bool, err error) {
	batch, err = c.src.Fetch(ctx)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF), ctx.Err() != nil:
		return nil, true, nil
	default:
		return nil, false, fmt.Errorf("%s: fetch: %w", c.name, err)
	}
	n := 0
	for i := range batch {
		n += len(batch[i].Value)
	}
	c.in.Add(float64(len(batch)))
	c.bytesIn.Add(float64(n))
	c.batchRecs.Observe(float64(len(batch)))
	return batch, false, nil
}

// deadLetter queues m for the dead-letter writer, or returns an error naming
// its position when there is none (e.g. a JSON-lines run without --dlq).
func (c *core) deadLetter(m *Message, class, reason string) error {
	metDeadLetters.WithLabelValues(c.name, class).Inc()
	if c.dlq == nil {
		if m.Format == FormatJSON {
			return fmt.Errorf("%s: %s line %d: %s", c.name, m.Topic, m.Offset, reason)
		}
		return fmt.Errorf("%s: %s partition %d offset %d: %s", c.name, m.Topic, m.Partition, m.Offset, reason)
	}
	c.log.Warn("dead-lettering record", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "reason", reason)
	c.dl = flowpb.DeadLetter{
		SchemaVersion: schema.Version, Stage: c.name, Reason: reason,
		SourceTopic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset,
		Key: m.Key, Payload: m.Value, TimeNs: time.Now().UnixNano(),
	}
	start := len(c.dlBuf)
	c.dlBuf = append(c.dlBuf, m.Key...)
	key := len(c.dlBuf)
	var err error
	if c.dlBuf, err = AppendEncoded(c.dlBuf, &c.dl, c.dlFmt); err != nil {
		return fmt.Errorf("%s: encode dead letter: %w", c.name, err)
	}
	c.dlSp = append(c.dlSp, span{start, key, len(c.dlBuf)})
	return nil
}

// writeAll writes msgs to w, retrying any error with backoff until the drain
// context ends. Writers already retry transient broker errors; this loop
// also covers writers (files, sinks) that do not.
func (c *core) writeAll(op string, w Writer, msgs []Message) error {
	bo := newBackoff(c.cfg)
	for attempt := 1; ; attempt++ {
		err := w.Write(c.wctx, msgs)
		if err == nil {
			return nil
		}
		if IsFatal(err) || c.wctx.Err() != nil {
			return fmt.Errorf("%s: %s: %w", c.name, op, err)
		}
		c.log.Warn("write failed; retrying", "op", op, "attempt", attempt, "records", len(msgs), "err", err)
		metRetries.WithLabelValues(op).Inc()
		if werr := bo.wait(c.wctx); werr != nil {
			return fmt.Errorf("%s: %s: gave up after %d attempts: %w", c.name, op, attempt, err)
		}
	}
}

// flushDLQ writes the queued dead letters.
func (c *core) flushDLQ() error {
	if len(c.dlSp) == 0 {
		return nil
	}
	c.dlOut = materialize(c.dlOut[:0], c.dlBuf, c.dlSp, c.dlFmt)
	err := c.writeAll("dlq", c.dlq, c.dlOut)
	c.dlBuf, c.dlSp = c.dlBuf[:0], c.dlSp[:0]
	return err
}

// commit commits batch after its outputs were acknowledged. A failed commit
// only means re-delivery (duplicates), so it is logged, not fatal.
func (c *core) commit(batch []Message, started time.Time) {
	if err := c.src.Commit(c.wctx, batch); err != nil {
		c.log.Warn("commit failed; the batch will be re-delivered", "records", len(batch), "err", err)
	}
	c.batchSec.Observe(time.Since(started).Seconds())
	if l, ok := c.src.(interface{ Lag() int64 }); ok && time.Since(c.lagAt) > time.Second {
		c.lagAt = time.Now()
		c.lag.Set(float64(l.Lag()))
	}
}

func materialize(dst []Message, arena []byte, spans []span, f Format) []Message {
	for _, s := range spans {
		dst = append(dst, Message{Key: arena[s.key:s.val:s.val], Value: arena[s.val:s.end:s.end], Format: f})
	}
	return dst
}

// Run runs a stage at least once per input record until ctx is cancelled or
// a finite input ends: fetch a batch, decode each record (undecodable ones
// and ones with a newer schema_version go to dlq), Process it, encode the
// outputs, write them to dst and wait for the acknowledgement, and only then
// commit the batch. On cancellation the in-flight batch is finished (within
// cfg.DrainTimeout) before Run returns nil.
func Run[In, Out proto.Message](ctx context.Context, cfg Config, src Reader, dst, dlq Writer, st Stage[In, Out]) error {
	in := newMessage[In]()
	c := newCore(ctx, cfg, st.Name, src, dlq, st.Log, in)
	defer c.stop()
	outFmt := formatOf(dst)
	key := st.Key
	if key == nil {
		key = func(dst []byte, m Out) []byte { return DefaultKey(dst, m) }
	}
	var (
		arena  []byte
		spans  []span
		outs   []Message
		encErr error
	)
	emit := func(o Out) {
		start := len(arena)
		arena = key(arena, o)
		k := len(arena)
		var err error
		if arena, err = AppendEncoded(arena, o, outFmt); err != nil {
			encErr = err
			arena = arena[:start]
			return
		}
		spans = append(spans, span{start, k, len(arena)})
	}
	for {
		batch, done, err := c.fetch(ctx)
		if done || err != nil {
			return err
		}
		started := time.Now()
		arena, spans, outs = arena[:0], spans[:0], outs[:0]
		for i := range batch {
			m := &batch[i]
			if class, reason := c.dec.decode(m, in); class != "" {
				if err := c.deadLetter(m, class, reason); err != nil {
					return err
				}
				continue
			}
			nArena, nSpans := len(arena), len(spans)
			encErr = nil
			perr := st.Process(c.wctx, in, emit)
			if perr == nil && encErr != nil {
				perr = fmt.Errorf("encode output: %w", encErr)
			}
			if perr != nil {
				if IsFatal(perr) {
					return fmt.Errorf("%s: %w", st.Name, perr)
				}
				arena, spans = arena[:nArena], spans[:nSpans] // drop partial outputs
				if err := c.deadLetter(m, "process", perr.Error()); err != nil {
					return err
				}
			}
		}
		if err := c.flushDLQ(); err != nil {
			return err
		}
		if len(spans) > 0 {
			outs = materialize(outs, arena, spans, outFmt)
			if err := c.writeAll("write", dst, outs); err != nil {
				return err
			}
			c.out.Add(float64(len(outs)))
			c.bytesOut.Add(float64(len(arena)))
		}
		c.commit(batch, started)
	}
}

// RunSink is Run for a terminal stage: each batch of decoded records is
// handed to sk.WriteBatch, and its offsets are committed once that returns
// nil.
func RunSink[In proto.Message](ctx context.Context, cfg Config, src Reader, dlq Writer, sk Sink[In]) error {
	sample := newMessage[In]()
	c := newCore(ctx, cfg, sk.Name, src, dlq, sk.Log, sample)
	defer c.stop()
	pool := []In{sample}
	var ins []In
	for {
		batch, done, err := c.fetch(ctx)
		if done || err != nil {
			return err
		}
		started := time.Now()
		ins = ins[:0]
		for i := range batch {
			m := &batch[i]
			if len(ins) == len(pool) {
				pool = append(pool, newMessage[In]())
			}
			in := pool[len(ins)]
			if class, reason := c.dec.decode(m, in); class != "" {
				if err := c.deadLetter(m, class, reason); err != nil {
					return err
				}
				continue
			}
			ins = append(ins, in)
		}
		if err := c.flushDLQ(); err != nil {
			return err
		}
		if len(ins) > 0 {
			bo := newBackoff(cfg)
			for attempt := 1; ; attempt++ {
				err := sk.WriteBatch(c.wctx, ins)
				if err == nil {
					break
				}
				if IsFatal(err) || c.wctx.Err() != nil {
					return fmt.Errorf("%s: write batch: %w", sk.Name, err)
				}
				c.log.Warn("sink write failed; retrying", "attempt", attempt, "records", len(ins), "err", err)
				metRetries.WithLabelValues("sink").Inc()
				if werr := bo.wait(c.wctx); werr != nil {
					return fmt.Errorf("%s: write batch: gave up after %d attempts: %w", sk.Name, attempt, err)
				}
			}
			c.out.Add(float64(len(ins)))
		}
		c.commit(batch, started)
	}
}
