package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
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
	// Process handles one decoded input. in is reused for the next record,
	// and so are its sub-messages, lists and byte slices (the runner decodes
	// flow records into buffers it owns): proto.Clone in to keep it, or copy
	// the parts you keep; strings may be kept. Process is called from one
	// goroutine, in input order. emit encodes its argument immediately, so
	// the stage may reuse its output message after emit returns. A returned
	// error sends the input to the dead-letter writer and the stage goes on;
	// wrap the error with Fatal to stop the stage instead (the batch is then
	// not committed and will be re-delivered).
	Process func(ctx context.Context, in In, emit func(Out)) error
	// Prefetch, when set, receives groups of up to PrefetchGroup consecutive
	// decoded inputs before Process is called for each of them, in order,
	// so that the stage can start work that is faster done for many inputs
	// at once (the enrich stage looks up all their GeoIP answers in one
	// batch, whose cache misses overlap). The inputs stay valid until the
	// last of them was processed. It must not change what Process does
	// with any input other than by doing part of its work ahead.
	Prefetch func(ins []In)
	// PrefetchGroup is the largest group Prefetch receives (0: 16).
	PrefetchGroup int
	// Key appends the Kafka key of out to dst; nil means DefaultKey.
	Key func(dst []byte, out Out) []byte
	// Checkpoint, when set, keeps state the stage holds across records in
	// step with the committed offsets. Run calls it on the Process goroutine
	// after the last record of each batch, so what it captures is the state
	// after exactly the records fetched so far, and final is true for one
	// last call once the input ended or ctx was cancelled with every batch
	// acknowledged. It returns nil when no checkpoint is due (the stage picks
	// how often), else a function that stores the captured state. Run calls
	// that function once the batch and every earlier one are acknowledged,
	// with the position the state reflects, and commits their offsets only
	// after it returned nil. Offsets of batches without a checkpoint are held
	// back until the next one, so the committed position never runs ahead of
	// the stored state. A failing save stops the stage like a failed write.
	Checkpoint func(final bool) SaveFunc
	// Applied is the position (Offset = last record included, per topic and
	// partition) of the state the stage restored, as last passed to a
	// SaveFunc. With Checkpoint set, Run does not Process records at or
	// before it, nor records it already processed itself (Kafka re-delivers
	// from the committed offset after a crash, a failed commit or a
	// rebalance, which may be behind the state): they are in the state and
	// their outputs were, or are being, written. It still commits them.
	Applied []Message
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

// SaveFunc stores a checkpoint captured by Stage.Checkpoint. pos holds, per
// topic and partition, the offset of the last record the state includes
// (only Topic, Partition and Offset are set); it is only valid during the
// call.
type SaveFunc func(ctx context.Context, pos []Message) error

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

// slot is the state of one batch between its fetch and its commit that must
// outlive the reader's buffers (a Reader reuses them on the next Fetch, which
// the pipeline issues before this batch is committed): the encoded dead
// letters and the positions to commit. Slots are recycled, so their buffers
// stop growing once they fit the largest batch.
type slot struct {
	id      int // index of the caller's per-slot buffers (outputs, decoded inputs)
	dlBuf   []byte
	dlSp    []span
	dlOut   []Message
	offsets []Message // Topic, Partition and Offset of every fetched record
	save    SaveFunc  // checkpoint captured after this batch, if any
	started time.Time
}

// mergePos folds the offsets of msgs into pos, one entry per topic and
// partition holding the highest offset.
func mergePos(pos, msgs []Message) []Message {
next:
	for i := range msgs {
		m := &msgs[i]
		for j := range pos {
			if p := &pos[j]; p.Partition == m.Partition && p.Topic == m.Topic {
				p.Offset = max(p.Offset, m.Offset)
				continue next
			}
		}
		pos = append(pos, Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Format: m.Format})
	}
	return pos
}

// core is the part of the runner shared by Run and RunSink: fetching,
// dead-lettering, the fetch/write pipeline, committing, draining and
// metrics.
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
	lagAt time.Time
	// checkpoint is Stage.Checkpoint (Run only); pos is the position of the
	// state it last captured, Stage.Applied to start with.
	checkpoint func(final bool) SaveFunc
	pos        []Message

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
	// Work on fetched batches goes on after ctx is cancelled, for at most
	// DrainTimeout, so that the in-flight batches are written and committed.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopAfter := context.AfterFunc(ctx, func() { time.AfterFunc(cfg.DrainTimeout, cancel) })
	c.wctx = wctx
	c.stop = func() { stopAfter(); cancel() }
	return c
}

// depth is the number of batches the pipeline holds between fetch and
// commit; 1 is the strictly sequential loop.
func (c *core) depth() int { return max(c.cfg.PipelineDepth, 1) }

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

