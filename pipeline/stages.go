package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/bpf"
	"github.com/exfilwatch/exfilwatch/collector"
	"github.com/exfilwatch/exfilwatch/collector/flow"
	"github.com/exfilwatch/exfilwatch/collector/parse"
	"github.com/exfilwatch/exfilwatch/detect"
	"github.com/exfilwatch/exfilwatch/enrich"
	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/sink/clickhouse"
	"github.com/exfilwatch/exfilwatch/sink/webhook"
	"github.com/exfilwatch/exfilwatch/transport"
)

// Counters are progress counters a caller (the demo, tests) can watch.
type Counters struct {
	Collected, Enriched, Detected, Alerts, SunkFlows, SunkAlerts, DeadLetters atomic.Int64

	// Latency, when set, measures flow-export-to-alert-stored latency.
	Latency *LatencyTracker
}

// LatencyTracker remembers when each flow record left the collector and,
// when an alert naming it is stored, how long that took. It is for the
// demo and benchmarks (it keeps one entry per flow), not for production.
type LatencyTracker struct {
	mu      sync.Mutex
	emitted map[string]int64
	samples []time.Duration
}

// NewLatencyTracker returns an empty tracker.
func NewLatencyTracker() *LatencyTracker { return &LatencyTracker{emitted: map[string]int64{}} }

func (l *LatencyTracker) emit(id string) {
	if l == nil {
		return
	}
	now := time.Now().UnixNano()
	l.mu.Lock()
	l.emitted[id] = now
	l.mu.Unlock()
}

// stored records, for each alert, the time since its newest contributing
// flow left the collector.
func (l *LatencyTracker) stored(alerts []*flowpb.Alert) {
	if l == nil {
		return
	}
	now := time.Now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range alerts {
		var newest int64
		for _, id := range a.FlowIds {
			newest = max(newest, l.emitted[id])
		}
		if newest > 0 {
			l.samples = append(l.samples, time.Duration(now-newest))
		}
	}
}

// Quantiles returns the p50 and p99 latency and the sample count.
func (l *LatencyTracker) Quantiles() (p50, p99 time.Duration, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n = len(l.samples)
	if n == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(l.samples)
	slices.Sort(s)
	return s[n/2], s[min(n-1, n*99/100)], n
}

// RecordWriter batches records into a transport.Writer from any goroutine.
// Emit encodes at once (so callers may reuse their record) and hands full
// batches to a background goroutine, so encoding overlaps with the broker's
// acknowledgement of the previous batch.
type RecordWriter struct {
	ctx    context.Context
	format transport.Format
	size   int
	mu     sync.Mutex
	batch  []transport.Message
	ch     chan []transport.Message
	done   chan struct{}
	err    atomic.Pointer[error]
}

// NewRecordWriter starts a writer goroutine; Close flushes and stops it.
// count, if not nil, is increased by the records acknowledged.
func NewRecordWriter(ctx context.Context, w transport.Writer, batch int, count *atomic.Int64) *RecordWriter {
	rw := &RecordWriter{ctx: ctx, size: max(batch, 1), ch: make(chan []transport.Message, 2), done: make(chan struct{})}
	if fw, ok := w.(transport.FormatWriter); ok {
		rw.format = fw.Format()
	}
	go func() {
		defer close(rw.done)
		for b := range rw.ch {
			if rw.err.Load() != nil {
				continue
			}
			if err := w.Write(ctx, b); err != nil {
				rw.err.Store(&err)
				continue
			}
			if count != nil {
				count.Add(int64(len(b)))
			}
		}
	}()
	return rw
}

// Emit encodes m and queues it for writing.
func (rw *RecordWriter) Emit(m proto.Message) error {
	if e := rw.err.Load(); e != nil {
		return *e
	}
	v, err := transport.AppendEncoded(nil, m, rw.format)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	k := transport.DefaultKey(nil, m)
	rw.mu.Lock()
	rw.batch = append(rw.batch, transport.Message{Key: k, Value: v, Format: rw.format})
	var full []transport.Message
	if len(rw.batch) >= rw.size {
		full, rw.batch = rw.batch, make([]transport.Message, 0, rw.size)
	}
	rw.mu.Unlock()
	if full != nil {
		select {
		case rw.ch <- full:
		case <-rw.ctx.Done():
			return rw.ctx.Err()
		}
	}
	return nil
}

