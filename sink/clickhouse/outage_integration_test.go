package clickhouse

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

func TestWriteAlertsSurvivesOutage(t *testing.T) {
	cfg := testConfig(t)
	w0 := openWriter(t, cfg) // migrate directly, not through the proxy
	w0.Close()

	proxy := testenv.NewCutProxy(t, cfg.Addr)
	pcfg := cfg
	pcfg.Addr = proxy.Addr
	pcfg.MigrateOnOpen = false
	pcfg.DialTimeout = time.Second
	pcfg.ReadTimeout = 5 * time.Second
	w := openWriter(t, pcfg)

	var first, second []*flowpb.Alert
	for i := range 40 {
		a := sampleAlert(i)
		a.Id = fmt.Sprintf("outage-%03d", i)
		if i < 10 {
			first = append(first, a)
		} else {
			second = append(second, a)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.WriteAlerts(ctx, first); err != nil {
		t.Fatalf("WriteAlerts before outage: %v", err)
	}

	proxy.Cut()
	retries0 := counterValue(insertRetries.WithLabelValues("alerts"))
	done := make(chan error, 1)
	go func() { done <- w.WriteAlerts(ctx, second) }()

	// WriteAlerts must keep retrying, not return, while the server is away.
	deadline := time.Now().Add(20 * time.Second)
	for counterValue(insertRetries.WithLabelValues("alerts")) < retries0+3 {
		if time.Now().After(deadline) {
			t.Fatal("no retries counted while ClickHouse was unreachable")
		}
		select {
		case err := <-done:
			t.Fatalf("WriteAlerts returned during the outage: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	select {
	case err := <-done:
		t.Fatalf("WriteAlerts returned during the outage: %v", err)
	default:
	}

	proxy.Restore()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WriteAlerts after recovery: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WriteAlerts did not finish after ClickHouse came back")
	}

	// Every alert is stored exactly once after FINAL.
	direct, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	rows, err := direct.Query(ctx, "SELECT id, count() FROM "+cfg.Database+".alerts FINAL GROUP BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := map[string]uint64{}
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		seen[id] = n
	}
	for _, a := range append(first, second...) {
		if seen[a.Id] != 1 {
			t.Errorf("alert %s stored %d times after FINAL, want 1", a.Id, seen[a.Id])
		}
	}
	if len(seen) != len(first)+len(second) {
		t.Errorf("%d distinct alerts stored, want %d", len(seen), len(first)+len(second))
	}
}

func TestWriteAlertsCancelledWhileDown(t *testing.T) {
	cfg := testConfig(t)
	w0 := openWriter(t, cfg)
	w0.Close()
	proxy := testenv.NewCutProxy(t, cfg.Addr)
	pcfg := cfg
	pcfg.Addr, pcfg.MigrateOnOpen, pcfg.DialTimeout = proxy.Addr, false, time.Second
	w := openWriter(t, pcfg)
	proxy.Cut()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := w.WriteAlerts(ctx, []*flowpb.Alert{sampleAlert(1)}); err == nil {
		t.Fatal("WriteAlerts claimed success with the server unreachable")
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// Open waits for a server that is not up yet (the sink may start first).
func TestOpenWaitsForServer(t *testing.T) {
	cfg := testConfig(t)
	proxy := testenv.NewCutProxy(t, cfg.Addr)
	proxy.Cut()
	pcfg := cfg
	pcfg.Addr, pcfg.DialTimeout = proxy.Addr, time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type result struct {
		w   *Writer
		err error
	}
	done := make(chan result, 1)
	go func() {
		w, err := Open(ctx, pcfg)
		done <- result{w, err}
	}()
	time.Sleep(400 * time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("Open returned while the server was unreachable: %v", r.err)
	default:
	}
	proxy.Restore()
	r := <-done
	if r.err != nil {
		t.Fatalf("Open after the server came up: %v", r.err)
	}
	defer r.w.Close()
	if got, err := AppliedMigrations(ctx, r.w.Conn(), cfg.Database); err != nil || len(got) == 0 {
		t.Fatalf("migrations after delayed Open: %v, %v", got, err)
	}
}
