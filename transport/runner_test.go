package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// memLog is an in-memory partitioned log with per-group committed offsets,
// enough to exercise the runner's commit discipline without a broker.
type memLog struct {
	mu        sync.Mutex
	msgs      []Message // one partition
	committed int64     // next offset to deliver after a restart
}

func (l *memLog) append(key, value []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, Message{Topic: "in", Offset: int64(len(l.msgs)), Key: key, Value: value})
}

// reader starts from the committed offset, like a restarted group member.
func (l *memLog) reader(batch int) *memReader {
	l.mu.Lock()
	defer l.mu.Unlock()
	return &memReader{log: l, next: l.committed, batch: batch}
}

type memReader struct {
	log   *memLog
	next  int64
	batch int
	buf   []Message
	eof   bool // end with io.EOF once the log is read, like a file
	// rewindAt: before this Fetch (1-based), go back to the committed offset,
	// as a consumer does after a rebalance.
	rewindAt, fetches int
}

// finite is reader for a log that ends: Fetch returns io.EOF at its end.
func (l *memLog) finite(batch int) *memReader {
	r := l.reader(batch)
	r.eof = true
	return r
}

func (r *memReader) Fetch(ctx context.Context) ([]Message, error) {
	r.fetches++
	if r.fetches == r.rewindAt {
		r.log.mu.Lock()
		r.next = r.log.committed
		r.log.mu.Unlock()
	}
	for {
		r.log.mu.Lock()
		n := int64(len(r.log.msgs))
		if r.next < n {
			end := min(n, r.next+int64(r.batch))
			r.buf = append(r.buf[:0], r.log.msgs[r.next:end]...)
			r.next = end
			r.log.mu.Unlock()
			return r.buf, nil
		}
		r.log.mu.Unlock()
		if r.eof {
			return nil, io.EOF
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func (r *memReader) Commit(_ context.Context, msgs []Message) error {
	r.log.mu.Lock()
	defer r.log.mu.Unlock()
	for _, m := range msgs {
		if m.Offset+1 > r.log.committed {
			r.log.committed = m.Offset + 1
		}
	}
	return nil
}

func (r *memReader) Close() error { return nil }

// memWriter records written messages (copied) and can be told to fail.
type memWriter struct {
	mu     sync.Mutex
	got    [][]byte
	keys   [][]byte
	fail   error
	format Format
	calls  int
}

func (w *memWriter) Write(_ context.Context, msgs []Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if w.fail != nil {
		return w.fail
	}
	for _, m := range msgs {
		if m.Format != w.format {
			return fmt.Errorf("got format %s", m.Format)
		}
		w.got = append(w.got, append([]byte(nil), m.Value...))
		w.keys = append(w.keys, append([]byte(nil), m.Key...))
	}
	return nil
}

func (w *memWriter) Format() Format { return w.format }
func (w *memWriter) Close() error   { return nil }

func (w *memWriter) snapshot() (vals, keys [][]byte, calls int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]byte(nil), w.got...), append([][]byte(nil), w.keys...), w.calls
}

func testConfig() Config {
	c := DefaultConfig()
	c.RetryBackoffMin = time.Millisecond
	c.RetryBackoffMax = 5 * time.Millisecond
	c.DrainTimeout = 200 * time.Millisecond
	return c
}

// passStage copies each flow and marks it, so outputs are distinguishable
// from inputs.
func passStage() Stage[*flowpb.FlowRecord, *flowpb.FlowRecord] {
	return Stage[*flowpb.FlowRecord, *flowpb.FlowRecord]{
		Name: "test-pass",
		Process: func(_ context.Context, in *flowpb.FlowRecord, emit func(*flowpb.FlowRecord)) error {
			if strings.HasSuffix(in.Id, "/boom") {
				return errors.New("boom")
			}
			in.Gateway = "processed"
			emit(in)
			return nil
		},
	}
}

func decodeFlows(t *testing.T, vals [][]byte, f Format) map[string]*flowpb.FlowRecord {
	t.Helper()
	out := map[string]*flowpb.FlowRecord{}
	for _, v := range vals {
		r := &flowpb.FlowRecord{}
		if err := Decode(v, f, r); err != nil {
			t.Fatalf("output not decodable: %v", err)
		}
		out[r.Id] = r
	}
	return out
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// appendRecord appends record i to log: a valid flow keyed by its source
// address (returned), or one passStage dead-letters: "undecodable" bytes,
// a "newer" schema version, or a "boom" from Process.
func appendRecord(log *memLog, i int, kind string) *flowpb.FlowRecord {
	if kind == "undecodable" {
		log.append(nil, []byte("\xff\xfenot protobuf"))
		return nil
	}
	r := sampleFlow(i)
	switch kind {
	case "newer":
		r.SchemaVersion = 2
	case "boom":
		r.Id += "/boom"
	default:
		log.append(r.SrcAddr, mustMarshal(r))
		return r
	}
	log.append(nil, mustMarshal(r))
	return nil
}

func TestRunProcessesAndDeadLetters(t *testing.T) {
	log := &memLog{}
	var want []*flowpb.FlowRecord
	for i := 0; i < 50; i++ {
		switch i {
		case 10:
			appendRecord(log, i, "undecodable")
		case 20:
			appendRecord(log, i, "newer")
		case 30:
			appendRecord(log, i, "boom")
		default:
			want = append(want, appendRecord(log, i, ""))
		}
	}
	dst, dlq := &memWriter{}, &memWriter{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, testConfig(), log.reader(7), dst, dlq, passStage()) }()
	waitFor(t, "all records committed", func() bool { log.mu.Lock(); defer log.mu.Unlock(); return log.committed == 50 })
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	vals, keys, _ := dst.snapshot()
	got := decodeFlows(t, vals, FormatProto)
	if len(got) != len(want) || len(vals) != len(want) {
		t.Fatalf("got %d outputs (%d distinct), want %d", len(vals), len(got), len(want))
	}
	for i, w := range want {
		w = proto.Clone(w).(*flowpb.FlowRecord)
		w.Gateway = "processed"
		if !proto.Equal(got[w.Id], w) {
			t.Fatalf("output %d differs:\n%v\n%v", i, got[w.Id], w)
		}
		if string(keys[i]) != string(w.SrcAddr) {
			t.Fatalf("output %d key %x, want src_addr", i, keys[i])
		}
	}
	dls, _, _ := dlq.snapshot()
	if len(dls) != 3 {
		t.Fatalf("got %d dead letters, want 3", len(dls))
	}
	wantReason := map[int64]string{10: "cannot decode", 20: "schema_version 2 is newer", 30: "boom"}
	for _, b := range dls {
		dl := &flowpb.DeadLetter{}
		if err := proto.Unmarshal(b, dl); err != nil {
			t.Fatal(err)
		}
		if dl.Stage != "test-pass" || dl.SourceTopic != "in" || !strings.Contains(dl.Reason, wantReason[dl.Offset]) {
			t.Fatalf("dead letter %+v, want reason containing %q", dl, wantReason[dl.Offset])
		}
		if string(dl.Payload) != string(log.msgs[dl.Offset].Value) {
			t.Fatalf("dead letter payload differs from the input at offset %d", dl.Offset)
		}
	}
}

// TestRunCommitsOnlyAfterAck: while the output writer fails, nothing is
// committed; after a "restart" with a working writer every record arrives.
func TestRunCommitsOnlyAfterAck(t *testing.T) {
	log := &memLog{}
	for i := 0; i < 30; i++ {
		log.append(nil, mustMarshal(sampleFlow(i)))
	}
	bad := &memWriter{fail: errors.New("broker on fire")}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, testConfig(), log.reader(10), bad, &memWriter{}, passStage()) }()
	waitFor(t, "write retries", func() bool { _, _, calls := bad.snapshot(); return calls >= 3 })
	cancel()
	err := <-errc
	if err == nil || !strings.Contains(err.Error(), "broker on fire") {
		t.Fatalf("Run returned %v, want the write error after the drain timeout", err)
	}
	if log.committed != 0 {
		t.Fatalf("committed offset %d although no write was acknowledged", log.committed)
	}

	good := &memWriter{}
	ctx, cancel = context.WithCancel(context.Background())
	go func() { errc <- Run(ctx, testConfig(), log.reader(10), good, &memWriter{}, passStage()) }()
	waitFor(t, "re-delivery", func() bool { log.mu.Lock(); defer log.mu.Unlock(); return log.committed == 30 })
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	vals, _, _ := good.snapshot()
	if got := decodeFlows(t, vals, FormatProto); len(got) != 30 {
		t.Fatalf("after restart got %d distinct records, want 30", len(got))
	}
}