// deadLetter queues m in s for the dead-letter writer, or returns an error
// naming its position when there is none (e.g. a JSON-lines run without
// --dlq). The dead letter is encoded at once: m's bytes belong to the reader.
func (c *core) deadLetter(s *slot, m *Message, class, reason string) error {
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
	start := len(s.dlBuf)
	s.dlBuf = append(s.dlBuf, m.Key...)
	key := len(s.dlBuf)
	var err error
	if s.dlBuf, err = AppendEncoded(s.dlBuf, &c.dl, c.dlFmt); err != nil {
		s.dlBuf = s.dlBuf[:start]
		return fmt.Errorf("%s: encode dead letter: %w", c.name, err)
	}
	s.dlSp = append(s.dlSp, span{start, key, len(s.dlBuf)})
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

// flushDLQ writes the dead letters queued in s.
func (c *core) flushDLQ(s *slot) error {
	if len(s.dlSp) == 0 {
		return nil
	}
	s.dlOut = materialize(s.dlOut[:0], s.dlBuf, s.dlSp, c.dlFmt)
	return c.writeAll("dlq", c.dlq, s.dlOut)
}

// commit commits offsets after their outputs were acknowledged (and,
// with a checkpoint, stored). A failed commit only means re-delivery
// (duplicates, which a checkpointing stage skips), so it is logged, not
// fatal.
func (c *core) commit(offsets []Message, started time.Time) {
	if err := c.src.Commit(c.wctx, offsets); err != nil {
		c.log.Warn("commit failed; the batch will be re-delivered", "records", len(offsets), "err", err)
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

// pipeline is the at-least-once loop shared by Run and RunSink, with the
// broker round trips of one batch overlapped with the CPU work on the next.
//
// The calling goroutine fetches a batch and hands it to fill (decode,
// process, encode into the slot's buffers, queue dead letters); a second
// goroutine takes the filled slots in fetch order, writes their dead letters
// and calls flush (write the outputs and wait for the acknowledgement); a
// third commits the acknowledged batches, in the same order. At most
// cfg.PipelineDepth batches are between fetch and commit, so commits stay
// strictly in order and each follows its own batch's acknowledgement.
//
// With a checkpointing stage the committer holds each batch's offsets until
// a batch that carries a checkpoint is acknowledged, stores the checkpoint,
// and only then commits everything held; a final checkpoint after the last
// batch covers what is left.
//
// Once a write fails, neither that batch nor any later one is committed:
// fetching stops, batches already filled are dropped, and the error is
// returned (their records are re-delivered after a restart). When fill fails
// (a Fatal Process error, a fetch error, a dead letter without a dead-letter
// writer), the batches filled before are still written and committed, as
// the sequential loop would have done before fetching the failing one. On
// ctx cancellation every filled batch is written and committed (within
// DrainTimeout) before pipeline returns nil.
func (c *core) pipeline(ctx context.Context, fill func(s *slot, batch []Message) error, flush func(s *slot) error) error {
	depth := c.depth()
	free := make(chan *slot, depth)
	for i := 0; i < depth; i++ {
		free <- &slot{id: i}
	}
	ready := make(chan *slot, depth) // never blocks: only depth slots exist
	failed := make(chan struct{})
	fctx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	var failOnce sync.Once
	fail := func() { failOnce.Do(func() { close(failed); stopFetch() }) }

	// The committer commits acknowledged batches in order; with depth >= 3
	// the commit round trip of one batch overlaps the write of the next.
	acked := make(chan *slot, depth)
	cdone := make(chan struct{})
	var (
		cerr    error
		held    []Message // checkpointing: offsets acknowledged, not yet committed
		heldAt  time.Time
		pending bool
	)
	go func() {
		defer close(cdone)
		for s := range acked {
			switch {
			case cerr != nil: // a save failed: commit nothing more
			case c.checkpoint == nil:
				c.commit(s.offsets, s.started)
			default:
				if !pending {
					heldAt, pending = s.started, true
				}
				held = mergePos(held, s.offsets)
				c.pos = mergePos(c.pos, s.offsets)
				if s.save == nil {
					break
				}
				if cerr = s.save(c.wctx, c.pos); cerr != nil {
					cerr = fmt.Errorf("%s: checkpoint: %w", c.name, cerr)
					fail()
					break
				}
				c.commit(held, heldAt)
				held, pending = held[:0], false
			}
			s.save = nil
			free <- s
		}
	}()
	var werr error
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		defer close(acked)
		for s := range ready {
			if werr == nil {
				werr = c.flushDLQ(s)
				if werr == nil {
					werr = flush(s)
				}
				if werr == nil {
					acked <- s
					continue
				}
				fail()
			}
			s.save = nil
			free <- s // failed, or after a failure: never committed
		}
	}()

	var ferr error
	for ferr == nil {
		var s *slot
		select {
		case s = <-free:
		case <-failed:
		}
		select {
		case <-failed: // the slot may come back from the failed write
			s = nil
		default:
		}
		if s == nil || ctx.Err() != nil { // failed, or cancelled: fetch no more
			break
		}
		batch, done, err := c.fetch(fctx)
		if done || err != nil {
			ferr = err
			break
		}
		s.started = time.Now()
		s.dlBuf, s.dlSp, s.offsets = s.dlBuf[:0], s.dlSp[:0], s.offsets[:0]
		for i := range batch {
			m := &batch[i]
			s.offsets = append(s.offsets, Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Format: m.Format})
		}
		if ferr = fill(s, batch); ferr == nil {
			ready <- s
		}
	}
	close(ready)
	<-wdone
	<-cdone
	if c.checkpoint != nil && werr == nil && cerr == nil && ferr == nil {
		// Clean end: the state is the one after every acknowledged batch.
		if save := c.checkpoint(true); save != nil {
			if cerr = save(c.wctx, c.pos); cerr != nil {
				cerr = fmt.Errorf("%s: final checkpoint: %w", c.name, cerr)
			} else if pending {
				c.commit(held, heldAt)
			}
		}
	}
	return errors.Join(werr, cerr, ferr)
}

// fastFlowDecode enables flowDecoder in Run; benchmarks turn it off to
// measure the proto.Unmarshal baseline in the same process.
var fastFlowDecode = true

// Run runs a stage at least once per input record until ctx is cancelled or
// a finite input ends: fetch a batch, decode each record (undecodable ones
// and ones with a newer schema_version go to dlq), Process it, encode the
// outputs, write them to dst and wait for the acknowledgement, and only then
// commit the batch. While one batch is being written and committed the next
// is fetched and processed (cfg.PipelineDepth batches at most in flight);
// Process itself is always called from one goroutine, one record at a time,
// in input order. On cancellation the in-flight batches are finished
// (within cfg.DrainTimeout) before Run returns nil.
func Run[In, Out proto.Message](ctx context.Context, cfg Config, src Reader, dst, dlq Writer, st Stage[In, Out]) error {
	in := newMessage[In]()
	c := newCore(ctx, cfg, st.Name, src, dlq, st.Log, in)
	defer c.stop()
	if _, ok := any(in).(*flowpb.FlowRecord); ok && fastFlowDecode {
		c.dec.flow = newFlowDecoder()
	}
	c.checkpoint = st.Checkpoint
	c.pos = mergePos(nil, st.Applied)
	// done is, per partition, the last offset whose record is in the
	// stage's state: restored, then every record fetched.
	done := mergePos(nil, st.Applied)
	inState := func(m *Message) bool {
		for i := range done {
			if p := &done[i]; p.Partition == m.Partition && p.Topic == m.Topic {
				if m.Offset <= p.Offset {
					return true
				}
				p.Offset = m.Offset
				return false
			}
		}
		done = append(done, Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset})
		return false
	}
	outFmt := formatOf(dst)
	key := st.Key
	if key == nil {
		key = func(dst []byte, m Out) []byte { return DefaultKey(dst, m) }
	}
	// outputs holds one slot's encoded outputs: filled by the fetching
	// goroutine, then handed (with the slot) to the writing one.
	type outputs struct {
		arena []byte
		spans []span
		msgs  []Message
	}
	bufs := make([]outputs, c.depth())
	var (
		cur    *outputs
		encErr error
	)
	emit := func(o Out) {
		start := len(cur.arena)
		cur.arena = key(cur.arena, o)
		k := len(cur.arena)
		var err error
		if cur.arena, err = AppendEncoded(cur.arena, o, outFmt); err != nil {
			encErr = err
			cur.arena = cur.arena[:start]
			return
		}
		cur.spans = append(cur.spans, span{start, k, len(cur.arena)})
	}
	process := func(s *slot, m *Message, in In) error {
		nArena, nSpans := len(cur.arena), len(cur.spans)
		encErr = nil
		perr := st.Process(c.wctx, in, emit)
		if perr == nil && encErr != nil {
			perr = fmt.Errorf("encode output: %w", encErr)
		}
		if perr != nil {
			if IsFatal(perr) {
				return fmt.Errorf("%s: %w", st.Name, perr)
			}
			cur.arena, cur.spans = cur.arena[:nArena], cur.spans[:nSpans] // drop partial outputs
			if err := c.deadLetter(s, m, "process", perr.Error()); err != nil {
				return err
			}
		}
		return nil
	}
	var grp *prefetchGroup[In]
	if st.Prefetch != nil {
		grp = newPrefetchGroup[In](st.PrefetchGroup, c.dec)
	}
	skip := func(m *Message) bool { return st.Checkpoint != nil && inState(m) }
	fill := func(s *slot, batch []Message) error {
		cur = &bufs[s.id]
		cur.arena, cur.spans = cur.arena[:0], cur.spans[:0]
		for i := 0; i < len(batch); {
			if grp != nil {
				// Decode a group, prefetch, then process or dead-letter
				// its records in input order.
				i = grp.decode(batch, i, skip)
				if len(grp.ready) > 0 {
					st.Prefetch(grp.ready)
				}
				for _, it := range grp.items {
					var err error
					if it.class != "" {
						err = c.deadLetter(s, it.m, it.class, it.reason)
					} else {
						err = process(s, it.m, grp.ins[it.slot])
					}
					if err != nil {
						return err
					}
				}
				continue
			}
			m := &batch[i]
			i++
			if skip(m) {
				continue
			}
			if class, reason := c.dec.decode(m, in); class != "" {
				if err := c.deadLetter(s, m, class, reason); err != nil {
					return err
				}
				continue
			}
			if err := process(s, m, in); err != nil {
				return err
			}
		}
		if st.Checkpoint != nil {
			s.save = st.Checkpoint(false)
		}
		return nil
	}
	flush := func(s *slot) error {
		b := &bufs[s.id]
		if len(b.spans) == 0 {
			return nil
		}
		b.msgs = materialize(b.msgs[:0], b.arena, b.spans, outFmt)
		if err := c.writeAll("write", dst, b.msgs); err != nil {
			return err
		}
		c.out.Add(float64(len(b.msgs)))
		c.bytesOut.Add(float64(len(b.arena)))
		return nil
	}
	return c.pipeline(ctx, fill, flush)
}