// Close writes what is queued, waits for the acknowledgements and returns
// the first write error.
func (rw *RecordWriter) Close() error {
	rw.mu.Lock()
	last := rw.batch
	rw.batch = nil
	rw.mu.Unlock()
	if len(last) > 0 {
		select {
		case rw.ch <- last:
		case <-rw.ctx.Done():
		}
	}
	close(rw.ch)
	<-rw.done
	if e := rw.err.Load(); e != nil {
		return *e
	}
	return nil
}

// CollectPcap replays a capture file through the collector's flow table and
// parsers and writes the flow records to out.
func CollectPcap(ctx context.Context, cfg *Config, path string, out transport.Writer, cnt *Counters, log *slog.Logger) (collector.Stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return collector.Stats{}, fmt.Errorf("pcap: %w", err)
	}
	defer f.Close()
	rw := NewRecordWriter(ctx, out, cfg.Kafka.BatchSize, counter(cnt, func(c *Counters) *atomic.Int64 { return &c.Collected }))
	var lt *LatencyTracker
	if cnt != nil {
		lt = cnt.Latency
	}
	st, rerr := collector.ReadPcap(ctx, f, cfg.Collector, func(rec *flowpb.FlowRecord) error {
		lt.emit(rec.Id)
		return rw.Emit(rec)
	}, collector.WithParse(parse.Fill))
	werr := rw.Close()
	log.Info("pcap replayed", "file", path, "packets", st.Packets, "counted", st.Counted, "flows", st.Flows, "records", st.Records)
	return st, errors.Join(rerr, werr)
}

func counter(c *Counters, f func(*Counters) *atomic.Int64) *atomic.Int64 {
	if c == nil {
		return nil
	}
	return f(c)
}

// CollectLive loads the eBPF probe, attaches it to the configured interfaces
// and writes flow records to out until ctx ends, then exports the flows
// still open.
func CollectLive(ctx context.Context, cfg *Config, out transport.Writer, cnt *Counters, log *slog.Logger) error {
	if len(cfg.Collector.Interfaces) == 0 {
		return fmt.Errorf("collector.interfaces: no interface to capture on (use --iface or --pcap)")
	}
	bcfg := cfg.BPF
	probe, err := bpf.Load(bcfg)
	if err != nil {
		return err
	}
	defer probe.Close()
	for _, ifname := range cfg.Collector.Interfaces {
		if err := probe.Attach(ifname); err != nil {
			return err
		}
	}
	rw := NewRecordWriter(context.WithoutCancel(ctx), out, cfg.Kafka.BatchSize, counter(cnt, func(c *Counters) *atomic.Int64 { return &c.Collected }))
	tc := cfg.Collector.TableConfig(parse.Fill)
	// Tombstones must outlive the kernel's last report of an entry, so a
	// re-report after export is never taken for a new flow; and a FIN's
	// grace must cover a poll, so the last ACK joins its flow.
	tc.TombstoneTTL = max(2*tc.IdleTimeout+time.Minute, bcfg.IdleTimeout+2*bcfg.PollInterval+30*time.Second)
	if tc.FinGrace <= bcfg.PollInterval {
		tc.FinGrace = bcfg.PollInterval + time.Second
	}
	table := flow.NewTable(tc, func(rec *flowpb.FlowRecord) error { return rw.Emit(rec) })
	log.Info("capturing", "interfaces", cfg.Collector.Interfaces)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); table.Run(ctx, cfg.Collector.ExpireInterval) }()
	rerr := probe.Run(ctx, table)
	wg.Wait()
	ferr := table.Flush(flowpb.EndReason_END_REASON_SHUTDOWN)
	werr := rw.Close()
	if errors.Is(rerr, context.Canceled) {
		rerr = nil
	}
	return errors.Join(rerr, ferr, werr)
}

