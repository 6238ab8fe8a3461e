package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/exfilwatch/exfilwatch/sink/webhook"
	"github.com/exfilwatch/exfilwatch/transport"
)

// events is the order in which dead letters were acknowledged and offsets
// committed.
type events struct {
	mu sync.Mutex
	ev []event
}

type event struct {
	commit int64    // highest committed offset, or -1
	dead   []string // alert ids of an acknowledged dead-letter write
	failed bool     // a dead-letter write that was refused
}

func (e *events) add(ev event) {
	e.mu.Lock()
	e.ev = append(e.ev, ev)
	e.mu.Unlock()
}

func (e *events) all() []event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ev)
}

// committingReader records the offsets the runner commits.
type committingReader struct {
	transport.Reader
	ev *events
}

func (r committingReader) Commit(ctx context.Context, msgs []transport.Message) error {
	if err := r.Reader.Commit(ctx, msgs); err != nil {
		return err
	}
	hi := int64(-1)
	for _, m := range msgs {
		hi = max(hi, m.Offset)
	}
	r.ev.add(event{commit: hi})
	return nil
}

// failingDLQ refuses the first failFirst writes, then passes them to the
// broker and records which alerts they carried once acknowledged.
type failingDLQ struct {
	transport.Writer
	ev        *events
	mu        sync.Mutex
	failFirst int
}

func (w *failingDLQ) Write(ctx context.Context, msgs []transport.Message) error {
	w.mu.Lock()
	fail := w.failFirst > 0
	w.failFirst--
	w.mu.Unlock()
	if fail {
		w.ev.add(event{commit: -1, failed: true})
		return errors.New("dead-letter topic unavailable (test)")
	}
	if err := w.Writer.Write(ctx, msgs); err != nil {
		return err
	}
	var ids []string
	for _, m := range msgs {
		var dl flowpb.DeadLetter
		var a flowpb.Alert
		if err := proto.Unmarshal(m.Value, &dl); err != nil || proto.Unmarshal(dl.Payload, &a) != nil {
			ids = append(ids, "undecodable")
			continue
		}
		ids = append(ids, a.Id)
	}
	w.ev.add(event{commit: -1, dead: ids})
	return nil
}