// prefetchGroup holds a group of decoded inputs for Stage.Prefetch: each in
// its own message with its own decoder (a flow decoder's arena backs one
// record at a time).
type prefetchGroup[In proto.Message] struct {
	ins   []In
	decs  []decoder
	ready []In // the decoded inputs of the current group, in order
	items []prefetchItem
}

// prefetchItem is one record of a group: decoded into ins[slot], or a
// decoding failure to dead-letter.
type prefetchItem struct {
	m             *Message
	slot          int
	class, reason string
}

func newPrefetchGroup[In proto.Message](n int, dec decoder) *prefetchGroup[In] {
	if n <= 0 {
		n = 16
	}
	g := &prefetchGroup[In]{ins: make([]In, n), decs: make([]decoder, n)}
	for k := range g.ins {
		g.ins[k] = newMessage[In]()
		g.decs[k] = dec
		if dec.flow != nil {
			g.decs[k].flow = newFlowDecoder()
		}
	}
	return g
}

// decode decodes batch[i:] until the group is full or the batch ends,
// leaving out the records skip reports, and returns where it stopped.
func (g *prefetchGroup[In]) decode(batch []Message, i int, skip func(*Message) bool) int {
	g.ready, g.items = g.ready[:0], g.items[:0]
	for ; i < len(batch) && len(g.ready) < len(g.ins); i++ {
		m := &batch[i]
		if skip(m) {
			continue
		}
		k := len(g.ready)
		class, reason := g.decs[k].decode(m, g.ins[k])
		g.items = append(g.items, prefetchItem{m: m, slot: k, class: class, reason: reason})
		if class == "" {
			g.ready = append(g.ready, g.ins[k])
		}
	}
	return i
}

