package pipeline

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/sink/webhook"
)

// slowOrFailing wraps the verifying receiver with the failures a real
// endpoint shows: 500s, and answers slower than the sender's timeout.
type slowOrFailing struct {
	rc       *receiver
	mu       chan struct{}
	n        int
	slowFrom int
	slowTo   int
}

func (s *slowOrFailing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu <- struct{}{}
	s.n++
	n := s.n
	<-s.mu
	if n >= s.slowFrom && n < s.slowTo {
		time.Sleep(600 * time.Millisecond) // beyond the endpoint timeout: the sender gives up and retries
	}
	s.rc.ServeHTTP(w, r)
}

// TestEndToEndSurvivesOutages: while the pipeline runs, ClickHouse becomes
// unreachable (connections broken and refused) and comes back; the webhook
// receiver answers 500, times out, and refuses connections for a while.
// Afterwards every alert is in ClickHouse exactly once after FINAL and every
// alert reached the receiver with a valid signature.
func TestEndToEndSurvivesOutages(t *testing.T) {
	kafka := testenv.Kafka(t)
	chAddr := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	key := []byte("outage-webhook-secret-0123456789")
	rc := &receiver{key: key, ids: map[string]int{}, failNext: 20}
	srv := httptest.NewServer(&slowOrFailing{rc: rc, mu: make(chan struct{}, 1), slowFrom: 25, slowTo: 35})
	defer srv.Close()
	hookProxy := testenv.NewCutProxy(t, srv.Listener.Addr().String())
	chProxy := testenv.NewCutProxy(t, chAddr)

	cfg := DemoConfig()
	cfg.ClickHouse.Database = fmt.Sprintf("exfilwatch_outage_%d", time.Now().UnixNano())
	cfg.ClickHouse.RetryInitial = 50 * time.Millisecond
	cfg.ClickHouse.RetryMax = 500 * time.Millisecond
	ep := webhook.DefaultEndpoint("outage", "http://"+hookProxy.Addr, webhook.FormatGeneric)
	ep.Secret = "whsec_" + base64.StdEncoding.EncodeToString(key)
	ep.RatePerSecond, ep.Burst, ep.Timeout = 10000, 1000, 300*time.Millisecond
	cfg.Webhooks.Endpoints = []webhook.EndpointConfig{ep}
	cfg.Webhooks.RetryInitial = 20 * time.Millisecond
	cfg.Webhooks.RetryMax = 300 * time.Millisecond

	// Cut both once data flows, restore a couple of seconds later.
	injected := make(chan struct{})
	watch := func(c *Counters) {
		go func() {
			defer close(injected)
			for c.SunkFlows.Load() == 0 && c.SunkAlerts.Load() == 0 {
				if ctx.Err() != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			chProxy.Cut()
			hookProxy.Cut()
			time.Sleep(2 * time.Second)
			hookProxy.Restore()
			time.Sleep(1 * time.Second)
			chProxy.Restore()
		}()
	}
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	res, err := Demo(ctx, &cfg, DemoOptions{Dir: t.TempDir(), Devices: 20, Seed: 9, Background: 40, Kafka: kafka, ClickHouse: chProxy.Addr, Watch: watch}, &out, io.Discard, log)
	<-injected
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if chProxy.Cuts() == 0 || hookProxy.Cuts() == 0 {
		t.Fatal("outages were not injected")
	}

	ids := alertIDs(t, res.AlertsFile)
	rc.checkDelivered(t, ids)
	direct := cfg.ClickHouse
	direct.Addr = chAddr
	checkStored(t, ctx, direct, ids, res.Flows)
	t.Logf("%d flows, %d alerts stored and delivered through ClickHouse and webhook outages", res.Flows, len(ids))
}