// Enrich runs the enrich stage: raw flow records in, enriched records out.
func Enrich(ctx context.Context, cfg *Config, in transport.Reader, out, dlq transport.Writer, cnt *Counters, log *slog.Logger) error {
	e, err := enrich.New(cfg.GeoIP, cfg.Inventory, cfg.Identifiers, log)
	if err != nil {
		return err
	}
	e.SetConfig(cfg.Enrich)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go e.Run(rctx)
	w := e.NewWorker()
	return transport.Run(ctx, cfg.Kafka, in, out, dlq, transport.Stage[*flowpb.FlowRecord, *flowpb.FlowRecord]{
		Name: "enrich",
		Log:  log,
		// Keyed by attributed device (else source address) so a device's
		// detector state lives on one detect instance.
		Key: transport.FlowKey,
		// GeoIP answers of 16 records at a time, in one batch.
		Prefetch: w.Prefetch,
		Process: func(_ context.Context, rec *flowpb.FlowRecord, emit func(*flowpb.FlowRecord)) error {
			w.Enrich(rec)
			emit(rec)
			if cnt != nil {
				cnt.Enriched.Add(1)
			}
			return nil
		},
	})
}

// Detector wraps a detect.Engine with its checkpoints and periodic flush.
//
// With detect_state.snapshot_path set, the engine state is checkpointed in
// step with the offset commits (transport.Stage.Checkpoint): captured on the
// Process goroutine after a batch, written atomically once that batch is
// acknowledged, and only then are the offsets up to it committed. The file
// records the position it reflects, and on restart the runner skips records
// at or before it, so restored state plus re-consumed records equals the
// state of a run that never stopped (see docs/detectors.md for the limits).
type Detector struct {
	Engine   *detect.Engine
	cfg      DetectStateConfig
	log      *slog.Logger
	lastCkpt time.Time
	lastFl   time.Time
	ckptSize int // size of the last checkpoint, to size the next buffer
	// pos is the input position of the restored or last stored state.
	pos []transport.Message
	// due reports whether a checkpoint is due (tests pin it to batches).
	due func() bool
}

// NewDetector builds the engine and restores its checkpoint if there is one.
func NewDetector(cfg *Config, log *slog.Logger) (*Detector, error) {
	eng, err := detect.New(cfg.Detect)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	d := &Detector{Engine: eng, cfg: cfg.DetectState, log: log, lastCkpt: now, lastFl: now}
	d.due = func() bool { return time.Since(d.lastCkpt) >= d.cfg.SnapshotInterval }
	p := cfg.DetectState.SnapshotPath
	if p == "" {
		return d, nil
	}
	// Fail now rather than at the first checkpoint, which would stop the
	// stage with nothing committed.
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return nil, fmt.Errorf("detect_state.snapshot_path: %w (set it to \"\" to keep state in memory only)", err)
	}
	pos, err := loadCheckpoint(p, eng)
	switch {
	case errors.Is(err, os.ErrNotExist):
		log.Info("no detector checkpoint yet; starting empty", "path", p)
	case err != nil:
		// A damaged checkpoint must not stop detection: start empty, loudly.
		// The committed offsets then resume with empty state.
		log.Error("detector checkpoint unreadable; starting with empty state", "path", p, "err", err)
		if eng, err = detect.New(cfg.Detect); err != nil {
			return nil, err
		}
		d.Engine = eng
	default:
		d.pos = pos
		log.Info("detector state restored", "path", p, "devices", eng.DeviceCount(), "position", fmtPos(pos))
	}
	return d, nil
}

func fmtPos(pos []transport.Message) string {
	var b []byte
	for i, m := range pos {
		if i > 0 {
			b = append(b, ' ')
		}
		b = fmt.Appendf(b, "%s/%d@%d", m.Topic, m.Partition, m.Offset)
	}
	return string(b)
}

// checkpoint implements transport.Stage.Checkpoint: it serializes the state
// now (the Process goroutine, between batches) and returns the write.
func (d *Detector) checkpoint(final bool) transport.SaveFunc {
	if !final && !d.due() {
		return nil
	}
	d.lastCkpt = time.Now()
	var b bytes.Buffer
	b.Grow(d.ckptSize + d.ckptSize/8)
	if err := d.Engine.Snapshot(&b); err != nil {
		return func(context.Context, []transport.Message) error { return err }
	}
	d.ckptSize = b.Len()
	state := b.Bytes()
	return func(_ context.Context, pos []transport.Message) error { return d.store(pos, state) }
}

