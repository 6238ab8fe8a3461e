package pipeline

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/sink/webhook"
)

// metricSum adds up the series of a counter in the default registry whose
// labels include want.
func metricSum(t testing.TB, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Errorf("gather metrics: %v", err)
		return 0
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// insertRetries counts the ClickHouse sink's retried INSERTs of flows
// (with their matches) and of alerts. The pipeline package's tests do not
// run in parallel, so a difference between two readings is this test's.
func insertRetries(t testing.TB) (flows, alerts float64) {
	const name = "exfilwatch_sink_clickhouse_retries_total"
	flows = metricSum(t, name, map[string]string{"table": "flows"}) + metricSum(t, name, map[string]string{"table": "matches"})
	return flows, metricSum(t, name, map[string]string{"table": "alerts"})
}

// outage is one stop of the private server, as the watcher saw it.
type outage struct {
	sig                       syscall.Signal
	flowsAt, alertsAt         int64   // stored flows and settled alerts at the stop
	flowsDown                 int64   // stored flows when it was started again
	flowRetries, alertRetries float64 // INSERTs retried between the signal and the restart
	down, stopTook, startTook time.Duration
	err                       error
}

// TestEndToEndSurvivesClickHouseRestart runs the pipeline against a private
// ClickHouse server process (testenv.StartClickHouse; the shared dev server
// is not touched) and really stops it mid-stream, twice: once the first
// flows are stored it is shut down with SIGTERM, and once flows are stored
// again after the restart, with flow and alert inserts still to come, it is
// killed with SIGKILL. Each time it stays down until both sinks have had an
// INSERT fail and be retried, then starts again on the same data folder.
// The webhook receiver answers 500s, times out and (through a cut proxy)
// refuses connections. Afterwards every alert is in ClickHouse exactly once
// after FINAL, every flow is stored, and every alert reached the receiver at
// least once with a valid signature.
func TestEndToEndSurvivesClickHouseRestart(t *testing.T) {
	kafka := testenv.Kafka(t)
	chs := testenv.StartClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	key := []byte("restart-webhook-secret-012345678")
	rc := &receiver{key: key, ids: map[string]int{}, failNext: 8}
	srv := httptest.NewServer(&slowOrFailing{rc: rc, mu: make(chan struct{}, 1), slowFrom: 12, slowTo: 18})
	defer srv.Close()
	hookProxy := testenv.NewCutProxy(t, srv.Listener.Addr().String())

	cfg := DemoConfig()
	// Small batches: the sinks insert many blocks one after the other, so a
	// stop lands between inserts that are still to come. The webhook's rate
	// limit (below) spreads the alert sink's inserts over the whole run.
	const batch = 100
	cfg.Kafka.BatchSize = batch
	cfg.ClickHouse.Database = fmt.Sprintf("exfilwatch_restart_%d", time.Now().UnixNano())
	cfg.ClickHouse.RetryInitial = 50 * time.Millisecond
	cfg.ClickHouse.RetryMax = 500 * time.Millisecond
	cfg.ClickHouse.DialTimeout = time.Second
	const hookName = "restart"
	ep := webhook.DefaultEndpoint(hookName, "http://"+hookProxy.Addr, webhook.FormatGeneric)
	ep.Secret = "whsec_" + base64.StdEncoding.EncodeToString(key)
	ep.RatePerSecond, ep.Burst, ep.Timeout = 100, 1, 300*time.Millisecond
	cfg.Webhooks.Endpoints = []webhook.EndpointConfig{ep}
	cfg.Webhooks.RetryInitial = 20 * time.Millisecond
	cfg.Webhooks.RetryMax = 300 * time.Millisecond

	began := time.Now()
	var mu sync.Mutex
	var timeline []string
	note := func(c *Counters, what string) {
		mu.Lock()
		defer mu.Unlock()
		timeline = append(timeline, fmt.Sprintf("%6.2fs %-16s collected %d · alerts %d · stored flows %d · settled alerts %d",
			time.Since(began).Seconds(), what, c.Collected.Load(), c.Alerts.Load(), c.SunkFlows.Load(), c.SunkAlerts.Load()))
	}
	// The watcher ends when the pipeline has returned (or the test's
	// context ends); waitFor polls cond until it holds, false if it ended.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	waitFor := func(cond func() bool) bool {
		for !cond() {
			if watchCtx.Err() != nil {
				return false
			}
			time.Sleep(2 * time.Millisecond)
		}
		return true
	}
	var outages []outage
	// down stops the server with sig and keeps it down for at least a
	// second and until flows and alerts have each had an INSERT retried
	// (at most 30 s: the pipeline would be stuck, and the test fails).
	down := func(c *Counters, sig syscall.Signal) bool {
		o := outage{sig: sig, flowsAt: c.SunkFlows.Load(), alertsAt: c.SunkAlerts.Load()}
		f0, a0 := insertRetries(t)
		note(c, "stop "+sig.String())
		t0 := time.Now()
		o.err = chs.Stop(sig)
		o.stopTook = time.Since(t0)
		if o.err == nil {
			note(c, "stopped")
			minDown, maxDown := time.Now().Add(time.Second), time.Now().Add(30*time.Second)
			for {
				f, a := insertRetries(t)
				o.flowRetries, o.alertRetries = f-f0, a-a0
				if o.flowRetries > 0 && o.alertRetries > 0 && time.Now().After(minDown) || time.Now().After(maxDown) || watchCtx.Err() != nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			o.down = time.Since(t0)
			o.flowsDown = c.SunkFlows.Load() // nothing is stored until Start
			t0 = time.Now()
			o.err = chs.Start()
			o.startTook = time.Since(t0)
			note(c, "started again")
		}
		outages = append(outages, o)
		return o.err == nil
	}
	injected := make(chan struct{})
	watch := func(c *Counters) {
		go func() {
			defer close(injected)
			// 1. SIGTERM as soon as the first flows are stored.
			if !waitFor(func() bool { return c.SunkFlows.Load() > 0 }) || !down(c, syscall.SIGTERM) {
				return
			}
			// 2. SIGKILL once the flow sink has stored a block after the
			// restart, while more than a batch of flows and of alerts (so
			// at least one INSERT of each) is still to be written; or when
			// that can no longer happen (then the checks below fail).
			n := outages[0].flowsDown
			if !waitFor(func() bool {
				pendingFlows := c.Collected.Load() - c.SunkFlows.Load()
				pendingAlerts := c.Alerts.Load() - c.SunkAlerts.Load()
				return c.SunkFlows.Load() > n && pendingFlows > batch && pendingAlerts > batch || pendingFlows <= batch
			}) || !down(c, syscall.SIGKILL) {
				return
			}
			// 3. The webhook refuses connections for a while.
			hookProxy.Cut()
			note(c, "webhook cut")
			time.Sleep(time.Second)
			hookProxy.Restore()
			note(c, "webhook restored")
		}()
	}
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	res, err := Demo(ctx, &cfg, DemoOptions{Dir: t.TempDir(), Devices: 20, Seed: 9, Background: 40, Kafka: kafka, ClickHouse: chs.Addr, Watch: watch}, &out, io.Discard, log)
	stopWatch()
	<-injected
	t.Logf("timeline:\n%s", strings.Join(timeline, "\n"))
	if err != nil {
		t.Fatalf("demo: %v\n%s\nserver logs:%s", err, out.String(), chs.LogTail())
	}
	for i, o := range outages {
		t.Logf("outage %d (%v): at %d stored flows (%d at the restart), %d settled alerts; %v to stop, down %v, %v to start; INSERTs retried between the signal and the restart: %.0f flows, %.0f alerts",
			i+1, o.sig, o.flowsAt, o.flowsDown, o.alertsAt, o.stopTook.Round(time.Millisecond), o.down.Round(time.Millisecond), o.startTook.Round(time.Millisecond), o.flowRetries, o.alertRetries)
		if o.err != nil {
			t.Fatalf("outage %d (%v): %v", i+1, o.sig, o.err)
		}
	}
	if len(outages) != 2 {
		t.Fatalf("%d of 2 server stops happened", len(outages))
	}
	for i, o := range outages {
		if o.flowsDown >= res.Flows {
			t.Errorf("outage %d (%v): all %d flows were stored before the server was down", i+1, o.sig, res.Flows)
		}
		if o.flowRetries == 0 || o.alertRetries == 0 {
			t.Errorf("outage %d (%v) did not overlap inserts: %.0f flow and %.0f alert INSERTs retried between the signal and the restart", i+1, o.sig, o.flowRetries, o.alertRetries)
		}
	}
	if got := chs.Starts(); got != 3 {
		t.Errorf("server started %d times, want 3", got)
	}
	for _, outcome := range []string{"5xx", "timeout", "error"} {
		if metricSum(t, "exfilwatch_webhook_attempts_total", map[string]string{"endpoint": hookName, "outcome": outcome}) == 0 {
			t.Errorf("no webhook attempt ended in %s: the receiver failure was not exercised", outcome)
		}
	}
	if hookProxy.Cuts() == 0 {
		t.Error("the webhook proxy was never cut")
	}

	ids := alertIDs(t, res.AlertsFile)
	rc.checkDelivered(t, ids)
	checkStored(t, ctx, cfg.ClickHouse, ids, res.Flows)
	t.Logf("%d flows, %d alerts stored and delivered across a SIGTERM and a SIGKILL of ClickHouse (%.1fs)", res.Flows, len(ids), time.Since(began).Seconds())
}
