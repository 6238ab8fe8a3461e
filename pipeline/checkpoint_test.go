package pipeline

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/transport"
)

// flowLog is a two-partition topic of enriched records with per-partition
// committed offsets. Records are delivered in one global order (record
// time) whatever the starting offsets, so a restarted reader feeds the
// engine the same sequence as an uninterrupted one.
type flowLog struct {
	mu        sync.Mutex
	recs      []transport.Message
	committed map[int]int64 // next offset per partition
	commits   int
	loseAt    int // this commit call (1-based) fails: saved but not committed
	failAt    int // a reader's Fetch number failAt fails: the crash
}

func newFlowLog(t *testing.T, n int) *flowLog {
	t.Helper()
	l := &flowLog{committed: map[int]int64{}}
	next := map[int]int64{}
	t0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC).UnixNano()
	const devices = 6
	for k := 0; k < n; k++ {
		i := k % devices
		ts := t0 + int64(k)*int64(20*time.Second)
		r := &flowpb.FlowRecord{
			SchemaVersion: schema.Version,
			Id:            "gw1/flow/" + strconv.Itoa(k),
			FirstSeenNs:   ts - int64(time.Second),
			LastSeenNs:    ts,
			Direction:     flowpb.Direction_DIRECTION_OUTBOUND,
			SrcAddr:       schema.AddrBytes(netip.AddrFrom4([4]byte{10, 20, 0, byte(10 + i)})),
			DstAddr:       schema.AddrBytes(netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i)})),
			SrcPort:       40000,
			DstPort:       443,
			Protocol:      6,
			BytesOut:      900 + uint64(k%7),
			BytesIn:       5000,
			Tls:           &flowpb.TLSInfo{Sni: "beacon" + strconv.Itoa(i) + ".example.net"},
			Enrichment: &flowpb.Enrichment{
				DstGeo: &flowpb.Geo{AddrClass: flowpb.AddrClass_ADDR_CLASS_PUBLIC, Country: "US", Asn: 15169, Org: "Google"},
				Device: &flowpb.Device{Id: "dev-" + strconv.Itoa(i), Model: []string{"pixel-7", "redmi-1s"}[i%2], Group: "lab"},
			},
		}
		// After the learning hour: new countries and ASNs (first_seen),
		// and bursts of uploads (upload_volume).
		if ts-t0 > int64(90*time.Minute) && k%37 == 0 {
			r.DstAddr = schema.AddrBytes(netip.AddrFrom4([4]byte{36, 110, 1, byte(k)}))
			r.Tls.Sni = "cdn" + strconv.Itoa(k%3) + ".example.cn"
			cc := []string{"CN", "RU", "BR"}[k%3]
			r.Enrichment.DstGeo = &flowpb.Geo{AddrClass: flowpb.AddrClass_ADDR_CLASS_PUBLIC, Country: cc, Asn: 4134 + uint32(k%3), Org: "Net " + cc}
			r.BytesOut = 50 << 20
		}
		v, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		p := i % 2
		l.recs = append(l.recs, transport.Message{Topic: "enriched", Partition: p, Offset: next[p], Value: v, Format: transport.FormatProto})
		next[p]++
	}
	return l
}

// reader starts every partition at its committed offset, like a restarted
// group member that gets the same partitions back.
func (l *flowLog) reader(batch int) *logReader {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &logReader{log: l, batch: batch}
	for _, m := range l.recs {
		if m.Offset >= l.committed[m.Partition] {
			r.pending = append(r.pending, m)
		}
	}
	return r
}

type logReader struct {
	log     *flowLog
	batch   int
	pending []transport.Message
	fetches int
}

func (r *logReader) Fetch(context.Context) ([]transport.Message, error) {
	r.fetches++
	if r.fetches == r.log.failAt {
		return nil, errors.New("node lost power")
	}
	if len(r.pending) == 0 {
		return nil, io.EOF
	}
	n := min(r.batch, len(r.pending))
	b := r.pending[:n:n]
	r.pending = r.pending[n:]
	return b, nil
}

func (r *logReader) Commit(_ context.Context, msgs []transport.Message) error {
	l := r.log
	l.mu.Lock()
	defer l.mu.Unlock()
	l.commits++
	if l.commits == l.loseAt {
		return errors.New("coordinator moved")
	}
	for _, m := range msgs {
		l.committed[m.Partition] = max(l.committed[m.Partition], m.Offset+1)
	}
	return nil
}

func (r *logReader) Close() error { return nil }

// alertLog keeps every acknowledged alert in write order.
type alertLog struct {
	mu     sync.Mutex
	alerts []*flowpb.Alert
}

func (w *alertLog) Write(_ context.Context, msgs []transport.Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range msgs {
		a := &flowpb.Alert{}
		if err := proto.Unmarshal(m.Value, a); err != nil {
			return err
		}
		w.alerts = append(w.alerts, a)
	}
	return nil
}

func (w *alertLog) Close() error { return nil }

// final is what the alerts table holds after merging: the last version of
// each id.
func final(alerts []*flowpb.Alert) map[string]*flowpb.Alert {
	m := map[string]*flowpb.Alert{}
	for _, a := range alerts {
		m[a.Id] = a
	}
	return m
}

func checkpointConfig(t *testing.T) Config {
	cfg := DemoConfig()
	cfg.DetectState.SnapshotPath = filepath.Join(t.TempDir(), "state", "detect.snapshot")
	cfg.DetectState.FlushInterval = time.Hour // no wall-clock flush mid-run
	cfg.Kafka.RetryBackoffMin, cfg.Kafka.RetryBackoffMax = time.Millisecond, time.Millisecond
	return cfg
}