// store writes state as the checkpoint at pos.
func (d *Detector) store(pos []transport.Message, state []byte) error {
	if err := writeCheckpoint(d.cfg.SnapshotPath, pos, state); err != nil {
		return err
	}
	d.pos = append(d.pos[:0], pos...)
	return nil
}

// Save checkpoints the current state at the position of the last stored
// checkpoint (the detect stage calls it after its final flush, whose alerts
// are then already written).
func (d *Detector) Save() error {
	if d.cfg.SnapshotPath == "" {
		return nil
	}
	var b bytes.Buffer
	if err := d.Engine.Snapshot(&b); err != nil {
		return fmt.Errorf("detector checkpoint: %w", err)
	}
	return d.store(slices.Clone(d.pos), b.Bytes())
}

// process runs one record and does the periodic (wall-clock) flush.
func (d *Detector) process(rec *flowpb.FlowRecord, emit func(*flowpb.Alert)) {
	d.Engine.Process(rec, emit)
	if now := time.Now(); now.Sub(d.lastFl) >= d.cfg.FlushInterval {
		d.lastFl = now
		d.Engine.Flush(0, emit)
	}
}

// Detect runs the detect stage: enriched records in, alerts out. When a
// finite input ends, every window is scored a last time and the remaining
// alerts are written before it returns.
func Detect(ctx context.Context, cfg *Config, in transport.Reader, out, dlq transport.Writer, cnt *Counters, log *slog.Logger) error {
	d, err := NewDetector(cfg, log)
	if err != nil {
		return err
	}
	return d.Run(ctx, cfg.Kafka, in, out, dlq, cnt)
}

// Run runs the detect stage with d's engine; see Detect.
func (d *Detector) Run(ctx context.Context, kcfg transport.Config, in transport.Reader, out, dlq transport.Writer, cnt *Counters) error {
	st := transport.Stage[*flowpb.FlowRecord, *flowpb.Alert]{
		Name: "detect",
		Log:  d.log,
		Process: func(_ context.Context, rec *flowpb.FlowRecord, emit func(*flowpb.Alert)) error {
			d.process(rec, func(a *flowpb.Alert) {
				emit(a)
				if cnt != nil {
					cnt.Alerts.Add(1)
				}
			})
			if cnt != nil {
				cnt.Detected.Add(1)
			}
			return nil
		},
	}
	if d.cfg.SnapshotPath != "" {
		st.Checkpoint, st.Applied = d.checkpoint, slices.Clone(d.pos)
	}
	if err := transport.Run(ctx, kcfg, in, out, dlq, st); err != nil {
		return err
	}
	// Run returned: a finite input ended or ctx was cancelled after draining
	// (and the final checkpoint was stored). Score open windows once more,
	// write what that raises, and only then store the flushed state: if the
	// write fails, the checkpoint stays the one before the flush.
	if err := d.FlushTo(context.WithoutCancel(ctx), out, cnt); err != nil {
		return err
	}
	return d.Save()
}

// FlushTo scores every window at the engine's watermark and writes the
// resulting alerts to out.
func (d *Detector) FlushTo(ctx context.Context, out transport.Writer, cnt *Counters) error {
	rw := NewRecordWriter(ctx, out, 1000, nil)
	var emitErr error
	d.Engine.Flush(0, func(a *flowpb.Alert) {
		if cnt != nil {
			cnt.Alerts.Add(1)
		}
		if err := rw.Emit(a); err != nil && emitErr == nil {
			emitErr = err
		}
	})
	return errors.Join(emitErr, rw.Close())
}

// AlertSink stores alerts: ClickHouse (if configured), webhooks (if any), and
// a copy writer (a JSON-lines file, for the demo). Webhook dead letters go to
// dlq. It returns nil only when every alert is settled everywhere, so the
// caller commits offsets only then.
type AlertSink struct {
	CH   *clickhouse.Writer
	Hook *webhook.Notifier
	Copy transport.Writer
	DLQ  transport.Writer
	Cnt  *Counters
}