// RunSink is Run for a terminal stage: each batch of decoded records is
// handed to sk.WriteBatch, and its offsets are committed once that returns
// nil. WriteBatch is called from one goroutine, one batch at a time, in
// input order, while the next batch is fetched and decoded.
func RunSink[In proto.Message](ctx context.Context, cfg Config, src Reader, dlq Writer, sk Sink[In]) error {
	c := newCore(ctx, cfg, sk.Name, src, dlq, sk.Log, newMessage[In]())
	defer c.stop()
	// Each slot decodes into its own pool of messages, so a batch being
	// written is never overwritten by the next one's decoding.
	type decoded struct{ pool, ins []In }
	bufs := make([]decoded, c.depth())
	fill := func(s *slot, batch []Message) error {
		d := &bufs[s.id]
		d.ins = d.ins[:0]
		for i := range batch {
			m := &batch[i]
			if len(d.ins) == len(d.pool) {
				d.pool = append(d.pool, newMessage[In]())
			}
			in := d.pool[len(d.ins)]
			if class, reason := c.dec.decode(m, in); class != "" {
				if err := c.deadLetter(s, m, class, reason); err != nil {
					return err
				}
				continue
			}
			d.ins = append(d.ins, in)
		}
		return nil
	}
	flush := func(s *slot) error {
		ins := bufs[s.id].ins
		if len(ins) == 0 {
			return nil
		}
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
		return nil
	}
	return c.pipeline(ctx, fill, flush)
}