// TestRunDrainsOnCancel: a batch being processed when ctx is cancelled is
// still written and committed before Run returns.
func TestRunDrainsOnCancel(t *testing.T) {
	log := &memLog{}
	for i := 0; i < 5; i++ {
		log.append(nil, mustMarshal(sampleFlow(i)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var once sync.Once
	st := Stage[*flowpb.FlowRecord, *flowpb.FlowRecord]{
		Name: "test-drain",
		Process: func(pctx context.Context, in *flowpb.FlowRecord, emit func(*flowpb.FlowRecord)) error {
			once.Do(func() { close(started); cancel(); time.Sleep(20 * time.Millisecond) })
			if pctx.Err() != nil {
				return Fatal(pctx.Err())
			}
			emit(in)
			return nil
		},
	}
	dst := &memWriter{}
	cfg := testConfig()
	cfg.DrainTimeout = 5 * time.Second
	if err := Run(ctx, cfg, log.reader(100), dst, nil, st); err != nil {
		t.Fatalf("Run: %v", err)
	}
	<-started
	vals, _, _ := dst.snapshot()
	if len(vals) != 5 || log.committed != 5 {
		t.Fatalf("after cancel: %d written, committed %d; want 5 and 5", len(vals), log.committed)
	}
}

func TestRunFatalStopsWithoutCommit(t *testing.T) {
	log := &memLog{}
	log.append(nil, mustMarshal(sampleFlow(1)))
	st := Stage[*flowpb.FlowRecord, *flowpb.Alert]{
		Name: "test-fatal",
		Process: func(context.Context, *flowpb.FlowRecord, func(*flowpb.Alert)) error {
			return Fatal(errors.New("geoip database vanished"))
		},
	}
	err := Run(context.Background(), testConfig(), log.reader(10), &memWriter{}, &memWriter{}, st)
	if err == nil || !strings.Contains(err.Error(), "geoip database vanished") || log.committed != 0 {
		t.Fatalf("err %v committed %d", err, log.committed)
	}
}

func TestRunSinkRetriesThenCommits(t *testing.T) {
	log := &memLog{}
	for i := 0; i < 25; i++ {
		log.append(nil, mustMarshal(sampleFlow(i)))
	}
	log.append(nil, []byte("garbage\xff"))
	var (
		mu    sync.Mutex
		fails = 3
		seen  = map[string]bool{}
	)
	sk := Sink[*flowpb.FlowRecord]{
		Name: "test-sink",
		WriteBatch: func(_ context.Context, batch []*flowpb.FlowRecord) error {
			mu.Lock()
			defer mu.Unlock()
			if fails > 0 {
				fails--
				return errors.New("clickhouse down")
			}
			for _, r := range batch {
				if want := sampleFlow(int(r.SrcMac[5]) | int(r.SrcMac[4])<<8); !proto.Equal(r, want) {
					t.Errorf("sink got altered record %v", r)
				}
				seen[r.Id] = true
			}
			return nil
		},
	}
	dlq := &memWriter{}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- RunSink(ctx, testConfig(), log.reader(8), dlq, sk) }()
	waitFor(t, "sink commit", func() bool { log.mu.Lock(); defer log.mu.Unlock(); return log.committed == 26 })
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(seen) != 25 {
		t.Fatalf("sink saw %d records, want 25", len(seen))
	}
	if dls, _, _ := dlq.snapshot(); len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
}

// TestRunStageKeepsStrings: a stage may keep the id and Community ID of
// input records (as detectors do in alerts) although Run reuses the input
// message and its decoder: after 5000 more records they are unchanged.
func TestRunStageKeepsStrings(t *testing.T) {
	const n = 5000
	log := &memLog{}
	for i := 0; i < n; i++ {
		r := distinctFlow(i)
		log.append(r.SrcAddr, mustMarshal(r))
	}
	var ids, cids []string // written by Process only, read after Run returns
	st := Stage[*flowpb.FlowRecord, *flowpb.FlowRecord]{
		Name: "test-keep",
		Process: func(_ context.Context, in *flowpb.FlowRecord, emit func(*flowpb.FlowRecord)) error {
			ids, cids = append(ids, in.Id), append(cids, in.CommunityId)
			emit(in)
			return nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, testConfig(), log.reader(64), &memWriter{}, &memWriter{}, st) }()
	waitFor(t, "all records committed", func() bool { log.mu.Lock(); defer log.mu.Unlock(); return log.committed == n })
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(ids) != n {
		t.Fatalf("%d records processed, want %d", len(ids), n)
	}
	for i := range ids {
		if w := distinctFlow(i); ids[i] != w.Id || cids[i] != w.CommunityId {
			t.Fatalf("record %d: kept %q %q, want %q %q", i, ids[i], cids[i], w.Id, w.CommunityId)
		}
	}
}

// gatedWriter acknowledges writes, but holds call number gate until
// release returns true, so the runner's pipeline runs ahead meanwhile.
type gatedWriter struct {
	calls   int
	gate    int
	release func() bool
}

func (w *gatedWriter) Write(context.Context, []Message) error {
	w.calls++
	if w.calls == w.gate {
		for !w.release() {
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}
func (w *gatedWriter) Close() error { return nil }

// checkpointStage counts the records it processed (its "state") and asks
// for a checkpoint every third batch and at the end.
type checkpointStage struct {
	processed atomic.Int64
	batches   int
	log       *memLog
	fail      int // the save with this number (1-based) fails
	saves     []checkpointSave
}

type checkpointSave struct {
	state, pos, committedBefore int64 // pos: of partition 0
	final                       bool
	entries                     int // partitions in the position
}

func (c *checkpointStage) stage() Stage[*flowpb.FlowRecord, *flowpb.FlowRecord] {
	st := passStage()
	process := st.Process
	st.Process = func(ctx context.Context, in *flowpb.FlowRecord, emit func(*flowpb.FlowRecord)) error {
		c.processed.Add(1)
		return process(ctx, in, emit)
	}
	st.Checkpoint = func(final bool) SaveFunc {
		c.batches++
		if !final && c.batches%3 != 0 {
			return nil
		}
		state := c.processed.Load()
		return func(_ context.Context, pos []Message) error {
			p0 := int64(-1)
			for _, p := range pos {
				if p.Topic == "in" && p.Partition == 0 {
					p0 = p.Offset
				}
			}
			c.log.mu.Lock()
			committed := c.log.committed
			c.log.mu.Unlock()
			c.saves = append(c.saves, checkpointSave{state, p0, committed, final, len(pos)})
			if len(c.saves) == c.fail {
				return errors.New("disk full")
			}
			return nil
		}
	}
	return st
}

// TestRunCheckpointInStepWithCommits: the state a checkpoint stores is the
// state after exactly the records up to the position it is saved with, even
// though later batches were already processed when it is saved; offsets are
// committed only up to a stored checkpoint.
func TestRunCheckpointInStepWithCommits(t *testing.T) {
	log := &memLog{}
	for i := 0; i < 95; i++ {
		log.append(nil, mustMarshal(sampleFlow(i)))
	}
	cs := &checkpointStage{log: log}
	// Hold the write of batch 3 until batch 5 is processed: the first
	// checkpoint is then saved while the state has moved on.
	w := &gatedWriter{gate: 3, release: func() bool { return cs.processed.Load() >= 50 }}
	cfg := testConfig()
	cfg.PipelineDepth = 3
	if err := Run(context.Background(), cfg, log.finite(10), w, nil, cs.stage()); err != nil {
		t.Fatal(err)
	}
	if len(cs.saves) != 4 || cs.saves[0].entries != 1 {
		t.Fatalf("saves %+v, want after batches 3, 6, 9 and a final one", cs.saves)
	}
	prev := int64(0)
	for i, sv := range cs.saves {
		if sv.state != sv.pos+1 {
			t.Errorf("save %d: state covers %d records, position says %d", i, sv.state, sv.pos+1)
		}
		if sv.committedBefore != prev {
			t.Errorf("save %d: committed %d before it, want %d (the previous checkpoint)", i, sv.committedBefore, prev)
		}
		prev = sv.pos + 1
	}
	if last := cs.saves[3]; !last.final || last.pos != 94 || log.committed != 95 {
		t.Fatalf("final save %+v, committed %d; want position 94 and 95 committed", last, log.committed)
	}
}

func TestRunCheckpointFailureStopsCommits(t *testing.T) {
	log := &memLog{}
	for i := 0; i < 95; i++ {
		log.append(nil, mustMarshal(sampleFlow(i)))
	}
	cs := &checkpointStage{log: log, fail: 2}
	err := Run(context.Background(), testConfig(), log.finite(10), &memWriter{}, nil, cs.stage())
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Run returned %v, want the checkpoint error", err)
	}
	if log.committed != 30 {
		t.Fatalf("committed %d, want 30 (the last stored checkpoint)", log.committed)
	}
}

// TestRunSkipsAppliedRecords: records at or before Applied are already in
// the restored state: not processed again, but committed.
func TestRunSkipsAppliedRecords(t *testing.T) {
	log := &memLog{}
	for i := 0; i < 95; i++ {
		log.append(nil, mustMarshal(sampleFlow(i)))
	}
	log.committed = 20 // the checkpoint at 39 was saved, its commit lost
	cs := &checkpointStage{log: log}
	st := cs.stage()
	st.Applied = []Message{{Topic: "in", Partition: 0, Offset: 39}, {Topic: "in", Partition: 3, Offset: 7}}
	out := &memWriter{}
	if err := Run(context.Background(), testConfig(), log.finite(10), out, nil, st); err != nil {
		t.Fatal(err)
	}
	vals, _, _ := out.snapshot()
	if n := cs.processed.Load(); n != 55 || len(vals) != 55 {
		t.Fatalf("processed %d, wrote %d; want records 40..94 only", n, len(vals))
	}
	if log.committed != 95 {
		t.Fatalf("committed %d, want 95", log.committed)
	}
	// A partition this run did not see keeps its restored position.
	if last := cs.saves[len(cs.saves)-1]; last.pos != 94 || last.entries != 2 {
		t.Fatalf("last save %+v, want partition 0 at 94 and partition 3 kept", last)
	}
}

// TestRunSkipsRedelivered: after a rebalance Kafka re-delivers from the
// committed offset, which for a checkpointing stage lags what it processed;
// those records are not processed twice.
func TestRunSkipsRedelivered(t *testing.T) {
	log := &memLog{}
	for i := 0; i < 95; i++ {
		log.append(nil, mustMarshal(sampleFlow(i)))
	}
	cs := &checkpointStage{log: log}
	r := log.finite(10)
	r.rewindAt = 6 // after batch 5; only batches 1-3 are committed
	out := &memWriter{}
	if err := Run(context.Background(), testConfig(), r, out, nil, cs.stage()); err != nil {
		t.Fatal(err)
	}
	vals, _, _ := out.snapshot()
	if n := cs.processed.Load(); n != 95 || len(vals) != 95 {
		t.Fatalf("processed %d, wrote %d; want each of the 95 records once", n, len(vals))
	}
	if last := cs.saves[len(cs.saves)-1]; last.state != 95 || last.pos != 94 || log.committed != 95 {
		t.Fatalf("last save %+v, committed %d", last, log.committed)
	}
}

// TestRunPrefetch: with Stage.Prefetch, every decoded record is prefetched
// exactly once, in input order, in groups of at most PrefetchGroup, before
// it is processed; outputs and dead letters are those of a stage without it,
// dead letters still in input order.
func TestRunPrefetch(t *testing.T) {
	log := &memLog{}
	n := 0
	for i := 0; i < 60; i++ {
		switch i % 13 {
		case 5:
			appendRecord(log, i, "undecodable")
		case 9:
			appendRecord(log, i, "boom")
		default:
			appendRecord(log, i, "")
			n++
		}
	}
	var (
		prefetched, processed []string
		groups                int
		misordered            string
	)
	st := passStage()
	st.PrefetchGroup = 4
	st.Prefetch = func(ins []*flowpb.FlowRecord) {
		groups++
		if len(ins) > 4 {
			misordered = fmt.Sprintf("group of %d", len(ins))
		}
		for _, in := range ins {
			prefetched = append(prefetched, in.Id)
		}
	}
	pass := st.Process
	st.Process = func(ctx context.Context, in *flowpb.FlowRecord, emit func(*flowpb.FlowRecord)) error {
		if len(processed) >= len(prefetched) || prefetched[len(processed)] != in.Id {
			misordered = fmt.Sprintf("%s processed before being prefetched", in.Id)
		}
		processed = append(processed, in.Id)
		return pass(ctx, in, emit)
	}
	dst, dlq := &memWriter{}, &memWriter{}
	if err := Run(context.Background(), testConfig(), log.finite(7), dst, dlq, st); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if misordered != "" {
		t.Fatal(misordered)
	}
	if len(prefetched) != n+4 || len(processed) != n+4 { // the /boom records are decoded and processed too
		t.Fatalf("prefetched %d, processed %d records, want %d", len(prefetched), len(processed), n+4)
	}
	if groups < len(prefetched)/4 {
		t.Fatalf("%d groups for %d records", groups, len(prefetched))
	}
	vals, _, _ := dst.snapshot()
	if got := decodeFlows(t, vals, FormatProto); len(got) != n || len(vals) != n {
		t.Fatalf("got %d outputs (%d distinct), want %d", len(vals), len(got), n)
	}
	dls, _, _ := dlq.snapshot()
	if len(dls) != 9 {
		t.Fatalf("got %d dead letters, want 9", len(dls))
	}
	last := int64(-1)
	for _, b := range dls {
		dl := &flowpb.DeadLetter{}
		if err := proto.Unmarshal(b, dl); err != nil {
			t.Fatal(err)
		}
		if dl.Offset <= last {
			t.Fatalf("dead letter of offset %d after %d", dl.Offset, last)
		}
		last = dl.Offset
		want := "cannot decode"
		if dl.Offset%13 == 9 {
			want = "boom"
		}
		if !strings.Contains(dl.Reason, want) {
			t.Fatalf("dead letter at %d: %q, want %q", dl.Offset, dl.Reason, want)
		}
	}
}