// WriteBatch implements the transport.Sink function.
func (s *AlertSink) WriteBatch(ctx context.Context, batch []*flowpb.Alert) error {
	if s.CH != nil {
		if err := s.CH.WriteAlerts(ctx, batch); err != nil {
			return err
		}
	}
	if s.Copy != nil {
		if err := writeAll(ctx, s.Copy, batch); err != nil {
			return err
		}
	}
	if s.Hook != nil {
		dead, err := s.Hook.DeliverDetailed(ctx, batch)
		if err != nil {
			return err
		}
		if len(dead) > 0 {
			if s.DLQ == nil {
				return transport.Fatal(fmt.Errorf("%d alerts refused by webhooks and no dead-letter writer", len(dead)))
			}
			msgs := make([]transport.Message, 0, len(dead))
			for _, d := range dead {
				payload, _ := proto.Marshal(d.Alert)
				dl := &flowpb.DeadLetter{SchemaVersion: schema.Version, Stage: "sink-webhook", Reason: fmt.Sprintf("endpoint %s: %s (HTTP %d)", d.Endpoint, d.Reason, d.Status),
					Payload: payload, TimeNs: time.Now().UnixNano()}
				v, err := transport.AppendEncoded(nil, dl, formatOf(s.DLQ))
				if err != nil {
					return err
				}
				msgs = append(msgs, transport.Message{Key: []byte(d.Alert.DeviceId), Value: v, Format: formatOf(s.DLQ)})
			}
			if err := s.DLQ.Write(ctx, msgs); err != nil {
				return err
			}
			if s.Cnt != nil {
				s.Cnt.DeadLetters.Add(int64(len(dead)))
			}
		}
	}
	if s.Cnt != nil {
		s.Cnt.SunkAlerts.Add(int64(len(batch)))
		s.Cnt.Latency.stored(batch)
	}
	return nil
}

// FlowSink stores enriched flows (and their matches) in ClickHouse and/or a copy writer.
type FlowSink struct {
	CH   *clickhouse.Writer
	Copy transport.Writer
	Cnt  *Counters
}

// WriteBatch implements the transport.Sink function.
func (s *FlowSink) WriteBatch(ctx context.Context, batch []*flowpb.FlowRecord) error {
	if s.CH != nil {
		if err := s.CH.WriteFlows(ctx, batch); err != nil {
			return err
		}
	}
	if s.Copy != nil {
		if err := writeAll(ctx, s.Copy, batch); err != nil {
			return err
		}
	}
	if s.Cnt != nil {
		s.Cnt.SunkFlows.Add(int64(len(batch)))
	}
	return nil
}

func formatOf(w transport.Writer) transport.Format {
	if fw, ok := w.(transport.FormatWriter); ok {
		return fw.Format()
	}
	return transport.FormatProto
}

func writeAll[M proto.Message](ctx context.Context, w transport.Writer, batch []M) error {
	f := formatOf(w)
	msgs := make([]transport.Message, 0, len(batch))
	for _, m := range batch {
		v, err := transport.AppendEncoded(nil, m, f)
		if err != nil {
			return err
		}
		msgs = append(msgs, transport.Message{Key: transport.DefaultKey(nil, m), Value: v, Format: f})
	}
	return w.Write(ctx, msgs)
}

// DiscardWriter acknowledges and drops everything (e.g. a stage whose output
// nobody reads in a given run).
type DiscardWriter struct{}

// Write implements transport.Writer.
func (DiscardWriter) Write(context.Context, []transport.Message) error { return nil }

// Close implements transport.Writer.
func (DiscardWriter) Close() error { return nil }

var _ io.Closer = DiscardWriter{}

// ReplayPcap runs a capture through the collector and calls fn for each
// flow record (no transport), e.g. for `exfilwatch match --pcap`.
func ReplayPcap(ctx context.Context, cfg *Config, path string, fn flow.EmitFunc) (collector.Stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return collector.Stats{}, fmt.Errorf("pcap: %w", err)
	}
	defer f.Close()
	return collector.ReadPcap(ctx, f, cfg.Collector, fn, collector.WithParse(parse.Fill))
}