// TestWebhookDeadLettersOnBroker: alerts come from a real Kafka topic to the
// alert sink; the webhook endpoint refuses some permanently (403, 404, 410),
// one transiently (429 once) and accepts the rest. The refused ones, and
// only those, land on the dead-letter topic with the endpoint, status and
// reason and the alert as payload; while the dead-letter writer fails the
// batch is not committed, and every offset is committed only after the dead
// letters of its batch were acknowledged; in the end the group's committed
// offset on the broker covers every alert.
func TestWebhookDeadLettersOnBroker(t *testing.T) {
	broker := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	run := fmt.Sprintf("dlq-test-%d", time.Now().UnixNano())
	kcfg := transport.DefaultConfig()
	kcfg.Brokers = []string{broker}
	kcfg.Partitions = 1 // offsets in production order
	kcfg.BatchSize = 4  // several batches, several commits
	kcfg.GroupPrefix = run
	kcfg.RetryBackoffMin, kcfg.RetryBackoffMax = 10*time.Millisecond, 50*time.Millisecond
	alertsTopic, dlqTopic := run+".alerts", run+".dead-letter"
	if err := transport.EnsureTopics(ctx, kcfg, alertsTopic, dlqTopic); err != nil {
		t.Fatal(err)
	}

	refuse := map[string]int{"a-02": http.StatusForbidden, "a-05": http.StatusNotFound, "a-09": http.StatusGone}
	var mu sync.Mutex
	accepted := map[string]int{}
	tooMany := map[string]bool{"a-07": true}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		for id := range tooMany {
			if strings.Contains(string(body), `"`+id+`"`) && tooMany[id] {
				tooMany[id] = false
				w.Header().Set("Retry-After", "0")
				http.Error(w, "slow down", http.StatusTooManyRequests)
				return
			}
		}
		for id, code := range refuse {
			if strings.Contains(string(body), `"`+id+`"`) {
				http.Error(w, "no such tenant", code)
				return
			}
		}
		for i := range 12 {
			if id := fmt.Sprintf("a-%02d", i); strings.Contains(string(body), `"`+id+`"`) {
				accepted[id]++
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	wcfg := webhook.DefaultConfig()
	ep := webhook.DefaultEndpoint("dlq-test", srv.URL, webhook.FormatGeneric)
	ep.RatePerSecond, ep.Burst = 10000, 1000
	wcfg.Endpoints = []webhook.EndpointConfig{ep}
	wcfg.RetryInitial, wcfg.RetryMax = 10*time.Millisecond, 50*time.Millisecond
	hook, err := webhook.New(wcfg)
	if err != nil {
		t.Fatal(err)
	}

	// Produce the alerts.
	var alerts []*flowpb.Alert
	var msgs []transport.Message
	for i := range 12 {
		a := &flowpb.Alert{SchemaVersion: schema.Version, Id: fmt.Sprintf("a-%02d", i), DedupKey: fmt.Sprintf("k%d", i), Detector: "identifier_leak",
			Severity: flowpb.Severity_SEVERITY_HIGH, DeviceId: fmt.Sprintf("lab-%d", i%3), Summary: "IMEI sent to a tracker",
			FirstSeenNs: 1e18 + int64(i)*1e9, LastSeenNs: 1e18 + int64(i)*1e9, CreatedNs: 1e18 + int64(i)*1e9, Count: 1}
		v, err := proto.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		alerts = append(alerts, a)
		msgs = append(msgs, transport.Message{Key: []byte(a.DeviceId), Value: v})
	}
	pw := transport.NewKafkaWriter(kcfg, alertsTopic, log)
	if err := pw.Write(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	pw.Close()

	// Run the alert sink over them.
	ev := &events{}
	kr := transport.NewKafkaReader(kcfg, alertsTopic, kcfg.GroupID("sink-alerts"), log)
	defer kr.Close()
	dw := transport.NewKafkaWriter(kcfg, dlqTopic, log)
	defer dw.Close()
	dlq := &failingDLQ{Writer: dw, ev: ev, failFirst: 2}
	cnt := &Counters{}
	sink := &AlertSink{Hook: hook, DLQ: dlq, Cnt: cnt}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- transport.RunSink(sctx, kcfg, committingReader{kr, ev}, dlq, transport.Sink[*flowpb.Alert]{Name: "sink-alerts", Log: log, WriteBatch: sink.WriteBatch})
	}()
	last := int64(len(alerts) - 1)
	for {
		evs := ev.all()
		if len(evs) > 0 && evs[len(evs)-1].commit == last {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("sink stopped: %v", err)
		case <-ctx.Done():
			t.Fatalf("alerts not all committed: %+v", evs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}

	// Order: each refused alert's dead letter was acknowledged before the
	// first commit covering its offset; no commit before the failed writes
	// were retried successfully.
	evs := ev.all()
	deadAt := map[string]int{}
	failed := 0
	for i, e := range evs {
		if e.failed {
			failed++
		}
		for _, id := range e.dead {
			if _, ok := deadAt[id]; !ok {
				deadAt[id] = i
			}
		}
	}
	if failed != 2 {
		t.Errorf("%d failed dead-letter writes, want 2: %+v", failed, evs)
	}
	for i, a := range alerts {
		_, refused := refuse[a.Id]
		at, dead := deadAt[a.Id]
		if dead != refused {
			t.Errorf("%s: dead-lettered %v, refused permanently %v", a.Id, dead, refused)
		}
		if !refused {
			continue
		}
		for j, e := range evs {
			if e.commit >= int64(i) {
				if j < at {
					t.Errorf("%s (offset %d): committed (event %d) before its dead letter was acknowledged (event %d): %+v", a.Id, i, j, at, evs)
				}
				break
			}
		}
	}
	mu.Lock()
	for _, a := range alerts {
		if _, refused := refuse[a.Id]; !refused && accepted[a.Id] == 0 {
			t.Errorf("%s never accepted by the endpoint", a.Id)
		}
	}
	mu.Unlock()

	// The broker holds the group's commit of every alert.
	client := &kafka.Client{Addr: kafka.TCP(broker)}
	of, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: kcfg.GroupID("sink-alerts"), Topics: map[string][]int{alertsTopic: {0}}})
	if err != nil {
		t.Fatal(err)
	}
	if ps := of.Topics[alertsTopic]; len(ps) != 1 || ps[0].CommittedOffset != int64(len(alerts)) {
		t.Errorf("committed offsets on the broker %+v, want %d", ps, len(alerts))
	}

	// The dead-letter topic, read back from the broker up to its end.
	lo, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{dlqTopic: {kafka.LastOffsetOf(0)}}})
	if err != nil {
		t.Fatal(err)
	}
	if ps := lo.Topics[dlqTopic]; len(ps) != 1 || ps[0].Error != nil {
		t.Fatalf("dead-letter topic offsets: %+v", lo.Topics)
	}
	end := lo.Topics[dlqTopic][0].LastOffset
	rcfg := kcfg
	rcfg.GroupPrefix = run + "-check"
	dr := transport.NewKafkaReader(rcfg, dlqTopic, rcfg.GroupID("dlq"), log)
	defer dr.Close()
	got := map[string]*flowpb.DeadLetter{}
	for next := int64(0); next < end; {
		batch, err := dr.Fetch(ctx)
		if err != nil {
			t.Fatalf("dead-letter topic: %v at offset %d of %d", err, next, end)
		}
		for _, m := range batch {
			next = max(next, m.Offset+1)
			dl := &flowpb.DeadLetter{}
			if err := proto.Unmarshal(m.Value, dl); err != nil {
				t.Fatalf("dead letter at offset %d: %v", m.Offset, err)
			}
			a := &flowpb.Alert{}
			if err := proto.Unmarshal(dl.Payload, a); err != nil {
				t.Fatalf("dead letter at offset %d: payload: %v", m.Offset, err)
			}
			if string(m.Key) != a.DeviceId {
				t.Errorf("dead letter of %s keyed %q, want the device %q", a.Id, m.Key, a.DeviceId)
			}
			got[a.Id] = dl
			idx := slices.IndexFunc(alerts, func(x *flowpb.Alert) bool { return x.Id == a.Id })
			if idx < 0 || !proto.Equal(a, alerts[idx]) {
				t.Errorf("dead-letter payload %v is not a produced alert", a)
			}
		}
	}
	for id, code := range refuse {
		dl := got[id]
		if dl == nil {
			t.Errorf("%s not on the dead-letter topic", id)
			continue
		}
		want := fmt.Sprintf("(HTTP %d)", code)
		if dl.Stage != "sink-webhook" || !strings.Contains(dl.Reason, "endpoint dlq-test") || !strings.Contains(dl.Reason, want) ||
			!strings.Contains(dl.Reason, "no such tenant") || dl.SchemaVersion != schema.Version || dl.TimeNs == 0 {
			t.Errorf("%s: dead letter stage %q reason %q; want sink-webhook, the endpoint, %s and the endpoint's answer", id, dl.Stage, dl.Reason, want)
		}
	}
	if len(got) != len(refuse) {
		t.Errorf("dead letters for %d alerts, want %d", len(got), len(refuse))
	}
}