// runDetector runs the detect stage over r with a checkpoint every fourth
// batch (instead of every snapshot_interval) and returns its detector.
func runDetector(t *testing.T, cfg *Config, r transport.Reader, out transport.Writer) (*Detector, error) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := NewDetector(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	batches := 0
	d.due = func() bool { batches++; return batches%4 == 0 }
	return d, d.Run(context.Background(), cfg.Kafka, r, out, nil, nil)
}

func engineState(t *testing.T, d *Detector) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := d.Engine.Snapshot(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestDetectRestartIsReplayConsistent: detect crashes mid-stream (no final
// checkpoint), restarts from its checkpoint and the uncommitted records, and
// ends with the same state and the same alerts (after the alerts table
// collapses ids) as a run that never stopped; also when the commit after
// the last checkpoint was lost, so some re-delivered records are already
// in the restored state.
func TestDetectRestartIsReplayConsistent(t *testing.T) {
	const records, batch = 2400, 10
	refCfg := checkpointConfig(t)
	refCfg.DetectState.SnapshotPath = ""
	refOut := &alertLog{}
	ref, err := runDetector(t, &refCfg, newFlowLog(t, records).reader(batch), refOut)
	if err != nil {
		t.Fatal(err)
	}
	want := final(refOut.alerts)
	byDet := map[string]int{}
	for _, a := range want {
		byDet[a.Detector]++
	}
	t.Logf("reference: %d alerts by id %v, %d emitted", len(want), byDet, len(refOut.alerts))
	if byDet["first_seen_destination"] == 0 || len(byDet) < 2 {
		t.Fatalf("the input raises too little to compare: %v", byDet)
	}

	for _, tc := range []struct {
		name   string
		loseAt int
	}{{"commits kept", 0}, {"last commit lost", 5}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := checkpointConfig(t)
			l := newFlowLog(t, records)
			// Crash while fetching batch 23: checkpoints after batches 4,
			// 8, ..., 20 were stored and committed (but the 5th commit with
			// loseAt 5); batches 21 and 22 were written, not committed.
			l.loseAt, l.failAt = tc.loseAt, 23
			outA := &alertLog{}
			if _, err := runDetector(t, &cfg, l.reader(batch), outA); err == nil {
				t.Fatal("the crashed run returned nil")
			}
			wantCommitted := int64(20 * batch / 2) // per partition
			if tc.loseAt != 0 {
				wantCommitted = 16 * batch / 2
			}
			if l.committed[0] != wantCommitted || l.committed[1] != wantCommitted {
				t.Fatalf("committed %v after the crash, want %d per partition (the last stored checkpoint)", l.committed, wantCommitted)
			}
			if _, err := os.Stat(cfg.DetectState.SnapshotPath); err != nil {
				t.Fatal(err)
			}

			l.failAt = 0
			outB := &alertLog{}
			d, err := runDetector(t, &cfg, l.reader(batch), outB)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(engineState(t, d), engineState(t, ref)) {
				t.Error("state after crash and restart differs from the uninterrupted run")
			}
			got := final(append(outA.alerts, outB.alerts...))
			for id, a := range want {
				if g := got[id]; g == nil || !proto.Equal(g, a) {
					t.Errorf("alert %s (%s): restarted run has %v", id, a.Summary, g)
				}
			}
			for id, g := range got {
				if want[id] == nil {
					t.Errorf("restarted run raised an extra alert %s: %s", id, g.Summary)
				}
			}
			if l.committed[0]+l.committed[1] != records {
				t.Errorf("committed %v at the end, want all %d records", l.committed, records)
			}
			// And a restart after the clean end re-reads nothing.
			d2, err := runDetector(t, &cfg, l.reader(batch), &alertLog{})
			if err != nil || !bytes.Equal(engineState(t, d2), engineState(t, d)) {
				t.Errorf("restart after a clean end: err %v, state equal %v", err, err == nil && bytes.Equal(engineState(t, d2), engineState(t, d)))
			}
		})
	}
}

// TestLoadCheckpointFormats: a checkpoint round-trips with its position; a
// bare engine snapshot (written before checkpoints had one) still loads;
// garbage is refused.
func TestLoadCheckpointFormats(t *testing.T) {
	cfg := checkpointConfig(t)
	d, err := NewDetector(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l := newFlowLog(t, 50)
	for _, m := range l.recs {
		rec := &flowpb.FlowRecord{}
		if err := proto.Unmarshal(m.Value, rec); err != nil {
			t.Fatal(err)
		}
		d.Engine.Process(rec, func(*flowpb.Alert) {})
	}
	state := engineState(t, d)
	path := cfg.DetectState.SnapshotPath
	pos := []transport.Message{{Topic: "enriched", Partition: 0, Offset: 24}, {Topic: "enriched", Partition: 1, Offset: 23}}
	if err := writeCheckpoint(path, pos, state); err != nil {
		t.Fatal(err)
	}
	d2, err := NewDetector(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(engineState(t, d2), state) || fmtPos(d2.pos) != fmtPos(pos) {
		t.Fatalf("restored position %v (state equal %v), want %v", d2.pos, bytes.Equal(engineState(t, d2), state), pos)
	}

	if err := os.WriteFile(path, state, 0o600); err != nil {
		t.Fatal(err)
	}
	eng := d2.Engine
	got, err := loadCheckpoint(path, eng)
	if err != nil || got != nil || !bytes.Equal(engineState(t, d2), state) {
		t.Fatalf("bare snapshot: position %v, err %v", got, err)
	}
	if err := os.WriteFile(path, []byte("exfilwatch-detect-checkpoint 1\n[{\"topic\":\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCheckpoint(path, eng); err == nil {
		t.Fatal("a damaged checkpoint was accepted")
	}
}
